/**
 * `serve --workers N`: the primary asks each worker for its readiness, and each worker probes its
 * upstreams. Found by a review: the primary waited 2 s for a worker, as long as the worker's probe
 * of an upstream that does not answer, so `/readyz` said every worker's `no_answer` (hung workers,
 * to an operator) and never the upstream's `upstream_timeout`; and a worker's cached answer, stamped
 * when its probe began, had expired by the time that probe ended. The primary now waits longer than
 * a probe, and the answer is stamped when it came.
 */
import t from 'tap'
import { request } from 'undici'
import { startEchoCluster } from '../helpers/cluster.js'

t.test('an upstream that accepts mTLS and never answers is named as such, not as workers that do not answer', async (t) => {
  const { upstream, cluster } = await startEchoCluster(t)
  const { admin } = await cluster.started()
  upstream.handler = () => {} // the handshake succeeds; no answer ever comes
  for (let i = 0; i < 2; i++) {
    const started = Date.now()
    const res = await request(`${admin}/readyz`)
    const body = (await res.body.json()) as { checks: Record<string, string> }
    t.equal(res.statusCode, 503, `ask ${i}: not ready`)
    t.equal(body.checks['upstream:backend'], 'upstream_timeout', `ask ${i}: the upstream is named, with why`)
    t.same(
      Object.keys(body.checks).filter((k) => k.startsWith('worker:')),
      [],
      `ask ${i}: no worker said not to answer (${JSON.stringify(body.checks)}, ${Date.now() - started} ms)`,
    )
  }
  cluster.child.kill('SIGTERM')
  t.equal(await cluster.exited, 0)
})
