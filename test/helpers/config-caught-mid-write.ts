/**
 * Preloaded into a gateway process (`node --import`) by tests of a boot that reads its configuration
 * file while it is being written, never by the product: the first time the process (the primary,
 * with `--workers`) opens the file named by `ECLUSE_TEST_CAUGHT_MID_WRITE`, it reads
 * `<that file>.mid-write` instead, the first bytes the test wrote there; every later open reads the
 * whole file. A writer that is not atomic gives the same two reads, only not on cue.
 */
import cluster from 'node:cluster'
import fs from 'node:fs'
import { syncBuiltinESMExports } from 'node:module'
import { resolve } from 'node:path'

const target = process.env['ECLUSE_TEST_CAUGHT_MID_WRITE']
if (target !== undefined && cluster.isPrimary) {
  const open = fs.promises.open
  let caught = false
  fs.promises.open = ((path: Parameters<typeof open>[0], ...rest: [flags?: string | number, mode?: fs.Mode]) => {
    if (!caught && typeof path === 'string' && resolve(path) === resolve(target)) {
      caught = true
      return open(`${target}.mid-write`, ...rest)
    }
    return open(path, ...rest)
  }) as typeof open
  // `import { open } from 'node:fs/promises'` (src/read-bounded-file.ts) sees the replacement too.
  syncBuiltinESMExports()
}
