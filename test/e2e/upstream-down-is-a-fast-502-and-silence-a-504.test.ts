import type { ServerResponse } from 'node:http'
import { Readable } from 'node:stream'
import t from 'tap'
import { closedPort, Harness, metricValue } from '../helpers/harness.js'

t.test('upstream down: a fast 502 upstream_refused', async (t) => {
  const h = await Harness.start({ upstreamPort: await closedPort() })
  t.teardown(() => h.close())
  const started = performance.now()
  const res = await h.request('/v1/records/1')
  const elapsed = performance.now() - started
  t.equal(res.status, 502)
  t.equal((res.json() as { error: string }).error, 'upstream_refused')
  t.ok(elapsed < 1000, `answered without waiting for a timeout (${elapsed.toFixed(0)} ms)`)
  const metrics = await h.metrics()
  t.ok(metricValue(metrics, 'ecluse_upstream_errors_total', { upstream: 'backend', kind: 'upstream_refused' }) >= 1)
})

t.test('upstream down: an upload gets the same 502 upstream_refused, chunked or of declared length', async (t) => {
  const h = await Harness.start({ upstreamPort: await closedPort() })
  t.teardown(() => h.close())
  const uploads: Array<[string, () => string | Readable]> = [
    ['declared length', () => '{"a":1}'],
    // Chunked: the body goes through the BodyLimit stage, which undici destroys with the raw
    // connection error when the upstream fails; the classified error must still win.
    ['chunked', () => Readable.from([Buffer.from('{"a":'), Buffer.from('1}')])],
  ]
  for (const [what, body] of uploads) {
    const res = await h.request('/v1/records/1', { method: 'POST', body: body(), headers: { 'content-type': 'application/json' } })
    t.equal(res.status, 502, what)
    t.equal((res.json() as { error: string }).error, 'upstream_refused', what)
  }
})

t.test('upstream silent: 504 upstream_timeout at the headers timeout, not before', async (t) => {
  const h = await Harness.start({ handler: () => {}, upstream: { headersTimeoutMs: 400 } })
  t.teardown(() => h.close())
  const started = performance.now()
  const res = await h.request('/v1/records/1')
  const elapsed = performance.now() - started
  t.equal(res.status, 504)
  t.equal((res.json() as { error: string }).error, 'upstream_timeout')
  t.ok(elapsed >= 350, `waited for the timeout (${elapsed.toFixed(0)} ms)`)
  t.equal(h.upstream.hits, 1, 'sent once, never retried')
})

t.test('the sponsor idle timeout outlasts the upstream wait: the 504 arrives, and a reload cannot raise the wait past it', async (t) => {
  // Node's idle timer counts the sponsor socket's silence while the upstream is awaited: at or under
  // the upstream's timeouts, it cut the connection first (no code, no upstream error counted). The
  // schema refuses that file; a reload, which keeps the listener's idle timeout, refuses it too.
  const h = await Harness.start({
    handler: () => {},
    sponsor: { limits: { idleTimeoutMs: 2000 } },
    upstream: { connectTimeoutMs: 1000, headersTimeoutMs: 800, bodyTimeoutMs: 800 },
  })
  t.teardown(() => h.close())
  const res = await h.request('/v1/records/1')
  t.equal(res.status, 504)
  t.equal((res.json() as { error: string }).error, 'upstream_timeout')
  t.equal(metricValue(await h.metrics(), 'ecluse_upstream_errors_total', { upstream: 'backend', kind: 'upstream_timeout' }), 1, 'counted')

  // The file now asks for a longer idle timeout and a longer upstream wait: valid on its own, but
  // the running listener keeps 2 s.
  const sponsor = h.config['sponsor'] as Record<string, unknown>
  const upstreams = h.config['upstreams'] as Record<string, Record<string, unknown>>
  await h.writeConfig({
    ...h.config,
    sponsor: { ...sponsor, limits: { idleTimeoutMs: 20_000 } },
    upstreams: { backend: { ...upstreams['backend'], headersTimeoutMs: 5000 } },
  })
  const reload = await h.gateway.reload()
  t.equal(reload.ok, false, 'the reload is refused')
  t.match((reload as { error: string }).error, /sponsor\.limits\.idleTimeoutMs as running \(2000; a reload does not change it, a restart does\) must be longer than upstreams\.backend\.connectTimeoutMs \+ headersTimeoutMs \(1000 \+ 5000\)/)
  const again = await h.request('/v1/records/1')
  t.equal(again.status, 504, 'the previous configuration goes on')
})

t.test('upstream resets before answering: 502 upstream_reset, the POST sent exactly once', async (t) => {
  const h = await Harness.start({ handler: (req) => req.socket.destroy() })
  t.teardown(() => h.close())
  const res = await h.request('/v1/records/1', { method: 'POST', body: '{"a":1}', headers: { 'content-type': 'application/json' } })
  t.equal(res.status, 502)
  t.equal((res.json() as { error: string }).error, 'upstream_reset')
  t.equal(h.upstream.hits, 1, 'a non-idempotent request is not retried')
})

t.test('every upstream connection busy: 503 upstream_unavailable after connectTimeoutMs, and the upload never reaches the upstream', async (t) => {
  // One connection, held by a first request the upstream does not answer: the second waits in the
  // pool's queue for connectTimeoutMs, not until the sponsor's idle timeout cuts it.
  const held: ServerResponse[] = []
  const h = await Harness.start({
    handler: (_req, res) => held.push(res),
    upstream: { connections: 1, connectTimeoutMs: 400, headersTimeoutMs: 5000 },
  })
  t.teardown(() => h.close())
  const first = h.request('/v1/records/1')
  for (let i = 0; i < 200 && h.upstream.hits === 0; i++) await new Promise((resolve) => setTimeout(resolve, 10))
  t.equal(h.upstream.hits, 1, 'the first request holds the only connection')
  const started = performance.now()
  const res = await h.request('/v1/records/2', { method: 'POST', body: '{"passport":"X1"}', headers: { 'content-type': 'application/json' } })
  const elapsed = performance.now() - started
  t.equal(res.status, 503)
  const body = res.json() as Record<string, unknown>
  t.equal(body['error'], 'upstream_unavailable')
  t.same(Object.keys(body).sort(), ['error', 'requestId'], 'terse: the code and the request id, nothing of the upstream')
  t.ok(elapsed >= 350 && elapsed < 3_000, `after about connectTimeoutMs (${elapsed.toFixed(0)} ms)`)
  t.equal(h.upstream.hits, 1, 'the waiting request never reached the upstream')
  // Chunked, the body goes through a stage chain, which the pool destroys with the refusal.
  const chunked = await h.request('/v1/records/3', { method: 'POST', body: Readable.from([Buffer.from('{"passport":'), Buffer.from('"X2"}')]), headers: { 'content-type': 'application/json' } })
  t.equal(chunked.status, 503, 'chunked: 503 too')
  t.equal((chunked.json() as { error: string }).error, 'upstream_unavailable')
  t.equal(h.upstream.hits, 1, 'neither reached the upstream')
  t.equal(metricValue(await h.metrics(), 'ecluse_upstream_errors_total', { upstream: 'backend', kind: 'upstream_unavailable' }), 2, 'counted')
  held[0]!.end('{"ok":true}')
  t.equal((await first).status, 200, 'the request in flight finishes')
})
