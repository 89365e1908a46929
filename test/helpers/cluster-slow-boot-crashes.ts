/**
 * The real cluster primary (`runCluster`, `stableAfterMs` 1000) driving scripted workers, for the
 * test of its crash back-off: `node --import tsx test/helpers/cluster-slow-boot-crashes.ts CONFIG DIR`.
 * Slot 0 serves. Slot 1's first worker is ready at once; every later one takes 1,200 ms to boot
 * (longer than `stableAfterMs`), and each crashes 200 ms after it reported ready. The primary's log
 * goes to stdout; the test stops it with SIGTERM.
 */
import cluster from 'node:cluster'
import { existsSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

const [configPath, dir] = [process.argv[2]!, process.argv[3]!]
if (cluster.isWorker) {
  const slot = process.env['ECLUSE_WORKER_SLOT']
  const send = (m: object) => process.send?.(m)
  process.on('message', (m: { ecluse?: string; id?: number }) => {
    if (m.ecluse === 'alive?') send({ ecluse: 'alive', id: m.id })
    else if (m.ecluse === 'readiness?') send({ ecluse: 'readiness', id: m.id, readiness: { ready: true, checks: { certificates: 'ok' } } })
    else if (m.ecluse === 'metrics?') send({ ecluse: 'metrics', id: m.id, metrics: [] })
  })
  process.on('SIGTERM', () => process.exit(0))
  const ready = () => send({ ecluse: 'ready', sponsorPort: 1, drainTimeoutMs: 1000, configDigest: 'A', bootDigest: 'boot' })
  if (slot === '1') {
    const first = join(dir, 'slot-1-booted')
    const bootMs = existsSync(first) ? 1_200 : 0
    writeFileSync(first, '')
    setTimeout(() => {
      ready()
      setTimeout(() => process.exit(7), 200)
    }, bootMs)
  } else ready()
} else {
  const { runCluster } = await import('../../src/cluster.js')
  await runCluster(configPath, { workers: 2, stableAfterMs: 1_000 })
}
