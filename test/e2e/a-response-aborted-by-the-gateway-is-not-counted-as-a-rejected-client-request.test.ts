// Regression: a response the gateway aborted (an upstream reset mid-body, a response transform
// refusing) was destroyed with the error, which Node hands to the listener as a `clientError`: each
// one was logged as "sponsor request refused by the HTTP parser" and counted in
// `ecluse_rejected_requests_total{reason="bad_request"}`, blaming the sponsor for the gateway's own
// fail-closed abort (and burying real parser refusals in the noise).
import t from 'tap'
import { request } from 'undici'
import { metricValue } from '../helpers/harness.js'
import { CANARY, SPONSOR_APP, leaksCanary, startSealing, tempDir, writeKeyFiles } from '../helpers/sealing.js'

t.test('an aborted response is an abort in the logs and metrics, not a rejected client request', async (t) => {
  const dir = await tempDir()
  const keys = await writeKeyFiles(dir, 'trusted-host')
  const s = await startSealing({
    dir,
    keys: { 'trusted-host': { file: keys.publicPath } },
    handler: (req, res) => {
      if (req.url === '/v1/reset') {
        // Headers and part of the body, then the connection drops.
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': 1_000_000 })
        res.write(Buffer.alloc(64 * 1024, 0x61), () => setTimeout(() => res.socket?.destroy(), 50))
        return
      }
      // A single record whose sensitive field is plaintext: refused before a byte goes out.
      const body = JSON.stringify({ id: 'r-1', name: CANARY.name })
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) })
      res.end(body)
    },
    routes: [
      { name: 'plain', methods: ['GET'], path: '/v1/reset', allow: [SPONSOR_APP], upstream: 'backend' },
      {
        name: 'checked',
        methods: ['GET'],
        path: '/v1/checked',
        allow: [SPONSOR_APP],
        upstream: 'backend',
        transforms: {
          response: [{ type: 'require-sealed', recipients: 'trusted-host', fields: ['/name'], records: { pattern: '', id: 'id' } }],
        },
      },
    ],
  })
  t.teardown(s.close)

  for (const path of ['/v1/reset', '/v1/checked']) {
    const outcome = await request(`${s.gw.sponsorOrigin}${path}`, { dispatcher: s.gw.agent() }).then(
      async (res) => {
        try {
          return { status: res.statusCode, completed: true, text: await res.body.text() }
        } catch {
          return { status: res.statusCode, completed: false, text: '' }
        }
      },
      () => ({ status: 0, completed: false, text: '' }),
    )
    t.notOk(outcome.completed, `${path}: the sponsor sees an abort`)
    t.equal(leaksCanary(outcome.text), undefined)
  }
  for (let i = 0; i < 200 && s.gw.logs.find('access').length < 2; i++) await new Promise((r) => setTimeout(r, 10))

  const aborted = s.gw.logs.find('response aborted mid-stream')
  t.same(aborted.map((l) => [l['route'], l['code']]).sort(), [['checked', 'transform_failed'], ['plain', 'upstream_reset']], 'each abort logged with its own code')
  t.same(s.gw.logs.find('sponsor request refused by the HTTP parser'), [], 'neither is reported as a client parse error')
  const metrics = await s.gw.metrics()
  for (const reason of ['bad_request', 'request_framing', 'request_timeout', 'headers_too_large']) {
    t.equal(metricValue(metrics, 'ecluse_rejected_requests_total', { reason }), 0, `no request counted as rejected (${reason})`)
  }
  t.equal(metricValue(metrics, 'ecluse_responses_total', { side: 'sponsor', route: 'plain', status_class: 'aborted' }), 1)
  t.equal(metricValue(metrics, 'ecluse_responses_total', { side: 'sponsor', route: 'checked', status_class: 'aborted' }), 1)
  t.equal(leaksCanary(s.gw.logs.text()), undefined, 'no canary in the log')
})
