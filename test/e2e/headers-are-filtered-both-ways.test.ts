import t from 'tap'
import { Harness } from '../helpers/harness.js'

t.test('spoofed forwarding headers are overwritten; hop-by-hop and unlisted headers are stripped both ways', async (t) => {
  const h = await Harness.start({
    handler: (_req, res) => {
      res.writeHead(200, {
        'content-type': 'application/json',
        server: 'internal/1.0',
        'x-powered-by': 'internals',
        'x-internal-secret': 'trusted-only',
        'x-route-extra': 'allowed-by-route',
        connection: 'keep-alive, x-hop',
        'x-hop': 'named-in-connection',
        'keep-alive': 'timeout=99',
        location: 'https://accreditation.trusted.test/internal',
        'set-cookie': 'trusted=1',
      })
      res.end('{}')
    },
    routes: [
      {
        name: 'records',
        methods: ['GET'],
        path: '/v1/records/:id',
        allow: ['uri:spiffe://sponsor.test/accreditation-app'],
        upstream: 'backend',
        requestHeaders: ['x-client-extra'],
        responseHeaders: ['x-route-extra'],
      },
    ],
  })
  t.teardown(() => h.close())
  const res = await h.request('/v1/records/42?x=1', {
    headers: {
      'x-forwarded-for': '10.6.6.6',
      'x-forwarded-proto': 'http',
      forwarded: 'for=10.6.6.6',
      'x-real-ip': '10.6.6.6',
      'x-ecluse-principal': 'spiffe://sponsor.test/admin',
      'x-request-id': 'client-chosen',
      connection: 'x-drop-me',
      'x-drop-me': 'hop',
      'x-not-listed': 'nope',
      'x-client-extra': 'yes',
      authorization: 'Bearer sponsor-token',
      cookie: 'sponsor=1',
      accept: 'application/json',
    },
  })
  t.equal(res.status, 200)
  t.equal(h.upstream.hits, 1)
  const up = h.upstream.seen[0]!
  t.equal(up.url, '/v1/records/42?x=1', 'normalised path and the query are forwarded')
  t.equal(up.headers['x-forwarded-for'], '127.0.0.1', 'x-forwarded-for comes from the verified connection')
  t.equal(up.headers['x-forwarded-proto'], 'https')
  t.equal(up.headers['x-ecluse-principal'], 'uri:spiffe://sponsor.test/accreditation-app', 'principal header from the certificate')
  t.not(up.headers['x-request-id'], 'client-chosen', 'request id is ours')
  t.equal(up.headers['x-request-id'], res.headers['x-request-id'], 'the same request id both ways')
  for (const name of ['forwarded', 'x-real-ip', 'x-drop-me', 'x-not-listed', 'authorization', 'cookie']) {
    t.equal(up.headers[name], undefined, `${name} is not forwarded upstream`)
  }
  t.equal(up.headers['x-client-extra'], 'yes', 'a header the route allows is forwarded')
  t.equal(up.headers['accept'], 'application/json', 'a default safe header is forwarded')
  t.equal(up.headers['host'], '127.0.0.1:' + h.upstream.port, 'host is the upstream origin, not the client value')

  for (const name of ['server', 'x-powered-by', 'x-internal-secret', 'x-hop', 'location', 'set-cookie']) {
    t.equal(res.headers[name], undefined, `${name} never reaches the sponsor`)
  }
  // Node adds its own keep-alive hint for our connection; the upstream's must not pass through.
  t.not(res.headers['keep-alive'], 'timeout=99', "the upstream's keep-alive header is not relayed")
  t.equal(res.headers['x-route-extra'], 'allowed-by-route', 'a response header the route allows is relayed')
  t.equal(res.headers['content-type'], 'application/json')
})
