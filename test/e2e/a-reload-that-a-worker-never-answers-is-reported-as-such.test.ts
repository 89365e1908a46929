// A reload relayed to the workers is logged with its outcome. A worker that goes away before it
// answers counts as neither applied nor failed; the primary used to log `workers reloaded` at info
// all the same. It now says that some workers gave no answer (warn), and why that needs no retry:
// the replacement reads the files as it boots.
import t from 'tap'
import { killIfStillOurs, startEchoCluster } from '../helpers/cluster.js'

t.test('a worker that goes away before answering a reload: the primary says so', { skip: process.platform !== 'linux' && 'SIGSTOP' }, async (t) => {
  const { cluster } = await startEchoCluster(t)
  await cluster.started()
  // The workers' own lines can be read after the primary's start line (they share its pipe).
  await cluster.until(() => cluster.logged('écluse gateway started').length === 2, 'the workers did not both start')
  const [answering, silent] = cluster.logged('écluse gateway started').map((l) => Number(l['pid']))
  t.teardown(() => killIfStillOurs(silent!))
  process.kill(silent!, 'SIGSTOP')
  cluster.child.kill('SIGHUP')
  await cluster.until(() => cluster.logged('reloaded').some((l) => l['pid'] === answering), 'the answering worker did not reload')
  process.kill(silent!, 'SIGKILL')
  await cluster.until(() => cluster.logged('a reload got no answer from some workers; a worker restarted later reads the files as it boots').length === 1, 'no warning')
  const [warning] = cluster.logged('a reload got no answer from some workers; a worker restarted later reads the files as it boots')
  t.match(warning, { level: 'warn', applied: 1, failed: 0, asked: 2 })
  t.equal(cluster.logged('workers reloaded').length, 0, 'not logged as a reload every worker applied')

  cluster.child.kill('SIGTERM')
  t.equal(await cluster.exited, 0)
})
