/**
 * Preloaded into a gateway process (`node --import`) by tests of a reload answer that comes late,
 * never by the product: in the worker of slot 1 only, once `<file>.slow` exists, the next open of the
 * file named by `ECLUSE_TEST_WORKER_SLOW_RELOAD` waits `ECLUSE_TEST_WORKER_SLOW_MS` (a file system
 * that hangs for a while; the event loop stays free, so the worker still answers liveness asks).
 */
import cluster from 'node:cluster'
import fs from 'node:fs'
import { syncBuiltinESMExports } from 'node:module'
import { resolve } from 'node:path'

const target = process.env['ECLUSE_TEST_WORKER_SLOW_RELOAD']
const delayMs = Number(process.env['ECLUSE_TEST_WORKER_SLOW_MS'] ?? 0)
if (target !== undefined && cluster.isWorker && process.env['ECLUSE_WORKER_SLOT'] === '1') {
  const open = fs.promises.open
  let slowed = false
  fs.promises.open = (async (path: Parameters<typeof open>[0], ...rest: [flags?: string | number, mode?: fs.Mode]) => {
    if (!slowed && typeof path === 'string' && resolve(path) === resolve(target) && fs.existsSync(`${target}.slow`)) {
      slowed = true
      await new Promise((r) => setTimeout(r, delayMs))
    }
    return open(path, ...rest)
  }) as typeof open
  // `import { open } from 'node:fs/promises'` (src/read-bounded-file.ts, src/config/watch.ts) sees the replacement too.
  syncBuiltinESMExports()
}
