/**
 * From the admin review: `ecluse_upstream_ttfb_seconds` (and the access log's `upstreamMs`) ran from
 * the call to the pool, so the wait for one of its `connections` counted as the upstream's latency:
 * a pool too small for the load looked like a slow upstream, and the wait itself had no metric. The
 * upstream here takes 400 ms for every answer, over one connection, to three requests at once.
 */
import { Readable } from 'node:stream'
import t from 'tap'
import { Harness, metricValue } from '../helpers/harness.js'

const ANSWER_MS = 400

t.test('three requests through one connection: each upstream time is its own answer, the waits are counted apart', async (t) => {
  const h = await Harness.start({
    handler: (_req, res) => void setTimeout(() => res.writeHead(200, { 'content-type': 'text/plain' }).end('ok'), ANSWER_MS),
    upstream: { connections: 1 },
  })
  t.teardown(() => h.close())
  const answers = await Promise.all([1, 2, 3].map((n) => h.request(`/v1/records/${n}`)))
  t.same(
    answers.map((a) => a.status),
    [200, 200, 200],
  )
  const m = await h.metrics()
  const route = { route: 'records' }
  t.equal(metricValue(m, 'ecluse_upstream_ttfb_seconds_count', route), 3)
  // Served one after the other, the last waited two answers' time for the connection: from the call,
  // it took three.
  t.equal(metricValue(m, 'ecluse_upstream_ttfb_seconds_bucket', { ...route, le: '1' }), 3, 'no answer took the upstream over 1 s')
  const upstream = { upstream: 'backend' }
  t.equal(metricValue(m, 'ecluse_upstream_pool_wait_seconds_count', upstream), 3)
  t.equal(metricValue(m, 'ecluse_upstream_pool_wait_seconds_bucket', { ...upstream, le: '0.1' }), 1, 'one found the connection free')
  t.ok(metricValue(m, 'ecluse_upstream_pool_wait_seconds_sum', upstream) >= (3 * ANSWER_MS * 0.9) / 1000, 'the others waited for it: 1 and 2 answers')
  const logged = h.logs.lines.filter((l) => typeof l['upstreamMs'] === 'number').map((l) => l['upstreamMs'] as number)
  t.equal(logged.length, 3, 'three access lines')
  t.ok(
    logged.every((ms) => ms >= ANSWER_MS * 0.9 && ms < 1000),
    `each access line's upstreamMs is its answer's time: ${logged.join(', ')}`,
  )
})

t.test("a slow upload is the sponsor's time, not the upstream's: its time runs from the body's end", async (t) => {
  const h = await Harness.start({
    // Answers as soon as the whole body has arrived.
    handler: (req, res) => {
      req.resume()
      req.on('end', () => res.writeHead(200, { 'content-type': 'text/plain' }).end('ok'))
    },
  })
  t.teardown(() => h.close())
  // 8 chunks, 100 ms apart: the upload takes ≈ 800 ms.
  async function* slowly(): AsyncGenerator<Buffer> {
    for (let i = 0; i < 8; i++) {
      yield Buffer.alloc(1024, 'x')
      await new Promise((r) => setTimeout(r, 100))
    }
  }
  const res = await h.request('/v1/records/1', { method: 'POST', body: Readable.from(slowly()) })
  t.equal(res.status, 200)
  const [logged] = h.logs.lines.filter((l) => typeof l['upstreamMs'] === 'number').map((l) => l['upstreamMs'] as number)
  t.ok(logged !== undefined && logged < 400, `upstreamMs counts from the body's end: ${logged}`)
  t.equal(metricValue(await h.metrics(), 'ecluse_upstream_ttfb_seconds_bucket', { route: 'records', le: '0.5' }), 1)
})

t.test('from the re-review: a wait that ends without a connection counts too', async (t) => {
  // Counted only with an answer, the waits that ran out (503 upstream_unavailable) were missing:
  // at saturation, the histogram read next to nothing.
  const h = await Harness.start({
    handler: (_req, res) => void setTimeout(() => res.writeHead(200, { 'content-type': 'text/plain' }).end('ok'), 1_500),
    upstream: { connections: 1, connectTimeoutMs: 500 },
  })
  t.teardown(() => h.close())
  const statuses = (await Promise.all([1, 2, 3].map((n) => h.request(`/v1/records/${n}`)))).map((a) => a.status).sort()
  t.same(statuses, [200, 503, 503], 'one answered; two waited connectTimeoutMs for the connection, in vain')
  const m = await h.metrics()
  const upstream = { upstream: 'backend' }
  t.equal(metricValue(m, 'ecluse_upstream_pool_wait_seconds_count', upstream), 3, 'every wait counted')
  t.ok(metricValue(m, 'ecluse_upstream_pool_wait_seconds_sum', upstream) >= 2 * 0.45, 'the two that ran out, at their length')
})
