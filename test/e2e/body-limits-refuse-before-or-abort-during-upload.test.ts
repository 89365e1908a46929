import { Readable } from 'node:stream'
import t from 'tap'
import { request } from 'undici'
import { Harness, metricValue } from '../helpers/harness.js'

const routes = [
  { name: 'small', methods: ['POST'], path: '/v1/small', allow: ['uri:spiffe://sponsor.test/accreditation-app'], upstream: 'backend', maxBodyBytes: 1024 },
]

t.test('a declared Content-Length over the route limit is 413 before any upstream connection', async (t) => {
  const h = await Harness.start({ routes })
  t.teardown(() => h.close())
  const res = await h.request('/v1/small', { method: 'POST', body: Buffer.alloc(2048) })
  t.equal(res.status, 413)
  t.equal((res.json() as { error: string }).error, 'body_too_large')
  t.equal(h.upstream.hits, 0, 'the upstream was never contacted')
  t.equal(metricValue(await h.metrics(), 'ecluse_responses_total', { side: 'sponsor', route: 'small', status_class: '4xx' }), 1)
})

t.test('a chunked body that grows past the limit is cut off and the upstream sees an abort', async (t) => {
  let upstreamComplete = false
  const h = await Harness.start({
    routes,
    handler: (req, res) => {
      req.on('end', () => {
        upstreamComplete = true
        res.end('{}')
      })
      req.resume()
    },
  })
  t.teardown(() => h.close())
  async function* body() {
    for (let i = 0; i < 8; i++) yield Buffer.alloc(512, 0x61)
  }
  const res = await request(`${h.sponsorOrigin}/v1/small`, {
    method: 'POST',
    body: Readable.from(body()),
    dispatcher: h.agent(),
  }).catch((err: Error) => err)
  if (!(res instanceof Error)) {
    t.equal(res.statusCode, 413)
    t.equal(((await res.body.json()) as { error: string }).error, 'body_too_large')
  } else {
    t.pass('the connection was closed on the client mid-upload')
  }
  t.notOk(upstreamComplete, 'the upstream never saw a complete body')
})
