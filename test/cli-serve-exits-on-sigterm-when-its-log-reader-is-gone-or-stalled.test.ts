/**
 * A gateway told to stop exits even when nobody takes its log lines: its stdout's reader has gone
 * (a log shipper that died: every write fails with EPIPE) or has stopped reading (a full pipe: every
 * write blocks). pino's own exit flush would retry or block forever in both cases; the gateway closes
 * its log first, with a deadline (`exitAfterLog`). Alone and with workers, which share stdout.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { closeSync } from 'node:fs'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { minimalServeConfig, ROOT } from './helpers/cli.js'
import { fillFifo, makeFifo, readFifo } from './helpers/fifo.js'
import { makeTestPki } from './helpers/pki.js'

const pki = await makeTestPki()
const dir = t.testdir()
const DRAIN_MS = 1000
/** Far above drain (1 s) and log close (1 s) deadlines: without the fix the process never exits. */
const EXIT_WITHIN_MS = 20_000

const configFile = join(dir, 'gateway.yaml')
await writeFile(configFile, minimalServeConfig(pki, { drainTimeoutMs: DRAIN_MS }))


/** `ecluse serve` with `stdout` as its fd 1; stderr collected; SIGKILLed in teardown if still up. */
function serve(t: { teardown(fn: () => unknown): void }, stdout: 'pipe' | number, workers: readonly string[]) {
  const env = { ...process.env }
  delete env['ECLUSE_DEBUG']
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'serve', '--config', configFile, ...workers], {
    cwd: ROOT,
    env,
    stdio: ['ignore', stdout, 'pipe'],
  })
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  })
  let stderr = ''
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d))
  const exit = new Promise<{ code: number | null; signal: string | null }>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })))
  return { child, exit, stderr: () => stderr }
}

/** The exit after SIGTERM, or `'still running'` after {@link EXIT_WITHIN_MS}. */
async function stop(child: ChildProcess, exit: Promise<{ code: number | null; signal: string | null }>) {
  child.kill('SIGTERM')
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<'still running'>((resolve) => (timer = setTimeout(() => resolve('still running'), EXIT_WITHIN_MS)))
  const outcome = await Promise.race([exit, late])
  clearTimeout(timer)
  return outcome
}

/** The start line: alone, the gateway listens; with workers, the primary logs it once every worker has booted. */
const startLine = (text: string) => text.split('\n').find((l) => l.includes('"admin":'))

/**
 * `ecluse serve` with a FIFO as its stdout (a container runtime's log pipe), read by this test
 * until the start line (test/helpers/fifo.ts).
 */
async function serveOnFifo(t: { teardown(fn: () => unknown): void }, name: string, workers: readonly string[]) {
  const fifo = makeFifo(dir, name)
  const gateway = serve(t, fifo.writer, workers)
  closeSync(fifo.writer)
  const deadline = Date.now() + 30_000
  await readFifo(
    fifo,
    (text) => startLine(text) !== undefined,
    () => {
      if (Date.now() > deadline || gateway.child.exitCode !== null) throw new Error(`no start line; stderr: ${gateway.stderr()}`)
    },
  )
  return { ...gateway, fifo }
}

for (const workers of [[], ['--workers', '2']] as const) {
  const mode = workers.length === 0 ? 'alone' : 'with 2 workers'

  t.test(`${mode}: stdout a socket whose reader has gone, SIGTERM still ends in exit 0`, async (t) => {
    const { child, exit, stderr } = serve(t, 'pipe', workers)
    let out = ''
    child.stdout!.setEncoding('utf8')
    await new Promise<void>((resolve, reject) => {
      child.stdout!.on('data', (d: string) => {
        out += d
        if (startLine(out) !== undefined) resolve()
      })
      child.once('exit', () => reject(new Error(`exited early; stderr: ${stderr()}`)))
    })
    // The read end closes: from now on every write to the gateway's stdout fails with EPIPE.
    child.stdout!.destroy()
    t.same(await stop(child, exit), { code: 0, signal: null }, 'drained and exited 0')
    t.equal(stderr(), '', 'no crash, no complaint')
  })

  t.test(`${mode}: stdout a pipe whose reader has gone, SIGTERM still ends in exit 0`, async (t) => {
    const { fifo, child, exit, stderr } = await serveOnFifo(t, `gone-${workers.length}.fifo`, workers)
    // The only reader closes: every write to the pipe now fails with EPIPE.
    closeSync(fifo.reader)
    t.same(await stop(child, exit), { code: 0, signal: null }, 'drained and exited 0')
    t.equal(stderr(), '', 'no crash, no complaint')
  })

  t.test(`${mode}: stdout's reader stalled on a full pipe, SIGTERM still ends in exit 0`, async (t) => {
    const { fifo, child, exit, stderr } = await serveOnFifo(t, `stalled-${workers.length}.fifo`, workers)
    t.teardown(() => closeSync(fifo.reader))
    // Fill the pipe and read no more: the gateway's writes find it full from now on.
    const filled = fillFifo(fifo)
    t.ok(filled >= 4096, `the pipe is full (${filled} bytes)`)
    t.same(await stop(child, exit), { code: 0, signal: null }, 'drained and exited 0')
    t.equal(stderr(), '', 'no crash, no complaint')
  })
}
