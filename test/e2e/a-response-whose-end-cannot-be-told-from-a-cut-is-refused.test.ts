/**
 * An upstream response with neither Content-Length nor chunked framing ends when the connection
 * closes (RFC 9112 §6.3), so a connection cut mid-body looks exactly like its end. Relayed, the
 * sponsor would take a truncated body for a whole one; sealed, the sealed stream's own truncation
 * check would be no help, since the gateway would seal the cut body as complete. Such a response is
 * refused with a terse 502, and none of it crosses.
 */
import t from 'tap'
import { metricValue } from '../helpers/harness.js'
import { CANARY, leaksCanary, SPONSOR_APP, startSealing, tempDir, writeKeyFiles } from '../helpers/sealing.js'

const PARTIAL = `{"passport":"${CANARY.passport}","name":"${CANARY.name}`

t.test('a close-delimited response is a 502 upstream_bad_response, on plain and transformed routes alike', async (t) => {
  const dir = await tempDir()
  const keys = await writeKeyFiles(dir, 'th')
  const s = await startSealing({
    dir,
    keys: { th: { file: keys.publicPath } },
    handler: (req, res) => {
      req.resume()
      req.on('end', () => {
        if (req.url?.endsWith('/framed')) {
          res.writeHead(200, { 'content-type': 'application/pdf' })
          res.end(PARTIAL)
          return
        }
        // The status line and headers, then part of a body, then the connection closes.
        req.socket.end(`HTTP/1.1 200 OK\r\ncontent-type: application/pdf\r\nconnection: close\r\n\r\n${PARTIAL}`)
      })
    },
    routes: [
      { name: 'plain', methods: ['GET'], path: '/v1/plain/:case', allow: [SPONSOR_APP], upstream: 'backend' },
      {
        name: 'seal-body',
        methods: ['GET'],
        path: '/v1/seal-body/:case',
        allow: [SPONSOR_APP],
        upstream: 'backend',
        transforms: { response: [{ type: 'seal-body', recipients: 'th' }] },
      },
      {
        name: 'seal',
        methods: ['GET'],
        path: '/v1/seal/:case',
        allow: [SPONSOR_APP],
        upstream: 'backend',
        transforms: { response: [{ type: 'seal', recipients: 'th', fields: ['/passport'] }] },
      },
    ],
  })
  t.teardown(s.close)

  for (const route of ['plain', 'seal-body', 'seal']) {
    const res = await s.gw.request(`/v1/${route}/close-delimited`)
    t.equal(res.status, 502, `${route}: 502`)
    const body = res.json() as Record<string, unknown>
    t.same(Object.keys(body).sort(), ['error', 'requestId'], `${route}: the terse error body and nothing else`)
    t.equal(body['error'], 'upstream_bad_response', route)
    t.equal(res.headers['content-type'], 'application/json', `${route}: the upstream's media type does not cross`)
    t.equal(leaksCanary(res.text), undefined, `${route}: none of the body`)
    t.notOk(res.text.includes('"passport"'), `${route}: not even its member names`)
  }
  const refused = s.gw.logs.lines.filter((l) => l['msg'] === 'request refused' && l['code'] === 'upstream_bad_response')
  t.equal(refused.length, 3, 'each logged with its code')
  t.match(String(refused[0]?.['detail']), /delimited by closing the connection/)
  t.equal(leaksCanary(JSON.stringify(s.gw.logs.lines)), undefined, 'no plaintext in the logs')
  const metrics = await s.gw.metrics()
  t.equal(metricValue(metrics, 'ecluse_responses_total', { side: 'sponsor', route: 'plain', status_class: '5xx' }), 1)
  t.equal(metricValue(metrics, 'ecluse_upstream_errors_total', { upstream: 'backend', kind: 'upstream_bad_response' }), 3, 'counted as upstream failures')

  // The same answer framed by the upstream's server (chunked) still goes through: the check is on
  // the framing, not the content.
  const framed = await s.gw.request('/v1/plain/framed')
  t.equal(framed.status, 200)
  t.equal(framed.text, PARTIAL)
})
