/**
 * Regression: `ecluse keys init` (and `keys promote`/`retire`, `certs init`) killed by a signal in
 * the middle of writing a key file left its temporary file behind, holding private keys. Every
 * such write goes through `writeFileAtomic`; killed mid-write, the process removes the temporary
 * file, leaves the target untouched and still dies of the signal.
 *
 * To hold the write mid-way without racing it, the child runs with one libuv thread and queues a
 * long PBKDF2 right behind the open of the temporary file: the file exists, its contents wait.
 */
import { spawn } from 'node:child_process'
import { readdir, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { pathToFileURL } from 'node:url'
import t from 'tap'
import { ROOT } from './helpers/cli.js'

const dir = t.testdir()
const child = join(dir, 'write-held.mjs')
await writeFile(
  child,
  `import { pbkdf2 } from 'node:crypto'
const [module, target, iterations] = process.argv.slice(2)
const { writeFileAtomic } = await import(module)
const written = writeFileAtomic(target, '{"keys":["private"]}\\n', 0o600)
pbkdf2('p', 's', Number(iterations), 64, 'sha512', () => {})
await written
process.stdout.write('written\\n')
`,
)
const MODULE = pathToFileURL(join(ROOT, 'src/write-file-atomic.ts')).href

function start(target: string, iterations: number) {
  const p = spawn(process.execPath, ['--import', 'tsx', child, MODULE, target, String(iterations)], {
    cwd: ROOT,
    env: { ...process.env, UV_THREADPOOL_SIZE: '1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let output = ''
  p.stdout.setEncoding('utf8').on('data', (d: string) => (output += d))
  p.stderr.setEncoding('utf8').on('data', (d: string) => (output += d))
  const closed = new Promise<{ code: number | null; signal: NodeJS.Signals | null; output: string }>((resolve) =>
    p.on('close', (code, signal) => resolve({ code, signal, output })),
  )
  return { p, closed }
}

const temporaries = async () => (await readdir(dir)).filter((f) => f.endsWith('.tmp'))

/** Waits (generously: the machine is shared) until the temporary file exists; returns its mode. */
async function heldTemporary(): Promise<number> {
  for (let i = 0; i < 1200; i++) {
    const [tmp] = await temporaries()
    if (tmp !== undefined) return (await stat(join(dir, tmp))).mode & 0o777
    await sleep(25)
  }
  throw new Error('the temporary file never appeared')
}

for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT', 'SIGUSR2', 'SIGALRM'] as const) {
  t.test(`${signal} while a key file is written: no temporary file, no target, death by ${signal}`, async (t) => {
    const target = join(dir, `killed-${signal}.private.jwks.json`)
    const { p, closed } = start(target, 50_000_000)
    t.equal(await heldTemporary(), 0o600, 'the temporary file exists, mode 0600, when the signal comes')
    p.kill(signal)
    const end = await closed
    t.equal(end.signal, signal, `the process died of ${signal}`)
    t.equal(end.output, '', 'nothing was written to the target')
    t.same(await temporaries(), [], 'the temporary file was removed')
    t.rejects(stat(target), { code: 'ENOENT' }, 'no target file')
  })
}
