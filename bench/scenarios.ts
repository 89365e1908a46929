/**
 * The scenario table. A scenario starts its subjects (each in its own process), measures them with
 * a load generator in another process, and returns one table whose every figure sits next to its
 * ratio to the scenario's baseline, plus the targets with PASS/FAIL.
 *
 * Adding a scenario (the sealing work adds `seal-fields`, `open-fields`, `bulk-seal`, `stream-seal`,
 * `stream-open`, listed below as `planned`): write its `run`, start subjects with the helpers of
 * `lib/subjects.ts` (`startEcluse({ configure })` adds routes and transforms to Écluse's config;
 * `startNaiveFieldProxy` is the jose baseline), measure with `compare()`, and set `status: 'ready'`.
 */
import { JsonChild } from './lib/child.js'
import { compare, type Load, type MeasuredRow, type Sidecar } from './lib/measure.js'
import type { Column, Row, ScenarioResult, Target } from './lib/results.js'
import {
  directSubject,
  findNginx,
  type ProxyTuning,
  type Subject,
  type SubjectEnv,
  startBareProxy,
  startEcluse,
  startNginx,
} from './lib/subjects.js'

/** How hard and how long: `npm run bench -- --duration 10 --connections 64 --full`. */
export interface BenchOptions {
  readonly full: boolean
  readonly durationSeconds: number
  readonly warmupSeconds: number
  readonly connections: number
  readonly rounds: number
  /** When set, Écluse runs with `--cpu-prof` and writes its profiles here. */
  readonly cpuProfileDir?: string
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
  run?(ctx: ScenarioContext): Promise<ScenarioResult>
}

/** 16 different records, so responses are not one cached buffer (bench/upstream.ts). */
const RECORD_PATHS = Array.from({ length: 16 }, (_, i) => `/v1/records/${i * 61}`)

const MIB = 1024 * 1024

/** The columns of the request/response scenarios. */
export const NETWORK_COLUMNS: readonly Column[] = [
  { key: 'rps', title: 'req/s', digits: 0, ratio: 'higher' },
  { key: 'mbps', title: 'MB/s', digits: 1, ratio: 'higher' },
  { key: 'p50', title: 'p50 ms', digits: 2 },
  { key: 'p99', title: 'p99 ms', digits: 2, delta: true },
  { key: 'cpuPercent', title: 'CPU %', digits: 0 },
  { key: 'cpuUsPerRequest', title: 'CPU µs/req', digits: 0, ratio: 'lower' },
  { key: 'peakRssMiB', title: 'peak RSS MiB', digits: 0, ratio: 'lower' },
  { key: 'failed', title: 'failed', digits: 0 },
]

function withFailed(rows: readonly MeasuredRow[]): Row[] {
  return rows.map((r) => ({ ...r, failed: r.errors + r.non2xx + r.mismatches }))
}

function keepaliveLoad(ctx: ScenarioContext): Load {
  const o = ctx.options
  return { mode: 'keepalive', connections: o.connections, durationSeconds: o.durationSeconds, warmupSeconds: o.warmupSeconds, paths: RECORD_PATHS }
}

function describe(load: Load, what: string): string {
  return `${what}; ${load.connections} concurrent connections, ${load.warmupSeconds} s warm-up then ${load.durationSeconds} s measured; mTLS on both sides`
}

/** Notes every network scenario carries. */
function commonNotes(rows: readonly MeasuredRow[]): string[] {
  const notes: string[] = []
  for (const r of rows) {
    if (r.loadCpuPercent > 90) {
      notes.push(`the load generator used ${r.loadCpuPercent.toFixed(0)} % of a core against ${r.label}: that row may be limited by the load, not the subject`)
    }
    const failed = r.errors + r.non2xx + r.mismatches
    if (failed > 0) notes.push(`${r.label}: ${failed} failed requests (${r.errors} errors, ${r.non2xx} non-2xx, ${r.mismatches} checksum mismatches)`)
  }
  return notes
}

function row(rows: readonly MeasuredRow[], key: string): MeasuredRow {
  const found = rows.find((r) => r.key === key)
  if (found === undefined) throw new Error(`no row ${key}`)
  return found
}

function ratioTarget(name: string, value: number, min: number): Target {
  return { name, value: value.toFixed(3), limit: `≥ ${min.toFixed(2)}`, pass: value >= min }
}

async function withSubjects<T>(start: Array<() => Promise<Subject>>, body: (subjects: Subject[]) => Promise<T>): Promise<T> {
  const subjects: Subject[] = []
  try {
    for (const s of start) subjects.push(await s())
    return await body(subjects)
  } finally {
    await Promise.allSettled(subjects.map((s) => s.stop()))
  }
}

/** A Prometheus scraper beside the load: GET /metrics every `intervalMs`, from the runner process. */
function scraper(intervalMs: number, stats: { scrapes: number; totalMs: number; bytes: number }): Sidecar {
  return (subject) => {
    let stopped = false
    let inFlight: Promise<void> = Promise.resolve()
    const scrape = async () => {
      const started = performance.now()
      const res = await fetch(`http://127.0.0.1:${subject.adminPort}/metrics`)
      stats.bytes += (await res.text()).length
      stats.scrapes++
      stats.totalMs += performance.now() - started
    }
    const timer = setInterval(() => {
      if (!stopped) inFlight = scrape().catch(() => {})
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
    const starts: Array<() => Promise<Subject>> = [() => startBareProxy(ctx.env), () => startEcluse(ctx.env, { cpuProfileDir: ctx.options.cpuProfileDir })]
    if (nginx === undefined) notes.push('nginx is not installed: its row is skipped (`apt-get install nginx` to include it)')
    else
      starts.push(async () => {
        const s = await startNginx(ctx.env, nginx)
        notes.push(`nginx row: ${s.version}, one worker process, upstream keep-alive, no buffering, no access log`)
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
        ratioTarget('écluse requests/s ÷ bare proxy', ecluse.rps / bare.rps, 0.9),
        { name: 'écluse p99 − bare proxy p99', value: `${dp99 >= 0 ? '+' : ''}${dp99.toFixed(2)} ms`, limit: '≤ +1 ms', pass: dp99 <= 1 },
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
    const load: Load = { mode: 'handshakes', connections, durationSeconds: o.durationSeconds, warmupSeconds: o.warmupSeconds, paths: RECORD_PATHS }
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
      targets: [ratioTarget('écluse new connections/s ÷ bare proxy', ecluse.rps / bare.rps, 0.8)],
      notes: ['latency includes the TCP connect and the full handshake; the client also verifies the server and signs its CertificateVerify, on the same 2 cores', ...commonNotes(rows)],
    }
  },
}

const concurrency: Scenario = {
  name: 'concurrency',
  title: 'Concurrency: 500 concurrent streamed uploads with checksums',
  status: 'ready',
  summary: '500 concurrent PUT uploads (64 MiB each with --full; 1 MiB in the quick mode), SHA-256 checked end to end; gateway peak RSS must stay under 300 MiB.',
  async run(ctx) {
    const o = ctx.options
    const count = 500
    const bytes = o.full ? 64 * MIB : 1 * MIB
    // Both proxies get 512 upstream connections so that 500 uploads really are in flight at once
    // (with the default 64, the pool would queue them and the test would measure the queue).
    const tuning: ProxyTuning = { upstreamConnections: 512, upstreamTimeoutMs: 600_000, requestTimeoutMs: 3_600_000 }
    const load: Load = { mode: 'uploads', connections: count, count, bytes, durationSeconds: 0, warmupSeconds: 0 }
    const rows = await withSubjects([() => startBareProxy(ctx.env, tuning), () => startEcluse(ctx.env, { tuning })], (subjects) =>
      compare(ctx.env.pki, subjects, load, 1, {}, ctx.progress),
    )
    const ecluse = row(rows, 'ecluse')
    const correct = ecluse.requests - ecluse.non2xx - ecluse.mismatches
    const notes = o.full
      ? []
      : [`quick mode: 500 × ${bytes / MIB} MiB instead of 500 × 64 MiB (${(500 * 64) / 1024} GiB through each proxy takes minutes here); \`--full\` runs the real size`]
    return {
      name: 'concurrency',
      title: concurrency.title,
      load: `${count} uploads of ${bytes / MIB} MiB, all ${count} in flight at once, each on its own mTLS connection, generated and hashed on the fly; upstream pools of 512 connections`,
      baseline: 'bare',
      columns: [
        { key: 'requests', title: 'uploads', digits: 0 },
        { key: 'mbps', title: 'MB/s', digits: 1, ratio: 'higher' },
        { key: 'p50', title: 'p50 ms', digits: 0 },
        { key: 'p99', title: 'p99 ms', digits: 0 },
        { key: 'cpuPercent', title: 'CPU %', digits: 0 },
        { key: 'peakRssMiB', title: 'peak RSS MiB', digits: 0, ratio: 'lower' },
        { key: 'mismatches', title: 'bad checksums', digits: 0 },
        { key: 'failed', title: 'failed', digits: 0 },
      ],
      rows: withFailed(rows),
      targets: [
        { name: 'écluse peak RSS', value: `${(ecluse.peakRssMiB ?? Number.NaN).toFixed(0)} MiB`, limit: '< 300 MiB', pass: (ecluse.peakRssMiB ?? Number.POSITIVE_INFINITY) < 300 },
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
    const stats = { scrapes: 0, totalMs: 0, bytes: 0 }
    // Noise on a shared machine is of the order of the effect: at least two rounds, ABBA order.
    const rounds = Math.max(2, o.rounds)
    const rows = await withSubjects([() => startEcluse(ctx.env)], async ([ecluse]) => {
      const plain: Subject = { ...ecluse!, key: 'ecluse', label: 'écluse, not scraped' }
      const scraped: Subject = { ...ecluse!, key: 'ecluse-scraped', label: 'écluse, /metrics every 1 s' }
      return compare(ctx.env.pki, [plain, scraped], load, rounds, { 'ecluse-scraped': scraper(1_000, stats) }, ctx.progress)
    })
    const cost = 1 - row(rows, 'ecluse-scraped').rps / row(rows, 'ecluse').rps
    return {
      name: 'metrics',
      title: metrics.title,
      load: describe(load, 'the passthrough load on one Écluse process'),
      baseline: 'ecluse',
      columns: NETWORK_COLUMNS,
      rows: withFailed(rows),
      targets: [{ name: 'requests/s lost to scraping', value: `${(cost * 100).toFixed(1)} %`, limit: '< 3 %', pass: cost < 0.03 }],
      notes: [
        `${stats.scrapes} scrapes, ${stats.scrapes === 0 ? 0 : (stats.totalMs / stats.scrapes).toFixed(1)} ms and ${stats.scrapes === 0 ? 0 : Math.round(stats.bytes / stats.scrapes / 1024)} KiB each on average, from the runner process`,
        `${rounds} rounds in alternating order, averaged; a difference within ±2 % is run-to-run noise on this machine`,
        ...commonNotes(rows),
      ],
    }
  },
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
    const by = (key: string) => micro.find((r) => r.key === key)!
    const rows: Row[] = micro.map((r) => {
      const jose = r.key.endsWith('-open') ? by('jose-open') : r.key.endsWith('-seal') ? by('jose-seal') : undefined
      const limit = r.key === 'aes-64k' ? r.mbps / by('aes-64k').mbps : r.valuesPerSecond / by('aes-field').valuesPerSecond
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
      targets: [],
      notes: [
        'jose performs one ECDH agreement per value (each field is its own JWE); Écluse’s sealer performs one per message of six fields and batches the key wrapping',
        'the opener’s KEK cache holds half of the distinct messages it cycles through, so every message pays its agreement once, as distinct messages do in real traffic',
      ],
    }
  },
}

/** Scenarios the sealing work adds; listed so the table, `--list` and the docs show what is coming. */
const planned: Scenario[] = [
  {
    name: 'seal-fields',
    title: 'Seal fields: POST of a record with six fields sealed on the way in',
    status: 'planned',
    summary: 'TODO(sealing): Écluse `seal` transform vs the naive jose proxy (bench/baselines/naive-field-proxy.ts, --seal request) vs the bare proxy; POST /v1/records echoes.',
  },
  {
    name: 'open-fields',
    title: 'Open fields: responses whose six fields are opened on the way out',
    status: 'planned',
    summary: 'TODO(sealing): Écluse `open` transform vs the naive jose proxy (--open response); the upstream must serve records sealed for the gateway’s key.',
  },
  {
    name: 'bulk-seal',
    title: 'Bulk seal: arrays of records (~1 MiB bodies)',
    status: 'planned',
    summary: 'TODO(sealing): `{"records": [...]}` bodies through the streaming rewriter vs the naive proxy (which parses the whole body).',
  },
  {
    name: 'stream-seal',
    title: 'Stream seal: whole bodies sealed as record AEAD',
    status: 'planned',
    summary: 'TODO(sealing): 64 MiB uploads sealed by Écluse, MB/s against baseline 5 (bench/baselines/aes-gcm.ts, one core) and the bare proxy.',
  },
  {
    name: 'stream-open',
    title: 'Stream open: sealed bodies opened on the way out',
    status: 'planned',
    summary: 'TODO(sealing): 64 MiB sealed downloads opened by Écluse, MB/s against baseline 5 and the bare proxy.',
  },
]

/** Every scenario, in the order `npm run bench` runs them. */
export const SCENARIOS: readonly Scenario[] = [passthrough, handshakes, concurrency, metrics, workers, cryptoMicro, ...planned]
