/**
 * `npm run bench`: every ready scenario on loopback, one table each, every figure next to its
 * baseline from the same run as a ratio, targets with PASS/FAIL; results as JSON. The runner only
 * orchestrates: the subjects, the upstream and the load each run in their own process.
 *
 *   npm run bench                                  quick mode, every ready scenario (a few minutes)
 *   npm run bench -- --scenario passthrough        one scenario (repeat or comma-separate for more)
 *   npm run bench -- --duration 10 --connections 64 --rounds 2 --warmup 2 --prime 5
 *   npm run bench -- --full                        30 s measurements, 3 rounds, the issue's body sizes
 *   npm run bench -- --list                        the scenario table, including planned ones
 *   npm run bench -- --docs                        publish: rewrite docs/benchmarks.md and .svg
 *   npm run bench -- --scenario concurrency --upload-mib 8
 *                                                  concurrency with 500 × 8 MiB uploads (64 full,
 *                                                  1 quick): --full's memory in a quarter of its time
 *   npm run bench -- --cpu-prof DIR                run the Écluse subjects under --cpu-prof, one
 *                                                  directory per subject (see bench/profile.ts)
 *   npm run bench -- --ecluse-node-arg=--max-semi-space-size=2
 *                                                  Écluse's processes run with this Node option
 *                                                  (repeatable; the baselines keep Node's defaults):
 *                                                  load-test with the flags you deploy with. They
 *                                                  come after the image's own (IMAGE_NODE_ARGS in
 *                                                  lib/subjects.ts), which Écluse always runs with
 *   npm run bench -- --ecluse-env GLIBC_TUNABLES=glibc.malloc.arena_max=2
 *                                                  Écluse's processes get this environment variable
 *                                                  (repeatable; the baselines keep the runner's)
 *
 * Results: a run with `--docs` is the published one, written to bench/results/ (committed with the
 * docs it produced); any other run goes to bench/results/scratch/, which git ignores.
 *
 * Each run generates a throw-away PKI and sealing key set in a private temporary directory, removed
 * when the run ends however it ends.
 */
import { spawnSync } from 'node:child_process'
import { rmSync } from 'node:fs'
import { mkdir, mkdtemp, writeFile } from 'node:fs/promises'
import { cpus, platform, release, tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { benchBuild } from './lib/build.js'
import { ROOT } from './lib/child.js'
import { createBenchKeys } from './lib/keys.js'
import { createBenchPki } from './lib/pki.js'
import { consoleTable, type RunResult, runHeader, type ScenarioResult, verdict } from './lib/results.js'
import { IMAGE_NODE_ARGS, startUpstream } from './lib/subjects.js'
import { updateDocs } from './report.js'
import { type BenchOptions, SCENARIOS } from './scenarios.js'

const USAGE =
  'Usage: npm run bench -- [--scenario NAME]... [--duration S] [--connections N] [--rounds N] [--warmup S] [--prime S] [--full] [--upload-mib N] [--ecluse-node-arg=OPT]... [--ecluse-env NAME=VALUE]... [--list] [--docs] [--cpu-prof DIR]\n'

function fail(message: string): never {
  process.stderr.write(`bench: ${message}\n${USAGE}`)
  process.exit(2)
}

let parsed: ReturnType<typeof parse>
function parse() {
  return parseArgs({
    options: {
      scenario: { type: 'string', multiple: true, short: 's' },
      duration: { type: 'string', short: 'd' },
      connections: { type: 'string', short: 'c' },
      rounds: { type: 'string' },
      warmup: { type: 'string' },
      prime: { type: 'string' },
      full: { type: 'boolean' },
      list: { type: 'boolean' },
      docs: { type: 'boolean' },
      'cpu-prof': { type: 'string' },
      'upload-mib': { type: 'string' },
      'ecluse-node-arg': { type: 'string', multiple: true },
      'ecluse-env': { type: 'string', multiple: true },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  }).values
}
try {
  parsed = parse()
} catch (err) {
  fail((err as Error).message)
}
const args = parsed

if (args.help === true) {
  process.stdout.write(USAGE)
  process.exit(0)
}
if (args.list === true) {
  const width = Math.max(...SCENARIOS.map((s) => s.name.length))
  for (const s of SCENARIOS) process.stdout.write(`${s.name.padEnd(width)}  ${s.status.padEnd(7)}  ${s.summary}\n`)
  process.exit(0)
}

function whole(name: string, value: string | undefined, fallback: number, min: number): number {
  if (value === undefined) return fallback
  const n = Number(value)
  if (!Number.isInteger(n) || n < min || n > 100_000) fail(`--${name} must be a ${min === 0 ? 'whole' : 'positive whole'} number`)
  return n
}

const positive = (name: string, value: string | undefined, fallback: number) => whole(name, value, fallback, 1)

/** concurrency's upload size; its route takes bodies up to 65 MiB (bench/lib/subjects.ts). */
/** `--ecluse-env NAME=VALUE`, repeatable. */
function environment(values: readonly string[] | undefined): Record<string, string> | undefined {
  if (values === undefined) return undefined
  const out: Record<string, string> = {}
  for (const value of values) {
    const at = value.indexOf('=')
    if (at <= 0) fail(`--ecluse-env wants NAME=VALUE, got '${value}'`)
    out[value.slice(0, at)] = value.slice(at + 1)
  }
  return out
}

function uploadMib(value: string): number {
  const n = positive('upload-mib', value, 1)
  if (n > 64) fail('--upload-mib must be at most 64')
  return n
}

const full = args.full === true
const options: BenchOptions = {
  full,
  durationSeconds: positive('duration', args.duration, full ? 30 : 5),
  warmupSeconds: whole('warmup', args.warmup, full ? 3 : 1, 0),
  // A fresh Node process needs seconds of load before its hot path is optimised (lib/measure.ts).
  primeSeconds: whole('prime', args.prime, full ? 5 : 3, 0),
  connections: positive('connections', args.connections, 32),
  rounds: positive('rounds', args.rounds, full ? 3 : 1),
  ...(args['cpu-prof'] === undefined ? {} : { cpuProfileDir: resolve(args['cpu-prof']) }),
  ...(args['upload-mib'] === undefined ? {} : { uploadMib: uploadMib(args['upload-mib']) }),
}

const ecluseEnv = environment(args['ecluse-env'])

const requested = (args.scenario ?? []).flatMap((s) => s.split(',')).filter((s) => s !== '')
for (const name of requested) if (!SCENARIOS.some((s) => s.name === name)) fail(`unknown scenario '${name}' (see --list)`)
const selected = requested.length === 0 ? SCENARIOS.filter((s) => s.status === 'ready') : SCENARIOS.filter((s) => requested.includes(s.name))

if (process.platform !== 'linux') {
  process.stderr.write('bench: CPU and memory figures come from /proc and need Linux\n')
  process.exit(1)
}

const dir = await mkdtemp(join(tmpdir(), 'ecluse-bench-'))
// The PKI's private keys live here: removed however the run ends.
process.once('exit', () => rmSync(dir, { recursive: true, force: true }))
// Signals end the process without its exit handlers unless turned into an exit (128 + the signal).
process.once('SIGINT', () => process.exit(130))
process.once('SIGTERM', () => process.exit(143))
process.once('SIGHUP', () => process.exit(129))
if (options.cpuProfileDir !== undefined) await mkdir(options.cpuProfileDir, { recursive: true })

const log = (msg: string) => process.stderr.write(`${msg}\n`)
const cpu = cpus()[0]?.model.trim() ?? 'unknown CPU'
const started = Date.now()
log(`écluse bench — ${full ? 'full' : 'quick'} mode, ${options.durationSeconds} s per measurement, ${options.connections} connections; Node ${process.version}, ${cpus().length} × ${cpu}`)
log('compiling the gateway, the baselines and the load generator (no child runs through tsx)…')
benchBuild()
log('generating a throw-away PKI and key set and starting the upstream…')
const pki = await createBenchPki(join(dir, 'pki'))
const keys = await createBenchKeys(join(dir, 'keys'))
// The sealed corpora the selected scenarios need, sealed once by the upstream before it listens.
const needs = selected.map((s) => s.upstream?.(options) ?? {})
const upstream = await startUpstream(pki, keys, {
  sealedRecords: Math.max(0, ...needs.map((n) => n.sealedRecords ?? 0)),
  blobBytes: Math.max(0, ...needs.map((n) => n.blobBytes ?? 0)),
})
const ecluseNodeArgs = args['ecluse-node-arg']
const env = {
  pki,
  keys,
  dir,
  upstreamPort: upstream.port,
  upstreamPid: upstream.pid,
  ...(ecluseNodeArgs === undefined ? {} : { ecluseNodeArgs }),
  ...(ecluseEnv === undefined ? {} : { ecluseEnv }),
}

const results: ScenarioResult[] = []
try {
  for (const scenario of selected) {
    if (scenario.run === undefined) {
      log(`\n${scenario.name}: planned, not written yet — ${scenario.summary}`)
      continue
    }
    log(`\n▶ ${scenario.name}`)
    const at = Date.now()
    const result = await scenario.run({ env, options, progress: (msg) => log(`  · ${msg}`) })
    results.push(result)
    process.stdout.write(`\n${consoleTable(result)}`)
    log(`  (${((Date.now() - at) / 1000).toFixed(0)} s)`)
  }
} finally {
  await upstream.stop()
}

// Which code the figures are of: a published run names its commit, and says if files differed.
const git = (...argv: string[]) => spawnSync('git', argv, { cwd: ROOT, encoding: 'utf8' })
const head = git('rev-parse', '--short', 'HEAD')
const status = git('status', '--porcelain', '--untracked-files=no')
const run: RunResult = {
  schema: 1,
  date: new Date(started).toISOString(),
  ...(head.status === 0 ? { commit: head.stdout.trim(), dirty: status.status === 0 && status.stdout.trim() !== '' } : {}),
  node: process.version,
  cpus: cpus().length,
  cpuModel: cpu,
  platform: `${platform()} ${release()}`,
  mode: full ? 'full' : 'quick',
  durationSeconds: options.durationSeconds,
  connections: options.connections,
  rounds: options.rounds,
  ecluseImageNodeArgs: IMAGE_NODE_ARGS,
  ...(ecluseNodeArgs === undefined ? {} : { ecluseNodeArgs }),
  ...(ecluseEnv === undefined ? {} : { ecluseEnv }),
  scenarios: results,
}
// Only a published run (--docs) lands where git tracks it; the rest are scratch (.gitignore).
const outDir = args.docs === true ? join(ROOT, 'bench', 'results') : join(ROOT, 'bench', 'results', 'scratch')
await mkdir(outDir, { recursive: true })
const outFile = join(outDir, `${run.mode}-${run.date.replace(/[:.]/g, '-')}.json`)
await writeFile(outFile, `${JSON.stringify(run, null, 2)}\n`)

const targets = results.flatMap((s) => s.targets)
process.stdout.write(`\n${runHeader(run)}\n`)
const count = (v: ReturnType<typeof verdict>) => targets.filter((t) => verdict(t) === v).length
process.stdout.write(
  `targets: ${count('PASS')} PASS, ${count('FAIL')} FAIL${count('SCALED') > 0 ? `, ${count('SCALED')} not judged at the scaled-down size of this run (--full judges them)` : ''}${count('LOAD-BOUND') > 0 ? `, ${count('LOAD-BOUND')} not judged: the load generator was the limit` : ''}\n`,
)
process.stdout.write(`results: ${outFile}\n`)
if (args.docs === true) {
  await updateDocs(run, outFile)
  process.stdout.write('updated docs/benchmarks.md and docs/benchmarks.svg\n')
}
log(`done in ${((Date.now() - started) / 1000).toFixed(0)} s`)
