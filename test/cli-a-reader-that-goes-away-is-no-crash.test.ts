/**
 * `ecluse keys init … | head -c 0`: the reader of stdout goes away before the command prints its
 * summary. The files are written all the same, the exit code is the command's, and there is no
 * stack trace (an unhandled EPIPE used to end the process with one, exit 1).
 */
import { spawn } from 'node:child_process'
import { readdir } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'

t.test('keys init with stdout closed before it prints: exit 0, no stack trace, both files written', async (t) => {
  const dir = join(t.testdir(), 'keys')
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'keys', 'init', '--out', dir], { stdio: ['ignore', 'pipe', 'pipe'] })
  // Closed at once: the command's first write to stdout meets a pipe with no reader.
  child.stdout.destroy()
  let stderr = ''
  child.stderr.setEncoding('utf8').on('data', (d: string) => {
    stderr += d
  })
  const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)))
  t.equal(code, 0, stderr)
  t.equal(stderr, '', 'no stack trace, nothing at all')
  t.same((await readdir(dir)).sort(), ['trusted-host.private.jwks.json', 'trusted-host.public.jwks.json'])
})

t.test('stdout that fails otherwise (a full disk): one line, exit 1, no stack trace', async (t) => {
  // Found by review: any other error of stdout was rethrown from its listener, an uncaught exception
  // with a stack trace. Linux's /dev/full fails every write with ENOSPC.
  const { openSync, closeSync } = await import('node:fs')
  const full = openSync('/dev/full', 'w')
  t.teardown(() => closeSync(full))
  for (const args of [['--help'], ['keys', 'init', '--out', join(t.testdir(), 'keys')]]) {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', ...args], { stdio: ['ignore', full, 'pipe'] })
    let stderr = ''
    child.stderr!.setEncoding('utf8').on('data', (d: string) => {
      stderr += d
    })
    const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)))
    t.equal(code, 1, `${args[0]}: exit 1, the output asked for was lost`)
    t.equal(stderr, 'ecluse: cannot write to standard output (ENOSPC)\n', `${args[0]}: said in one line, no stack trace`)
  }
})
