/**
 * `ecluse keys init … | head -c 0`: the reader of stdout goes away before the command prints its
 * summary. The files are written all the same, the exit code is the command's, and there is no
 * stack trace (an unhandled EPIPE used to end the process with one, exit 1). `seal` and `open`,
 * whose stdout is the data asked for, fail instead.
 */
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { readdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { runCli } from './helpers/cli.js'
import { writeKeyFiles } from './helpers/sealing.js'

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

t.test('seal and open to stdout: its failure fails the command, in one line, the reader going away included', async (t) => {
  // Found by review: a full stdout was said twice (the process's line and the command's), and the
  // README said a reader going away keeps the exit code, which is not so for the data these write.
  const { openSync, closeSync } = await import('node:fs')
  const dir = t.testdir()
  const keys = await writeKeyFiles(dir, 'th')
  await writeFile(join(dir, 'record.json'), '{"id":"A-1","name":"Ada Lovelace"}\n')
  await writeFile(join(dir, 'scan.bin'), randomBytes(4 * 1024 * 1024))
  const sealed = join(dir, 'scan.sealed')
  const r = await runCli(['seal', '-k', keys.publicPath, '--context', 'documents', '--body', join(dir, 'scan.bin'), '-o', sealed])
  t.equal(r.code, 0, r.stderr)

  const run = async (args: string[], stdout: 'pipe' | number, closeAtOnce: boolean) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', ...args], { stdio: ['ignore', stdout, 'pipe'] })
    if (closeAtOnce) child.stdout!.destroy()
    let stderr = ''
    child.stderr!.setEncoding('utf8').on('data', (d: string) => {
      stderr += d
    })
    const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)))
    return { code, stderr }
  }
  const full = openSync('/dev/full', 'w')
  t.teardown(() => closeSync(full))
  const onFull = await run(['seal', '-k', keys.publicPath, '--context', 'records', '--fields', '/name', join(dir, 'record.json')], full, false)
  t.equal(onFull.code, 1)
  t.equal(onFull.stderr, 'ecluse: output: write failed (ENOSPC)\n', 'a full stdout: one line, not two')

  const gone = await run(['open', '-k', keys.privatePath, '--context', 'documents', '--body', sealed], 'pipe', true)
  t.equal(gone.code, 1, 'the reader went away: 4 MiB were asked for, fewer were written')
  t.equal(gone.stderr, 'ecluse: output: write failed (EPIPE)\n')
})
