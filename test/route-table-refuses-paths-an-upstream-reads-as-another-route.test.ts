/**
 * Found by review: `/docs/SECRET`, `/docs/secret/` and `/docs/secret.json` were routed, and their
 * principal checked, by a broad `/docs/:name`, while Express or ASP.NET Core (letter case), Express
 * or Spring 5 (trailing slash), Rails or Spring before 5.3 (a `.ext` format) run the handler of the
 * literal `/docs/secret` for them. `readElsewhere` names such a reading; the exchange refuses it.
 */
import { pino } from 'pino'
import t from 'tap'
import { configSchema } from '../src/config/schema.js'
import { compileRouteTable } from '../src/route/table.js'

const config = configSchema.parse({
  sponsor: { listen: { port: 0 }, tls: { cert: 'c', key: 'k', clientCa: 'ca' } },
  upstreams: { svc: { url: 'https://127.0.0.1:8443', serverName: 'svc', tls: { ca: 'ca', cert: 'c', key: 'k' } } },
  admin: { listen: { port: 0 } },
  routes: [
    { name: 'secret', path: '/docs/secret', methods: ['GET', 'HEAD'], allow: ['dns:admin'], upstream: 'svc' },
    { name: 'docs', path: '/docs/:name', methods: ['GET', 'HEAD'], allow: ['dns:anyone'], upstream: 'svc' },
    { name: 'keys', path: '/files/admin/keys', methods: ['GET'], allow: ['dns:admin'], upstream: 'svc' },
    { name: 'files', path: '/files/*', methods: ['GET'], allow: ['dns:anyone'], upstream: 'svc' },
    { name: 'records', path: '/v1/records/:id', methods: ['GET', 'PUT'], allow: ['dns:anyone'], upstream: 'svc' },
    { name: 'record-photo', path: '/v1/records/:id/photo.jpg', methods: ['GET'], allow: ['dns:anyone'], upstream: 'svc' },
  ],
})
const table = compileRouteTable(config, { log: pino({ level: 'silent' }) })

function readElsewhere(method: string, path: string): string {
  const match = table.match(method, path)
  if ('error' in match) return match.error
  const elsewhere = table.readElsewhere(method, path, match.route)
  return elsewhere === null ? `${match.route.name}, read nowhere else` : `${match.route.name} → ${elsewhere.route.name} (${elsewhere.reading})`
}

t.test('a path an upstream reads as a narrower route is named with the reading', async (t) => {
  const cases: Array<[string, string, string]> = [
    ['GET', '/docs/SECRET', 'docs → secret (ignoring letter case)'],
    ['HEAD', '/docs/Secret', 'docs → secret (ignoring letter case)'],
    ['GET', '/docs/secret/', 'route_not_found'], // a param never matches the empty last segment
    ['GET', '/docs/secret.json', 'docs → secret (without its final ".ext" suffix)'],
    ['GET', '/docs/secret.', 'docs → secret (without its final ".ext" suffix)'],
    ['GET', '/docs/secret;v=1', 'docs → secret (without its ";" path parameters)'],
    ['GET', '/files/Admin/keys.PEM/', 'files → keys (with all of these readings together)'],
    ['GET', '/files/admin/keys/', 'files → keys (without its trailing slash)'],
    ['GET', '/files/Admin/keys', 'files → keys (ignoring letter case)'],
    ['GET', '/files/admin/keys.pem', 'files → keys (without its final ".ext" suffix)'],
  ]
  for (const [method, path, expected] of cases) t.equal(readElsewhere(method, path), expected, `${method} ${path}`)
})

t.test('readings that reach the same route, no route, or another method’s route are no concern', async (t) => {
  const cases: Array<[string, string, string]> = [
    ['GET', '/docs/guide', 'docs, read nowhere else'],
    ['GET', '/docs/Guide.pdf', 'docs, read nowhere else'], // /docs/guide: the same param route
    ['GET', '/v1/records/AB123456', 'records, read nowhere else'], // a passport number in the path
    ['PUT', '/v1/records/AB123456/photo.jpg', 'method_not_allowed'],
    ['GET', '/v1/records/ab1/photo.jpg', 'record-photo, read nowhere else'], // /v1/records/ab1/photo: no route
    ['GET', '/files/a/b.txt', 'files, read nowhere else'],
    ['GET', '/files/.well-known', 'files, read nowhere else'], // a leading dot is a name, not a suffix
    ['GET', '/docs/secret', 'secret, read nowhere else'],
  ]
  for (const [method, path, expected] of cases) t.equal(readElsewhere(method, path), expected, `${method} ${path}`)
})
