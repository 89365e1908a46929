// Regression (review): a scrape keeps each worker's answer while it waits up to 2 s for slower ones.
// A worker that answered, then exited during that wait, had its answer retired by the exit as well,
// so the scrape summed it twice (here 20 requests read as 30) and the next one went back to 20: a
// counter of the cluster went down, which Prometheus reads as a reset (docs/metrics.md promises none).
import t from 'tap'
import { request } from 'undici'
import { killIfStillOurs, sponsorGet, startEchoCluster } from '../helpers/cluster.js'
import { metricValue } from '../helpers/harness.js'

const REQUESTS = 20

t.test('a worker that exits while a scrape waits for another is counted once, then and after', { skip: process.platform !== 'linux' && 'SIGSTOP' }, async (t) => {
  const { pki, cluster } = await startEchoCluster(t)
  const { sponsor, admin } = await cluster.started()
  const [exiting, slow] = cluster.logged('écluse gateway started').map((l) => Number(l['pid']))
  t.teardown(() => killIfStillOurs(slow!))

  // A connection each: the shared port hands them to both workers in turn.
  for (let i = 0; i < REQUESTS; i++) t.equal((await sponsorGet(t, pki, `${sponsor}/v1/records/${i}`)).status, 200)
  await cluster.until(() => cluster.logged('access').length === REQUESTS, 'access lines missing')
  const served = cluster.logged('access').filter((l) => l['pid'] === exiting).length
  t.ok(served > 0 && served < REQUESTS, `both workers served (the exiting one ${served})`)
  const scrape = async () => (await request(`${admin}/metrics`)).body.text()
  const requests = (text: string) => metricValue(text, 'ecluse_requests_total', { side: 'sponsor', route: 'records' })
  t.equal(requests(await scrape()), REQUESTS, 'each worker answered this scrape: the primary holds both answers')

  // The slow worker answers no more: the next scrape waits 2 s for it. The other answers at once,
  // then exits while that scrape still waits.
  process.kill(slow!, 'SIGSTOP')
  const during = scrape()
  await new Promise((r) => setTimeout(r, 500))
  process.kill(exiting!, 'SIGKILL')
  await cluster.until(() => cluster.logged('worker exited unexpectedly; restarting').length === 1, 'the exit was not seen')
  t.equal(requests(await during), REQUESTS, 'the exited worker counts once in the scrape that waited')
  t.equal(requests(await scrape()), REQUESTS, 'and in the next one: nothing went down')
  process.kill(slow!, 'SIGCONT')
  t.equal(requests(await scrape()), REQUESTS, 'and once the slow worker answers again')

  cluster.child.kill('SIGTERM')
  t.equal(await cluster.exited, 0)
  t.equal(cluster.stderr, '')
})
