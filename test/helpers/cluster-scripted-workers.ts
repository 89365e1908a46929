/**
 * The real cluster primary (`runCluster`) driving scripted workers, for tests of what the primary
 * makes of its workers' messages: `node --import tsx test/helpers/cluster-scripted-workers.ts CONFIG`.
 * A worker runs no gateway; it answers the primary's questions as a scripted gateway would. Slot 0
 * answers a relayed reload with digest `B`; slot 1 with digest `C`, then 30 ms later reports a
 * reload it was signalled for directly, with `B`, as a `drain` message. The primary is made
 * busy for `BUSY_MS` right after it relays the reload, so both of slot 1's messages arrive in one
 * read. The script prints `{"readyz": <status>, "checks": …}` 1.5 s later and stops.
 */
import cluster from 'node:cluster'
import { answerThePrimary } from './scripted-worker.js'

const configPath = process.argv[2]!
if (cluster.isWorker) {
  const slot = process.env['ECLUSE_WORKER_SLOT']
  const ready = answerThePrimary((m, send) => {
    if (m.ecluse !== 'reload?') return
    if (slot === '0') send({ ecluse: 'reloaded', id: m.id, ok: true, drainTimeoutMs: 1000, configDigest: 'B', bootDigest: 'boot' })
    else {
      send({ ecluse: 'reloaded', id: m.id, ok: true, drainTimeoutMs: 1000, configDigest: 'C', bootDigest: 'boot' })
      setTimeout(() => send({ ecluse: 'drain', drainTimeoutMs: 1000, configDigest: 'B', bootDigest: 'boot' }), 30)
    }
  })
  ready()
} else {
  const { runCluster } = await import('../../src/cluster.js')
  const busyMs = Number(process.env['BUSY_MS'] ?? 0)
  // Listens on the admin port the test chose (the primary logs nothing below warn here).
  await runCluster(configPath, { workers: 2 })
  process.on('SIGHUP', () => {
    const end = Date.now() + busyMs
    while (Date.now() < end);
  })
  await new Promise((r) => setTimeout(r, 1000))
  process.kill(process.pid, 'SIGHUP')
  await new Promise((r) => setTimeout(r, 1500))
  const res = await fetch(`http://127.0.0.1:${process.env['ADMIN_PORT']}/readyz`)
  const body = (await res.json()) as { checks: Record<string, string> }
  process.stdout.write(`${JSON.stringify({ readyz: res.status, checks: body.checks })}\n`)
  process.kill(process.pid, 'SIGTERM')
}
