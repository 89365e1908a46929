/**
 * The real cluster primary (`runCluster`, `stableAfterMs` 1000) driving scripted workers, for the
 * test of its crash back-off: `node --import tsx test/helpers/cluster-slow-boot-crashes.ts CONFIG DIR`.
 * Slot 0 serves. Slot 1's first worker is ready at once and crashes 5 s later (stable); every later
 * one takes 1,200 ms to boot (longer than `stableAfterMs`) and crashes 200 ms after it reported
 * ready. The primary's log goes to stdout; the test stops it with SIGTERM.
 */
import cluster from 'node:cluster'
import { existsSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { answerThePrimary } from './scripted-worker.js'

const [configPath, dir] = [process.argv[2]!, process.argv[3]!]
if (cluster.isWorker) {
  const slot = process.env['ECLUSE_WORKER_SLOT']
  const ready = answerThePrimary()
  if (slot === '1') {
    // The first worker serves 5 s (a crash before its sibling is ready would stop the cluster as a
    // failed start), which is stable; every later one boots long and crashes soon after ready.
    const first = !existsSync(join(dir, 'slot-1-booted'))
    writeFileSync(join(dir, 'slot-1-booted'), '')
    setTimeout(
      () => {
        ready()
        setTimeout(() => process.exit(7), first ? 5_000 : 200)
      },
      first ? 0 : 1_200,
    )
  } else ready()
} else {
  const { runCluster } = await import('../../src/cluster.js')
  await runCluster(configPath, { workers: 2, stableAfterMs: 1_000 })
}
