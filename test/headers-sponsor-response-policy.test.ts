import { pino } from 'pino'
import t from 'tap'
import { configSchema } from '../src/config/schema.js'
import { buildSponsorHeaders } from '../src/proxy/headers.js'
import { compileRouteTable } from '../src/route/table.js'
import '../src/transform/builtin.js'

const config = configSchema.parse({
  sponsor: { listen: { port: 0 }, tls: { cert: 'c', key: 'k', clientCa: 'ca' } },
  upstreams: { svc: { url: 'https://127.0.0.1:8443', serverName: 'svc', tls: { ca: 'ca', cert: 'c', key: 'k' } } },
  admin: { listen: { port: 0 } },
  routes: [
    { name: 'plain', methods: ['GET'], path: '/v1/a', allow: ['dns:a'], upstream: 'svc' },
    { name: 'extra', methods: ['POST'], path: '/v1/b', allow: ['dns:a'], upstream: 'svc', responseHeaders: ['Location', 'set-cookie'] },
    { name: 'tenant', methods: ['GET'], path: '/v1/c', allow: ['dns:a'], upstream: 'svc', requestHeaders: ['x-tenant'] },
    { name: 'stripped', methods: ['GET'], path: '/v1/d', allow: ['dns:a'], upstream: 'svc', transforms: { response: [{ type: 'strip', fields: ['/x'] }] } },
  ],
})
const table = compileRouteTable(config, { log: pino({ level: 'silent' }) })
const plain = table.get('plain')!
const extra = table.get('extra')!
const tenant = table.get('tenant')!
const stripped = table.get('stripped')!
const SPONSOR = { requestIdHeader: 'x-request-id', principalHeader: 'x-ecluse-principal' }

// As undici hands them over: lower-case names, repeated fields as arrays.
const upstream = {
  'content-type': 'application/json',
  'content-length': '17',
  etag: '"v7"',
  'cache-control': 'no-store',
  vary: ['accept', 'accept-language'],
  'retry-after': '5',
  server: 'accreditation/2.3.1',
  'x-powered-by': 'Express',
  'x-internal-trace': 'node-7',
  'set-cookie': ['sid=1; Secure', 'lb=a'],
  location: 'https://accreditation.internal:8443/v1/b/9',
  'x-request-id': 'upstream-id',
  connection: 'keep-alive',
  'keep-alive': 'timeout=4',
  'transfer-encoding': 'chunked',
  'proxy-authenticate': 'Basic',
  trailer: 'x-checksum',
  upgrade: 'h2c',
  missing: undefined,
}

t.test('only the default safe set crosses, plus the request id', async (t) => {
  t.strictSame({ ...buildSponsorHeaders(upstream, plain, 'gw-1', SPONSOR) }, {
    'content-type': 'application/json',
    'content-length': '17',
    etag: '"v7"',
    'cache-control': 'no-store',
    vary: 'accept, accept-language',
    'retry-after': '5',
    'x-request-id': 'gw-1',
  })
})

t.test('a route’s additions cross on that route; set-cookie stays a list', async (t) => {
  const out = buildSponsorHeaders(upstream, extra, 'gw-2', SPONSOR)
  t.equal(out['location'], 'https://accreditation.internal:8443/v1/b/9')
  t.strictSame(out['set-cookie'], ['sid=1; Secure', 'lb=a'])
  t.equal(out['server'], undefined)
  t.equal(out['x-request-id'], 'gw-2', 'the upstream’s request id is replaced by ours')
})

t.test('fields named by the upstream’s Connection header are removed', async (t) => {
  const out = buildSponsorHeaders(
    { connection: ['close', 'ETag, Cache-Control'], etag: '"v1"', 'cache-control': 'private', 'content-type': 'text/plain' },
    plain,
    'gw-3',
    SPONSOR,
  )
  t.strictSame(Object.keys(out).sort(), ['content-type', 'x-request-id'])
})

t.test('singletons keep their first value; invalid values are dropped, not thrown over', async (t) => {
  const out = buildSponsorHeaders(
    {
      'content-type': ['application/json', 'text/html'],
      etag: 'a\r\nSet-Cookie: x=1',
      'cache-control': ['no-store', 'bad\u0000'],
      'content-language': 'fr\u0100',
    },
    plain,
    'gw-4',
    SPONSOR,
  )
  t.equal(out['content-type'], 'application/json')
  t.equal(out['etag'], undefined)
  t.equal(out['cache-control'], 'no-store')
  t.equal(out['content-language'], undefined)
  t.equal(out['set-cookie'], undefined)
})

t.test('vary names only the request fields the gateway forwards on the route', async (t) => {
  const varying = (vary: string | string[]) => ({ 'content-type': 'application/json', vary })
  const varyOn = (route: NonNullable<ReturnType<typeof table.get>>, vary: string | string[]) =>
    buildSponsorHeaders(varying(vary), route, 'gw-1', SPONSOR)['vary']
  // A standard field the gateway does not forward: every request through it lacks it.
  t.equal(varyOn(plain, 'Accept, Origin, Accept-Encoding, Sec-Fetch-Mode'), 'accept', 'unforwarded standard names are dropped, case folded')
  t.equal(varyOn(plain, ['origin', 'accept-encoding']), undefined, 'no field left: no vary')
  t.equal(varyOn(plain, 'Host, Prefer, X-Forwarded-Proto, Viewport-Width, DPR'), undefined, 'standard fields, and what the gateway sets alike for all: nothing varies')
  // Credentials the route does not forward were set by whatever authenticates on the trusted side.
  t.equal(varyOn(plain, 'accept, Authorization'), '*', 'authorization: per client')
  t.equal(varyOn(plain, 'Cookie'), '*', 'cookie: per client')
  t.equal(varyOn(plain, 'Forwarded'), '*', 'forwarded: the gateway never forwards a client one; made on the trusted side from its address')
  t.equal(varyOn(plain, 'accept, Via'), '*', 'via likewise')
  // Found by a review: a field of no standard, which the gateway never forwards, was set between it
  // and the upstream (an internal proxy's tenant header, perhaps from the principal): the answer
  // may be per client, and the trusted side's field name must not cross.
  t.equal(varyOn(plain, 'Accept, X-Internal-Tenant, Origin'), '*', 'an internal field makes it `*`')
  t.equal(varyOn(plain, ['x-internal-tenant', 'origin']), '*')
  t.equal(varyOn(plain, 'accept, , accept-language'), 'accept, accept-language', 'empty members are nothing')
  t.equal(varyOn(plain, '*'), '*', '`*` names no field and stays')
  t.equal(varyOn(tenant, 'x-tenant, accept-language'), 'x-tenant, accept-language', 'a field the route forwards stays')
  t.equal(varyOn(plain, 'accept, Accept'), 'accept', 'said once')
  t.equal(varyOn(stripped, 'accept, accept-language'), 'accept-language', 'accept is not forwarded where responses are transformed')
  t.equal(varyOn(tenant, 'x-tenant, *'), '*', '`*` beside names is `*` alone')
})

t.test('vary on what the gateway sets from the connection becomes `*`: the answer is per client', async (t) => {
  const varyOn = (vary: string, sponsor: { requestIdHeader: string; principalHeader?: string }) =>
    buildSponsorHeaders({ 'content-type': 'application/json', vary }, plain, 'gw-1', sponsor)['vary']
  t.equal(varyOn('Accept, X-Ecluse-Principal', SPONSOR), '*', 'the principal header')
  t.equal(varyOn('x-forwarded-for', SPONSOR), '*', 'the client address')
  t.equal(varyOn('accept-language, X-Request-Id', SPONSOR), '*', 'the request id')
  t.equal(varyOn('x-ecluse-principal, accept', { requestIdHeader: 'x-request-id' }), '*', 'no principal header configured: a field of no standard, set between')
})

t.test('found by a review of headers: cache-control keeps the standard directives only, and names no field', async (t) => {
  const cacheControl = (value: string | string[]) => buildSponsorHeaders({ 'cache-control': value }, plain, 'req-1', SPONSOR)['cache-control']
  // private="…" and no-cache="…" list field names (RFC 9111 §5.2.2.4, §5.2.2.7): the trusted side's own.
  t.equal(
    cacheControl('private="X-Internal-Tenant-Id, X-Vetting-Officer", no-cache="Set-Cookie, X-Backend-Node", max-age=0, x-trusted-cluster="paris-dgsi-2"'),
    'private, no-cache, max-age=0',
    'field names and extensions dropped, the bare directives kept (stricter)',
  )
  t.equal(cacheControl(['public', 'max-age="120"']), 'public, max-age=120', 'repeated lines read as one list; a quoted number unquoted')
  t.equal(cacheControl('Max-Age=5 , S-MAXAGE=1, immutable, stale-while-revalidate=30, stale-if-error=60'), 'max-age=5, s-maxage=1, immutable, stale-while-revalidate=30, stale-if-error=60')
  t.equal(cacheControl('no-store'), 'no-store')
  // Whatever cannot be read as the upstream meant it: a cache on the sponsor's side keeps nothing.
  for (const odd of ['max-age=abc', 'max-age', 'max-age=1e9', 'no-store;x', 'private="unterminated', ',', 'x-only=1']) {
    t.equal(cacheControl(odd), 'no-store', `${JSON.stringify(odd)} → no-store`)
  }
})

t.test('found by a review of the upstream side: free text in relayed fields is reduced to their grammar', async (t) => {
  const one = (name: string, value: string) => buildSponsorHeaders({ [name]: value }, plain, 'req-1', SPONSOR)[name]
  // Error bodies are withheld to keep the trusted side's texts behind; these fields must not carry them.
  t.equal(one('retry-after', 'db-primary pg-7.internal.corp down, failover to 10.2.3.4'), undefined, 'retry-after: neither seconds nor a date')
  t.equal(one('retry-after', ' 120 '), '120')
  t.equal(one('retry-after', 'Sun, 06 Nov 1994 08:49:37 GMT'), 'Sun, 06 Nov 1994 08:49:37 GMT')
  t.equal(one('retry-after', 'Sunday, 06-Nov-94 08:49:37 GMT'), 'Sun, 06 Nov 1994 08:49:37 GMT', 'an obsolete date re-written from its instant')
  t.equal(one('last-modified', 'Sun Nov  6 08:49:37 1994'), 'Sun, 06 Nov 1994 08:49:37 GMT', 'asctime too')
  t.equal(one('last-modified', 'user alice@corp.internal'), undefined, 'last-modified: no date, dropped')
  t.equal(one('expires', 'user alice@corp.internal'), '0', 'expires: no date is already expired (RFC 9111 §5.3), never dropped into heuristic freshness')
  t.equal(one('expires', 'Thu, 01 Dec 2033 16:00:00 GMT'), 'Thu, 01 Dec 2033 16:00:00 GMT')
  // Found by the re-review: Date.parse read almost anything as a date.
  for (const odd of ['3600', 'max-age=3600', 'node 42', '-1', '1.5', 'Sun, 31 Feb 2027 10:00:00 GMT', 'Fri, 31 Dec 99999 23:59:59 GMT', 'Sun, 06 Nov 1994 24:00:00 GMT', '2027-01-01T00:00:00Z']) {
    t.equal(one('expires', odd), '0', `expires ${JSON.stringify(odd)}: no HTTP-date, already expired`)
    t.equal(one('last-modified', odd), undefined, `last-modified ${JSON.stringify(odd)}: dropped`)
    if (odd !== '3600') t.equal(one('retry-after', odd), undefined, `retry-after ${JSON.stringify(odd)}: dropped`)
  }
  t.equal(one('expires', 'Thursday, 01-Dec-33 16:00:00 GMT'), 'Thu, 01 Dec 2033 16:00:00 GMT', 'a two-digit year within 50 years ahead')
  t.equal(one('expires', 'Monday, 01-Dec-94 16:00:00 GMT'), 'Thu, 01 Dec 1994 16:00:00 GMT', 'and one further ahead is the last such year past')
  t.equal(one('content-language', 'fr-FR, en'), 'fr-FR, en')
  t.equal(one('content-language', 'tenant-4711-secret / alice'), undefined, 'content-language: not language tags, dropped')
  t.equal(one('content-type', 'application/json; build="git-3f2a internal/host-17"; charset=UTF-8'), 'application/json; charset=UTF-8', 'only charset and boundary parameters cross')
  t.equal(one('content-type', 'multipart/mixed; boundary="b:1"'), 'multipart/mixed; boundary="b:1"')
  // Found by the re-review: the kept parameters' values are held to their grammar, and a trailing `;` is nothing.
  t.equal(one('content-type', 'text/plain; charset="db-primary pg-7.internal is down, see runbook"'), 'text/plain', 'a charset that is no charset name')
  t.equal(one('content-type', `multipart/mixed; boundary="${'x'.repeat(71)}"`), 'multipart/mixed', 'a boundary longer than RFC 2046 allows')
  t.equal(one('content-type', 'text/html; charset=ISO-8859-1;'), 'text/html; charset=ISO-8859-1', 'a trailing semicolon')
  t.equal(one('content-type', 'application/json;; charset=utf-8 ; '), 'application/json; charset=utf-8')
  t.equal(one('content-type', 'multipart/related; type="application/json"; boundary=abc'), 'multipart/related; type="application/json"; boundary=abc', "multipart/related keeps its type (RFC 2387)")
  // And the second re-review: each parameter once, where it belongs, and a charset that is one in use.
  t.equal(one('content-type', 'application/json; type="pg-7.internal/primary"; charset=db7.corp.internal'), 'application/json', 'no type outside multipart/related, no made-up charset')
  t.equal(one('content-type', 'application/json; boundary=abc'), 'application/json', 'no boundary outside multipart')
  t.equal(one('content-type', 'text/plain; charset=utf-8; charset=shift_jis'), 'text/plain; charset=utf-8', 'the first charset only')
  t.equal(one('content-type', 'multipart/mixed; boundary="a b"'), 'multipart/mixed; boundary="a b"', 'a boundary may hold spaces (RFC 2046)')
  t.equal(one('content-type', 'text/html; charset=Windows-1252'), 'text/html; charset=Windows-1252')
  // Where response steps read the type, an unknown charset stays for them to refuse (dropped, they would read UTF-7 as UTF-8).
  t.equal(buildSponsorHeaders({ 'content-type': 'application/json; charset=utf-7' }, stripped, 'req-1', SPONSOR)['content-type'], 'application/json; charset=utf-7')
  t.equal(one('content-type', 'application/json; charset=utf-7'), 'application/json', 'on a route without them it is dropped')
  t.equal(one('expires', 'Sat, 31 Dec 2016 23:59:60 GMT'), 'Sat, 31 Dec 2016 23:59:59 GMT', 'a leap second is a date')
  t.equal(one('content-type', 'text/plain; charset=utf-8; x=no"quote'), 'text/plain', 'a parameter list that does not parse: the type alone')
  t.equal(one('content-type', 'host-17 internal'), undefined, 'not a media type: dropped')
})
