import t from 'tap'
import { Agent, request } from 'undici'
import { startEchoCluster } from '../helpers/cluster.js'
import { metricValue } from '../helpers/harness.js'

t.test('a worker killed after boot is restarted; the other keeps serving; readiness recovers', async (t) => {
  const { pki, cluster } = await startEchoCluster(t)
  const { sponsor, admin } = await cluster.started()
  const logged = (msg: string) => cluster.logged(msg)
  const until = (what: () => boolean, label: string) => cluster.until(what, label)
  const get = async (path: string) => {
    const agent = new Agent({
      connect: { ca: pki.sponsorCa.certPem, cert: pki.sponsorClient.certPem, key: pki.sponsorClient.keyPem, servername: 'localhost' },
    })
    try {
      const res = await request(`${sponsor}${path}`, { dispatcher: agent })
      await res.body.dump()
      return res.statusCode
    } finally {
      await agent.close()
    }
  }

  // Requests on connections of their own, spread over both workers, then a scrape: the victim's
  // share is in the sum the primary last saw.
  t.same(await Promise.all([1, 2, 3, 4, 5, 6, 7, 8].map((i) => get(`/v1/records/${i}`))), Array(8).fill(200))
  const requests = (text: string) => metricValue(text, 'ecluse_requests_total', { side: 'sponsor', route: 'records' })
  const before = await (await request(`${admin}/metrics`)).body.text()
  t.equal(requests(before), 8)

  const [victim, survivor] = logged('écluse gateway started')
  process.kill(Number(victim!['pid']), 'SIGKILL')
  await until(() => logged('worker exited unexpectedly; restarting').length === 1, 'no restart line')
  const restart = logged('worker exited unexpectedly; restarting')[0]!
  t.equal(restart['signal'], 'SIGKILL')
  t.equal(restart['restartInMs'], 250, 'first step of the back-off')

  // A scrape while the replacement boots (forked 250 ms after the crash, not yet answering): the
  // workers that answer are aggregated, the one that cannot is left out, and the scrape succeeds.
  await new Promise((r) => setTimeout(r, 400))
  const scrape = await request(`${admin}/metrics`)
  const during = await scrape.body.text()
  t.equal(scrape.statusCode, 200, 'the scrape does not wait for a booting worker, nor fail on it')
  t.equal(metricValue(during, 'ecluse_cluster_worker_restarts_total', {}), 1)
  t.ok(metricValue(during, 'ecluse_open_connections', { side: 'admin' }) >= 1, 'the primary’s own admin connections are counted')
  // A sum that went down would read as a counter reset to Prometheus, and increase() would count
  // the survivor's whole total again.
  t.equal(requests(during), 8, 'the crashed worker’s requests stay counted: no counter goes down')

  // While the slot is empty, connections go to the survivor: nothing is refused.
  const served = await Promise.all([1, 2, 3, 4].map((i) => get(`/v1/records/${i}`)))
  t.same(served, [200, 200, 200, 200])

  await until(() => logged('écluse gateway started').length === 3, 'the worker was not restarted')
  const replacement = logged('écluse gateway started')[2]!
  t.not(replacement['pid'], victim!['pid'])
  t.not(replacement['pid'], survivor!['pid'])
  t.equal(replacement['sponsor'], victim!['sponsor'], 'the replacement listens on the same port')

  // Readiness comes back once the replacement reported ready.
  t.equal(await cluster.readyStatus(admin), 200, 'readiness recovered')
  const metrics = await (await request(`${admin}/metrics`)).body.text()
  t.equal(metricValue(metrics, 'ecluse_cluster_worker_restarts_total', {}), 1)
  t.equal(metricValue(metrics, 'ecluse_cluster_workers', { state: 'ready' }), 2)
  t.equal(requests(metrics), 12, 'with the replacement, the sum goes on from there')

  // A second crash: two exited workers' counts are folded into one part, and still nothing drops.
  process.kill(Number(replacement['pid']), 'SIGKILL')
  await until(() => logged('worker exited unexpectedly; restarting').length === 2, 'no second restart line')
  t.equal(requests(await (await request(`${admin}/metrics`)).body.text()), 12, 'after a second crash, still 12')
  t.equal(requests(await (await request(`${admin}/metrics`)).body.text()), 12, 'and once the parts are folded')
  await until(() => logged('écluse gateway started').length === 4, 'the worker was not restarted a second time')
  t.equal(await cluster.readyStatus(admin), 200, 'readiness recovered again')
  t.equal(await get('/v1/records/after'), 200)

  cluster.child.kill('SIGTERM')
  t.equal(await cluster.exited, 0)
  t.equal(cluster.stderr, '')
})
