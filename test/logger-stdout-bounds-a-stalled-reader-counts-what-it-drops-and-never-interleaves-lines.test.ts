/**
 * The stdout log as a real process sees it. A reader that stops reading (a stalled log shipper on
 * the container's pipe) costs at most LOG_BUFFER_MAX_BYTES of buffered lines: the rest is dropped
 * and counted in `ecluse_log_lines_dropped_total`, and the process still exits on time. A reader
 * that keeps up gets every line, the last ones written at exit included. Processes that share the
 * pipe (a cluster's primary and workers) never cut into each other's lines.
 */
import { execFileSync, spawn } from 'node:child_process'
import { closeSync, constants, openSync, readSync, writeSync } from 'node:fs'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { LOG_BUFFER_MAX_BYTES } from '../src/observability/logger.js'
import { ROOT } from './helpers/cli.js'

const dir = t.testdir()
/** About 16 MiB of lines, twice the buffer: logged in one go, half of them cannot be held. */
const LINES = 16_384
const MESSAGE = 'x'.repeat(1000)

// Logs as many lines as it is told (argv[2]) at once, reports what it dropped (itself and through a registry), then exits
// the way a serving process does.
const script = join(dir, 'log-and-exit.ts')
await writeFile(
  script,
  `import { createLogger, droppedLogLines, exitAfterLog } from ${JSON.stringify(join(ROOT, 'src/observability/logger.ts'))}
import { GatewayMetrics } from ${JSON.stringify(join(ROOT, 'src/observability/metrics.ts'))}
const metrics = new GatewayMetrics({ routes: [], defaultMetrics: false })
const log = createLogger({ level: 'info' })
const lines = Number(process.argv[2])
for (let i = 0; i < lines; i++) log.info({ i }, ${JSON.stringify(MESSAGE)})
const scrape = await metrics.registry.metrics()
const counted = Number(/^ecluse_log_lines_dropped_total (\\d+)$/m.exec(scrape)?.[1])
process.stderr.write(JSON.stringify({ dropped: droppedLogLines(), counted }))
// Then exits at once, or after lingering for the given milliseconds.
setTimeout(() => exitAfterLog(0), Number(process.argv[3] ?? 0))
`,
)

function run(stdout: 'pipe' | number, lines: number, lingerMs = 0) {
  const child = spawn(process.execPath, ['--import', 'tsx', script, String(lines), String(lingerMs)], { cwd: ROOT, stdio: ['ignore', stdout, 'pipe'] })
  let stderr = ''
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d))
  const exit = new Promise<{ code: number | null; report: { dropped: number; counted: number } }>((resolve) =>
    child.on('close', (code) => resolve({ code, report: JSON.parse(stderr || '{}') as { dropped: number; counted: number } })),
  )
  return { child, exit }
}

/** The sizes of a line on the wire, measured by the first test. */
let lineBytes = { min: 0, max: 0 }

t.test('a reader that keeps up gets every line, the last ones written at exit', async (t) => {
  // About 2 MiB: within the buffer, all of it still buffered when the process asks to exit.
  const lines = 2048
  const { child, exit } = run('pipe', lines)
  let out = ''
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d))
  const { code, report } = await exit
  t.equal(code, 0)
  t.same(report, { dropped: 0, counted: 0 }, 'nothing dropped')
  const received = out.split('\n').filter((l) => l !== '')
  t.equal(received.length, lines, 'every line arrived')
  t.same(JSON.parse(received.at(-1)!).i, lines - 1, 'the last one too')
  const sizes = received.map((l) => Buffer.byteLength(l) + 1)
  // The stalled run's line numbers have up to one digit more.
  lineBytes = { min: Math.min(...sizes), max: Math.max(...sizes) + 1 }
})

t.test('a stalled reader: at most LOG_BUFFER_MAX_BYTES held, the rest dropped and counted, exit on time', async (t) => {
  const fifo = join(dir, 'stalled.fifo')
  execFileSync('mkfifo', [fifo])
  const reader = openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK)
  t.teardown(() => closeSync(reader))
  // Full before the process writes anything, and never read.
  const filler = openSync(fifo, constants.O_WRONLY | constants.O_NONBLOCK)
  try {
    for (;;) writeSync(filler, Buffer.alloc(65536))
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') throw err
  }
  closeSync(filler)
  // The process gets a blocking write end, as a container runtime's pipe is.
  const writer = openSync(fifo, constants.O_WRONLY)
  const { child, exit } = run(writer, LINES)
  closeSync(writer)
  t.teardown(() => {
    if (child.exitCode === null) child.kill('SIGKILL')
  })
  const timer = setTimeout(() => child.kill('SIGKILL'), 30_000)
  const { code, report } = await exit
  clearTimeout(timer)
  t.equal(code, 0, 'exited 0, not killed')
  t.ok(report.dropped > 0, `${report.dropped} lines dropped`)
  t.equal(report.counted, report.dropped, 'ecluse_log_lines_dropped_total counts them')
  const held = LINES - report.dropped
  t.ok(held * lineBytes.min <= LOG_BUFFER_MAX_BYTES, `${held} lines held, within ${LOG_BUFFER_MAX_BYTES} bytes`)
  t.ok(held * lineBytes.max > LOG_BUFFER_MAX_BYTES - lineBytes.max, 'and the buffer was full before any was dropped')
})

t.test('processes that share a pipe, as a cluster does, never interleave inside a line', async (t) => {
  const fifo = join(dir, 'shared.fifo')
  execFileSync('mkfifo', [fifo])
  const reader = openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK)
  t.teardown(() => closeSync(reader))
  const writer = openSync(fifo, constants.O_WRONLY)
  // About 1 MiB each, within the buffer: nothing dropped. Each lingers long enough for this reader
  // to take everything before it exits.
  const lines = 1024
  const runs = [run(writer, lines, 5000), run(writer, lines, 5000), run(writer, lines, 5000)]
  closeSync(writer)
  let out = ''
  const chunk = Buffer.alloc(1 << 16)
  // Read whatever is there, then pause: the pipe fills meanwhile, and the writers' next writes
  // find it full or partly full.
  for (;;) {
    let n: number
    try {
      n = readSync(reader, chunk)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') throw err
      await new Promise((r) => setTimeout(r, 2))
      continue
    }
    if (n === 0) break // every writer has exited
    out += chunk.subarray(0, n).toString('utf8')
  }
  for (const { exit } of runs) t.same(await exit, { code: 0, report: { dropped: 0, counted: 0 } })
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
