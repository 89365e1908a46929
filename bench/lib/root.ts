import { existsSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

/**
 * The repository root: the nearest directory above this module that holds `package.json`, so that
 * it is the same from the sources (bench/lib/) and from their build (.bench-build-…/bench/lib/).
 */
export const ROOT = findRoot(dirname(fileURLToPath(import.meta.url)))

function findRoot(from: string): string {
  for (let dir = from; ; dir = dirname(dir)) {
    if (existsSync(join(dir, 'package.json'))) return `${dir}/`
    if (dirname(dir) === dir) throw new Error(`no package.json above ${from}`)
  }
}
