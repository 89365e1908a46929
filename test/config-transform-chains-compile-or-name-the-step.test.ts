import { PassThrough } from 'node:stream'
import { pino } from 'pino'
import t from 'tap'
import { EcluseError } from '../src/errors.js'
import { compileTransformChain, registeredTransforms, registerTransform } from '../src/transform/registry.js'
import type { BodyTransform, TransformEnv } from '../src/transform/types.js'

const env: TransformEnv = { log: pino({ level: 'silent' }) }

t.test('the core registers no transform', async (t) => {
  t.same(registeredTransforms(), [])
  t.throws(() => compileTransformChain([{ type: 'seal' }], env, 'routes[0].transforms.request', 'request'), {
    code: 'config_invalid',
    message: 'routes[0].transforms.request[0].type: unknown transform "seal" (known: none)',
  })
})

t.test('a registered factory gets its step options and the env, in order', async (t) => {
  const seen: Array<Record<string, unknown>> = []
  const unregister = registerTransform('test-tag', (options, factoryEnv) => {
    t.equal(factoryEnv, env)
    seen.push({ ...options })
    return { type: 'test-tag', begin: () => new PassThrough() } satisfies BodyTransform
  })
  t.teardown(unregister)
  const chain = compileTransformChain(
    [
      { type: 'test-tag', tag: 'a' },
      { type: 'test-tag', tag: 'b', extra: [1] },
    ],
    env,
    'routes[0].transforms.response',
    'response',
  )
  t.equal(chain.length, 2)
  t.same(seen, [{ tag: 'a' }, { tag: 'b', extra: [1] }], 'options without `type`')
  t.same(compileTransformChain([], env, 'x', 'request'), [])
})

t.test('unknown types and refused options are all listed, each prefixed with its step', async (t) => {
  const unregister = registerTransform('test-strict', (options) => {
    if (typeof options['field'] !== 'string') throw new EcluseError('config_invalid', 'field: required\nmode: must be "a" or "b"')
    return { type: 'test-strict', begin: () => null }
  })
  t.teardown(unregister)
  const err = t.throws(() =>
    compileTransformChain(
      [{ type: 'test-strict', field: 'ok' }, { type: 'test-strict' }, { type: 'nope' }],
      env,
      'routes[3].transforms.request',
      'request',
    ),
  ) as EcluseError
  t.equal(err.code, 'config_invalid')
  t.equal(
    err.message,
    [
      'routes[3].transforms.request[1]: field: required',
      'routes[3].transforms.request[1]: mode: must be "a" or "b"',
      'routes[3].transforms.request[2].type: unknown transform "nope" (known: test-strict)',
    ].join('\n'),
  )
})

t.test('other failures keep their code, or become internal, with the step named', async (t) => {
  const unregisterKeys = registerTransform('test-keys', () => {
    throw new EcluseError('key_material_invalid', 'kid "k1" not in the key set')
  })
  const unregisterBug = registerTransform('test-bug', () => {
    throw new TypeError('boom')
  })
  t.teardown(() => {
    unregisterKeys()
    unregisterBug()
  })
  t.throws(() => compileTransformChain([{ type: 'test-keys' }], env, 'r', 'request'), {
    code: 'key_material_invalid',
    message: 'r[0]: kid "k1" not in the key set',
  })
  t.throws(() => compileTransformChain([{ type: 'test-bug' }], env, 'r', 'request'), {
    code: 'internal',
    message: 'r[0]: transform "test-bug" failed to build: boom',
  })
})

t.test('registration is checked, and unregistering removes only its own entry', async (t) => {
  const factory = () => ({ type: 'test-once', begin: () => null })
  const unregister = registerTransform('test-once', factory)
  t.throws(() => registerTransform('test-once', factory), { code: 'internal' })
  t.throws(() => registerTransform('Bad Name', factory), { code: 'internal' })
  unregister()
  t.same(registeredTransforms(), [])
  const again = registerTransform('test-once', factory)
  unregister() // stale: must not remove the new registration
  t.same(registeredTransforms(), ['test-once'])
  again()
  t.same(registeredTransforms(), [])
})
