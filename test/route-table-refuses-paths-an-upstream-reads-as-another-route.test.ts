/**
 * Found by review: `/docs/SECRET`, `/docs/secret/` and `/docs/secret.json` were routed, and their
 * principal checked, by a broad `/docs/:name`, while Express or ASP.NET Core (letter case), Express
 * or Spring 5 (trailing slash), Rails or Spring before 5.3 (a `.ext` format) run the handler of the
 * literal `/docs/secret` for them. `readElsewhere` names such a reading; the exchange refuses it.
 */
import { pino } from 'pino'
import t from 'tap'
import { configSchema } from '../src/config/schema.js'
import { generateKeySet, parseKeySet } from '../src/crypto/keys.js'
import { normalizeTarget } from '../src/route/path.js'
import { compileRouteTable, type RouteTable } from '../src/route/table.js'
import '../src/transform/builtin.js'

/** The route table of `routes` (to `svc`, allowing `dns:a`, unless they say otherwise) over `upstreams`, each given a TLS section. */
function tableWith(upstreams: Record<string, Record<string, unknown>>, routes: Array<Record<string, unknown>>): RouteTable {
  const parsed = configSchema.parse({
    sponsor: { listen: { port: 0 }, tls: { cert: 'c', key: 'k', clientCa: 'ca' } },
    upstreams: Object.fromEntries(Object.entries(upstreams).map(([name, u]) => [name, { tls: { ca: 'ca', cert: 'c', key: 'k' }, ...u }])),
    admin: { listen: { port: 0 } },
    routes: routes.map((r) => ({ allow: ['dns:a'], upstream: 'svc', ...r })),
  })
  return compileRouteTable(parsed, { log: pino({ level: 'silent' }) })
}

function tableOf(routes: Array<Record<string, unknown>>, pathReadings?: string[]): RouteTable {
  return tableWith({ svc: { url: 'https://127.0.0.1:8443', serverName: 'svc', ...(pathReadings === undefined ? {} : { pathReadings }) } }, routes)
}

/** The route `path` takes, and where a reading of it goes instead when one does: `docs → route "secret" (…)`. */
function goes(routes: RouteTable, method: string, path: string): string {
  const match = routes.match(method, path)
  if ('error' in match) return match.error
  const elsewhere = routes.readElsewhere(method, path, match.route)
  return elsewhere === null ? match.route.name : `${match.route.name} → ${elsewhere.goes} (${elsewhere.reading})`
}

const table = tableOf([
    { name: 'secret', path: '/docs/secret', methods: ['GET', 'HEAD'], allow: ['dns:admin'], upstream: 'svc' },
    { name: 'docs', path: '/docs/:name', methods: ['GET', 'HEAD'], allow: ['dns:anyone'], upstream: 'svc' },
    { name: 'keys', path: '/files/admin/keys', methods: ['GET'], allow: ['dns:admin'], upstream: 'svc' },
    { name: 'files', path: '/files/*', methods: ['GET'], allow: ['dns:anyone'], upstream: 'svc' },
    { name: 'records', path: '/v1/records/:id', methods: ['GET', 'PUT'], allow: ['dns:anyone'], upstream: 'svc' },
    { name: 'record-photo', path: '/v1/records/:id/photo.jpg', methods: ['GET'], allow: ['dns:anyone'], upstream: 'svc' },
])

t.test('a path an upstream reads as a narrower route is named with the reading', async (t) => {
  const cases: Array<[string, string, string]> = [
    ['GET', '/docs/SECRET', 'docs → route "secret" (ignoring letter case)'],
    ['HEAD', '/docs/Secret', 'docs → route "secret" (ignoring letter case)'],
    ['GET', '/docs/secret/', 'route_not_found'], // a param never matches the empty last segment
    ['GET', '/docs/secret.json', 'docs → route "secret" (without its final ".ext" suffix)'],
    ['GET', '/docs/secret.', 'docs → route "secret" (without its final ".ext" suffix)'],
    ['GET', '/docs/secret;v=1', 'docs → route "secret" (without its ";" path parameters)'],
    ['GET', '/files/Admin/keys.PEM/', 'files → route "keys" (ignoring letter case, without its trailing slash, without its final ".ext" suffix)'],
    ['GET', '/files/admin/keys/', 'files → route "keys" (without its trailing slash)'],
    ['GET', '/files/Admin/keys', 'files → route "keys" (ignoring letter case)'],
    ['GET', '/files/admin/keys.pem', 'files → route "keys" (without its final ".ext" suffix)'],
  ]
  for (const [method, path, expected] of cases) t.equal(goes(table, method, path), expected, `${method} ${path}`)
})

t.test('readings that reach the same route, no route, or another method’s route are no concern', async (t) => {
  const cases: Array<[string, string, string]> = [
    ['GET', '/docs/guide', 'docs'],
    ['GET', '/docs/Guide.pdf', 'docs'], // /docs/guide: the same param route
    ['GET', '/v1/records/AB123456', 'records'], // a passport number in the path
    ['PUT', '/v1/records/AB123456/photo.jpg', 'method_not_allowed'],
    ['GET', '/v1/records/ab1/photo.jpg', 'record-photo'], // /v1/records/ab1/photo: no route
    ['GET', '/files/a/b.txt', 'files'],
    ['GET', '/files/.well-known', 'files'], // a leading dot is a name, not a suffix
    ['GET', '/docs/secret', 'secret'],
  ]
  for (const [method, path, expected] of cases) t.equal(goes(table, method, path), expected, `${method} ${path}`)
})

t.test('found by review of the first version: HEAD, a ";" read to no route, and readings in pairs', async (t) => {
  // A HEAD goes where its GET would: to a GET-only literal, which an upstream runs for HEAD.
  const head = tableOf([
    { name: 'docs', methods: ['GET', 'HEAD'], path: '/docs/:name' },
    { name: 'secret', methods: ['GET'], path: '/docs/secret' },
  ])
  t.equal(goes(head, 'HEAD', '/docs/secret'), 'method_not_allowed', 'the literal itself: refused by the route table')
  for (const path of ['/docs/SECRET', '/docs/secret.json', '/docs/secret;x']) {
    t.match(goes(head, 'HEAD', path), /^docs → route "secret" \(/, `HEAD ${path}`)
  }
  // `/docs/;x` is `/docs/` to Tomcat: no route, and deny by default. Case or a suffix read to no
  // route stays no concern.
  t.equal(goes(head, 'GET', '/docs/;x'), 'docs → no route (without its ";" path parameters)')
  t.equal(goes(head, 'GET', '/docs/Readme.md'), 'docs')
  // Two readings, not all: case and slash make /x/secret.v2, and the suffix would undo it.
  const pair = tableOf([
    { name: 'broad', methods: ['GET'], path: '/x/:name/' },
    { name: 'narrow', methods: ['GET'], path: '/x/secret.v2' },
  ])
  t.equal(goes(pair, 'GET', '/x/SECRET.V2/'), 'broad → route "narrow" (ignoring letter case, without its trailing slash)')
})

t.test('an upstream that lists fewer pathReadings is held to those only', async (t) => {
  const routes = [
    { name: 'docs', methods: ['GET'], path: '/docs/:name' },
    { name: 'secret', methods: ['GET'], path: '/docs/secret' },
    { name: 'export', methods: ['GET'], path: '/docs/export.csv' },
  ]
  t.throws(() => tableOf(routes), { code: 'config_invalid', message: /"\/docs\/export\.csv" read without its final "\.ext" suffix, as upstream "svc" may read paths \(its pathReadings\), goes to route "docs"/ }, 'by default: every reading, so export.csv cannot be reached')
  const strict = tableOf(routes, ['parameters'])
  t.equal(goes(strict, 'GET', '/docs/export.csv'), 'export', 'a suffix this upstream does not read')
  t.equal(goes(strict, 'GET', '/docs/SECRET'), 'docs', 'nor case')
  t.equal(goes(strict, 'GET', '/docs/secret;x'), 'docs → route "secret" (without its ";" path parameters)')
  t.throws(() => tableOf(routes, ['case', 'case']), /each reading at most once/)
  t.throws(() => tableOf(routes, ['lowercase']), /pathReadings/)
})

t.test('found by the second review: HEAD as match routes it, literals folded as the upstream folds them, an empty segment', async (t) => {
  // A HEAD-only literal beside a GET+HEAD param: HEAD /docs/secret goes to the literal, so its readings must too.
  const headOnly = tableOf([
    { name: 'docs', methods: ['GET', 'HEAD'], path: '/docs/:name' },
    { name: 'secret', methods: ['HEAD'], path: '/docs/secret' },
  ])
  t.equal(goes(headOnly, 'HEAD', '/docs/secret'), 'secret')
  t.equal(goes(headOnly, 'HEAD', '/docs/SECRET'), 'docs → route "secret" (ignoring letter case)')
  // GET and HEAD split over two routes of one pattern: no false refusal.
  const split = tableOf([
    { name: 'get', methods: ['GET'], path: '/docs/:name' },
    { name: 'head', methods: ['HEAD'], path: '/docs/:name' },
  ])
  for (const path of ['/docs/Foo', '/docs/foo.txt', '/docs/foo;v=1']) {
    t.equal(goes(split, 'HEAD', path), 'head', `HEAD ${path}`)
    t.equal(goes(split, 'GET', path), 'get', `GET ${path}`)
  }
  // The upstream folds its literals as it folds the path: /v1/Admin/Keys is its /v1/Admin/keys.
  const folded = tableOf([
    { name: 'keys', methods: ['GET'], path: '/v1/Admin/keys' },
    { name: 'any', methods: ['GET'], path: '/v1/:x/Keys' },
  ])
  t.equal(goes(folded, 'GET', '/v1/Admin/Keys'), 'any → route "keys" (ignoring letter case)')
  t.equal(goes(folded, 'GET', '/v1/Admin/keys'), 'keys')
  // Stripping `;a` leaves an empty segment, which Tomcat merges and a wildcard here would take.
  const wild = tableOf([
    { name: 'docs', methods: ['GET'], path: '/docs/*' },
    { name: 'secret', methods: ['GET'], path: '/docs/secret' },
  ])
  t.equal(goes(wild, 'GET', '/docs/secret/;a/'), 'docs → an empty segment (without its ";" path parameters)')
  t.equal(goes(wild, 'GET', '/docs/secret/;a/;b'), 'docs → an empty segment (without its ";" path parameters)')
  t.equal(goes(wild, 'GET', '/docs/other;v=2/x'), 'docs', 'a parameter that leaves no empty segment and keeps the route')
})

t.test('found by the third review: a literal in capitals reached in lower case, and a suffix of more than one dot', async (t) => {
  // ASP.NET Core's routes are PascalCase and it ignores case: `/v1/docs/secret` runs the handler of
  // `/v1/docs/Secret`. The case reading only applied to a path with a capital letter, so this one
  // went to the broad route, under its ACL, unchecked.
  const pascal = tableOf([
    { name: 'secret', methods: ['GET', 'HEAD'], path: '/v1/docs/Secret', allow: ['dns:admin'] },
    { name: 'docs', methods: ['GET', 'HEAD'], path: '/v1/docs/:name' },
  ])
  t.equal(goes(pascal, 'GET', '/v1/docs/Secret'), 'secret')
  t.equal(goes(pascal, 'GET', '/v1/docs/SECRET'), 'docs → route "secret" (ignoring letter case)')
  t.equal(goes(pascal, 'GET', '/v1/docs/secret'), 'docs → route "secret" (ignoring letter case)')
  t.equal(goes(pascal, 'HEAD', '/v1/docs/secret'), 'docs → route "secret" (ignoring letter case)')
  t.match(goes(pascal, 'GET', '/v1/docs/secret.json'), /^docs → route "secret" \(ignoring letter case, without /)
  t.match(goes(pascal, 'GET', '/v1/docs/secret;x'), /^docs → route "secret" \(/)
  t.equal(goes(pascal, 'GET', '/v1/docs/other'), 'docs', 'a name of no literal stays where it was routed')
  t.equal(goes(tableOf([pascalRoute('secret'), pascalRoute('docs')], ['suffix']), 'GET', '/v1/docs/secret'), 'docs', 'an upstream that reads case exactly')

  // Spring before 5.3 matches `/docs/secret` as `/docs/secret.*`, and `*` takes dots:
  // `/docs/secret.x.y` is its `/docs/secret`, where the last-dot reading alone made it `secret.x`.
  for (const path of ['/docs/secret.x.y', '/docs/secret.json.json', '/docs/secret.tar.gz']) {
    t.equal(goes(table, 'GET', path), 'docs → route "secret" (without everything from the first "." of its last segment)', `GET ${path}`)
  }
  t.equal(goes(table, 'GET', '/docs/guide.tar.gz'), 'docs', 'a name of no literal stays where it was routed')
  t.equal(goes(table, 'GET', '/files/.well-known.d/x'), 'files', 'a leading dot is still a name')
})

/** The two routes of the PascalCase table above, for a table with other readings. */
function pascalRoute(name: 'secret' | 'docs'): Record<string, unknown> {
  return name === 'secret'
    ? { name: 'secret', methods: ['GET'], path: '/v1/docs/Secret', allow: ['dns:admin'] }
    : { name: 'docs', methods: ['GET'], path: '/v1/docs/:name' }
}

t.test('found by a review of that fix: no false refusal at boot or across upstreams, and letters outside ASCII that fold into it', async (t) => {
  // A capital anywhere made the case reading apply to every sample path: `/files/x`, the wildcard
  // route's sample, is the param route's own path, and the boot refused the wildcard route.
  const tree = tableOf([
    { name: 'file', methods: ['GET'], path: '/files/:name' },
    { name: 'tree', methods: ['GET'], path: '/files/*' },
    { name: 'health', methods: ['GET'], path: '/Health' },
  ])
  t.equal(goes(tree, 'GET', '/files/a/b'), 'tree')
  t.equal(goes(tree, 'GET', '/files/a'), 'file')

  // A capital in a route to another upstream says nothing of this upstream's handlers.
  const twoUpstreams = tableWith(
    { dotnet: { url: 'https://127.0.0.1:8443', serverName: 'a' }, go: { url: 'https://127.0.0.1:8444', serverName: 'b', pathReadings: [] } },
    [
      { name: 'api', methods: ['GET'], path: '/api/:x', allow: ['dns:a'], upstream: 'dotnet' },
      { name: 'status', methods: ['GET'], path: '/api/Status', allow: ['dns:admin'], upstream: 'go' },
    ],
  )
  t.equal(goes(twoUpstreams, 'GET', '/api/status'), 'api', 'lower-case traffic to the other upstream is not refused')
  t.equal(goes(twoUpstreams, 'GET', '/api/STATUS'), 'api → route "status" (ignoring letter case)', 'a path in capitals still is, as before')

  // Spring tries `pattern.*` only after an exact pattern: `/docs/report.v2.pdf` is its own route's.
  // (Beside a `/docs/:name` it is refused at boot all the same, by the last-dot reading, as
  // `/docs/export.csv` is above: a Rails upstream tries its routes in their order.)
  const exact = tableOf([
    { name: 'report', methods: ['GET'], path: '/docs/report' },
    { name: 'report-pdf', methods: ['GET'], path: '/docs/report.v2.pdf' },
  ])
  t.equal(goes(exact, 'GET', '/docs/report.v2.pdf'), 'report-pdf')

  // Java folds the Kelvin sign and the dotted İ into k and i (Character.toLowerCase), and
  // equalsIgnoreCase the long ſ and the dotless ı into s and i.
  const keys = tableOf([
    { name: 'keys', methods: ['GET'], path: '/v1/keys', allow: ['dns:admin'] },
    { name: 'sessions', methods: ['GET'], path: '/v1/sessions', allow: ['dns:admin'] },
    { name: 'info', methods: ['GET'], path: '/v1/info', allow: ['dns:admin'] },
    { name: 'any', methods: ['GET'], path: '/v1/:name' },
  ])
  for (const [path, route] of [
    ['/v1/%E2%84%AAeys', 'keys'],
    ['/v1/%C5%BFessions', 'sessions'],
    ['/v1/%C4%B0nfo', 'info'],
    ['/v1/%C4%B1nfo', 'info'],
  ] as const) {
    t.equal(goes(keys, 'GET', path), `any → route "${route}" (ignoring letter case)`, path)
  }
  t.equal(goes(keys, 'GET', '/v1/caf%C3%A9'), 'any', 'other letters outside ASCII fold into none of these')
  t.equal(goes(tableOf([{ name: 'keys', methods: ['GET'], path: '/v1/keys' }, { name: 'any', methods: ['GET'], path: '/v1/:name' }], ['suffix']), 'GET', '/v1/%E2%84%AAeys'), 'any', 'nor for an upstream that reads case exactly')
})

t.test('found by the review of path normalisation: %3B is read as the ";" a proxy before a Java upstream decodes it into', async (t) => {
  // nginx with a URI in proxy_pass, Apache's mod_proxy and mod_jk decode %3B and pass a raw ";",
  // which Tomcat, Jetty and Spring then strip: /docs/secret%3Bx is their /docs/secret.
  const spelled = (path: string) => normalizeTarget(path).path
  for (const path of ['/docs/secret%3Bx', '/docs/secret%3bx', '/docs/secret%3B', '/docs/secret%3Bx;y']) {
    t.equal(goes(table, 'GET', spelled(path)), 'docs → route "secret" (without its ";" path parameters)', path)
  }
  t.equal(goes(table, 'GET', spelled('/files/admin%3B/keys')), 'files → route "keys" (without its ";" path parameters)', 'through a wildcard')
  t.equal(goes(table, 'GET', spelled('/docs/%3Bx')), 'docs → no route (without its ";" path parameters)', 'read to no route, as ";x" is')
  t.equal(goes(table, 'GET', spelled('/files/secret/%3Ba/')), 'files → an empty segment (without its ";" path parameters)', 'an empty segment left, as ";a" leaves one')
  t.equal(goes(table, 'GET', spelled('/docs/readme%3Bv=2')), 'docs', 'read to the same route: no concern')
  t.equal(goes(tableOf([{ name: 'docs', methods: ['GET'], path: '/docs/:name' }, { name: 'secret', methods: ['GET'], path: '/docs/secret' }], ['case']), 'GET', spelled('/docs/secret%3Bx')), 'docs', 'nor for an upstream that keeps parameters')
})

t.test('found by the review of routing: two routes that frameworks rank otherwise than this gateway are refused at boot', async (t) => {
  // The gateway takes the first literal from the left; Spring the pattern with the fewest
  // parameters and a final * last; Express the first registered. Where neither of two overlapping
  // patterns is at least as specific at every segment, the upstream may run the other's handler.
  const ambiguous: Array<[string, string, string]> = [
    ['/v1/records/export/*', '/v1/records/:id/photo', 'GET /v1/records/export/photo'],
    ['/v1/users/me/*', '/v1/users/:id/keys', 'GET /v1/users/me/keys'],
    ['/v1/orgs/public/:team/:doc', '/v1/orgs/:org/admin/keys', 'GET /v1/orgs/public/admin/keys'],
    ['/a/:x', '/:y/b', 'GET /a/b'],
  ]
  for (const [broad, narrow, sample] of ambiguous) {
    const routes = [
      { name: 'one', methods: ['GET'], path: broad },
      { name: 'two', methods: ['GET'], path: narrow, allow: ['dns:admin'] },
    ]
    t.throws(() => tableOf(routes), { code: 'config_invalid', message: new RegExp(`routes\\[1\\]\\.path: routes "one" \\(${broad.replaceAll('*', '\\*')}\\) and "two" \\(${narrow}\\) both match ${sample.replaceAll('/', '\\/')}, and neither is at least as specific`) }, `${broad} beside ${narrow}`)
    t.ok(tableOf(routes.map((r) => ({ ...r, allow: ['dns:admin'] }))), `${broad} beside ${narrow}: the same policy, whichever handler runs`)
    t.ok(tableOf([routes[0]!, { ...routes[1]!, methods: ['POST'] }]), `${broad} beside ${narrow}: no method in common`)
  }
  t.throws(() => tableOf([{ name: 'one', methods: ['HEAD'], path: '/a/:x' }, { name: 'two', methods: ['GET'], path: '/:y/b', allow: ['dns:admin'] }]), /both match GET \/a\/b/, 'HEAD counts as the GET an upstream answers it with')
  const twoUpstreams = configSchema.parse({
    sponsor: { listen: { port: 0 }, tls: { cert: 'c', key: 'k', clientCa: 'ca' } },
    upstreams: Object.fromEntries(['reports', 'photos'].map((u) => [u, { url: 'https://127.0.0.1:8443', serverName: u, tls: { ca: 'ca', cert: 'c', key: 'k' } }])),
    admin: { listen: { port: 0 } },
    routes: [
      { name: 'export', methods: ['GET'], path: '/v1/records/export/*', allow: ['dns:a'], upstream: 'reports' },
      { name: 'photo', methods: ['GET'], path: '/v1/records/:id/photo', allow: ['dns:b'], upstream: 'photos' },
    ],
  })
  t.ok(compileRouteTable(twoUpstreams, { log: pino({ level: 'silent' }) }), 'routes to two upstreams: each upstream ranks only its own')
  // One pattern at least as specific at every segment: every framework takes it, as the gateway does.
  const ordered = tableOf([
    { name: 'docs', methods: ['GET'], path: '/docs/:name' },
    { name: 'secret', methods: ['GET'], path: '/docs/secret', allow: ['dns:admin'] },
    { name: 'files', methods: ['GET'], path: '/files/*' },
    { name: 'meta', methods: ['GET'], path: '/files/:id/meta', allow: ['dns:admin'] },
    { name: 'keys', methods: ['GET'], path: '/files/admin/keys', allow: ['dns:admin'] },
    { name: 'record', methods: ['GET'], path: '/v1/records/:id' },
    { name: 'photo', methods: ['GET'], path: '/v1/records/:id/photo', allow: ['dns:admin'] },
  ])
  t.equal(goes(ordered, 'GET', '/files/admin/meta'), 'meta', 'nested specificity: no pair is ambiguous')
  t.equal(goes(ordered, 'GET', '/files/admin/keys'), 'keys')
})

t.test('found by the review of the precedence check: what counts as the same policy, and as one upstream', async (t) => {
  const generated = generateKeySet()
  const keySets = new Map([['thp', parseKeySet(generated.privateJwks, { requirePrivate: true })]])
  const compile = (routes: Array<Record<string, unknown>>, upstreams: Record<string, { url: string; serverName: string }> = { svc: { url: 'https://127.0.0.1:8443', serverName: 'svc' } }) =>
    compileRouteTable(
      configSchema.parse({
        sponsor: { listen: { port: 0 }, tls: { cert: 'c', key: 'k', clientCa: 'ca' } },
        upstreams: Object.fromEntries(Object.entries(upstreams).map(([n, u]) => [n, { ...u, tls: { ca: 'ca', cert: 'c', key: 'k' } }])),
        admin: { listen: { port: 0 } },
        keys: { thp: { file: 'thp.json', private: true } },
        routes: routes.map((r) => ({ methods: ['GET'], allow: ['dns:a'], upstream: 'svc', ...r })),
      }),
      { log: pino({ level: 'silent' }), keySets },
    )
  const pair = (step: Record<string, unknown> | undefined, extra: Record<string, unknown> = {}) => [
    { name: 'one', path: '/a/:x', ...(step === undefined ? {} : { transforms: { response: [step] } }) },
    { name: 'two', path: '/:x/b', ...(step === undefined ? {} : { transforms: { response: [step] } }), ...extra },
  ]
  // A context that names a parameter reads it from each route's own pattern: /a/b binds c/b on
  // "one", while an upstream running "two" reads the record a.
  t.throws(() => compile(pair({ type: 'open-body', keys: 'thp', context: 'c/{x}' })), /both match GET \/a\/b/, 'a context naming a path parameter binds the path')
  t.throws(() => compile(pair({ type: 'open-body', keys: 'thp', context: 'c', alsoAccept: ['c/{x}'] })), /both match GET \/a\/b/, 'in alsoAccept too')
  t.throws(() => compile(pair({ type: 'open', keys: 'thp', fields: ['/n'] })), /both match GET \/a\/b/, 'no context: the route name is bound')
  t.ok(compile(pair({ type: 'open', keys: 'thp', context: 'acc', fields: ['/n'] })), 'a fixed context binds neither: the same policy')
  t.ok(compile(pair({ type: 'strip', fields: ['/n'] })), 'strip binds nothing')
  // The same policy in other spellings.
  t.ok(compile([{ name: 'one', path: '/a/:x', allow: ['dns:a', 'dns:b'], responseHeaders: ['Location', 'link'] }, { name: 'two', path: '/:x/b', allow: ['dns:b', 'dns:a'], responseHeaders: ['link', 'location'] }]), 'lists in another order or case')
  t.ok(
    compile(pair({ type: 'open', context: 'acc', fields: ['/n'], keys: 'thp' }).map((r, i) => (i === 0 ? r : { ...r, transforms: { response: [{ keys: 'thp', fields: ['/n'], context: 'acc', type: 'open' }] } }))),
    'step options in another order',
  )
  // One service behind two upstream entries (another timeout, say) ranks both routes.
  const twoEntries = { svc: { url: 'https://127.0.0.1:8443', serverName: 'svc' }, 'svc-slow': { url: 'https://127.0.0.1:8443/', serverName: 'svc' } }
  t.throws(() => compile(pair(undefined, { upstream: 'svc-slow', allow: ['dns:admin'] }), twoEntries), /both match GET \/a\/b/, 'one origin and server name: one service')
  t.ok(compile(pair(undefined, { upstream: 'svc-other', allow: ['dns:admin'] }), { ...twoEntries, 'svc-other': { url: 'https://127.0.0.1:8443', serverName: 'other' } }), 'another server name: another service')
  // A jwks route is answered by the gateway: no upstream ranks it.
  t.ok(compile([{ name: 'jwks', path: '/keys/:set/jwks', jwks: 'thp' }, { name: 'files', path: '/keys/public/*', allow: ['dns:b'] }]), 'a jwks route beside an overlapping one')
})

t.test('found by a review: two upstream entries of one service share their letter case, and a pattern with a parameter gets the first-dot reading', async (t) => {
  // One service (one origin and server name) behind two entries, say for another timeout: a capital
  // in a route of one entry says how the service reads the paths of the other's routes.
  const entry = { url: 'https://127.0.0.1:8443', serverName: 'svc' }
  const oneService = (secretUpstream: string) =>
    tableWith({ svc: entry, 'svc-slow': { ...entry, headersTimeoutMs: 50_000 } }, [
      { name: 'secret', methods: ['GET'], path: '/v1/docs/Secret', allow: ['dns:admin'], upstream: secretUpstream },
      { name: 'docs', methods: ['GET'], path: '/v1/docs/:name', allow: ['dns:anyone'], upstream: 'svc' },
    ])
  t.equal(goes(oneService('svc'), 'GET', '/v1/docs/secret'), 'docs → route "secret" (ignoring letter case)', 'one entry')
  t.equal(goes(oneService('svc-slow'), 'GET', '/v1/docs/secret'), 'docs → route "secret" (ignoring letter case)', 'two entries of one service: the same')

  // Spring before 5.3 counts no wildcard in a final `.*`: its `/api/internal-admin/export.*` outranks
  // `/api/{org}/export.v2.csv` for `/api/internal-admin/export.v2.csv`. Only a route literal
  // throughout is matched by its own path alone, which Spring tries before any `pattern.*`.
  const exports = tableOf([
    { name: 'export', methods: ['GET'], path: '/api/:org/export.v2.csv', allow: ['dns:anyone'] },
    { name: 'admin-export', methods: ['GET'], path: '/api/internal-admin/export', allow: ['dns:admin'] },
    { name: 'report', methods: ['GET'], path: '/reports/annual.v2.pdf', allow: ['dns:anyone'] },
    { name: 'reports', methods: ['GET'], path: '/reports/annual', allow: ['dns:admin'] },
  ])
  t.equal(goes(exports, 'GET', '/api/internal-admin/export.v2.csv'), 'export → route "admin-export" (without everything from the first "." of its last segment)')
  t.equal(goes(exports, 'GET', '/api/acme/export.v2.csv'), 'export', 'no route at /api/acme/export')
  t.equal(goes(exports, 'GET', '/reports/annual.v2.pdf'), 'report', 'a route literal throughout is its own exact match')

  // Found by the re-review: as many variables on both sides, Spring takes the longer pattern, so
  // `/api/{org}/export.v2.csv` keeps its path beside `/api/{org}/export.*`: refusing it at boot was
  // a false alarm.
  const versions = tableOf([
    { name: 'export-v2', methods: ['GET'], path: '/api/:org/export.v2.csv' },
    { name: 'export', methods: ['GET'], path: '/api/:org/export' },
  ])
  t.equal(goes(versions, 'GET', '/api/acme/export.v2.csv'), 'export-v2')
  t.equal(goes(versions, 'GET', '/api/acme/export'), 'export')
})
