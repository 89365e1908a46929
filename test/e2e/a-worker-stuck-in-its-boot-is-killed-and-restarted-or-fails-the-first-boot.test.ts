/**
 * Regression (review): the primary supervised ready workers only (liveness asks). A worker stuck in
 * its boot (here SIGSTOP) was never killed: a replacement kept `/readyz` at 503 for good while the
 * primary's `/healthz` stayed 200, so Kubernetes never restarted anything; in the first boot the
 * cluster waited forever. A worker not ready `bootTimeoutMs` after its fork is now killed: restarted
 * as after a crash, or, before the cluster has started, the boot fails (exit 1).
 */
import { readFileSync } from 'node:fs'
import t from 'tap'
import { request } from 'undici'
import { childPids, killIfStillOurs, startEchoCluster } from '../helpers/cluster.js'
import { metricValue } from '../helpers/harness.js'

/**
 * Far above a worker's boot here (under 1 s idle, ≈ 2 s with both cores busy), far below the default
 * minute: a replacement that booted slower would be killed too and the counts would be off.
 */
const BOOT_TIMEOUT_MS = 8_000
const linuxOnly = { skip: process.platform !== 'linux' && 'reads /proc' }
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** What `promise` settles with, or `late` if it has not within `ms` (the timer then goes). */
async function within<T>(promise: Promise<T>, ms: number, late: string): Promise<T | string> {
  let timer: NodeJS.Timeout | undefined
  try {
    return await Promise.race([promise, new Promise<string>((r) => (timer = setTimeout(r, ms, late)))])
  } finally {
    clearTimeout(timer)
  }
}

/**
 * Whether `pid` runs as a worker: exec'd with the environment `cluster.fork()` gives it. Stopped
 * between fork and exec, it would hold the primary in its spawn call, waiting for the exec.
 */
function isWorker(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/environ`, 'utf8').includes('ECLUSE_WORKER_SLOT=')
  } catch {
    return false
  }
}

/** The first worker of `primary` not in `known`, SIGSTOPped as soon as it runs: long before it can boot. */
async function stopNewWorker(primary: number, known: readonly number[]): Promise<number> {
  for (const deadline = Date.now() + 10_000; Date.now() < deadline; await sleep(2)) {
    const pid = childPids(primary).find((p) => !known.includes(p) && isWorker(p))
    if (pid === undefined) continue
    process.kill(pid, 'SIGSTOP')
    return pid
  }
  throw new Error('no new worker was forked')
}

t.test('a replacement worker stuck in its boot is killed at the boot timeout and restarted', linuxOnly, async (t) => {
  const { cluster } = await startEchoCluster(t, { bootTimeoutMs: BOOT_TIMEOUT_MS })
  const { admin } = await cluster.started()
  const primary = cluster.child.pid!
  const workers = childPids(primary)
  const crashed = Number(cluster.logged('écluse gateway started')[0]!['pid'])
  process.kill(crashed, 'SIGKILL')
  const stuck = await stopNewWorker(primary, workers)
  t.teardown(() => killIfStillOurs(stuck))
  const stuckAt = Date.now()

  const ready = await request(`${admin}/readyz`)
  t.equal(ready.statusCode, 503, 'not ready while the replacement boots')
  t.match(await ready.body.json(), { checks: { workers: 'workers_not_ready' } })

  const killedBy = stuckAt + BOOT_TIMEOUT_MS + 10_000
  while (cluster.logged('worker did not report ready in time; killing it').length === 0 && Date.now() < killedBy) await sleep(50)
  const killed = cluster.logged('worker did not report ready in time; killing it')
  t.equal(killed.length, 1, 'the stuck worker is killed')
  t.equal(killed[0]?.['bootTimeoutMs'], BOOT_TIMEOUT_MS)
  t.ok(Date.now() - stuckAt >= BOOT_TIMEOUT_MS - 500, 'not before its boot timeout')
  await cluster.until(() => cluster.logged('worker exited unexpectedly; restarting').length === 2, 'the stuck worker was not restarted')
  const restart = cluster.logged('worker exited unexpectedly; restarting')[1]!
  t.equal(restart['signal'], 'SIGKILL')
  t.equal(restart['restartInMs'], 500, 'the slot’s second failure in a row: the back-off grows')
  t.throws(() => process.kill(stuck, 0), { code: 'ESRCH' }, 'the stuck worker is gone, reaped by the primary')

  await cluster.until(() => cluster.logged('écluse gateway started').length === 3, 'the replacement of the stuck worker did not start')
  t.equal(await cluster.readyStatus(admin), 200, 'readiness recovered')
  t.equal(metricValue(await (await request(`${admin}/metrics`)).body.text(), 'ecluse_cluster_worker_restarts_total', {}), 2, 'counted as a restart')

  cluster.child.kill('SIGTERM')
  t.equal(await cluster.exited, 0)
  t.equal(cluster.stderr, '')
})

t.test('a worker stuck in the first boot fails the boot, exit 1, saying why', linuxOnly, async (t) => {
  const { cluster } = await startEchoCluster(t, { bootTimeoutMs: BOOT_TIMEOUT_MS })
  const stuck = await stopNewWorker(cluster.child.pid!, [])
  t.teardown(() => killIfStillOurs(stuck))
  const stuckAt = Date.now()

  const code = await within(cluster.exited, BOOT_TIMEOUT_MS + 15_000, 'still booting')
  t.equal(code, 1, 'the boot failed')
  // Still running: what follows waits for the primary's last lines (teardown kills it).
  if (code !== 1) return
  t.ok(Date.now() - stuckAt >= BOOT_TIMEOUT_MS - 500, 'not before its boot timeout')
  await cluster.closed
  t.match(cluster.logged('worker did not report ready in time; killing it'), [{ role: 'primary', bootTimeoutMs: BOOT_TIMEOUT_MS }])
  t.match(cluster.logged('a worker failed to start; stopping'), [{ signal: 'SIGKILL' }])
  t.equal(cluster.logged('worker exited unexpectedly; restarting').length, 0, 'no restart during boot')
  t.equal(cluster.logged('écluse cluster started').length, 0)
  t.match(
    cluster.logged('stopped').filter((l) => l['role'] === 'primary'),
    [{ clean: false }],
  )
})
