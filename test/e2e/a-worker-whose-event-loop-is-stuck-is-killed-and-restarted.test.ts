// Regression: the primary acted only on a worker's exit. A worker whose event loop was stuck (here
// SIGSTOP) kept the pod unready (`worker:N: no_answer`) and its share of the shared port for good,
// still counted ready in ecluse_cluster_workers, while /healthz stayed 200 and nothing replaced it.
import t from 'tap'
import { request } from 'undici'
import { LIVENESS_INTERVAL_MS, LIVENESS_MISSES } from '../../src/cluster.js'
import { killIfStillOurs, startEchoCluster } from '../helpers/cluster.js'
import { metricValue } from '../helpers/harness.js'

t.test('a worker that stops answering the primary is not ready, then killed and restarted', async (t) => {
  const { cluster } = await startEchoCluster(t)
  const { admin } = await cluster.started()
  const scrape = async () => (await request(`${admin}/metrics`)).body.text()
  t.equal(metricValue(await scrape(), 'ecluse_cluster_workers', { state: 'ready' }), 2)

  const [victim] = cluster.logged('écluse gateway started')
  const pid = Number(victim!['pid'])
  t.teardown(() => killIfStillOurs(pid))
  process.kill(pid, 'SIGSTOP')

  await cluster.until(() => cluster.logged('worker did not answer the primary').length >= 1, 'no missed answer logged')
  t.equal(metricValue(await scrape(), 'ecluse_cluster_workers', { state: 'ready' }), 1, 'a worker that does not answer is not ready')
  const health = await request(`${admin}/healthz`)
  await health.body.dump()
  t.equal(health.statusCode, 200, 'the primary itself is alive')

  // LIVENESS_MISSES asks, LIVENESS_INTERVAL_MS apart: the kill comes in about 15 s.
  const killedBy = Date.now() + LIVENESS_MISSES * LIVENESS_INTERVAL_MS + 10_000
  while (cluster.logged('worker unresponsive; killing it').length === 0 && Date.now() < killedBy) await new Promise((r) => setTimeout(r, 100))
  const killed = cluster.logged('worker unresponsive; killing it')
  t.equal(killed.length, 1, 'killed once')
  t.equal(killed[0]!['missed'], LIVENESS_MISSES)
  await cluster.until(() => cluster.logged('worker exited unexpectedly; restarting').length === 1, 'not restarted')
  t.equal(cluster.logged('worker exited unexpectedly; restarting')[0]!['signal'], 'SIGKILL')
  await cluster.until(() => cluster.logged('écluse gateway started').length === 3, 'the replacement did not start')

  t.equal(await cluster.readyStatus(admin), 200, 'readiness recovered with the replacement')
  const metrics = await scrape()
  t.equal(metricValue(metrics, 'ecluse_cluster_workers', { state: 'ready' }), 2)
  t.equal(metricValue(metrics, 'ecluse_cluster_worker_restarts_total', {}), 1)

  cluster.child.kill('SIGTERM')
  t.equal(await cluster.exited, 0)
  t.equal(cluster.stderr, '')
})
