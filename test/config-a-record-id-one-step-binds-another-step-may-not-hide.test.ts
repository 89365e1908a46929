/**
 * Found by review: a `seal` step with `records` copies each record's id, in clear, into the header
 * of every value it seals (`ecl.rid`). Its own fields may not match that id; another step of the
 * same message could. Response steps run in reverse, so with `[seal /records/*\/passport, seal
 * /records/*\/name bound to passport]` the binding step read the plaintext passport before the other
 * sealed it, and every name crossed to the sponsor with the passport in its header. Such a chain is
 * refused at boot now, in either order and either direction, with `strip` as with `seal`.
 */
import t from 'tap'
import '../src/transform/builtin.js'
import { compileTransformChain } from '../src/transform/registry.js'
import { keySetEnv } from './helpers/sealing.js'

const bound = { type: 'seal', recipients: 'th', fields: ['/records/*/name'], records: { pattern: '/records/*', id: 'passport' } }

t.test('a record id bound in plaintext by one step and hidden by another of the same chain is refused at boot', async (t) => {
  const env = await keySetEnv(t)
  const hiders = [
    { type: 'seal', recipients: 'th', fields: ['/records/*/passport'] },
    { type: 'strip', fields: ['/records/*/passport'] },
    { type: 'strip', fields: ['/**/passport'] },
    { type: 'seal', recipients: 'th', fields: ['/records/*/passport'], records: { pattern: '/records/*', id: 'id' } },
  ]
  for (const hider of hiders) {
    for (const [order, steps] of [
      ['hider first', [hider, bound]],
      ['binder first', [bound, hider]],
    ] as const) {
      const binderAt = steps.indexOf(bound)
      t.throws(() => compileTransformChain(steps, env, 'routes[0].transforms.response', 'response'), {
        code: 'config_invalid',
        message: `routes[0].transforms.response[${binderAt}].records.id: "passport" is bound in plaintext to every value this step seals, and routes[0].transforms.response[${1 - binderAt}] (${hider.type}) hides it (${hider.fields[0]}): bind the records to a member no step hides`,
      }, `${hider.type} ${hider.fields[0]}, ${order}`)
    }
  }
  t.throws(() => compileTransformChain([hiders[0]!, bound], env, 'routes[0].transforms.request', 'request'), { code: 'config_invalid' }, 'requests alike')
})

t.test('chains that hide nothing the binding reads still compile', async (t) => {
  const env = await keySetEnv(t)
  const byId = { ...bound, records: { pattern: '/records/*', id: 'id' } }
  t.equal(compileTransformChain([{ type: 'seal', recipients: 'th', fields: ['/records/*/passport'] }, byId], env, 'r', 'request').length, 2, 'another member hidden')
  t.equal(compileTransformChain([{ type: 'require-sealed', recipients: 'th', fields: ['/records/*/passport'] }, bound], env, 'r', 'request').length, 2, 'require-sealed hides nothing')
  t.equal(compileTransformChain([{ type: 'strip', fields: ['/records/*/notes'] }, bound], env, 'r', 'request').length, 2)
  // The other direction is another message: its steps do not hide this one's members.
  t.equal(compileTransformChain([bound], env, 'routes[0].transforms.response', 'response').length, 1)
})
