/**
 * HTTP/1.1's grammar takes any three digits as a status, undici reads them and Node would write them
 * to the sponsor: an upstream answering `600` crossed as `600`, counted as a 5xx. RFC 9110 §15 defines
 * no status above 599, so what a sponsor client would make of one is a guess: the gateway refuses it
 * (`502 upstream_bad_response`, counted against the upstream), on plain and transformed routes alike.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import t from 'tap'
import { Harness, metricValue } from '../helpers/harness.js'

const allow = ['uri:spiffe://sponsor.test/accreditation-app']

t.test('an upstream status of 600 or more is a 502 upstream_bad_response', async (t) => {
  const h = await Harness.start({
    routes: [
      { name: 'plain', methods: ['GET'], path: '/v1/plain/*', allow, upstream: 'backend' },
      { name: 'stripped', methods: ['GET'], path: '/v1/stripped/*', allow, upstream: 'backend', transforms: { response: [{ type: 'strip', fields: ['/name'] }] } },
    ],
    handler: (req: IncomingMessage, res: ServerResponse) => {
      const status = Number(req.url?.split('/').at(-1))
      res.writeHead(status, { 'content-type': 'application/json' }).end('{"name":"N","ok":true}')
    },
  })
  t.teardown(() => h.close())
  for (const route of ['plain', 'stripped']) {
    for (const status of [600, 799, 999]) {
      const res = await h.request(`/v1/${route}/${status}`)
      t.equal(res.status, 502, `${route} ${status}`)
      t.same(res.json(), { error: 'upstream_bad_response', requestId: res.headers['x-request-id'] })
    }
    const ok = await h.request(`/v1/${route}/599`)
    t.equal(ok.status, 599, `${route}: 599 is a status of the range, relayed`)
  }
  const metrics = await h.metrics()
  t.equal(metricValue(metrics, 'ecluse_upstream_errors_total', { upstream: 'backend', kind: 'upstream_bad_response' }), 6)
})
