/**
 * Found by review: `/readyz` caches its upstream probes for 2 s, and a probe that began before a
 * drain or a reload, once done, was stored over the reset those made and given for 2 s more: the
 * gateway said "ready" after SIGTERM (the load balancer's cue to stop sending it traffic), and said
 * its upstream answered after a reload had moved it to one that refuses. Now an answer a drain or a
 * reload overtook is neither cached nor given: a drain says 503 at once, a reload's pools are probed.
 * A re-review found the first version of that probed again after a drain before saying so, and
 * started over for as long as reloads kept coming: a reload every 400 ms held every /readyz until
 * its 3 s timeout. It starts over once.
 */
import t from 'tap'
import { request } from 'undici'
import { closedPort, Harness } from '../helpers/harness.js'

/** The upstream's `/healthz` (the readiness probe) takes this long: long enough to overtake. */
const PROBE_MS = 800

async function readyz(h: Harness): Promise<{ status: number; checks: Record<string, string> }> {
  const r = await request(`${h.adminOrigin}/readyz`)
  const body = (await r.body.json()) as { checks: Record<string, string> }
  return { status: r.statusCode, checks: body.checks }
}

t.test('a drain that begins while /readyz probes the upstream: 503 draining, from that very answer on', async (t) => {
  let releaseSlow: () => void = () => {}
  const h = await Harness.start({
    shutdown: { drainTimeoutMs: 10_000 },
    handler: (req, res) => {
      if (req.url === '/healthz') setTimeout(() => res.end('{}'), PROBE_MS)
      else releaseSlow = () => res.end('{}')
    },
  })
  t.teardown(() => h.close())
  // A request in flight keeps the drain (and the admin listener) open while /readyz is asked.
  const slow = h.request('/v1/records/slow')
  while (h.upstream.seen.length === 0) await new Promise((r) => setTimeout(r, 10))
  const probing = readyz(h)
  await new Promise((r) => setTimeout(r, PROBE_MS / 4))
  const drained = h.gateway.shutdown()
  const during = await probing
  t.equal(during.status, 503, 'the probe begun before the drain answers 503')
  t.equal(during.checks['shutdown'], 'draining')
  const probes = h.upstream.seen.filter((r) => r.url === '/healthz').length
  const started = performance.now()
  const after = await readyz(h)
  t.equal(after.status, 503, 'and so does the next one')
  t.equal(after.checks['shutdown'], 'draining')
  t.equal(h.upstream.seen.filter((r) => r.url === '/healthz').length, probes, 'at once: a draining gateway probes no upstream to say so')
  t.ok(performance.now() - started < PROBE_MS, 'well within a probe’s time')
  releaseSlow()
  t.equal((await slow).status, 200, 'the request in flight completes')
  await drained
})

t.test('a reload that moves the upstream while /readyz probes it: the new upstream is probed', async (t) => {
  const h = await Harness.start({
    handler: (req, res) => {
      if (req.url === '/healthz') setTimeout(() => res.end('{}'), PROBE_MS)
      else res.end('{}')
    },
  })
  t.teardown(() => h.close())
  t.equal((await readyz(h)).status, 200, 'ready before')
  // Past the cache's 2 s, so that the next /readyz probes.
  await new Promise((r) => setTimeout(r, 2_100))
  const probing = readyz(h)
  await new Promise((r) => setTimeout(r, PROBE_MS / 4))
  const config = structuredClone(h.config) as { upstreams: { backend: { url: string } } }
  config.upstreams.backend.url = `https://127.0.0.1:${await closedPort()}`
  await h.writeConfig(config)
  t.match(await h.gateway.reload(), { ok: true })
  const during = await probing
  t.equal(during.status, 503, 'the probe begun before the reload answers for the new upstream')
  t.equal(during.checks['upstream:backend'], 'upstream_refused')
  const after = await readyz(h)
  t.equal(after.status, 503, 'and so does the next one')
  t.equal(after.checks['upstream:backend'], 'upstream_refused')
})

t.test('reloads more often than a probe takes: /readyz still answers, and probes a bounded number of times', async (t) => {
  const h = await Harness.start({
    handler: (req, res) => {
      if (req.url === '/healthz') setTimeout(() => res.end('{}'), PROBE_MS)
      else res.end('{}')
    },
  })
  t.teardown(() => h.close())
  const probes = () => h.upstream.seen.filter((r) => r.url === '/healthz').length
  let storming = true
  const storm = (async () => {
    while (storming) {
      await h.gateway.reload()
      await new Promise((r) => setTimeout(r, PROBE_MS / 2))
    }
  })()
  const before = probes()
  const answers = []
  for (let i = 0; i < 3; i++) answers.push(await readyz(h))
  storming = false
  await storm
  t.same(
    answers.map((a) => [a.status, a.checks['upstream:backend']]),
    Array.from({ length: 3 }, () => [200, 'ok']),
    'each answers from its probes, not with its 3 s timeout',
  )
  t.ok(probes() - before <= 2 * answers.length, `at most two probes per answer (${probes() - before} for ${answers.length})`)
})
