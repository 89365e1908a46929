// Regression: a response the gateway aborted (an upstream reset mid-body, a response transform
// refusing) was destroyed with the error, which Node hands to the listener as a `clientError`: each
// one was logged as "sponsor request refused by the HTTP parser" and counted in
// `ecluse_rejected_requests_total{reason="bad_request"}`, blaming the sponsor for the gateway's own
// fail-closed abort (and burying real parser refusals in the noise).
import t from 'tap'
import { request } from 'undici'
import { metricValue } from '../helpers/harness.js'
import { CANARY, leaksCanary, SPONSOR_APP, startSealing, tempDir, writeKeyFiles } from '../helpers/sealing.js'

t.test('an aborted response is an abort (or, before its status line, a 502) in the logs and metrics, not a rejected client request', async (t) => {
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
      if (req.url === '/v1/late') {
        // Many records without the field (absent is fine), then one with it in plaintext: refused
        // after the status line and the first records have gone out.
        const records = Array.from({ length: 20_000 }, (_, i) => ({ id: `r-${i}`, note: 'x'.repeat(40) }))
        const body = JSON.stringify({ records: [...records, { id: 'r-last', name: CANARY.name }] })
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) })
        res.end(body)
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
      {
        name: 'late',
        methods: ['GET'],
        path: '/v1/late',
        allow: [SPONSOR_APP],
        upstream: 'backend',
        transforms: {
          response: [
            { type: 'require-sealed', recipients: 'trusted-host', fields: ['/records/*/name'], records: { pattern: '/records/*', id: 'id' } },
          ],
        },
      },
    ],
  })
  t.teardown(s.close)

  const outcomes = new Map<string, { status: number; completed: boolean; text: string }>()
  for (const path of ['/v1/reset', '/v1/checked', '/v1/late']) {
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
    outcomes.set(path, outcome)
    t.equal(leaksCanary(outcome.text), undefined, `${path}: no canary reached the sponsor`)
  }
  t.notOk(outcomes.get('/v1/reset')!.completed, 'an upstream reset after the status line: the sponsor sees an abort')
  t.notOk(outcomes.get('/v1/late')!.completed, 'a refusal after the status line: the sponsor sees an abort')
  // Refused before any byte went out: a clean 502 with the terse body, nothing of the upstream's.
  const checked = outcomes.get('/v1/checked')!
  t.equal(checked.status, 502, 'a refusal before the status line is a 502')
  t.same(Object.keys(JSON.parse(checked.text)), ['error', 'requestId'])
  t.equal(JSON.parse(checked.text).error, 'transform_failed')
  for (let i = 0; i < 200 && s.gw.logs.find('access').length < 3; i++) await new Promise((r) => setTimeout(r, 10))

  const aborted = s.gw.logs.find('response aborted mid-stream')
  t.same(aborted.map((l) => [l['route'], l['code']]).sort(), [['late', 'transform_failed'], ['plain', 'upstream_reset']], 'each abort logged with its own code')
  t.same(
    s.gw.logs.find('request refused').map((l) => [l['route'], l['code']]),
    [['checked', 'transform_failed']],
    'the 502 is logged as a refusal with its code',
  )
  t.same(s.gw.logs.find('sponsor request refused by the HTTP parser'), [], 'none is reported as a client parse error')
  const metrics = await s.gw.metrics()
  for (const reason of ['bad_request', 'request_framing', 'request_timeout', 'headers_too_large']) {
    t.equal(metricValue(metrics, 'ecluse_rejected_requests_total', { reason }), 0, `no request counted as rejected (${reason})`)
  }
  t.equal(metricValue(metrics, 'ecluse_responses_total', { side: 'sponsor', route: 'plain', status_class: 'aborted' }), 1)
  t.equal(metricValue(metrics, 'ecluse_responses_total', { side: 'sponsor', route: 'late', status_class: 'aborted' }), 1)
  t.equal(metricValue(metrics, 'ecluse_responses_total', { side: 'sponsor', route: 'checked', status_class: '5xx' }), 1)
  t.equal(leaksCanary(s.gw.logs.text()), undefined, 'no canary in the log')
})
