import { pino } from 'pino'
import t from 'tap'
import { configSchema } from '../src/config/schema.js'
import { compileRouteTable, type RouteMatch } from '../src/route/table.js'

function table(routes: Array<{ name: string; path: string; methods?: string[] }>) {
  const config = configSchema.parse({
    sponsor: { listen: { port: 0 }, tls: { cert: 'c', key: 'k', clientCa: 'ca' } },
    upstreams: { svc: { url: 'https://127.0.0.1:8443', serverName: 'svc', tls: { ca: 'ca', cert: 'c', key: 'k' } } },
    admin: { listen: { port: 0 } },
    routes: routes.map((r) => ({ methods: ['GET'], allow: ['uri:spiffe://t/app'], upstream: 'svc', ...r })),
  })
  return compileRouteTable(config, { log: pino({ level: 'silent' }) })
}

const routes = table([
  { name: 'wild', path: '/v1/items/*' },
  { name: 'param', path: '/v1/items/:id' },
  { name: 'nested', path: '/v1/items/:id/history' },
  { name: 'literal', path: '/v1/items/special' },
  { name: 'root', path: '/' },
  { name: 'trailing', path: '/v1/list/' },
  { name: 'deep-literal', path: '/a/b/c' },
  { name: 'param-then-literal', path: '/a/:x/d' },
  { name: 'custom-method', path: '/v1/items:batch' },
  { name: 'catch-all', path: '/static/*' },
])

function name(m: RouteMatch): string {
  return 'route' in m ? m.route.name : m.error
}

// [path, expected route name or error code]
const CASES: Array<[string, string]> = [
  ['/v1/items/special', 'literal'], // literal beats param and wildcard, whatever the config order
  ['/v1/items/42', 'param'], // param beats wildcard
  ['/v1/items/42/history', 'nested'],
  ['/v1/items/42/other', 'wild'], // the param branch leads nowhere: backtrack to the wildcard
  ['/v1/items/special/history', 'nested'], // the literal branch leads nowhere: backtrack to the param
  ['/v1/items/a/b/c/d', 'wild'], // a wildcard takes any number of remaining segments
  ['/v1/items/a/', 'wild'], // …including a trailing slash after a real segment
  ['/v1/items/', 'route_not_found'], // a param or wildcard never matches an empty segment
  ['/v1/items', 'route_not_found'], // "/*" needs at least one segment
  ['/v1/items:batch', 'custom-method'],
  ['/', 'root'],
  ['/v1/list/', 'trailing'],
  ['/v1/list', 'route_not_found'], // no trailing-slash folding
  ['/a/b/c', 'deep-literal'],
  ['/a/b/d', 'param-then-literal'],
  ['/a/b/e', 'route_not_found'],
  ['/V1/items/42', 'route_not_found'], // paths are case-sensitive (RFC 3986 §6.2.2.1)
  ['/static/css/site.css', 'catch-all'],
  ['/static', 'route_not_found'],
  ['/nothing', 'route_not_found'],
  ['', 'route_not_found'],
  ['v1/items/42', 'route_not_found'],
]

t.plan(CASES.length + 3)
for (const [path, expected] of CASES) t.equal(name(routes.match('GET', path)), expected, `GET ${JSON.stringify(path)} → ${expected}`)

t.equal(routes.match('GET', '/v1/items/1'), routes.match('GET', '/v1/items/2'), 'a match returns the one pre-built result object')
t.equal(routes.match('GET', '/x'), routes.match('GET', '/y'), 'an error result is pre-built too')

t.test('the same precedence holds where a node has many literal children (looked up in a Map)', async (t) => {
  const many = table([
    ...Array.from({ length: 12 }, (_, i) => ({ name: `l${i}`, path: `/many/l${i}` })),
    { name: 'param', path: '/many/:x' },
    { name: 'deep', path: '/many/l3/deep' },
    { name: 'param-deep', path: '/many/:x/other' },
  ])
  const cases: Array<[string, string]> = [
    ['/many/l5', 'l5'],
    ['/many/l11', 'l11'],
    ['/many/l12', 'param'],
    ['/many/l3/deep', 'deep'],
    ['/many/l3/other', 'param-deep'],
    ['/many/l3/none', 'route_not_found'],
    ['/many/', 'route_not_found'],
  ]
  for (const [path, expected] of cases) t.equal(name(many.match('GET', path)), expected, `GET ${path} → ${expected}`)
})
