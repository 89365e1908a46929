/**
 * Preloaded into a gateway process (`node --import`) by tests of a worker whose files change while it
 * loads them, never by the product: in the worker of slot 1 only, the Nth open of the file named by
 * `ECLUSE_TEST_WORKER_CAUGHT_MID_WRITE` (N is `ECLUSE_TEST_WORKER_CAUGHT_OPEN`, default 2; the first
 * two are the digest taken before `Gateway.start` loads it: its parse, then its bytes) reads
 * `<that file>.mid-write`, the first bytes the test wrote there; every other open reads the whole
 * file. A writer that rewrites the same content without renaming gives the same reads, not on cue.
 */
import cluster from 'node:cluster'
import fs from 'node:fs'
import { syncBuiltinESMExports } from 'node:module'
import { resolve } from 'node:path'

const target = process.env['ECLUSE_TEST_WORKER_CAUGHT_MID_WRITE']
if (target !== undefined && cluster.isWorker && process.env['ECLUSE_WORKER_SLOT'] === '1') {
  const open = fs.promises.open
  let opened = 0
  const caught = Number(process.env['ECLUSE_TEST_WORKER_CAUGHT_OPEN'] ?? 2)
  fs.promises.open = ((path: Parameters<typeof open>[0], ...rest: [flags?: string | number, mode?: fs.Mode]) => {
    if (typeof path === 'string' && resolve(path) === resolve(target) && ++opened === caught) return open(`${target}.mid-write`, ...rest)
    return open(path, ...rest)
  }) as typeof open
  // `import { open } from 'node:fs/promises'` (src/read-bounded-file.ts, src/config/watch.ts) sees the replacement too.
  syncBuiltinESMExports()
}
