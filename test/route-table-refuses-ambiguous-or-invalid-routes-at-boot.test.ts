import { pino } from 'pino'
import t, { type Test } from 'tap'
import { configSchema } from '../src/config/schema.js'
import { generateKeySet, parseKeySet } from '../src/crypto/keys.js'
import { transformedBodyHeaderRefusal } from '../src/proxy/headers.js'
import { compileRouteTable } from '../src/route/table.js'
import '../src/transform/builtin.js'

type RouteInput = { name: string; path: string; methods?: string[]; requestHeaders?: string[]; responseHeaders?: string[]; transforms?: unknown }

function compile(routes: RouteInput[]) {
  const config = configSchema.parse({
    sponsor: {
      listen: { port: 0 },
      tls: { cert: 'c', key: 'k', clientCa: 'ca' },
      principalHeader: 'x-ecluse-principal',
      requestIdHeader: 'x-correlation-id',
    },
    upstreams: { svc: { url: 'https://127.0.0.1:8443', serverName: 'svc', tls: { ca: 'ca', cert: 'c', key: 'k' } } },
    admin: { listen: { port: 0 } },
    routes: routes.map((r) => ({ methods: ['GET'], allow: ['dns:a'], upstream: 'svc', ...r })),
  })
  return compileRouteTable(config, { log: pino({ level: 'silent' }) })
}

function boots(t: Test, routes: RouteInput[], why: string): void {
  t.doesNotThrow(() => compile(routes), why)
}

function refuses(t: Test, routes: RouteInput[], message: RegExp, why: string): void {
  t.throws(() => compile(routes), { name: 'EcluseError', code: 'config_invalid', message }, why)
}

t.test('two routes with the same pattern shape on a shared method are a boot error naming both', async (t) => {
  refuses(t, [{ name: 'first', path: '/v1/:id' }, { name: 'second', path: '/v1/:name', methods: ['POST', 'GET'] }], /"first" and "second" both match GET \/v1\/:param/, 'param names do not tell routes apart')
  refuses(t, [{ name: 'one', path: '/v1/a' }, { name: 'two', path: '/v1/a' }], /"one" and "two"/, 'identical literal patterns')
  refuses(t, [{ name: 'one', path: '/v1/*' }, { name: 'two', path: '/v1/*', methods: ['GET', 'HEAD'] }], /"one" and "two" both match GET \/v1\/\*/, 'identical wildcards')
  refuses(t, [{ name: 'one', path: '/' }, { name: 'two', path: '/' }], /"one" and "two"/, 'two roots')
  boots(t, [{ name: 'read', path: '/v1/:id' }, { name: 'write', path: '/v1/:id', methods: ['PUT'] }], 'same shape, disjoint methods')
  boots(t, [{ name: 'lit', path: '/v1/a' }, { name: 'par', path: '/v1/:id' }, { name: 'wild', path: '/v1/*' }], 'overlaps resolved by precedence')
  // Another shape to the trie, but one resource to an upstream that ignores a trailing slash: every
  // request to "slash" would be refused at run time (RouteTable.readElsewhere), so it is a boot error.
  refuses(t, [{ name: 'slash', path: '/v1/a/' }, { name: 'bare', path: '/v1/a' }], /routes\[0\]\.path: "\/v1\/a\/" read without its trailing slash, .* goes to route "bare": every GET to "slash" would be refused/, 'a trailing slash beside the same path without')
})

t.test('an invalid path pattern is a boot error with its key path', async (t) => {
  const invalid: Array<[string, string]> = [
    ['/a/*/b', 'wildcard not final'],
    ['/a/b*', 'wildcard inside a segment'],
    ['/a//b', 'empty segment'],
    ['/a/../b', 'dot-dot segment'],
    ['/a/./b', 'dot segment'],
    ['/a/:', 'parameter without a name'],
    ['/a/:1x', 'parameter name starting with a digit'],
    ['/a/:id/b/:id', 'parameter named twice'],
  ]
  for (const [path, why] of invalid) refuses(t, [{ name: 'bad', path }], /^routes\[0\]\.path: /, why)
})

t.test('a route may not allow a header the gateway owns or that is hop-by-hop', async (t) => {
  const requestRefused = ['host', 'forwarded', 'via', 'x-forwarded-for', 'X-Forwarded-Host', 'x-real-ip', 'connection', 'transfer-encoding', 'te', 'x-correlation-id', 'x-ecluse-principal', 'x-http-method-override', 'x-original-url']
  // A client certificate as a TLS-terminating proxy passes it on, in every family an upstream may
  // trust from its proxy: a client's own would name another principal.
  const clientCertificate = [
    'client-cert',
    'Client-Cert-Chain',
    'x-client-cert',
    'x-client-cert-chain',
    'x-ssl-client-cert',
    'x-ssl-client-s-dn',
    'x-ssl-client-verify',
    'ssl-client-cert',
    'ssl-client-s-dn',
    'x-arr-clientcert',
    'x-amzn-mtls-clientcert',
    'x-amzn-mtls-clientcert-leaf',
    'x-forwarded-client-cert',
  ]
  for (const header of [...requestRefused, ...clientCertificate, 'proxy-status']) {
    refuses(t, [{ name: 'r', path: '/a', requestHeaders: ['accept', header] }], /^routes\[0\]\.requestHeaders\[1\]: /, `request header ${header}`)
  }
  // Every proxy-* field is hop-by-hop: Proxy-Status (RFC 9209) names the trusted side's proxies.
  for (const header of ['connection', 'transfer-encoding', 'upgrade', 'x-correlation-id', 'proxy-status', 'Proxy-Authenticate', 'proxy-anything']) {
    refuses(t, [{ name: 'r', path: '/a', responseHeaders: [header] }], /^routes\[0\]\.responseHeaders\[0\]: /, `response header ${header}`)
  }
  boots(
    t,
    [{ name: 'r', path: '/a', requestHeaders: ['authorization', 'x-tenant', 'x-client-certainty', 'proxyish'], responseHeaders: ['location', 'x-ecluse-principal'] }],
    'ordinary additions, including names that only start like a reserved one',
  )
})

t.test('found by a review of headers: reserved names in any spelling, and fields that describe a transformed response', async (t) => {
  // CGI-style stacks read "-" and "_" alike; proxies and Envoy before the upstream trust these.
  for (const header of ['x_ecluse_principal', 'X_Forwarded_For', 'x-correlation_id', 'x-forwarded', 'x-original-forwarded-for', 'x-original-host', 'x-host', 'x-envoy-original-path', 'x-envoy-internal', 'x-remote-user', 'remote-user', 'remote_user', 'proxy_authorization', 'transfer_encoding', 'x-auth-request-user', 'x-webauth-user', 'x-authenticated-userid', 'x-ms-client-principal-name', 'x-goog-authenticated-user-email', 'x-amzn-oidc-identity', 'cf-access-authenticated-user-email', 'x-pomerium-claim-email', 'x-goog-iap-jwt-assertion']) {
    refuses(t, [{ name: 'r', path: '/a', requestHeaders: [header] }], /^routes\[0\]\.requestHeaders\[0\]: /, `request header ${header}`)
  }
  const strip = { response: [{ type: 'strip', fields: ['/passport'] }] }
  for (const header of ['content-md5', 'Digest', 'repr-digest', 'content-digest', 'content-range', 'x-amz-checksum-sha256', 'x-goog-hash', 'x-content-sha256', 'x-ms-blob-content-md5', 'x-ms-content-crc64', 'x-checksum-sha256']) {
    refuses(t, [{ name: 'r', path: '/a', transforms: strip, responseHeaders: ['location', header] }], /^routes\[0\]\.responseHeaders\[1\]: .*describes the response before its transforms/, `${header} on a transformed route`)
    boots(t, [{ name: 'r', path: '/a', responseHeaders: [header] }], `${header} on a route without response transforms`)
    boots(t, [{ name: 'r', path: '/a', transforms: { request: strip.response }, responseHeaders: [header] }], `${header} on a route that transforms requests only`)
    // Found by a review: the same fields of a request crossed beside its sealed body, a digest of the
    // plaintext to whatever lies between a sealing edge and the trusted host.
    refuses(t, [{ name: 'r', path: '/a', transforms: { request: strip.response }, requestHeaders: [header] }], /^routes\[0\]\.requestHeaders\[0\]: .*describes the request before its transforms.*requests go through transforms/, `${header} on a route that transforms requests`)
    boots(t, [{ name: 'r', path: '/a', transforms: strip, requestHeaders: [header] }], `${header} on a route that transforms responses only`)
  }
  boots(t, [{ name: 'r', path: '/a', transforms: strip, responseHeaders: ['content-disposition'] }], 'a file name beside a JSON step')
  t.match(transformedBodyHeaderRefusal('response', 'content-disposition', true), /says what a body sealed by seal-body is/, 'but not beside a seal-body step')
  // Found by review: the representation's URL names the file as well as its name does.
  t.match(transformedBodyHeaderRefusal('response', 'content-location', true), /says what a body sealed by seal-body is/, 'nor its location')
  t.equal(transformedBodyHeaderRefusal('response', 'content-location', false), null, 'which a JSON step leaves to the route')
  const generated = generateKeySet()
  const sealing = (headers: string[], direction: 'request' | 'response' = 'response') =>
    compileRouteTable(
      configSchema.parse({
        sponsor: { listen: { port: 0 }, tls: { cert: 'c', key: 'k', clientCa: 'ca' } },
        upstreams: { svc: { url: 'https://127.0.0.1:8443', serverName: 'svc', tls: { ca: 'ca', cert: 'c', key: 'k' } } },
        admin: { listen: { port: 0 } },
        keys: { th: { file: 'th.json' } },
        routes: [
          {
            name: 'r',
            methods: [direction === 'request' ? 'PUT' : 'GET'],
            path: '/a',
            allow: ['dns:a'],
            upstream: 'svc',
            [`${direction}Headers`]: headers,
            transforms: { [direction]: [{ type: 'seal-body', recipients: 'th' }] },
          },
        ],
      }),
      { log: pino({ level: 'silent' }), keySets: new Map([['th', parseKeySet(generated.publicJwks)]]) },
    )
  t.throws(() => sealing(['Content-Disposition']), { code: 'config_invalid', message: /^routes\[0\]\.responseHeaders\[0\]: "content-disposition" says what a body sealed by seal-body is/ }, 'a route that seals its responses whole')
  t.ok(sealing(['location']), 'which may add other fields')
  // Found by a review: an upload's file name crossed beside the request body seal-body had sealed.
  t.throws(() => sealing(['content-disposition'], 'request'), { code: 'config_invalid', message: /^routes\[0\]\.requestHeaders\[0\]: "content-disposition" says what a body sealed by seal-body is/ }, 'a route that seals its requests whole')
  t.ok(sealing(['x-tenant'], 'request'), 'which may add other fields')
})

t.test('an unknown transform type fails the boot with the step key path', async (t) => {
  refuses(t, [{ name: 'r', path: '/a' }, { name: 's', path: '/b', transforms: { response: [{ type: 'no-such-transform' }] } }], /routes\[1\]\.transforms\.response\[0\]\.type/, 'unknown transform')
})

t.test('a route an upstream would read as another route is a boot error naming both', async (t) => {
  // An upstream that ignores case folds its own routes too: /v1/records is its /v1/Records, the same route.
  boots(t, [{ name: 'upper', path: '/v1/Records' }, { name: 'any', path: '/v1/:x' }], 'a mixed-case literal beside a param')
  refuses(t, [{ name: 'upper', path: '/v1/Records' }, { name: 'lower', path: '/v1/records' }], /routes "upper" and "lower" both match GET \/v1\/records to an upstream that ignores letter case/, 'two literals one to a case-folding upstream')
  boots(t, [{ name: 'slash', path: '/v1/:id/' }, { name: 'x', path: '/v1/x' }], 'a sample for the param that no literal spells')
  refuses(t, [{ name: 'export', path: '/v1/records/export.csv' }, { name: 'record', path: '/v1/records/:id' }], /"\/v1\/records\/export\.csv" read without its final "\.ext" suffix, .* goes to route "record"/, 'a suffix')
  refuses(t, [{ name: 'both', path: '/v1/Export.csv/', methods: ['POST'] }, { name: 'lower', path: '/v1/export', methods: ['POST'] }], /read ignoring letter case, without its trailing slash, without its final "\.ext" suffix, .* goes to route "lower"/, 'the readings together, on the route’s own method')
  // No concern: the readings reach no route, or the same one, or another method's.
  boots(t, [{ name: 'jwks', path: '/.well-known/jwks.json' }, { name: 'records', path: '/v1/records/:id' }], 'a suffix read to no route')
  boots(t, [{ name: 'upper', path: '/v1/Records' }, { name: 'lower', path: '/v1/records', methods: ['POST'] }], 'the lower-case twin takes another method')
  boots(t, [{ name: 'upper', path: '/v1/Records/:id' }], 'alone')
})
