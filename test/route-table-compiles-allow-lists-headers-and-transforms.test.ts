import { pino } from 'pino'
import t from 'tap'
import { configSchema } from '../src/config/schema.js'
import { DEFAULT_REQUEST_HEADERS, DEFAULT_RESPONSE_HEADERS } from '../src/proxy/headers.js'
import { compileRouteTable } from '../src/route/table.js'
import { registerTransform } from '../src/transform/registry.js'
import type { BodyTransform } from '../src/transform/types.js'

// Throw-away transform types whose instances carry their configured label, so order is observable.
const unregister = [
  registerTransform('route-test-a', (opts) => ({ type: `a:${String(opts['label'])}`, begin: () => null }) as BodyTransform),
  registerTransform('route-test-b', (opts) => ({ type: `b:${String(opts['label'])}`, begin: () => null }) as BodyTransform),
]
t.teardown(() => {
  for (const u of unregister) u()
})

const warnings: string[] = []
const log = pino({ level: 'warn' }, { write: (line: string) => warnings.push(line) })

const config = configSchema.parse({
  sponsor: { listen: { port: 0 }, tls: { cert: 'c', key: 'k', clientCa: 'ca' } },
  upstreams: {
    accreditation: { url: 'https://127.0.0.1:8443', serverName: 'svc', tls: { ca: 'ca', cert: 'c', key: 'k' } },
  },
  admin: { listen: { port: 0 } },
  routes: [
    {
      name: 'submit',
      methods: ['POST', 'PUT'],
      path: '/v1/accreditations/:id',
      allow: ['uri:spiffe://sponsor.test/app', 'ou:accreditation'],
      upstream: 'accreditation',
      maxBodyBytes: 4096,
      requestHeaders: ['X-Tenant', 'authorization'],
      responseHeaders: ['location'],
      transforms: {
        request: [
          { type: 'route-test-a', label: 1 },
          { type: 'route-test-b', label: 2 },
        ],
        response: [
          { type: 'route-test-a', label: 3 },
          { type: 'route-test-b', label: 4 },
          { type: 'route-test-a', label: 5 },
        ],
      },
    },
    { name: 'closed', methods: ['GET'], path: '/v1/closed', allow: [], upstream: 'accreditation' },
  ],
})
const table = compileRouteTable(config, { log })

t.test('routes keep configuration order and are found by name', async (t) => {
  t.strictSame(
    table.routes.map((r) => r.name),
    ['submit', 'closed'],
  )
  t.equal(table.get('submit'), table.routes[0])
  t.equal(table.get('nope'), undefined)
  t.ok(Object.isFrozen(table.routes[0]), 'a compiled route is frozen')
})

t.test('scalar fields, methods and the allow list are resolved', async (t) => {
  const route = table.get('submit')!
  t.equal(route.upstream, 'accreditation')
  t.equal(route.maxBodyBytes, 4096)
  t.equal(route.path, '/v1/accreditations/:id')
  t.strictSame([...route.methods].sort(), ['POST', 'PUT'])
  t.strictSame([...route.allow].sort(), ['ou:accreditation', 'uri:spiffe://sponsor.test/app'])
  t.equal(table.get('closed')!.maxBodyBytes, 1024 * 1024, 'default body limit')
})

t.test('header allow-lists are the default safe sets plus the route additions, lower-cased', async (t) => {
  const route = table.get('submit')!
  t.strictSame([...route.requestHeaderAllow].sort(), [...DEFAULT_REQUEST_HEADERS, 'x-tenant', 'authorization'].sort())
  t.strictSame([...route.responseHeaderAllow].sort(), [...DEFAULT_RESPONSE_HEADERS, 'location'].sort())
  const closed = table.get('closed')!
  t.strictSame([...closed.requestHeaderAllow].sort(), [...DEFAULT_REQUEST_HEADERS].sort())
  t.notOk(DEFAULT_REQUEST_HEADERS.has('x-tenant'), 'a route addition does not leak into the shared default set')
})

t.test('request transforms keep their order; response transforms are stored reversed', async (t) => {
  const route = table.get('submit')!
  t.strictSame(
    route.requestTransforms.map((x) => x.type),
    ['a:1', 'b:2'],
  )
  t.strictSame(
    route.responseTransforms.map((x) => x.type),
    ['a:5', 'b:4', 'a:3'],
  )
  t.strictSame(table.get('closed')!.responseTransforms, [])
})

t.test('a route that allows nobody is logged at boot', async (t) => {
  t.equal(warnings.length, 1)
  t.match(JSON.parse(warnings[0]!), { route: 'closed', msg: /allows no principal/ })
})
