/**
 * The stdout log as a real process sees it. A reader that stops reading (a stalled log shipper on
 * the container's pipe) costs at most LOG_BUFFER_MAX_BYTES of buffered lines: the rest is dropped
 * and counted in `ecluse_log_lines_dropped_total`, and the process still exits on time. A reader
 * that keeps up gets every line, the last ones written at exit included. Processes that share the
 * pipe (a cluster's primary and workers) never cut into each other's lines. A reader that has gone
 * shows in the metric too.
 */
import { spawn, spawnSync } from 'node:child_process'
import { chmodSync, closeSync } from 'node:fs'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { LOG_BUFFER_MAX_BYTES } from '../src/observability/stdout-log.js'
import { ROOT } from './helpers/cli.js'
import { fillFifo, makeFifo, readFifo } from './helpers/fifo.js'

const dir = t.testdir()
/** About 16 MiB of lines, twice the buffer: logged in one go, half of them cannot be held. */
const LINES = 16_384
const MESSAGE = 'x'.repeat(1000)

// Logs as many lines as it is told (argv[2]) at once; reports on its last stderr line what it dropped
// (itself and through a registry) and, from a twin logger that only measures, how many bytes the
// lines it kept make and the size of the first line it dropped; then exits the way a serving
// process does, at once or after lingering argv[3] ms. Flags (argv[4]): 'go' waits, once its log
// is open, for a line on stdin before logging; 'again' logs as many lines again 500 ms later;
// 'return' closes the log and returns without exiting, as a serve whose boot failed does.
const script = join(dir, 'log-and-exit.ts')
await writeFile(
  script,
  `import { closeStdoutLog, createLogger, droppedLogLines, exitAfterLog } from ${JSON.stringify(join(ROOT, 'src/observability/logger.ts'))}
import { GatewayMetrics } from ${JSON.stringify(join(ROOT, 'src/observability/metrics.ts'))}
const metrics = new GatewayMetrics({ routes: [], defaultMetrics: false })
const log = createLogger({ level: 'info' })
const flags = (process.argv[4] ?? '').split(',')
if (flags.includes('go')) {
  process.stderr.write('opened\\n')
  await new Promise((resolve) => process.stdin.once('data', resolve))
}
const sizes = []
const twin = createLogger({ level: 'info', destination: { write: (line) => sizes.push(Buffer.byteLength(line)) } })
const lines = Number(process.argv[2])
for (let i = 0; i < lines; i++) {
  log.info({ i }, ${JSON.stringify(MESSAGE)})
  twin.info({ i }, ${JSON.stringify(MESSAGE)})
}
if (flags.includes('again')) {
  await new Promise((resolve) => setTimeout(resolve, 500))
  for (let i = 0; i < lines; i++) log.info({ i }, ${JSON.stringify(MESSAGE)})
}
const scrape = await metrics.registry.metrics()
const counted = Number(/^ecluse_log_lines_dropped_total (\\d+)$/m.exec(scrape)?.[1])
const dropped = droppedLogLines()
const kept = lines - dropped
const keptBytes = sizes.slice(0, kept).reduce((a, b) => a + b, 0)
process.stderr.write(JSON.stringify({ dropped, counted, keptBytes, nextBytes: sizes[kept] ?? 0 }))
if (flags.includes('return')) await closeStdoutLog()
else setTimeout(() => exitAfterLog(0), Number(process.argv[3]))
`,
)

interface Report {
  readonly dropped: number
  readonly counted: number
  readonly keptBytes: number
  readonly nextBytes: number
}

function run(stdout: 'pipe' | number, lines: number, opts: { lingerMs?: number; flags?: readonly string[] } = {}) {
  const argv = ['--import', 'tsx', script, String(lines), String(opts.lingerMs ?? 0), (opts.flags ?? []).join(',')]
  const child = spawn(process.execPath, argv, { cwd: ROOT, stdio: ['pipe', stdout, 'pipe'] })
  let stderr = ''
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d))
  const opened = new Promise<void>((resolve) => child.stderr!.on('data', () => stderr.includes('opened\n') && resolve()))
  const exit = new Promise<{ code: number | null; report: Report }>((resolve) =>
    child.on('close', (code) => resolve({ code, report: JSON.parse(stderr.trimEnd().split('\n').at(-1) || '{}') as Report })),
  )
  return { child, exit, opened }
}

t.test('a socket whose reader keeps up gets every line, the last ones written at exit', async (t) => {
  // About 280 KB, all of it still buffered when the process asks to exit.
  const lines = 256
  const { child, exit } = run('pipe', lines)
  let out = ''
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d))
  const { code, report } = await exit
  t.equal(code, 0)
  t.same({ dropped: report.dropped, counted: report.counted }, { dropped: 0, counted: 0 }, 'nothing dropped')
  const received = out.split('\n').filter((l) => l !== '')
  t.equal(received.length, lines, 'every line arrived')
  t.same(JSON.parse(received.at(-1)!).i, lines - 1, 'the last one too')
})

t.test('a socket whose reader stalled: a process that closes its log and returns (a failed boot) still ends', async (t) => {
  // Found by review: sonic-boom retried its write every 100 ms after the log was closed (EAGAIN on
  // the non-blocking socket), and its timer kept a failed `serve` alive until the reader read.
  const { child, exit } = run('pipe', 1024, { flags: ['return'] })
  // Never read: the socket fills, and the process's writes meet EAGAIN.
  t.teardown(() => {
    if (child.exitCode === null) child.kill('SIGKILL')
  })
  const started = performance.now()
  const timer = setTimeout(() => child.kill('SIGKILL'), 15_000)
  const { code } = await exit
  clearTimeout(timer)
  t.equal(code, 0, 'ended by itself, not killed')
  t.ok(performance.now() - started < 10_000, 'soon after the close deadline')
})

t.test('a stalled reader: at most LOG_BUFFER_MAX_BYTES held, the rest dropped and counted, exit on time', async (t) => {
  const fifo = makeFifo(dir, 'stalled.fifo')
  t.teardown(() => closeSync(fifo.reader))
  // Full before the process writes anything, and never read.
  fillFifo(fifo)
  const { child, exit } = run(fifo.writer, LINES)
  closeSync(fifo.writer)
  t.teardown(() => {
    if (child.exitCode === null) child.kill('SIGKILL')
  })
  const timer = setTimeout(() => child.kill('SIGKILL'), 30_000)
  const { code, report } = await exit
  clearTimeout(timer)
  t.equal(code, 0, 'exited 0, not killed')
  t.ok(report.dropped > 0, `${report.dropped} lines dropped`)
  t.equal(report.counted, report.dropped, 'ecluse_log_lines_dropped_total counts them')
  // Nothing left the full pipe: the lines kept are the first ones, every later one was dropped.
  t.ok(report.keptBytes <= LOG_BUFFER_MAX_BYTES, `${LINES - report.dropped} lines (${report.keptBytes} bytes) held, within ${LOG_BUFFER_MAX_BYTES}`)
  t.ok(report.keptBytes + report.nextBytes > LOG_BUFFER_MAX_BYTES, 'and the first one dropped did not fit')
})

t.test('processes that share a pipe, as a cluster does, never interleave inside a line', async (t) => {
  const fifo = makeFifo(dir, 'shared.fifo')
  t.teardown(() => closeSync(fifo.reader))
  // About 2 MiB each, within the buffer: nothing dropped. Each then lingers 3 s before it exits:
  // a writer that waited for room in the pipe on a timer (sonic-boom retries every 100 ms, about
  // 64 KiB per 100 ms once the pipe is full) would still hold lines then, and lose them at exit.
  const lines = 2048
  const runs = [1, 2, 3].map(() => run(fifo.writer, lines, { lingerMs: 3000 }))
  closeSync(fifo.writer)
  // Read whatever is there, then pause: the pipe fills meanwhile, and the writers' next writes
  // find it full or partly full. Until every writer has exited.
  const out = await readFifo(fifo)
  for (const { exit } of runs) {
    const { code, report } = await exit
    t.same({ code, dropped: report.dropped }, { code: 0, dropped: 0 })
  }
  const received = out.split('\n').filter((l) => l !== '')
  t.equal(received.length, 3 * lines, 'every line arrived')
  const broken = received.filter((l) => {
    try {
      JSON.parse(l)
      return false
    } catch {
      return true
    }
  })
  t.same(broken.length, 0, 'each is one whole JSON object')
})

t.test('a pipe whose reader goes once the log is open: every line from the first failed write on is counted', async (t) => {
  const fifo = makeFifo(dir, 'gone.fifo')
  const { child, exit, opened } = run(fifo.writer, 64, { flags: ['go', 'again'] })
  closeSync(fifo.writer)
  // The process has its own description of the pipe; then the only reader goes.
  await opened
  closeSync(fifo.reader)
  child.stdin!.end('go\n')
  const { code, report } = await exit
  t.equal(code, 0)
  t.equal(report.dropped, 128, 'both batches: the lines held when the first write failed, and those after')
  t.equal(report.counted, 128, 'in ecluse_log_lines_dropped_total')
})

t.test('a named pipe whose reader had gone before the process started: the lines after the first failed write are counted', async (t) => {
  const fifo = makeFifo(dir, 'gone-before.fifo')
  closeSync(fifo.reader)
  // No reader: the process cannot open the pipe again (ENXIO) and writes fd 1 as it is.
  const { exit } = run(fifo.writer, 64, { flags: ['again'] })
  closeSync(fifo.writer)
  const { code, report } = await exit
  t.equal(code, 0)
  t.equal(report.dropped, 64, 'the second 64 lines, logged after EPIPE, are counted (the first are lost uncounted)')
  t.equal(report.counted, 64, 'in ecluse_log_lines_dropped_total')
})

t.test('a pipe whose reader keeps up gets every line, the last ones written while the process exits', async (t) => {
  const fifo = makeFifo(dir, 'keeps-up.fifo')
  t.teardown(() => closeSync(fifo.reader))
  // Exits at once: most lines are still held when it asks to, and close() writes them out.
  const lines = 2048
  const { exit } = run(fifo.writer, lines)
  closeSync(fifo.writer)
  const out = await readFifo(fifo)
  const { code, report } = await exit
  t.equal(code, 0)
  t.equal(report.dropped, 0)
  const received = out.split('\n').filter((l) => l !== '')
  t.equal(received.length, lines, 'every line arrived')
  t.same(JSON.parse(received.at(-1)!).i, lines - 1, 'the last one too')
})

const asNobody = process.getuid?.() === 0 && spawnSync('setpriv', ['--version']).status === 0
t.test(
  'a pipe the process may not open again (owned by another user) is written as it is, the first line a warn that says why',
  { skip: asNobody ? false : 'needs root and setpriv (util-linux), to run the process as another user' },
  async (t) => {
    const fifo = makeFifo(dir, 'not-mine.fifo')
    t.teardown(() => closeSync(fifo.reader))
    chmodSync(fifo.path, 0o600)
    const code = "const { createLogger, exitAfterLog } = await import('./src/observability/logger.ts'); createLogger({ level: 'info' }).info('hello'); exitAfterLog(0)"
    const child = spawn('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, '--import', 'tsx', '-e', code], {
      cwd: ROOT,
      stdio: ['ignore', fifo.writer, 'inherit'],
    })
    // Listened for at once: the child may have exited by the time the pipe reads to its end.
    const exited = new Promise((resolve) => child.on('exit', resolve))
    closeSync(fifo.writer)
    const lines = (await readFifo(fifo)).trimEnd().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>)
    t.equal(await exited, 0)
    t.match(lines[0], { level: 'warn', error: 'EACCES', msg: /cannot write as a non-blocking stream of its own/ })
    t.match(lines[1], { level: 'info', msg: 'hello' }, 'and the log goes on')
  },
)
