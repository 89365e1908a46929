/**
 * The scenario table. A scenario starts its subjects (each in its own process), measures them with
 * a load generator in another process, and returns one table whose every figure sits next to its
 * ratio to the scenario's baseline, plus the issue's targets with PASS/FAIL.
 *
 * Adding a scenario: write its `run`, start subjects with the helpers of `lib/subjects.ts`
 * (`startEcluse({ configure })` adds routes, transforms and key sets to Écluse's config;
 * `startNaiveFieldProxy` is the jose baseline), say what the upstream must prepare (`upstream`),
 * measure with `compare()` and a `check` on every response, and list it in `SCENARIOS`.
 */
import { bulkBody } from './lib/bodies.js'
import { JsonChild } from './lib/child.js'
import { BLOB_CONTEXT, SEALED_RECORDS_CONTEXT } from './lib/keys.js'
import { compare, type Load, type MeasuredRow, type Sidecar } from './lib/measure.js'
import { BENCH_CLIENT_PRINCIPAL } from './lib/pki.js'
import { cpuSeconds, processTree } from './lib/proc.js'
import { type Column, formatNumber, type Row, type ScenarioResult, type Target } from './lib/results.js'
import {
  directSubject,
  findNginx,
  type ProxyTuning,
  type Subject,
  type SubjectEnv,
  startBareProxy,
  startEcluse,
  startNaiveFieldProxy,
  startNginx,
  type UpstreamNeeds,
} from './lib/subjects.js'
import { SENSITIVE_POINTERS } from './records.js'

/** How hard and how long: `npm run bench -- --duration 10 --connections 64 --full`. */
export interface BenchOptions {
  readonly full: boolean
  readonly durationSeconds: number
  readonly warmupSeconds: number
  /** Extra warm-up before a subject's first measurement (lib/measure.ts `Load`). */
  readonly primeSeconds: number
  readonly connections: number
  readonly rounds: number
  /** When set, Écluse runs with `--cpu-prof` and writes its profiles here. */
  readonly cpuProfileDir?: string
  /** concurrency: MiB per upload instead of the mode's size (64 full, 1 quick). */
  readonly uploadMib?: number
}

export interface ScenarioContext {
  readonly env: SubjectEnv
  readonly options: BenchOptions
  readonly progress: (msg: string) => void
}

export interface Scenario {
  readonly name: string
  readonly title: string
  /** `ready`: runs by default; `planned`: documented, not yet written (its owner adds `run`). */
  readonly status: 'ready' | 'planned'
  /** What it measures and against what, for `--list` and the docs. */
  readonly summary: string
  /** What the shared upstream must prepare at start-up (sealed corpora) when this scenario runs. */
  readonly upstream?: (options: BenchOptions) => UpstreamNeeds
  run?(ctx: ScenarioContext): Promise<ScenarioResult>
}

/** 16 different records, so responses are not one cached buffer (bench/upstream.ts). */
const RECORD_PATHS = Array.from({ length: 16 }, (_, i) => `/v1/records/${i * 61}`)

const MIB = 1024 * 1024

/** The columns of the request/response scenarios. */
export const NETWORK_COLUMNS: readonly Column[] = [
  { key: 'rps', title: 'req/s', digits: 0, ratio: 'higher' },
  // What the load generator received, response headers included (docs/benchmarks.md).
  { key: 'mbps', title: 'MB/s received', digits: 1, ratio: 'higher' },
  { key: 'p50', title: 'p50 ms', digits: 2, delta: true },
  { key: 'p99', title: 'p99 ms', digits: 2, delta: true },
  { key: 'cpuPercent', title: 'CPU %', digits: 0, ratio: 'lower' },
  { key: 'cpuUsPerRequest', title: 'CPU µs/req', digits: 0, ratio: 'lower' },
  { key: 'peakRssMiB', title: 'peak RSS MiB', digits: 0, ratio: 'lower' },
  { key: 'failed', title: 'failed', digits: 0 },
]

function withFailed(rows: readonly MeasuredRow[]): Row[] {
  return rows.map((r) => ({ ...r, failed: r.errors + r.non2xx + r.mismatches }))
}

function keepaliveLoad(ctx: ScenarioContext): Load {
  const o = ctx.options
  return {
    mode: 'keepalive',
    connections: o.connections,
    durationSeconds: o.durationSeconds,
    warmupSeconds: o.warmupSeconds,
    primeSeconds: o.primeSeconds,
    paths: RECORD_PATHS,
    check: { kind: 'record' },
  }
}

function describe(load: Load, what: string): string {
  return `${what}; ${load.connections} concurrent connections, ${load.warmupSeconds} s warm-up then ${load.durationSeconds} s measured; mTLS on both sides`
}

/** Above this share of its core, the load generator may be what limits a row, not the subject. */
const LOAD_SATURATED_PERCENT = 90

/**
 * A wall-clock target compares the subjects' rates; when the load generator saturated its core
 * against every row compared, both ran at its pace and the ratio says nothing of them.
 */
export function loadBound(rows: readonly MeasuredRow[], judgedBy: string): { loadBound?: string } {
  // Failed requests fail the target whatever the load: LOAD-BOUND must not hide that FAIL.
  if (!rows.every((r) => r.loadCpuPercent > LOAD_SATURATED_PERCENT) || rows.some((r) => failedOf(r) > 0)) return {}
  const used = rows.map((r) => `${r.loadCpuPercent.toFixed(0)} %`).join(' and ')
  return { loadBound: `the load generator used ${used} of a core: every row ran at its pace; ${judgedBy}` }
}

/** What judges the subjects when a wall-clock target cannot: the table's CPU per request. */
const CPU_JUDGES = 'compare the rows’ CPU per request in the table instead'

/** A wall-clock target over `rows`: LOAD-BOUND when the load generator set every row's pace. */
function wallClock(target: Target, rows: readonly MeasuredRow[], judgedBy = CPU_JUDGES): Target {
  return { ...target, ...loadBound(rows, judgedBy) }
}

/** Notes every network scenario carries. */
function commonNotes(rows: readonly MeasuredRow[]): string[] {
  const notes: string[] = []
  for (const r of rows) {
    if (r.loadCpuPercent > LOAD_SATURATED_PERCENT) {
      notes.push(`the load generator used ${r.loadCpuPercent.toFixed(0)} % of a core against ${r.label}: that row may be limited by the load, not the subject`)
    }
    const failed = failedOf(r)
    if (failed > 0) {
      const kinds = r.errorKinds === undefined ? '' : `: ${r.errorKinds}`
      notes.push(`${r.label}: ${failed} failed requests (${r.errors} errors${kinds}; ${r.non2xx} non-2xx, ${r.mismatches} checksum mismatches)`)
    }
  }
  return notes
}

function row(rows: readonly MeasuredRow[], key: string): MeasuredRow {
  const found = rows.find((r) => r.key === key)
  if (found === undefined) throw new Error(`no row ${key}`)
  return found
}

/** Requests of a row that failed: transport errors, non-2xx answers, failed checks. */
function failedOf(r: MeasuredRow): number {
  return r.errors + r.non2xx + r.mismatches
}

/**
 * A ratio target. The ratio is shown truncated, never rounded up, so that the figure beside a FAIL
 * is below its bound (0.7996 reads 0.799, not 0.800). A ratio of rows that failed requests cannot
 * pass: a subject answering fast with errors, or a baseline slowed by them, says nothing.
 */
function ratioTarget(name: string, value: number, min: number, rows: readonly MeasuredRow[] = []): Target {
  const { failed, value: shown } = withFailures((Math.floor(value * 1000) / 1000).toFixed(3), rows)
  return { name, value: shown, limit: `≥ ${min.toFixed(2)}`, pass: value >= min && failed === 0 }
}

/** The failed requests of `rows`, and `shown` with their count when there are any. */
function withFailures(shown: string, rows: readonly MeasuredRow[]): { failed: number; value: string } {
  const failed = rows.reduce((n, r) => n + failedOf(r), 0)
  return { failed, value: failed === 0 ? shown : `${shown} (${failed} failed requests)` }
}

/** Starts the subjects (one that resolves `null` is skipped: an optional baseline that could not start), runs `body`, stops them. */
export async function withSubjects<T>(start: Array<() => Promise<Subject | null>>, body: (subjects: Subject[]) => Promise<T>): Promise<T> {
  const subjects: Subject[] = []
  try {
    for (const s of start) {
      const subject = await s()
      if (subject !== null) subjects.push(subject)
    }
    return await body(subjects)
  } finally {
    await Promise.allSettled(subjects.map((s) => s.stop()))
  }
}

/**
 * One `GET /metrics`, which must be a 200 holding the gateway's exposition: a fast 404 or 500 would
 * otherwise measure as a free scrape. Returns the body's length; throws on anything else.
 */
async function scrapeMetrics(adminPort: number | undefined): Promise<number> {
  if (adminPort === undefined) throw new Error('this subject has no admin listener to scrape')
  const res = await fetch(`http://127.0.0.1:${adminPort}/metrics`)
  const text = await res.text()
  if (res.status !== 200 || !text.includes('# TYPE ecluse_requests_total counter')) {
    throw new Error(`GET /metrics answered ${res.status}, ${text.length} bytes, without the gateway's series`)
  }
  return text.length
}

/** A Prometheus scraper beside the load: GET /metrics every `intervalMs`, from the runner process. */
function scraper(intervalMs: number, stats: { scrapes: number; failed: number; totalMs: number; bytes: number }): Sidecar {
  return (subject) => {
    let stopped = false
    let inFlight: Promise<void> = Promise.resolve()
    const scrape = async () => {
      const started = performance.now()
      stats.bytes += await scrapeMetrics(subject.adminPort)
      stats.scrapes++
      stats.totalMs += performance.now() - started
    }
    const timer = setInterval(() => {
      if (!stopped) {
        inFlight = scrape().catch(() => {
          stats.failed++
        })
      }
    }, intervalMs)
    return async () => {
      stopped = true
      clearInterval(timer)
      await inFlight
    }
  }
}

// ---------------------------------------------------------------------------------------------

const passthrough: Scenario = {
  name: 'passthrough',
  title: 'Pass-through: GET of a ~1 KiB record over keep-alive connections',
  status: 'ready',
  summary: 'Écluse vs the bare proxy (baseline), nginx (when installed) and the upstream called directly; requests/s, MB/s, p50/p99, CPU and peak RSS.',
  async run(ctx) {
    const nginx = findNginx()
    const notes: string[] = []
    const starts: Array<() => Promise<Subject | null>> = [() => startBareProxy(ctx.env), () => startEcluse(ctx.env, { cpuProfileDir: ctx.options.cpuProfileDir })]
    if (nginx === undefined) notes.push('nginx is not installed: its row is skipped (`apt-get install nginx` to include it)')
    else
      starts.push(async () => {
        // An optional reference: one that does not start (a port, a module Debian's build lacks)
        // costs its row, not the run.
        const s = await startNginx(ctx.env, nginx).catch((err: unknown) => {
          notes.push(`nginx did not start (${err instanceof Error ? err.message.split('\n')[0] : String(err)}): its row is skipped`)
          return null
        })
        if (s !== null) notes.push(`nginx row: ${s.version}, one worker process, upstream keep-alive, no buffering, no access log`)
        return s
      })
    starts.push(async () => directSubject(ctx.env))
    const load = keepaliveLoad(ctx)
    const rows = await withSubjects(starts, (subjects) => compare(ctx.env.pki, subjects, load, ctx.options.rounds, {}, ctx.progress))
    const bare = row(rows, 'bare')
    const ecluse = row(rows, 'ecluse')
    const dp99 = ecluse.p99 - bare.p99
    return {
      name: 'passthrough',
      title: passthrough.title,
      load: describe(load, 'GET /v1/records/:n (≈1 KiB JSON) through each subject'),
      baseline: 'bare',
      columns: NETWORK_COLUMNS,
      rows: withFailed(rows),
      targets: [
        wallClock(ratioTarget('écluse requests/s ÷ bare proxy', ecluse.rps / bare.rps, 0.9, [ecluse, bare]), [ecluse, bare]),
        wallClock(maxTarget('écluse p99 − bare proxy p99', dp99, 1, ' ms', [ecluse, bare], { digits: 2, inclusive: true, signed: true }), [ecluse, bare]),
      ],
      notes: [...notes, 'upstream direct: the load presents the gateway’s client certificate to the upstream itself (no proxy, so no proxy CPU or memory)', ...commonNotes(rows)],
    }
  },
}

const handshakes: Scenario = {
  name: 'handshakes',
  title: 'Handshakes: a new mTLS connection for every request',
  status: 'ready',
  summary: 'Full TLS handshakes with client certificates (no resumption), one request each: Écluse vs the bare proxy; new connections/s.',
  async run(ctx) {
    const o = ctx.options
    // Each loop is CPU-bound on RSA signatures at both ends; more loops than this only queue.
    const connections = Math.max(4, Math.round(o.connections / 4))
    const load: Load = {
      mode: 'handshakes',
      connections,
      durationSeconds: o.durationSeconds,
      warmupSeconds: o.warmupSeconds,
      primeSeconds: o.primeSeconds,
      paths: RECORD_PATHS,
      check: { kind: 'record' },
    }
    const rows = await withSubjects([() => startBareProxy(ctx.env), () => startEcluse(ctx.env, { cpuProfileDir: o.cpuProfileDir })], (subjects) =>
      compare(ctx.env.pki, subjects, load, o.rounds, {}, ctx.progress),
    )
    const ecluse = row(rows, 'ecluse')
    const bare = row(rows, 'bare')
    return {
      name: 'handshakes',
      title: handshakes.title,
      load: describe(load, 'TLS 1.3 handshake (RSA-2048 certificates on both ends, client verified against the sponsor CA) + GET + close'),
      baseline: 'bare',
      columns: [{ ...NETWORK_COLUMNS[0]!, title: 'new conn/s' }, ...NETWORK_COLUMNS.slice(2)],
      rows: withFailed(rows),
      targets: [
        wallClock(ratioTarget('écluse new connections/s ÷ bare proxy', ecluse.rps / bare.rps, 0.8, [ecluse, bare]), [ecluse, bare], 'the per-CPU-second target below judges the proxies'),
        // The load generator signs and verifies too, and often saturates its core first: then both
        // rows run at its pace and the ratio above is near 1 whatever the proxies cost. What a proxy
        // could sustain is the inverse of its CPU per handshake.
        ratioTarget('écluse new connections per CPU-second ÷ bare proxy (its CPU per handshake ÷ écluse’s)', (bare.cpuUsPerRequest ?? Number.NaN) / (ecluse.cpuUsPerRequest ?? Number.NaN), 0.8, [ecluse, bare]),
      ],
      notes: ['latency includes the TCP connect and the full handshake; the client also verifies the server and signs its CertificateVerify, on the same 2 cores', ...commonNotes(rows)],
    }
  },
}

/**
 * Both proxies get 512 upstream connections so that 500 uploads really are in flight at once (with
 * the default 64, the pool would queue them and the test would measure the queue), and timeouts
 * that 64 MiB uploads into a busy upstream cannot reach.
 */
export const CONCURRENCY_TUNING: ProxyTuning = { upstreamConnections: 512, upstreamTimeoutMs: 600_000, requestTimeoutMs: 3_600_000 }

const concurrency: Scenario = {
  name: 'concurrency',
  title: 'Concurrency: 500 concurrent streamed uploads with checksums',
  status: 'ready',
  summary: '500 concurrent PUT uploads (64 MiB each with --full; 1 MiB in the quick mode), SHA-256 checked end to end; gateway peak RSS must stay under 300 MiB.',
  async run(ctx) {
    const o = ctx.options
    const count = 500
    const bytes = (o.uploadMib ?? (o.full ? 64 : 1)) * MIB
    const tuning = CONCURRENCY_TUNING
    const load: Load = { mode: 'uploads', connections: count, count, bytes, durationSeconds: 0, warmupSeconds: 0 }
    const rows = await withSubjects([() => startBareProxy(ctx.env, tuning), () => startEcluse(ctx.env, { tuning })], (subjects) =>
      compare(ctx.env.pki, subjects, load, 1, {}, ctx.progress),
    )
    const ecluse = row(rows, 'ecluse')
    const correct = ecluse.requests - ecluse.non2xx - ecluse.mismatches
    const notes =
      bytes === 64 * MIB
        ? []
        : [`${o.uploadMib === undefined ? 'quick mode' : '--upload-mib'}: 500 × ${bytes / MIB} MiB instead of 500 × 64 MiB (${(500 * 64) / 1024} GiB through each proxy takes minutes here); \`--full\` runs the real size`]
    // Only the issue's 64 MiB uploads judge the memory target. Below 8 MiB they end before the
    // gateway's buffers have filled; at 8 MiB the peak comes close, but the compiled gateway stays
    // 16–32 MiB under its 64 MiB peak (docs/benchmarks.md), enough to print a PASS the full size fails.
    const rssScaled =
      bytes < 64 * MIB
        ? `${bytes / MIB} MiB uploads instead of 64 MiB: ${bytes < 8 * MIB ? 'they end before the buffers fill' : 'the peak comes close to the 64 MiB one, 16–32 MiB under it'}; --full judges it`
        : undefined
    return {
      name: 'concurrency',
      title: concurrency.title,
      load: `${count} uploads of ${bytes / MIB} MiB, all ${count} in flight at once, each on its own mTLS connection, generated and hashed on the fly; upstream pools of 512 connections`,
      baseline: 'bare',
      columns: [
        { key: 'requests', title: 'uploads', digits: 0 },
        { key: 'mbps', title: 'MB/s', digits: 1, ratio: 'higher' },
        { key: 'p50', title: 'p50 ms', digits: 0, ratio: 'lower' },
        { key: 'p99', title: 'p99 ms', digits: 0, ratio: 'lower' },
        { key: 'cpuPercent', title: 'CPU %', digits: 0, ratio: 'lower' },
        { key: 'peakRssMiB', title: 'peak RSS MiB', digits: 0, ratio: 'lower' },
        { key: 'mismatches', title: 'bad checksums', digits: 0 },
        { key: 'failed', title: 'failed', digits: 0 },
      ],
      rows: withFailed(rows),
      targets: [
        { ...maxTarget('écluse peak RSS', ecluse.peakRssMiB ?? Number.POSITIVE_INFINITY, 300, ' MiB', [ecluse]), ...(rssScaled === undefined ? {} : { scaled: rssScaled }) },
        { name: 'uploads through écluse with a correct checksum', value: `${correct}/${count}`, limit: `${count}/${count}`, pass: correct === count && ecluse.errors === 0 },
      ],
      notes: [...notes, ...commonNotes(rows)],
    }
  },
}

const metrics: Scenario = {
  name: 'metrics',
  title: 'Metrics: the cost of a Prometheus scrape every second',
  status: 'ready',
  summary: 'The passthrough load on one Écluse process, without and with GET /metrics every second; the scrape must cost under 3 % of requests/s.',
  async run(ctx) {
    const o = ctx.options
    const load = keepaliveLoad(ctx)
    const stats = { scrapes: 0, failed: 0, totalMs: 0, bytes: 0 }
    // Noise on a shared machine is of the order of the effect: at least two rounds, ABBA order.
    const rounds = Math.max(2, o.rounds)
    const { rows, direct } = await withSubjects([() => startEcluse(ctx.env)], async ([ecluse]) => {
      const plain: Subject = { ...ecluse!, key: 'ecluse', label: 'écluse, not scraped' }
      const scraped: Subject = { ...ecluse!, key: 'ecluse-scraped', label: 'écluse, /metrics every 1 s' }
      const measured = await compare(ctx.env.pki, [plain, scraped], load, rounds, { 'ecluse-scraped': scraper(1_000, stats) }, ctx.progress)
      return { rows: measured, direct: await scrapeCpuCost(ecluse!, 50) }
    })
    const abCost = 1 - row(rows, 'ecluse-scraped').rps / row(rows, 'ecluse').rps
    // A scrape that failed (or none at all) measures nothing: the measured cost cannot pass then.
    const scrapesFailed = stats.failed > 0 || stats.scrapes === 0
    const compared = [row(rows, 'ecluse'), row(rows, 'ecluse-scraped')]
    // One scrape per second takes `direct.cpuMs` of the gateway's single core out of every 1000 ms:
    // while the gateway is CPU-bound that is the share of requests/s it loses.
    const cost = direct.cpuMs / 1000
    return {
      name: 'metrics',
      title: metrics.title,
      load: describe(load, 'the passthrough load on one Écluse process'),
      baseline: 'ecluse',
      columns: NETWORK_COLUMNS,
      rows: withFailed(rows),
      targets: [
        maxTarget('requests/s lost to a scrape every second (gateway CPU per scrape ÷ one core-second)', cost * 100, 3, ' %', [], {
          digits: 2,
          detail: `${direct.cpuMs.toFixed(2)} ms per scrape`,
        }),
        // The issue's own measure; on this shared machine its noise is of the order of the bound.
        withScrapes(
          wallClock(
            maxTarget(
              `requests/s lost to a scrape every second, measured (1 − scraped ÷ not scraped, ${rounds} rounds in alternating order)`,
              abCost * 100,
              3,
              ' %',
              compared,
              { digits: 2 },
            ),
            compared,
            'the target above judges the scrape by the gateway’s CPU',
          ),
          scrapesFailed ? `${stats.failed} of ${stats.scrapes + stats.failed} scrapes failed` : undefined,
        ),
      ],
      notes: [
        `${stats.scrapes} scrapes under load, ${stats.scrapes === 0 ? 0 : (stats.totalMs / stats.scrapes).toFixed(1)} ms and ${stats.scrapes === 0 ? 0 : Math.round(stats.bytes / stats.scrapes / 1024)} KiB each on average (wall clock, from the runner process)`,
        `two measures of one cost: the gateway's own CPU time per scrape (${direct.scrapes} scrapes after the load, /proc/<pid>/stat before and after) as a share of its core, and the requests/s difference of the rows; the load generator, the upstream and the gateway share 2 cores here, and that difference has swung by ±20 % between identical runs, far more than the bound, so the first is the steadier`,
        ...commonNotes(rows),
      ],
    }
  },
}

/** A target whose scrapes failed: shown with why, and failed (not LOAD-BOUND either: it measured nothing). */
function withScrapes(target: Target, failure: string | undefined): Target {
  if (failure === undefined) return target
  const { loadBound: _notJudged, ...judged } = target
  return { ...judged, value: `${target.value} (${failure})`, pass: false }
}

/**
 * The gateway's CPU time per `GET /metrics`, measured on its own process tree (`/proc`) over `n`
 * scrapes in a row, after the load has filled its histograms; the scrape is the only work it does.
 */
async function scrapeCpuCost(subject: Subject, n: number): Promise<{ cpuMs: number; scrapes: number }> {
  const pids = processTree(subject.pid!)
  const get = () => scrapeMetrics(subject.adminPort)
  for (let i = 0; i < 5; i++) await get()
  const before = cpuSeconds(pids)
  for (let i = 0; i < n; i++) await get()
  return { cpuMs: ((cpuSeconds(pids) - before) * 1000) / n, scrapes: n }
}

const workers: Scenario = {
  name: 'workers',
  title: 'Workers: requests/s from one process to `--workers 2`',
  status: 'ready',
  summary: 'The passthrough load on Écluse in one process (baseline) and with `serve --workers 2` (cluster mode, admin in the primary).',
  async run(ctx) {
    const o = ctx.options
    const load = keepaliveLoad(ctx)
    const rows = await withSubjects([() => startEcluse(ctx.env), () => startEcluse(ctx.env, { workers: 2 })], (subjects) =>
      compare(ctx.env.pki, subjects, load, o.rounds, {}, ctx.progress),
    )
    return {
      name: 'workers',
      title: workers.title,
      load: describe(load, 'the passthrough load'),
      baseline: 'ecluse',
      columns: NETWORK_COLUMNS,
      rows: withFailed(rows),
      targets: [],
      notes: [
        'the load generator and the upstream share the same cores: on a 2-core machine a second worker competes with them, so this shows the overhead and the headroom, not linear scaling',
        'CPU and peak RSS of `--workers 2` are summed over the primary and both workers',
        ...commonNotes(rows),
      ],
    }
  },
}

const cryptoMicro: Scenario = {
  name: 'crypto-micro',
  title: 'Crypto micro-benchmarks on one core',
  status: 'ready',
  summary: 'Raw AES-256-GCM on field-sized and 64 KiB messages (the physical limit), jose CompactEncrypt/compactDecrypt per field, and Écluse’s FieldSealer/FieldOpener (src/crypto/field.ts).',
  async run(ctx) {
    const seconds = ctx.options.full ? 3 : 1
    ctx.progress('one process, one core')
    const child = JsonChild.node('crypto-micro', 'bench/crypto-micro.ts', [JSON.stringify({ seconds })], { keep: true })
    const line = await child.waitFor((l) => l['event'] === 'result', 120_000)
    const micro = line['rows'] as Array<{ key: string; label: string; valuesPerSecond: number; mbps: number; bytes: number }>
    const ratios = line['ratios'] as Record<'seal' | 'open' | 'openLive', number>
    const counted = line['agreements'] as Record<'seal' | 'open' | 'openLive', { values: number; agreements: number; distinctEpks?: number }>
    const raw = line['raw'] as Record<'seal' | 'open' | 'openLive', number>
    const rawAlone = (line['rawAlone'] as { seal: number }).seal
    const drift = Math.abs(rawAlone / raw.seal - 1)
    const by = (key: string) => micro.find((r) => r.key === key)!
    // Each écluse row against the raw AES-GCM slices it alternated with (same direction, same time).
    const ofRaw: Record<string, number> = { 'ecluse-seal': ratios.seal, 'ecluse-open': ratios.open, 'ecluse-open-live': ratios.openLive }
    const rows: Row[] = micro.map((r) => {
      const jose = r.key.startsWith('ecluse-open') || r.key === 'jose-open' ? by('jose-open') : r.key.endsWith('-seal') ? by('jose-seal') : undefined
      const limit = ofRaw[r.key] ?? (r.key === 'aes-64k' ? 1 : r.valuesPerSecond / by('aes-field').valuesPerSecond)
      return {
        key: r.key,
        label: r.label,
        valuesPerSecond: r.valuesPerSecond,
        mbps: r.mbps,
        bytes: r.bytes,
        vsJose: jose === undefined ? null : r.valuesPerSecond / jose.valuesPerSecond,
        ofLimit: limit,
      }
    })
    const perMessage = (c: { values: number; agreements: number }) => (c.agreements * FIELDS) / c.values
    const agreementTarget = (name: string, c: { values: number; agreements: number }): Target => ({
      name,
      value: `${formatNumber(c.agreements, 0)} for ${formatNumber(c.values, 0)} values (${perMessage(c).toFixed(3)} per message of ${FIELDS})`,
      limit: '≤ 1 per message, never per field',
      pass: c.values > 0 && c.agreements * FIELDS <= c.values,
    })
    return {
      name: 'crypto-micro',
      title: cryptoMicro.title,
      load: `${seconds} s per row in one process; field rows use the six sensitive values of the bench records (${(line['meanFieldBytes'] as number).toFixed(1)} B of JSON on average); ECDH-ES+A256KW on X25519 with A256GCM`,
      baseline: 'jose-seal',
      columns: [
        { key: 'valuesPerSecond', title: 'values/s', digits: 0 },
        { key: 'mbps', title: 'MB/s', digits: 1 },
        { key: 'vsJose', title: '×jose (same direction)', digits: 1 },
        { key: 'ofLimit', title: '×AES-GCM limit', digits: 3 },
      ],
      rows,
      targets: [
        agreementTarget('écluse sealer: asymmetric operations', counted.seal),
        agreementTarget('écluse opener, stored records: asymmetric operations', counted.open),
        ratioTarget('écluse FieldSealer ÷ raw AES-256-GCM seal, the same field sizes', ratios.seal, 0.6),
        ratioTarget('écluse FieldOpener (stored records) ÷ raw AES-256-GCM open, the same field sizes', ratios.open, 0.6),
        ratioTarget('écluse FieldOpener (live traffic) ÷ raw AES-256-GCM open, the same field sizes', ratios.openLive, 0.6),
      ],
      notes: [
        'jose performs one ECDH agreement per value (each field is its own JWE); Écluse’s sealer performs one per sealing window (1 s, 65,536 values) and wraps the CEKs of a window in batches',
        `stored records: ${counted.open.distinctEpks ?? '?'} distinct agreements in the 2,048 messages the opener cycles through (each sealed in its own window), with a KEK cache of half as many, so every message pays its agreement; live traffic: ${counted.openLive.distinctEpks ?? '?'} distinct agreement(s), the messages of a sealing window as a gateway sends them`,
        'each écluse row is timed in alternating slices with raw AES-256-GCM on messages of the same sizes as the field values (in turn) in its own direction (seal: createCipheriv, update, final, getAuthTag; open: createDecipheriv, setAuthTag, update, final); ×AES-GCM limit is against those slices',
        `the denominators, raw AES-256-GCM in the slices beside each écluse row: seal ${formatNumber(raw.seal, 0)}/s, open ${formatNumber(raw.open, 0)}/s (beside stored records), ${formatNumber(raw.openLive, 0)}/s (beside live traffic); the raw AES-256-GCM field row pools the seal slices with the same seal timed alone (${formatNumber(rawAlone, 0)}/s)`,
        ...(drift > 0.1
          ? [`raw seal alone and in slices differ by ${(drift * 100).toFixed(0)} %: the machine's load moved during the run, so the ×AES-GCM ratios are less certain than their digits`]
          : []),
      ],
    }
  },
}

// ---------------------------------------------------------------------------------------------
// The sealing scenarios. Every subject sees the same requests; the Écluse subjects run the real
// transform steps with the run's keys (bench/lib/keys.ts, generated per run); the naive jose proxy
// seals to and opens with the same key; every response is checked (lib/bodies.ts, load-generator.ts
// `Check`), so a transform that did not run fails instead of looking fast.

/** The route family of the sealing scenarios, as a sponsor would configure it. */
const ALLOW = [BENCH_CLIENT_PRINCIPAL]
/** Key set names in Écluse's config: the public set seals, the private set opens. */
const PUBLIC_SET = 'bench'
const PRIVATE_SET = 'bench-private'
/** Distinct sealed records of `open-fields`: twice the opener's default KEK cache (1024 entries). */
const SEALED_CORPUS = 2048
const RECORD_CORPUS = 1024
const FIELDS = SENSITIVE_POINTERS.length
const STREAM_CONNECTIONS = 2
const BULK_CONNECTIONS = 2

type Config = Record<string, unknown>

function routes(config: Config): Array<Record<string, unknown>> {
  return config['routes'] as Array<Record<string, unknown>>
}

function route(config: Config, name: string): Record<string, unknown> {
  const found = routes(config).find((r) => r['name'] === name)
  if (found === undefined) throw new Error(`no route ${name} in the bench config`)
  return found
}

function publicKeys(env: SubjectEnv): Config {
  return { [PUBLIC_SET]: { file: env.keys.publicFile, private: false } }
}

function privateKeys(env: SubjectEnv): Config {
  return { [PRIVATE_SET]: { file: env.keys.privateFile, private: true } }
}

/** The fields of a record at `prefix` (`''` for a record body, `/records/*` in a bulk body). */
function fields(prefix = ''): string[] {
  return SENSITIVE_POINTERS.map((p) => `${prefix}${p}`)
}

/** A request/response load of the sealing scenarios: the scenario's options, and its check. */
function sealingLoad(ctx: ScenarioContext, load: Partial<Load> & Pick<Load, 'mode'>): Load {
  const o = ctx.options
  return { connections: o.connections, durationSeconds: o.durationSeconds, warmupSeconds: o.warmupSeconds, primeSeconds: o.primeSeconds, ...load }
}

/** `ok/total`: every response of `r` passed its check. */
function checkedTarget(name: string, r: MeasuredRow): Target {
  const ok = r.requests - r.non2xx - r.mismatches
  return { name, value: `${ok}/${r.requests}`, limit: 'all, at least one', pass: r.requests > 0 && ok === r.requests && r.errors === 0 }
}

/** A floor on a figure; as for ratios, a figure of rows that failed requests cannot pass. */
function minTarget(name: string, value: number, min: number, unit: string, rows: readonly MeasuredRow[], digits = 0): Target {
  // Shown truncated, as ratios are: 99,999.6 reads 99,999 beside its FAIL, never 100,000.
  const scale = 10 ** digits
  const { failed, value: shown } = withFailures(`${formatNumber(Math.floor(value * scale) / scale, digits)} ${unit}`, rows)
  return { name, value: shown, limit: `≥ ${formatNumber(min, digits)} ${unit}`, pass: value >= min && failed === 0 }
}

/**
 * A ceiling on a figure, judged on the figure shown, rounded up (2.996 % reads 3.00 % and fails
 * "< 3 %"), and not passed by rows that failed requests (a run whose uploads failed early holds
 * less memory).
 */
function maxTarget(
  name: string,
  value: number,
  max: number,
  unit: string,
  rows: readonly MeasuredRow[],
  options: { digits?: number; inclusive?: boolean; signed?: boolean; detail?: string } = {},
): Target {
  const { digits = 0, inclusive = false, signed = false } = options
  const scale = 10 ** digits
  const up = Math.ceil(value * scale) / scale
  const { failed, value: shown } = withFailures(
    `${signed && up >= 0 ? '+' : ''}${up.toFixed(digits)}${unit}${options.detail === undefined ? '' : ` (${options.detail})`}`,
    rows,
  )
  return {
    name,
    value: shown,
    limit: `${inclusive ? '≤' : '<'} ${signed ? '+' : ''}${max}${unit}`,
    // Judged on the figure shown: a value that reads as the bound does not pass beside it.
    pass: (inclusive ? up <= max : up < max) && failed === 0,
  }
}

/** Runs a micro-benchmark child (one process, one core) and returns its rows. */
async function microRows(ctx: ScenarioContext, file: string, args: Record<string, unknown>): Promise<{ line: Record<string, unknown>; rows: Array<{ key: string; label: string; mbps: number }> }> {
  ctx.progress('crypto path and raw AES-256-GCM: one process, one core, no network')
  const child = JsonChild.node('stream-micro', file, [JSON.stringify(args)], { keep: true })
  const line = await child.waitFor((l) => l['event'] === 'result', 300_000)
  return { line, rows: line['rows'] as Array<{ key: string; label: string; mbps: number }> }
}

const sealFields: Scenario = {
  name: 'seal-fields',
  title: 'Seal fields: POST of one record, its six sensitive fields sealed on the way in',
  status: 'ready',
  summary:
    'POST of a ~1 KiB accreditation record: Écluse `seal` (one key agreement per sealing window of 1 s, shared by every request in it) vs the naive jose proxy (one per field), and the same POST through Écluse and the bare proxy without sealing; every echoed body checked for six sealed values.',
  async run(ctx) {
    const { env, options: o } = ctx
    const sealing = new Set(['naive', 'ecluse-seal'])
    const load = (s: Subject): Load =>
      sealingLoad(ctx, {
        mode: 'keepalive',
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        recordBodies: { path: '/v1/records/new', records: 16 },
        check: { kind: 'sealed', values: sealing.has(s.key) ? FIELDS : 0 },
      })
    const rows = await withSubjects(
      [
        () => startNaiveFieldProxy(env, { seal: 'request', open: 'none' }),
        () =>
          startEcluse(env, {
            key: 'ecluse-seal',
            label: 'écluse seal',
            cpuProfileDir: o.cpuProfileDir,
            cpuProfileName: 'seal-fields-ecluse-seal',
            configure: (c) => {
              c['keys'] = publicKeys(env)
              route(c, 'records')['transforms'] = { request: [{ type: 'seal', recipients: PUBLIC_SET, fields: fields() }], response: [] }
            },
          }),
        () => startEcluse(env, { key: 'ecluse', label: 'écluse, no transform', cpuProfileDir: o.cpuProfileDir, cpuProfileName: 'seal-fields-ecluse' }),
        () => startBareProxy(env),
      ],
      (subjects) => compare(env.pki, subjects, load, o.rounds, {}, ctx.progress),
    )
    const naive = row(rows, 'naive')
    const seal = row(rows, 'ecluse-seal')
    const plain = row(rows, 'ecluse')
    return {
      name: 'seal-fields',
      title: sealFields.title,
      load: describe(sealingLoad(ctx, { mode: 'keepalive' }), `POST /v1/records/new with one of 16 records (≈1 KiB JSON), six fields (${SENSITIVE_POINTERS.join(', ')}) sealed as compact JWE (ECDH-ES+A256KW on X25519, A256GCM); the upstream echoes what it received`),
      baseline: 'naive',
      columns: NETWORK_COLUMNS,
      rows: withFailed(rows),
      targets: [
        wallClock(ratioTarget('écluse seal requests/s ÷ naive jose proxy', seal.rps / naive.rps, 5, [seal, naive]), [seal, naive]),
        wallClock(ratioTarget('écluse seal requests/s ÷ écluse pass-through (the same POST, no transform)', seal.rps / plain.rps, 0.4, [seal, plain]), [seal, plain]),
        checkedTarget('responses through écluse seal with six sealed values (a sample opened by the upstream)', seal),
      ],
      notes: [
        'the naive jose proxy buffers the body, JSON.parse, one jose CompactEncrypt per field (each its own ephemeral key and ECDH agreement; the six of a record at once), JSON.stringify: bench/baselines/naive-field-proxy.ts',
        'écluse seals with one FieldSealer per request on its streaming JSON rewriter: the key agreement comes from the process-wide sealing window (one per second or per 65,536 values, so ≈ 0 per request here, where the naive proxy makes six), then a fresh CEK and IV per field (AES-KW and AES-GCM); no record id binding (one record per body)',
        'check: the echoed body must hold exactly six compact JWEs of ECDH-ES+A256KW/A256GCM (none for the two rows that do not seal)',
        ...commonNotes(rows),
      ],
    }
  },
}

const openFields: Scenario = {
  name: 'open-fields',
  title: 'Open fields: GET of one record whose six sealed fields are opened on the way out',
  status: 'ready',
  upstream: () => ({ sealedRecords: SEALED_CORPUS }),
  summary:
    'GET of a record the upstream sealed for the gateway’s key (sealed once at start-up): Écluse `open` vs the naive jose proxy (compactDecrypt per field), and plaintext records through Écluse and the bare proxy; every response checked for the opened values.',
  async run(ctx) {
    const { env, options: o } = ctx
    const prefix: Record<string, string> = { naive: '/v1/sealed/jose/', 'ecluse-open': '/v1/sealed/ecluse/', ecluse: '/v1/records/', bare: '/v1/records/' }
    const load = (s: Subject): Load =>
      sealingLoad(ctx, { mode: 'keepalive', pathCycle: { prefix: prefix[s.key]!, count: SEALED_CORPUS }, check: { kind: 'opened', corpus: RECORD_CORPUS } })
    const rows = await withSubjects(
      [
        () => startNaiveFieldProxy(env, { seal: 'none', open: 'response' }),
        () =>
          startEcluse(env, {
            key: 'ecluse-open',
            label: 'écluse open',
            cpuProfileDir: o.cpuProfileDir,
            cpuProfileName: 'open-fields-ecluse-open',
            configure: (c) => {
              c['keys'] = privateKeys(env)
              routes(c).push({
                name: 'sealed',
                methods: ['GET'],
                path: '/v1/sealed/*',
                allow: ALLOW,
                upstream: 'accreditation',
                transforms: { request: [], response: [{ type: 'open', keys: PRIVATE_SET, context: SEALED_RECORDS_CONTEXT, fields: fields() }] },
              })
            },
          }),
        () => startEcluse(env, { key: 'ecluse', label: 'écluse, no transform', cpuProfileDir: o.cpuProfileDir, cpuProfileName: 'open-fields-ecluse' }),
        () => startBareProxy(env),
      ],
      (subjects) => compare(env.pki, subjects, load, o.rounds, {}, ctx.progress),
    )
    const naive = row(rows, 'naive')
    const open = row(rows, 'ecluse-open')
    const plain = row(rows, 'ecluse')
    return {
      name: 'open-fields',
      title: openFields.title,
      load: describe(
        sealingLoad(ctx, { mode: 'keepalive' }),
        `GET of records sealed by the upstream at start-up for the run's key (${SEALED_CORPUS} distinct sealings of ${RECORD_CORPUS} records, asked for in turn across all connections), six fields opened; the pass-through rows GET the same records in plaintext`,
      ),
      baseline: 'naive',
      columns: NETWORK_COLUMNS,
      rows: withFailed(rows),
      targets: [
        wallClock(ratioTarget('écluse open requests/s ÷ naive jose proxy', open.rps / naive.rps, 5, [open, naive]), [open, naive]),
        wallClock(ratioTarget('écluse open requests/s ÷ écluse pass-through (the same records in plaintext, no transform)', open.rps / plain.rps, 0.4, [open, plain]), [open, plain]),
        checkedTarget('responses through écluse open with the record opened', open),
      ],
      notes: [
        'écluse opens records the upstream sealed as the `seal` step does (one FieldSealer per record: the six fields share one ephemeral key), each record under an agreement of its own, as records stored over time were sealed (bench/upstream.ts), bound to the context `sealed-records`; the naive proxy opens the same records sealed field by field with jose (six agreements), as it would have sealed them itself',
        `the ${SEALED_CORPUS} sealings are requested in turn, so the opener's KEK cache (1024 entries, FIFO) never holds the next one: every record costs écluse one key agreement (X25519) and six AES key unwraps`,
        'check: no compact JWE may remain, and the record’s id, birth date, passport number, e-mail and phone must be there in plaintext',
        ...commonNotes(rows),
      ],
    }
  },
}

const bulkSeal: Scenario = {
  name: 'bulk-seal',
  title: 'Bulk seal: POST of `{"records": [...]}` bodies, six fields of every record sealed',
  status: 'ready',
  summary:
    'Arrays of 10,000 records per request (≈10 MiB; 1,000 in the quick mode) sealed by Écluse’s streaming rewriter vs the naive jose proxy (whole body parsed); fields/s on one gateway process and its memory above idle.',
  async run(ctx) {
    const { env, options: o } = ctx
    const records = o.full ? 10_000 : 1_000
    const perRequest = records * FIELDS
    const maxBodyBytes = 64 * 1024 * 1024
    const sealing = new Set(['naive', 'ecluse-seal'])
    const load = (s: Subject): Load =>
      sealingLoad(ctx, {
        mode: 'loops',
        connections: BULK_CONNECTIONS,
        method: 'POST',
        path: '/v1/bulk',
        headers: { 'content-type': 'application/json' },
        loopBody: { kind: 'bulk', records },
        check: { kind: 'bulk-sealed', values: sealing.has(s.key) ? perRequest : 0 },
      })
    const measured = await withSubjects(
      [
        () => startNaiveFieldProxy(env, { seal: 'request', open: 'none', maxBodyBytes }),
        () =>
          startEcluse(env, {
            key: 'ecluse-seal',
            label: 'écluse seal',
            cpuProfileDir: o.cpuProfileDir,
            cpuProfileName: 'bulk-seal-ecluse-seal',
            configure: (c) => {
              c['keys'] = publicKeys(env)
              routes(c).push({
                name: 'bulk',
                methods: ['POST'],
                path: '/v1/bulk',
                allow: ALLOW,
                upstream: 'accreditation',
                maxBodyBytes,
                transforms: {
                  // A bulk route names its own bound on values (a request's default is 10,000).
                  request: [{ type: 'seal', recipients: PUBLIC_SET, fields: fields('/records/*'), records: { pattern: '/records/*', id: 'id' }, maxValues: perRequest }],
                  response: [],
                },
              })
            },
          }),
        () => startBareProxy(env),
      ],
      (subjects) => compare(env.pki, subjects, load, o.rounds, {}, ctx.progress),
    )
    const rows = withFailed(measured).map((r) => ({
      ...r,
      fieldsPerSecond: sealing.has(r.key) ? (r['rps'] as number) * perRequest : null,
      fieldsPerCpuSecond: sealing.has(r.key) && typeof r['cpuPercent'] === 'number' ? ((r['rps'] as number) * perRequest) / ((r['cpuPercent'] as number) / 100) : null,
    }))
    const seal = row(measured, 'ecluse-seal')
    // "On one core": the fields sealed per second of CPU the gateway's process used (all its threads:
    // the garbage collector's and libuv's too), not its wall-clock rate, which can draw on both cores.
    // No CPU measured (null, or 0 from a sampling gap) is no figure: NaN fails the target.
    const cpu = seal.cpuPercent !== null && seal.cpuPercent > 0 ? seal.cpuPercent : Number.NaN
    const fpcs = (seal.rps * perRequest) / (cpu / 100)
    const bodyMiB = bulkBodyMiB(records)
    // A smaller body seals faster per field and holds less: only the issue's size judges the targets.
    const scaled = o.full ? {} : { scaled: `${formatNumber(records, 0)} records per body instead of 10,000; --full judges it` }
    return {
      name: 'bulk-seal',
      title: bulkSeal.title,
      load: `${BULK_CONNECTIONS} connections, each POSTing one body after the other: {"records": [...]} of ${formatNumber(records, 0)} records (${bodyMiB.toFixed(1)} MiB, ${formatNumber(perRequest, 0)} fields to seal), ${o.warmupSeconds} s warm-up then ${o.durationSeconds} s measured (requests in flight at the end are waited for); mTLS on both sides; the upstream counts the sealed values it received`,
      baseline: 'naive',
      columns: [
        { key: 'fieldsPerSecond', title: 'fields/s', digits: 0, ratio: 'higher' },
        { key: 'rps', title: 'req/s', digits: 2 },
        { key: 'mbps', title: 'MB/s in', digits: 1, ratio: 'higher' },
        { key: 'p50', title: 'p50 ms', digits: 0, ratio: 'lower' },
        { key: 'p99', title: 'p99 ms', digits: 0, ratio: 'lower' },
        { key: 'cpuPercent', title: 'CPU %', digits: 0, ratio: 'lower' },
        { key: 'fieldsPerCpuSecond', title: 'fields/CPU-s', digits: 0, ratio: 'higher' },
        { key: 'peakRssMiB', title: 'peak RSS MiB', digits: 0 },
        { key: 'rssAboveIdleMiB', title: 'RSS above idle MiB', digits: 0, ratio: 'lower' },
        { key: 'failed', title: 'failed', digits: 0 },
      ],
      rows,
      targets: [
        { ...minTarget('écluse seal fields per CPU-second of the gateway process (one core)', fpcs, 100_000, 'fields/CPU-s', [seal]), ...scaled },
        { ...maxTarget('écluse seal peak RSS above idle', seal.rssAboveIdleMiB ?? Number.POSITIVE_INFINITY, 64, ' MiB', [seal]), ...scaled },
        checkedTarget(`bodies through écluse seal with all ${formatNumber(perRequest, 0)} values sealed (a sample opened by the upstream)`, seal),
      ],
      notes: [
        ...(o.full ? [] : [`quick mode: ${formatNumber(records, 0)} records per body instead of 10,000 (the naive proxy needs seconds per 10,000-record body here); \`--full\` runs the issue's size`]),
        'écluse binds every sealed value to its record (`records: { pattern: /records/*, id: id }`, the record id in each header): more work than the naive proxy, which binds nothing',
        'fields/s is wall-clock throughput through one gateway process; fields/CPU-s divides it by the CPU the process used (all its threads), which is what the target "on one core" judges: the process can draw on more than one core',
        'idle: the gateway’s RSS just after it started; the bare proxy only relays the body (its row is the cost of moving the bytes)',
        ...commonNotes(measured),
      ],
    }
  },
}

function bulkBodyMiB(records: number): number {
  // ≈ the sum of the records' JSON plus the commas and the wrapper; computed once, not sent from here.
  return bulkBody(records).length / MIB
}

/** Columns of the stream scenarios: every row against raw AES-GCM, network rows against pass-through. */
const STREAM_COLUMNS: readonly Column[] = [
  { key: 'mbps', title: 'MB/s', digits: 1, ratio: 'higher' },
  { key: 'ofAes', title: '×AES-GCM', digits: 2 },
  { key: 'transfers', title: 'transfers', digits: 0 },
  { key: 'p50', title: 'p50 ms', digits: 0, ratio: 'lower' },
  { key: 'p99', title: 'p99 ms', digits: 0, ratio: 'lower' },
  { key: 'cpuPercent', title: 'CPU %', digits: 0, ratio: 'lower' },
  { key: 'peakRssMiB', title: 'peak RSS MiB', digits: 0 },
  { key: 'failed', title: 'failed', digits: 0 },
]

/** Body size of the small-stream crypto rows: a photo of tens of KiB. */
const SMALL_BODY = 32 * 1024

interface StreamPlan {
  readonly name: 'stream-seal' | 'stream-open'
  readonly title: string
  readonly op: 'seal' | 'open'
  readonly bytes: number
}

function streamBytes(o: BenchOptions): number {
  return o.full ? 256 * MIB : 32 * MIB
}

async function runStream(ctx: ScenarioContext, plan: StreamPlan): Promise<ScenarioResult> {
  const { env, options: o } = ctx
  const seal = plan.op === 'seal'
  const transformed = seal ? 'ecluse-seal' : 'ecluse-open'
  const mib = plan.bytes / MIB
  const load = (s: Subject): Load =>
    seal
      ? sealingLoad(ctx, {
          mode: 'loops',
          connections: STREAM_CONNECTIONS,
          method: 'PUT',
          path: '/v1/uploads/',
          headers: { 'content-type': 'application/octet-stream' },
          loopBody: { kind: 'pattern', bytes: plan.bytes },
          check: s.key === transformed ? { kind: 'sealed-stream' } : { kind: 'uploaded' },
        })
      : sealingLoad(ctx, {
          mode: 'loops',
          connections: STREAM_CONNECTIONS,
          method: 'GET',
          path: s.key === transformed ? '/v1/blobs/sealed/0' : '/v1/blobs/plain/0',
          downloadBytes: plan.bytes,
          check: { kind: 'download' },
        })
  const bodyLimit = 2 * plan.bytes
  // Both Écluse subjects get the same route (and limits); only one of them transforms.
  const configure = (transform: boolean) => (c: Config) => {
    if (seal) {
      const uploads = route(c, 'uploads')
      uploads['maxBodyBytes'] = bodyLimit
      if (transform) {
        c['keys'] = publicKeys(env)
        uploads['transforms'] = { request: [{ type: 'seal-body', recipients: PUBLIC_SET, context: BLOB_CONTEXT }], response: [] }
      }
    } else {
      if (transform) c['keys'] = privateKeys(env)
      routes(c).push({
        name: 'blobs',
        methods: ['GET'],
        path: '/v1/blobs/*',
        allow: ALLOW,
        upstream: 'accreditation',
        transforms: { request: [], response: transform ? [{ type: 'open-body', keys: PRIVATE_SET, context: BLOB_CONTEXT }] : [] },
      })
    }
  }
  const micro = await microRows(ctx, 'bench/stream-micro.ts', { seconds: o.full ? 3 : 1, direction: plan.op, small: SMALL_BODY })
  const measured = await withSubjects(
    [
      () =>
        startEcluse(env, {
          key: transformed,
          label: seal ? 'écluse seal-body' : 'écluse open-body',
          cpuProfileDir: o.cpuProfileDir,
          cpuProfileName: `${plan.name}-${transformed}`,
          configure: configure(true),
        }),
      () => startEcluse(env, { key: 'ecluse', label: 'écluse, no transform', cpuProfileDir: o.cpuProfileDir, cpuProfileName: `${plan.name}-ecluse`, configure: configure(false) }),
      () => startBareProxy(env),
    ],
    (subjects) => compare(env.pki, subjects, load, o.rounds, {}, ctx.progress),
  )
  const aes = micro.rows.find((r) => r.key === `aes-${plan.op}`)!
  const crypto = micro.rows.find((r) => r.key === `crypto-${plan.op}`)!
  const aesSmall = micro.rows.find((r) => r.key === `aes-${plan.op}-small`)!
  const cryptoSmall = micro.rows.find((r) => r.key === `crypto-${plan.op}-small`)!
  const rows: Row[] = [
    { key: aes.key, label: aes.label, mbps: aes.mbps, ofAes: 1, comparable: false },
    { key: crypto.key, label: crypto.label, mbps: crypto.mbps, ofAes: crypto.mbps / aes.mbps, comparable: false },
    { key: aesSmall.key, label: aesSmall.label, mbps: aesSmall.mbps, ofAes: 1, comparable: false },
    { key: cryptoSmall.key, label: `${cryptoSmall.label}, × its own raw row`, mbps: cryptoSmall.mbps, ofAes: cryptoSmall.mbps / aesSmall.mbps, comparable: false },
    ...withFailed(measured).map((r) => ({ ...r, ofAes: (r['mbps'] as number) / aes.mbps, transfers: r['requests'] as number })),
  ]
  const through = row(measured, transformed)
  const plain = row(measured, 'ecluse')
  return {
    name: plan.name,
    title: plan.title,
    load: seal
      ? `${STREAM_CONNECTIONS} connections, each PUTting one ${mib} MiB body after the other (generated on the fly, application/octet-stream), ${o.warmupSeconds} s warm-up then ${o.durationSeconds} s measured (transfers in flight at the end are waited for); the upstream answers the length, SHA-256 and first bytes of what it received; mTLS on both sides`
      : `${STREAM_CONNECTIONS} connections, each GETting one ${mib} MiB body after the other (sealed once by the upstream at start-up for the run's key, or the same body in plaintext for the pass-through rows), hashed as it arrives, ${o.warmupSeconds} s warm-up then ${o.durationSeconds} s measured; mTLS on both sides`,
    baseline: 'ecluse',
    columns: STREAM_COLUMNS,
    rows,
    targets: [
      ratioTarget(`crypto path MB/s ÷ raw AES-256-GCM ${plan.op}, one core`, crypto.mbps / aes.mbps, 0.8),
      wallClock(ratioTarget(`écluse ${plan.op}-body MB/s ÷ écluse pass-through (the same ${seal ? 'uploads' : 'downloads'}, no transform)`, through.mbps / plain.mbps, 0.7, [through, plain]), [through, plain]),
      checkedTarget(seal ? 'uploads through écluse received as a sealed stream of the right length (a sample opened by the upstream)' : 'downloads through écluse opened to the exact plaintext (SHA-256)', through),
    ],
    notes: [
      ...(o.full ? [] : [`quick mode: ${mib} MiB bodies instead of 256 MiB; \`--full\` runs the issue's size`]),
      `crypto rows: ${o.full ? 3 : 1} s each in their own process, no network; the stream is fed 16 KiB chunks (a TLS record each, as a socket delivers them) and seals 64 KiB records; raw AES-256-GCM ${plan.op}s whole 64 KiB records with a fresh cipher each (bench/baselines/aes-gcm.ts)`,
      '×base is against écluse without a transform (the same transfers): the cost of the stream transform in the gateway; ×AES-GCM is against the physical limit of one core',
      `small-body rows (no target): whole ${SMALL_BODY / 1024} KiB streams, a photo's size, one after the other, against raw AES-256-GCM of ${SMALL_BODY / 1024} KiB messages; there the per-stream work (key JWE, HKDF, the transform) weighs as much as the AES. ${plan.op === 'open' ? 'The streams share one KekCache, as open-body does, and were sealed in one sealing window' : 'The key JWEs take the agreement of the sealing window'}`,
      seal
        ? 'check: the upstream must receive an ECLS v1 stream (magic, version) exactly as long as the sealed plaintext (header, data, one tag and delimiter per 64 KiB record); the pass-through rows must deliver the exact bytes (SHA-256)'
        : 'check: every body must hash to the plaintext the upstream sealed (SHA-256), with nothing missing or extra',
      ...commonNotes(measured),
    ],
  }
}

const streamSeal: Scenario = {
  name: 'stream-seal',
  title: 'Stream seal: uploads sealed whole as a record-AEAD stream on the way in',
  status: 'ready',
  summary:
    'PUT of 256 MiB bodies (32 MiB in the quick mode) sealed by Écluse `seal-body`, MB/s against the same uploads through Écluse without a transform and the bare proxy; the crypto path alone against raw AES-256-GCM on one core (baseline 5).',
  run: (ctx) => runStream(ctx, { name: 'stream-seal', title: streamSeal.title, op: 'seal', bytes: streamBytes(ctx.options) }),
}

const streamOpen: Scenario = {
  name: 'stream-open',
  title: 'Stream open: sealed downloads opened on the way out',
  status: 'ready',
  upstream: (o) => ({ blobBytes: streamBytes(o) }),
  summary:
    'GET of a 256 MiB sealed body (32 MiB in the quick mode) opened by Écluse `open-body`, MB/s against the same body in plaintext through Écluse without a transform and the bare proxy; the crypto path alone against raw AES-256-GCM on one core (baseline 5).',
  run: (ctx) => runStream(ctx, { name: 'stream-open', title: streamOpen.title, op: 'open', bytes: streamBytes(ctx.options) }),
}

/** Every scenario, in the order `npm run bench` runs them. */
export const SCENARIOS: readonly Scenario[] = [passthrough, handshakes, concurrency, metrics, workers, cryptoMicro, sealFields, openFields, bulkSeal, streamSeal, streamOpen]
