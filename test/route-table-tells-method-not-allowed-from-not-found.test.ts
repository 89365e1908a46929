import { pino } from 'pino'
import t from 'tap'
import { configSchema } from '../src/config/schema.js'
import { compileRouteTable, type RouteMatch } from '../src/route/table.js'

const config = configSchema.parse({
  sponsor: { listen: { port: 0 }, tls: { cert: 'c', key: 'k', clientCa: 'ca' } },
  upstreams: { svc: { url: 'https://127.0.0.1:8443', serverName: 'svc', tls: { ca: 'ca', cert: 'c', key: 'k' } } },
  admin: { listen: { port: 0 } },
  routes: [
    { name: 'read', methods: ['GET'], path: '/v1/records/:id', allow: ['dns:a'], upstream: 'svc' },
    // Same shape, disjoint methods: not ambiguous.
    { name: 'write', methods: ['PUT', 'DELETE'], path: '/v1/records/:id', allow: ['dns:a'], upstream: 'svc' },
    { name: 'probe', methods: ['GET', 'HEAD'], path: '/v1/status', allow: ['dns:a'], upstream: 'svc' },
    { name: 'submit', methods: ['POST'], path: '/v1/forms/special', allow: ['dns:a'], upstream: 'svc' },
    { name: 'form', methods: ['GET'], path: '/v1/forms/:id', allow: ['dns:a'], upstream: 'svc' },
  ],
})
const routes = compileRouteTable(config, { log: pino({ level: 'silent' }) })

function name(m: RouteMatch): string {
  return 'route' in m ? m.route.name : m.error
}

const CASES: Array<[string, string, string]> = [
  ['GET', '/v1/records/7', 'read'],
  ['PUT', '/v1/records/7', 'write'],
  ['DELETE', '/v1/records/7', 'write'],
  ['POST', '/v1/records/7', 'method_not_allowed'],
  ['HEAD', '/v1/records/7', 'method_not_allowed'], // no implicit HEAD for a GET route
  ['HEAD', '/v1/status', 'probe'], // HEAD where it is listed
  ['OPTIONS', '/v1/status', 'method_not_allowed'],
  ['PROPFIND', '/v1/status', 'method_not_allowed'], // a method no route knows
  ['get', '/v1/status', 'method_not_allowed'], // methods are case-sensitive (RFC 9110 §9.1)
  ['POST', '/v1/forms/special', 'submit'],
  // Tries are per method: the POST-only literal does not shadow the GET param route.
  ['GET', '/v1/forms/special', 'form'],
  ['POST', '/v1/forms/42', 'method_not_allowed'],
  ['GET', '/v1/other', 'route_not_found'],
  ['PROPFIND', '/v1/other', 'route_not_found'],
]

t.plan(CASES.length)
for (const [method, path, expected] of CASES) t.equal(name(routes.match(method, path)), expected, `${method} ${path} → ${expected}`)
