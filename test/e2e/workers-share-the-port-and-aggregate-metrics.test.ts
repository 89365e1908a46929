import t from 'tap'
import { Agent, request } from 'undici'
import { hasExited, startEchoCluster } from '../helpers/cluster.js'
import { metricValue } from '../helpers/harness.js'

const REQUESTS = 20

t.test('two workers share the sponsor port, the primary aggregates their metrics, SIGTERM exits 0', async (t) => {
  const { pki, upstream, cluster } = await startEchoCluster(t)
  const { line: started, sponsor, admin } = await cluster.started()
  const lines = cluster.lines
  t.equal(started['workers'], 2)
  const workerStarts = lines.filter((l) => l['msg'] === 'écluse gateway started')
  t.equal(workerStarts.length, 2, 'two workers started')
  t.equal(new Set(workerStarts.map((l) => l['sponsor'])).size, 1, 'on the same sponsor address')
  t.ok(workerStarts.every((l) => l['admin'] === undefined), 'no worker opened an admin listener')

  // A fresh connection per request: the primary hands connections to the workers in turn.
  for (let i = 0; i < REQUESTS; i++) {
    const agent = new Agent({
      connect: { ca: pki.sponsorCa.certPem, cert: pki.sponsorClient.certPem, key: pki.sponsorClient.keyPem, servername: 'localhost' },
    })
    const res = await request(`${sponsor}/v1/records/${i}`, { dispatcher: agent })
    await res.body.dump()
    await agent.close()
    if (res.statusCode !== 200) t.fail(`request ${i}: HTTP ${res.statusCode}`)
  }
  await cluster.until(() => cluster.logged('access').length === REQUESTS, 'access lines missing')
  const byWorker = new Map<unknown, number>()
  for (const line of lines.filter((l) => l['msg'] === 'access')) byWorker.set(line['worker'], (byWorker.get(line['worker']) ?? 0) + 1)
  t.equal(byWorker.size, 2, `both workers served requests: ${JSON.stringify([...byWorker])}`)
  t.equal(upstream.hits, REQUESTS)

  const metrics = await (await request(`${admin}/metrics`)).body.text()
  t.equal(metricValue(metrics, 'ecluse_requests_total', { side: 'sponsor', route: 'records' }), REQUESTS, 'requests summed across workers')
  t.equal(metricValue(metrics, 'ecluse_responses_total', { side: 'sponsor', route: 'records', status_class: '2xx' }), REQUESTS)
  t.equal(metricValue(metrics, 'ecluse_cluster_workers', { state: 'ready' }), 2)
  t.equal(metricValue(metrics, 'ecluse_cluster_worker_restarts_total', {}), 0)
  t.match(metrics, /^ecluse_build_info\{[^}]*\} 1$/m, 'build info is not summed')

  const ready = await request(`${admin}/readyz`)
  const readiness = (await ready.body.json()) as { status: string; checks: Record<string, string> }
  t.equal(ready.statusCode, 200)
  t.same(readiness.checks, { workers: 'ok', certificates: 'ok', 'upstream:backend': 'ok' })

  // A worker that cannot answer a scrape in time (stopped here) is counted as of its last answer:
  // a sum that dropped would read as a counter reset to Prometheus.
  const stalled = Number(workerStarts[0]!['pid'])
  process.kill(stalled, 'SIGSTOP')
  t.teardown(() => {
    // Never left stopped, whatever failed; gone already when the test ran to its end.
    if (!hasExited(stalled)) process.kill(stalled, 'SIGCONT')
  })
  const whileStalled = await (await request(`${admin}/metrics`)).body.text()
  process.kill(stalled, 'SIGCONT')
  t.equal(metricValue(whileStalled, 'ecluse_requests_total', { side: 'sponsor', route: 'records' }), REQUESTS, 'a stalled worker is still counted')

  cluster.child.kill('SIGTERM')
  t.equal(await cluster.exited, 0, 'every worker drained, then the primary exited 0')
  t.equal(cluster.stderr, '')
  t.equal(lines.filter((l) => l['msg'] === 'stopped').length, 3, 'two workers and the primary stopped')
})
