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
    // A GET-only literal beside a broader route that lists HEAD: upstreams answer HEAD with the GET
    // handler, so a HEAD of the literal must not take the broader route (and its ACL).
    { name: 'secret', methods: ['GET'], path: '/docs/secret', allow: ['dns:admin'], upstream: 'svc' },
    { name: 'docs', methods: ['GET', 'HEAD'], path: '/docs/:name', allow: ['dns:a'], upstream: 'svc' },
    { name: 'files', methods: ['GET', 'HEAD'], path: '/files/*', allow: ['dns:a'], upstream: 'svc' },
    { name: 'file-get', methods: ['GET'], path: '/files/:name', allow: ['dns:a'], upstream: 'svc' },
    // The same shape, GET and HEAD on two routes: HEAD goes to the one that lists it, in either order.
    { name: 'item-head', methods: ['HEAD'], path: '/v1/items/:id', allow: ['dns:a'], upstream: 'svc' },
    { name: 'item-get', methods: ['GET'], path: '/v1/items/:id', allow: ['dns:a'], upstream: 'svc' },
    { name: 'thing-get', methods: ['GET'], path: '/v1/things/:id', allow: ['dns:a'], upstream: 'svc' },
    { name: 'thing-head', methods: ['HEAD'], path: '/v1/things/:id', allow: ['dns:a'], upstream: 'svc' },
    { name: 'ping', methods: ['HEAD'], path: '/v1/ping', allow: ['dns:a'], upstream: 'svc' },
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
  ['GET', '/docs/secret', 'secret'],
  ['HEAD', '/docs/secret', 'method_not_allowed'], // where its GET goes, which does not list HEAD
  ['HEAD', '/docs/readme', 'docs'],
  ['HEAD', '/files/a', 'method_not_allowed'], // the GET-only param beats the wildcard
  ['HEAD', '/files/a/b', 'files'],
  ['GET', '/files/a', 'file-get'],
  ['HEAD', '/v1/items/7', 'item-head'],
  ['GET', '/v1/items/7', 'item-get'],
  ['HEAD', '/v1/things/7', 'thing-head'],
  ['GET', '/v1/things/7', 'thing-get'],
  ['HEAD', '/v1/ping', 'ping'], // a HEAD-only route
  ['GET', '/v1/ping', 'method_not_allowed'],
  ['HEAD', '/v1/nothing', 'route_not_found'],
]

t.plan(CASES.length)
for (const [method, path, expected] of CASES) t.equal(name(routes.match(method, path)), expected, `${method} ${path} → ${expected}`)
