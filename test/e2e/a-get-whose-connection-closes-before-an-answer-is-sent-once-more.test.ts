/**
 * From the deploy review: an upstream closes a kept-alive connection as idle, or because it drains
 * (an Écluse sidecar on SIGTERM), while the gateway sends a request on it. Nothing was answered, and
 * the gateway answered 502 `upstream_reset`: a few failed requests at every rollout of the sidecar.
 * RFC 9112 §9.3.1 lets a client send an idempotent request again; the gateway does so once, on
 * another connection, for a safe one (GET, HEAD, OPTIONS) without a body (a streamed body is spent,
 * a sealed one must not be sealed twice). A request that can change state is still sent at most
 * once. The upstream here closes every connection, without an answer, at its second request.
 */
import type { Socket } from 'node:net'
import t from 'tap'
import { Harness, metricValue, type UpstreamHandler } from '../helpers/harness.js'

function closesAtTheSecondRequest(): { handler: UpstreamHandler; seen: string[] } {
  const requests = new WeakMap<Socket, number>()
  const seen: string[] = []
  const handler: UpstreamHandler = (req, res) => {
    const n = (requests.get(req.socket) ?? 0) + 1
    requests.set(req.socket, n)
    seen.push(`${req.method} ${n}`)
    if (n === 2) {
      req.socket.destroy()
      return
    }
    req.resume()
    req.on('end', () => res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 2 }).end('ok'))
  }
  return { handler, seen }
}

t.test('a GET whose kept-alive connection closes under it is sent once more, on a new connection', async (t) => {
  const { handler, seen } = closesAtTheSecondRequest()
  const h = await Harness.start({ handler, upstream: { connections: 1 } })
  t.teardown(() => h.close())
  t.equal((await h.request('/v1/records/1')).status, 200)
  const second = await h.request('/v1/records/2')
  t.equal(second.status, 200, 'answered, from the second connection')
  t.same(seen, ['GET 1', 'GET 2', 'GET 1'], 'sent on the kept-alive connection, then on a new one')
  const m = await h.metrics()
  t.equal(metricValue(m, 'ecluse_upstream_retries_total', { upstream: 'backend' }), 1, 'counted as a retry')
  t.equal(metricValue(m, 'ecluse_upstream_errors_total', { upstream: 'backend', kind: 'upstream_reset' }), 0, 'not as a failure')
})

t.test('once only: a request whose second connection closes too fails upstream_reset', async (t) => {
  const h = await Harness.start({ handler: (req) => req.socket.destroy(), upstream: { connections: 1 } })
  t.teardown(() => h.close())
  const res = await h.request('/v1/records/1')
  t.equal(res.status, 502)
  t.match(res.json(), { error: 'upstream_reset' })
  t.equal(h.upstream.hits, 2, 'sent twice, no more')
  t.equal(metricValue(await h.metrics(), 'ecluse_upstream_errors_total', { upstream: 'backend', kind: 'upstream_reset' }), 1)
})

t.test('a request with a body is not sent again', async (t) => {
  const { handler, seen } = closesAtTheSecondRequest()
  const h = await Harness.start({ handler, upstream: { connections: 1 } })
  t.teardown(() => h.close())
  t.equal((await h.request('/v1/records/1')).status, 200)
  const res = await h.request('/v1/records/2', { method: 'POST', body: 'x'.repeat(100) })
  t.equal(res.status, 502, 'its body was spent on the closed connection')
  t.match(res.json(), { error: 'upstream_reset' })
  t.same(seen, ['GET 1', 'POST 2'])
  t.equal(metricValue(await h.metrics(), 'ecluse_upstream_retries_total', { upstream: 'backend' }), 0)
})

t.test('a PUT without a body is not sent again either: it may change state', async (t) => {
  const { handler, seen } = closesAtTheSecondRequest()
  const h = await Harness.start({ handler, upstream: { connections: 1 } })
  t.teardown(() => h.close())
  t.equal((await h.request('/v1/records/1')).status, 200)
  const res = await h.request('/v1/records/2', { method: 'PUT' })
  t.equal(res.status, 502)
  t.same(seen, ['GET 1', 'PUT 2'], 'sent once')
})
