/**
 * Regression: `open --out FILE` interrupted by SIGINT (Ctrl-C) or SIGTERM mid-stream used to leave
 * its temporary file behind, holding the plaintext opened so far. An interrupted run is a failed
 * run: the temporary file is removed, FILE is neither created nor touched, and the process still
 * dies of the signal (so a shell or supervisor sees why it stopped).
 */
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { readdir, readFile, stat, writeFile } from 'node:fs/promises'
import { basename, join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { listDir, ROOT, runCli } from './helpers/cli.js'
import { writeKeyFiles } from './helpers/sealing.js'

const dir = t.testdir()
const keys = await writeKeyFiles(dir, 'th')
// 1 MiB in 64 KiB records: the first half of the sealed stream releases several records.
const BODY = randomBytes(1024 * 1024)
await writeFile(join(dir, 'scan.bin'), BODY)
const sealedFile = join(dir, 'scan.sealed')
const sealedRun = await runCli(['seal', '-k', keys.publicPath, '--context', 'documents', '--body', join(dir, 'scan.bin'), '-o', sealedFile])
if (sealedRun.code !== 0) throw new Error(sealedRun.stderr)
const sealed = await readFile(sealedFile)

/** The temporary files of one output (`FILE.<pid>.<random>.tmp`), or of all. */
async function tmpFiles(out?: string): Promise<string[]> {
  const prefix = out === undefined ? '' : `${basename(out)}.`
  return (await readdir(dir)).filter((f) => f.startsWith(prefix) && f.endsWith('.tmp'))
}

for (const signal of ['SIGINT', 'SIGTERM', 'SIGQUIT', 'SIGUSR2'] as const) {
  t.test(`${signal} during open --out: no temporary file, no output file, death by ${signal}`, async (t) => {
    const out = join(dir, `opened-${signal}.bin`)
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', 'src/cli.ts', 'open', '-k', keys.privatePath, '--context', 'documents', '--body', '--out', out],
      { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'] },
    )
    child.stdin.on('error', () => {})
    let stderr = ''
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d))
    const closed = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
      child.on('close', (code, sig) => resolve({ code, signal: sig })),
    )
    // Half the stream, and the input left open: the run is mid-way when the signal comes.
    child.stdin.write(sealed.subarray(0, sealed.length >> 1))

    // Wait (generously: the machine is shared) until opened plaintext is in the temporary file.
    let partial = 0
    for (let i = 0; i < 600 && partial === 0; i++) {
      await sleep(100)
      const [tmp] = await tmpFiles(out)
      if (tmp !== undefined) partial = (await stat(join(dir, tmp)).catch(() => ({ size: 0 }))).size
    }
    t.ok(partial > 0, `the temporary file holds ${partial} opened bytes before the signal`)

    child.kill(signal)
    const end = await closed
    t.equal(end.signal, signal, `the process died of ${signal}`)
    t.equal(end.code, null)
    t.same(await tmpFiles(), [], 'the temporary file was removed')
    t.notOk((await listDir(dir)).includes(`opened-${signal}.bin`), 'no output file')
    t.equal(stderr, '')
    child.stdin.destroy()
  })
}

t.test('an existing output file is left as it was by an interrupted run', async (t) => {
  const out = join(dir, 'existing.bin')
  await writeFile(out, 'previous\n')
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', 'src/cli.ts', 'open', '-k', keys.privatePath, '--context', 'documents', '--body', '--out', out],
    { cwd: ROOT, stdio: ['pipe', 'ignore', 'ignore'] },
  )
  child.stdin.on('error', () => {})
  const closed = new Promise<NodeJS.Signals | null>((resolve) => child.on('close', (_code, sig) => resolve(sig)))
  child.stdin.write(sealed.subarray(0, sealed.length >> 1))
  for (let i = 0; i < 600 && (await tmpFiles(out)).length === 0; i++) await sleep(100)
  child.kill('SIGTERM')
  t.equal(await closed, 'SIGTERM')
  t.equal(await readFile(out, 'utf8'), 'previous\n')
  t.same(await tmpFiles(), [])
  child.stdin.destroy()
})
