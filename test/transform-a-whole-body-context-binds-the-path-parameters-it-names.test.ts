/**
 * A whole-body step's `context` may name its route's path parameters (`photos-in/{id}`), binding a
 * sealed body to the resource its path names. What it names is checked when the route table is
 * compiled, not when a request arrives; a field step refuses `{…}` rather than bind it as text.
 */
import { pino } from 'pino'
import t from 'tap'
import { configSchema } from '../src/config/schema.js'
import { generateKeySet, parseKeySet } from '../src/crypto/keys.js'
import { compileRouteTable } from '../src/route/table.js'
import '../src/transform/builtin.js'
import { compileAcceptedContexts, compileBodyContext } from '../src/transform/body-context.js'
import type { TransformContext, TransformEnv } from '../src/transform/types.js'

const log = pino({ level: 'silent' })
const generated = generateKeySet()
const env: TransformEnv = {
  log,
  keySets: new Map([
    ['th', parseKeySet(generated.publicJwks)],
    ['thp', parseKeySet(generated.privateJwks, { requirePrivate: true })],
  ]),
}

function compile(path: string, steps: Array<Record<string, unknown>>, direction: 'request' | 'response' = 'request') {
  const config = configSchema.parse({
    sponsor: { listen: { port: 0 }, tls: { cert: 'c', key: 'k', clientCa: 'ca' }, principalHeader: 'x-ecluse-principal' },
    upstreams: { svc: { url: 'https://127.0.0.1:8443', serverName: 'svc', tls: { ca: 'ca', cert: 'c', key: 'k' } } },
    admin: { listen: { port: 0 } },
    keys: { th: { file: 'th.json' } },
    routes: [{ name: 'r', path, methods: ['PUT'], allow: ['dns:a'], upstream: 'svc', transforms: { [direction]: steps } }],
  })
  return compileRouteTable(config, env)
}

const ctxFor = (path: string, direction: 'request' | 'response' = 'request'): TransformContext => ({
  direction,
  routeName: 'r',
  path,
  requestId: 'x',
  principal: { id: 'dns:a' } as never,
  headers: {},
  log,
})

t.test('each {name} is read from the segment where the route has :name', async (t) => {
  const routeEnv = { ...env, routePath: '/v1/:org/items/:id/*' }
  const bind = compileBodyContext('docs/{org}/{id}', routeEnv)
  t.equal(bind.of(ctxFor('/v1/acme/items/42/a/b')), 'docs/acme/42')
  t.equal(bind.of(ctxFor('/v1/acme/items/42/a')), 'docs/acme/42', 'whatever the wildcard takes')
  t.equal(compileBodyContext('{id}/docs', routeEnv).of(ctxFor('/v1/x/items/%C3%A9/z')), '%C3%A9/docs', 'the normalised spelling, escapes and all')
  t.equal(compileBodyContext('photos', routeEnv).of(ctxFor('/v1/x/items/1/z')), 'photos', 'a context without a parameter is bound as it is')
  t.equal(compileBodyContext(undefined, routeEnv).of(ctxFor('/v1/x/items/1/z')), 'r', 'no context: the route name')
  t.equal(compileBodyContext('{id}', { ...env, routePath: '/:id' }).of(ctxFor('/7')), '7', 'the first segment')
  t.equal(compileBodyContext('p/{id}', { ...env, routePath: '/v1/:id/' }).of(ctxFor('/v1/7/')), 'p/7', 'a route with a trailing slash')
})

t.test('a bound context longer than a claim may be is refused with the message, not sealed or compared', async (t) => {
  const bind = compileBodyContext('photos-in/{id}', { ...env, routePath: '/v1/:id/photo' })
  const long = `/v1/${'a'.repeat(1100)}/photo`
  t.equal(bind.refusal?.(long), 'the context bound to the path is longer than 1024 bytes', 'asked when the request is routed')
  t.throws(() => bind.of(ctxFor(long)), { code: 'path_rejected', message: /longer than 1024 bytes/ }, 'and again when a step begins')
  t.throws(() => bind.of(ctxFor(long, 'response')), { code: 'transform_failed', message: /path_rejected: .*longer than 1024 bytes/ }, 'on a response, the upstream side’s failure')
  const atBound = `/v1/${'a'.repeat(1014)}/photo`
  t.equal(bind.of(ctxFor(atBound)).length, 1024, 'up to the bound')
  t.equal(bind.refusal?.(atBound), undefined)
  t.equal(compileBodyContext('photos', { ...env, routePath: '/v1/:id/photo' }).refusal, undefined, 'a context without a parameter refuses no path: nothing to ask')
})

t.test('what a context names is checked when the route table is compiled', async (t) => {
  const refused = (path: string, context: string, message: RegExp, why: string, type = 'seal-body') =>
    t.throws(() => compile(path, [{ type, recipients: 'th', context }]), { name: 'EcluseError', code: 'config_invalid', message }, why)
  refused('/v1/:id/photo', 'photos/{name}', /context: \{name\} is not a parameter of the route's path \/v1\/:id\/photo \(it has :id\)/, 'an unknown name, the route’s listed')
  refused('/v1/photos', 'photos/{id}', /\(it has none\)/, 'a route without parameters')
  refused('/v1/:a/:b', 'x/{a}{b}', /\{a\} and \{b\} need a "\/" between them/, 'two parameters side by side')
  refused('/v1/:a/:b', 'x/{a}-{b}', /\{a\} and \{b\} need a "\/"/, 'parted by a character a segment may hold')
  refused('/v1/:id', 'photos/{id', /"\{" is not closed/, 'an open brace')
  refused('/v1/:id', 'photos/id}', /"\}" closes no "\{"/, 'a lone closing brace')
  refused('/v1/:id', 'photos/}{id}', /"\}" closes no "\{"/, 'a closing brace first')
  refused('/v1/:id', 'photos/{}', /enclose the name of a path parameter/, 'an empty name')
  refused('/v1/:id', 'photos/{{id}}', /enclose the name of a path parameter/, 'nested braces')
  refused('/v1/:id', 'photos/{i-d}', /enclose the name of a path parameter/, 'not a parameter name')
  for (const type of ['open-body', 'require-sealed-body']) {
    const keys = type === 'open-body' ? { keys: 'thp' } : { recipients: 'th' }
    t.throws(() => compile('/v1/:id', [{ type, ...keys, context: 'x/{nope}' }]), /context: \{nope\} is not a parameter/, `${type} too`)
    t.throws(() => compile('/v1/:id', [{ type, ...keys, context: 'x/{id}', alsoAccept: ['x', 'y/{nope}'] }]), /alsoAccept\[1\]: \{nope\} is not a parameter/, `${type}: and in alsoAccept, named`)
    t.throws(() => compile('/v1/:id', [{ type, ...keys, alsoAccept: [] }]), /alsoAccept/, `${type}: alsoAccept lists at least one`)
  }
  t.doesNotThrow(() => compile('/v1/:a/:b', [{ type: 'seal-body', recipients: 'th', context: 'x/{a}/{b}' }]), 'two parameters parted by a /')
  t.doesNotThrow(() => compile('/v1/:id/photo', [{ type: 'seal-body', recipients: 'th', context: 'photos-out/{id}' }], 'response'), 'on responses too')
})

t.test('outside a route (the CLI) a context with a parameter is refused: it names nothing there', async (t) => {
  t.throws(() => compileBodyContext('photos-in/{id}', env), { code: 'config_invalid', message: /no route path here; give the context as it was bound, e.g\. photos-in\/A/ })
  t.equal(compileBodyContext('photos-in/A', env).of(ctxFor('/')), 'photos-in/A')
})

t.test('field steps refuse {…} in their context rather than bind it as text', async (t) => {
  for (const type of ['seal', 'open', 'require-sealed']) {
    t.throws(
      () => compile('/v1/:id', [{ type, ...(type === 'open' ? { keys: 'thp' } : { recipients: 'th' }), context: 'records/{id}', fields: ['/name'] }]),
      { code: 'config_invalid', message: /context: a "\{name\}" path parameter binds whole bodies only .*bound to its record through records/ },
      type,
    )
  }
  t.throws(() => compile('/v1/:id', [{ type: 'seal', recipients: 'th', context: 'records}', fields: ['/name'] }]), /binds whole bodies only/, 'a lone brace as well')
})

t.test('alsoAccept: an opening or checking step accepts its context or any listed, each bound to the path', async (t) => {
  const routeEnv = { ...env, routePath: '/v1/:id/photo' }
  const accepted = compileAcceptedContexts('photos-in/{id}', ['photos-in', 'uploads/{id}'], routeEnv)
  t.same(accepted.of(ctxFor('/v1/A/photo')), ['photos-in/A', 'photos-in', 'uploads/A'])
  t.equal(compileAcceptedContexts('photos-in/{id}', undefined, routeEnv).of(ctxFor('/v1/A/photo')), 'photos-in/A', 'one context without the list')
  const long = `/v1/${'a'.repeat(1100)}/photo`
  t.match(compileAcceptedContexts('photos-in', ['uploads/{id}'], routeEnv).refusal?.(long), /longer than 1024 bytes/, 'a listed context too long refuses the path')
  t.equal(compileAcceptedContexts('photos-in', ['uploads'], routeEnv).refusal, undefined)
})

t.test('the route table asks every whole-body step of both directions about the path', async (t) => {
  const long = `/v1/${'a'.repeat(1100)}/photo`
  const steps = [
    { type: 'seal-body', recipients: 'th' },
    { type: 'open-body', keys: 'thp' },
    { type: 'require-sealed-body', recipients: 'th' },
  ]
  for (const step of steps) {
    for (const direction of ['request', 'response'] as const) {
      const route = compile('/v1/:id/photo', [{ ...step, context: 'photos/{id}' }], direction).get('r')!
      t.equal(route.pathRefusal?.(long), `${step.type}: the context bound to the path is longer than 1024 bytes`, `${step.type}, ${direction}`)
      t.equal(route.pathRefusal?.('/v1/A/photo'), undefined)
    }
    t.equal(compile('/v1/:id/photo', [{ ...step, context: 'photos' }]).get('r')!.pathRefusal, undefined, `${step.type}: nothing to ask, no check on the hot path`)
  }
  const migrating = compile('/v1/:id/photo', [{ type: 'open-body', keys: 'thp', context: 'photos', alsoAccept: ['photos/{id}'] }]).get('r')!
  t.match(migrating.pathRefusal?.(long), /^open-body: .*longer than 1024 bytes/, 'a parameter in alsoAccept is asked about too')
})
