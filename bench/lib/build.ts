/**
 * The bench's children run compiled JavaScript with plain `node`, as the image runs the gateway
 * (`npm run build`, then `node … bin/ecluse.js`). Run through tsx, every child would also carry
 * tsx's module loader (a thread with a V8 isolate of its own: ≈ 25 MiB more resident memory in
 * `concurrency`) and esbuild's transform of the code (a `__name` call in every named function), and
 * its figures would describe a way of running that no one deploys.
 *
 * The runner (under tsx) and the tests that start subjects (under tap's loader) still run their
 * TypeScript as it is; only what they spawn is built. It is emitted without a type check
 * (`--noCheck`: `npm test` checks types, and each file compiles on its own under `isolatedModules`),
 * so the build takes a few seconds and a type error elsewhere does not stop a measurement.
 */
import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { ROOT } from './root.js'

let built: string | undefined

/**
 * The directory of this process's build (made on first use, removed when the process exits): the
 * repository's `src` and `bench` compiled by `tsconfig.bench.json`, the same tree as the sources
 * with `.js` files. It lies inside the repository (git ignores it) so that the compiled files find
 * `node_modules` as the sources do, and one per process, so that concurrent runs and tests never
 * write each other's files.
 */
export function benchBuild(): string {
  if (built !== undefined) return built
  const dir = mkdtempSync(join(ROOT, '.bench-build-'))
  process.once('exit', () => rmSync(dir, { recursive: true, force: true }))
  const tsc = spawnSync(process.execPath, [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(ROOT, 'tsconfig.bench.json'), '--outDir', dir, '--noCheck'], {
    cwd: ROOT,
    encoding: 'utf8',
  })
  if (tsc.status !== 0) {
    rmSync(dir, { recursive: true, force: true })
    throw new Error(`compiling the bench's children failed (tsc exit ${tsc.status ?? tsc.signal}):\n${tsc.stdout}${tsc.stderr}`)
  }
  built = dir
  return dir
}

/** The compiled form of a source file of the repository (`bench/upstream.ts` → `<build>/bench/upstream.js`). */
export function compiled(file: string): string {
  if (!/\.ts$/.test(file)) throw new Error(`not a TypeScript source: ${file}`)
  return join(benchBuild(), file.replace(/\.ts$/, '.js'))
}
