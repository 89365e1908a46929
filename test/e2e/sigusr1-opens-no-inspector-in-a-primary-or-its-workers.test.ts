/**
 * Node's default for SIGUSR1 opens its inspector on 127.0.0.1:9229, which every container of a pod
 * can reach and which reads every key in the process. `serve --workers N` catches it in the primary
 * and in each worker from their first moment: logged, ignored, and the cluster keeps serving.
 */
import t from 'tap'
import { sponsorGet, startEchoCluster } from '../helpers/cluster.js'

t.test('SIGUSR1 to the primary or to a worker is logged and opens no inspector', async (t) => {
  const { pki, cluster } = await startEchoCluster(t)
  const { sponsor } = await cluster.started()
  const workers = cluster.logged('écluse gateway started').map((l) => Number(l['pid']))
  t.equal(workers.length, 2)
  for (const pid of [cluster.child.pid!, ...workers]) process.kill(pid, 'SIGUSR1')
  const ignored = 'signal ignored: it would open the Node inspector; start with --inspect to debug'
  await cluster.until(() => cluster.logged(ignored).length === 3, 'three ignored-signal lines')
  t.strictSame(cluster.logged(ignored).map((l) => [l['pid'], l['signal'], l['level']]).sort(), [cluster.child.pid!, ...workers].map((pid) => [pid, 'SIGUSR1', 'warn']).sort())
  t.notMatch(cluster.stderr, /Debugger listening/, 'no process opened the inspector')
  for (let i = 0; i < 4; i++) t.equal((await sponsorGet(t, pki, `${sponsor}/v1/records/${i}`)).status, 200, 'still serving')
  t.equal(cluster.child.exitCode, null)
  t.equal(cluster.logged('worker exited').length, 0, 'no worker died of it')
})
