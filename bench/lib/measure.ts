/**
 * One measurement: a load-generator process against one subject, with the subject's CPU time read
 * from /proc over exactly the measured window (after the warm-up), and its peak memory over the whole
 * load, warm-up included.
 */
import type { LoadResult, LoadSpec } from '../load-generator.js'
import { JsonChild } from './child.js'
import type { BenchPki } from './pki.js'
import { CpuWindow, peakRssBytes, processTree, resetPeakRss } from './proc.js'
import type { Row } from './results.js'
import type { Subject } from './subjects.js'

const MIB = 1024 * 1024

/**
 * The load, minus what the subject decides (address, client certificate). `primeSeconds`: extra
 * warm-up before a subject's first measurement (a fresh process runs interpreted and baseline code
 * for its first seconds, and V8 compiles the hot path on background threads that compete for the
 * same two cores: a short warm-up measures the JIT, not the steady state). Later rounds only need
 * `warmupSeconds`.
 */
export type Load = Omit<LoadSpec, 'host' | 'port' | 'tls'> & { readonly primeSeconds?: number }

/** Something to run beside the load (a metrics scraper), stopped when the window closes. */
export type Sidecar = (subject: Subject) => () => Promise<void>

/** A row of the standard columns (see `NETWORK_COLUMNS` in scenarios.ts). */
export interface MeasuredRow extends Row {
  readonly rps: number
  readonly mbps: number
  readonly p50: number
  readonly p99: number
  readonly cpuPercent: number | null
  readonly cpuUsPerRequest: number | null
  readonly peakRssMiB: number | null
  /** Peak RSS over the whole load minus the subject's RSS when it had just started (idle). */
  readonly rssAboveIdleMiB: number | null
  readonly requests: number
  readonly errors: number
  /** What the errors were, when there were any (`LoadResult.errorKinds`). */
  readonly errorKinds?: string
  readonly non2xx: number
  readonly mismatches: number
  readonly loadCpuPercent: number
}

export async function measure(pki: BenchPki, subject: Subject, load: Load, sidecar?: Sidecar): Promise<MeasuredRow> {
  const client = subject.client === 'sponsor' ? pki.sponsorClient : pki.trustedClient
  const { primeSeconds: _prime, ...rest } = load
  const spec: LoadSpec = {
    ...rest,
    host: '127.0.0.1',
    port: subject.port,
    tls: {
      ca: subject.client === 'sponsor' ? pki.sponsorCaPem : pki.trustedCaPem,
      cert: client.certPem,
      key: client.keyPem,
      // The sponsor server certificate names `localhost`; the upstream's names the trusted host.
      servername: subject.client === 'sponsor' ? 'localhost' : 'accreditation.trusted.test',
    },
  }
  const pids = subject.pid === undefined ? [] : processTree(subject.pid)
  // Peak memory of the whole load, warm-up included, not of the boot: a subject's highest memory
  // comes in its first seconds of load (bulk-seal peaked ≈ 28 MiB higher in them than in the window
  // measured after the warm-up), and a fresh process or a container's limit meets that peak too.
  // Where the kernel refuses the reset, the peak is the process's since it started: never lower, so
  // no memory target passes by it.
  if (!resetPeakRss(pids)) process.stderr.write(`warning: ${subject.label}: /proc/<pid>/clear_refs refused; its peak RSS includes its boot\n`)
  const child = JsonChild.node('load', 'bench/load-generator.ts', [JSON.stringify(spec)], { keep: true })
  const timeout = (load.warmupSeconds + load.durationSeconds) * 1000 + 600_000
  await child.waitFor((l) => l['event'] === 'measuring', timeout)
  const cpu = subject.pid === undefined ? undefined : new CpuWindow(subject.pid)
  cpu?.start()
  const stopSidecar = sidecar?.(subject)
  const line = await child.waitFor((l) => l['event'] === 'result', timeout)
  const window = cpu?.stop()
  const peak = subject.pid === undefined ? undefined : peakRssBytes(pids)
  await stopSidecar?.()
  const r = line as unknown as LoadResult
  const peakMiB = peak === undefined ? null : peak / MIB
  return {
    key: subject.key,
    label: subject.label,
    rps: r.rps,
    mbps: r.bytesPerSecond / 1e6,
    p50: r.p50,
    p99: r.p99,
    cpuPercent: window === undefined ? null : (window.cpuSeconds / window.wallSeconds) * 100,
    cpuUsPerRequest: window === undefined || r.requests === 0 ? null : (window.cpuSeconds * 1e6) / r.requests,
    peakRssMiB: peakMiB,
    rssAboveIdleMiB: peakMiB === null || subject.idleRssMiB === undefined ? null : peakMiB - subject.idleRssMiB,
    requests: r.requests,
    errors: r.errors,
    ...(r.errorKinds === undefined ? {} : { errorKinds: r.errorKinds }),
    non2xx: r.non2xx,
    mismatches: r.mismatches,
    loadCpuPercent: r.loadCpuPercent,
  }
}

/** Averages rows of the same subject from several rounds (peak memory: the maximum). */
export function combine(rows: readonly MeasuredRow[]): MeasuredRow {
  const first = rows[0]!
  if (rows.length === 1) return first
  const mean = (k: keyof MeasuredRow) => rows.reduce((s, r) => s + (r[k] as number), 0) / rows.length
  const meanOrNull = (k: keyof MeasuredRow) => (rows.some((r) => r[k] === null) ? null : mean(k))
  const sum = (k: keyof MeasuredRow) => rows.reduce((s, r) => s + (r[k] as number), 0)
  return {
    ...first,
    rps: mean('rps'),
    mbps: mean('mbps'),
    p50: mean('p50'),
    p99: mean('p99'),
    cpuPercent: meanOrNull('cpuPercent'),
    cpuUsPerRequest: meanOrNull('cpuUsPerRequest'),
    peakRssMiB: rows.some((r) => r.peakRssMiB === null) ? null : Math.max(...rows.map((r) => r.peakRssMiB as number)),
    rssAboveIdleMiB: rows.some((r) => r.rssAboveIdleMiB === null) ? null : Math.max(...rows.map((r) => r.rssAboveIdleMiB as number)),
    requests: sum('requests'),
    errors: sum('errors'),
    non2xx: sum('non2xx'),
    mismatches: sum('mismatches'),
    loadCpuPercent: mean('loadCpuPercent'),
  }
}

/**
 * Measures every subject `rounds` times, alternating the order (A B C, C B A, …) so that a drift
 * of the machine during the run weighs on every subject alike, and combines the rounds. `load` may
 * depend on the subject (a check that expects sealed values from one and plaintext from another,
 * a path only one of them serves); each subject's first measurement is primed (see `Load`).
 */
export async function compare(
  pki: BenchPki,
  subjects: readonly Subject[],
  load: Load | ((subject: Subject) => Load),
  rounds: number,
  sidecars: Readonly<Record<string, Sidecar>> = {},
  progress: (msg: string) => void = () => {},
): Promise<MeasuredRow[]> {
  const byKey = new Map<string, MeasuredRow[]>()
  for (let round = 0; round < rounds; round++) {
    const order = round % 2 === 0 ? subjects : [...subjects].reverse()
    for (const subject of order) {
      progress(`${subject.label}${rounds > 1 ? ` (round ${round + 1}/${rounds})` : ''}`)
      const base = typeof load === 'function' ? load(subject) : load
      const first = !byKey.has(subject.key)
      const primed = first && (base.primeSeconds ?? 0) > 0 ? { ...base, warmupSeconds: base.warmupSeconds + base.primeSeconds! } : base
      const row = await measure(pki, subject, primed, sidecars[subject.key])
      const list = byKey.get(subject.key) ?? []
      list.push(row)
      byKey.set(subject.key, list)
    }
  }
  return subjects.map((s) => combine(byKey.get(s.key)!))
}
