/**
 * A primary whose boot timer and a worker's `ready` fall due together, for
 * test/e2e/a-worker-ready-after-its-boot-timeout-is-not-taken-as-ready.test.ts:
 * `node --import tsx test/helpers/cluster-late-ready.ts CONFIG`. Workers are stand-ins (this same
 * script, forked). The second sends `ready` 100 ms before its 4 s boot timeout, while the primary's
 * event loop is kept busy from 200 ms before that timeout to 600 ms after it (a GC pause, a large
 * scrape): when the loop runs again, the timer (libuv runs timers before I/O) and the `ready`
 * waiting in the IPC pipe are both due. A worker slowed down past that only makes the race not
 * happen (the boot fails either way), never a false failure.
 */
import cluster from 'node:cluster'

const BOOT_TIMEOUT_MS = 4_000
const ready = { ecluse: 'ready', sponsorPort: 1, drainTimeoutMs: 1000 }

if (cluster.isWorker) {
  // The primary says when to answer (its clock, from the fork): at once, or at a given time. It is
  // asked once this listener is there (a message sent at the fork could arrive before it).
  process.on('message', (m: { ecluse?: string; id?: number; readyAt?: number }) => {
    if (m?.ecluse === 'alive?') process.send!({ ecluse: 'alive', id: m.id })
    if (typeof m?.readyAt === 'number') setTimeout(() => process.send!(ready), Math.max(0, m.readyAt - Date.now()))
  })
  process.send!({ lateReady: 'when?' })
  process.on('SIGTERM', () => process.exit(0))
  setInterval(() => {}, 1000)
} else {
  const configPath = process.argv[2]!
  cluster.setupPrimary({ exec: new URL(import.meta.url).pathname, execArgv: ['--import', 'tsx'] })
  let forks = 0
  const forkedAt = new Map<number, number>()
  cluster.on('fork', (worker) => {
    const at = Date.now()
    forkedAt.set(worker.id, at)
    if (++forks === 1) return
    // Busy from 200 ms before the boot timeout to 600 ms after it: the `ready` (sent at −100 ms) waits.
    // In the check phase (setImmediate), not a timer's: a timer phase keeps the time it began with
    // and would leave the boot timer for the next turn, after the I/O.
    setTimeout(() => {
      setImmediate(() => {
        const until = at + BOOT_TIMEOUT_MS + 600
        while (Date.now() < until);
      })
    }, BOOT_TIMEOUT_MS - 200)
  })
  cluster.on('message', (worker, m: { lateReady?: string }) => {
    if (m?.lateReady !== 'when?') return
    worker.send({ readyAt: worker.id === 1 ? 0 : forkedAt.get(worker.id)! + BOOT_TIMEOUT_MS - 100 })
  })
  // Never hang the test: a cluster that started anyway is stopped (exit 0, which the test refuses).
  setTimeout(() => process.kill(process.pid, 'SIGTERM'), 3 * BOOT_TIMEOUT_MS).unref()
  const { runCluster } = await import('../../src/cluster.js')
  await runCluster(configPath, { workers: 2, bootTimeoutMs: BOOT_TIMEOUT_MS })
}
