/**
 * The shape of a benchmark run (what `bench/results/*.json` holds) and its rendering: a console
 * table and a markdown table per scenario, every figure next to its ratio to the scenario's
 * baseline row from the same run, and the targets with PASS/FAIL.
 */

/** One measured subject in one scenario. Numbers are `null` where they do not apply. */
export interface Row {
  /** Stable key, e.g. `bare`, `ecluse`, `ecluse-2w`. */
  readonly key: string
  readonly label: string
  /**
   * `false`: the row is not comparable with the baseline row (a micro-benchmark beside network
   * rows), so no `×base`/`Δbase` is printed for it.
   */
  readonly comparable?: boolean
  readonly [metric: string]: number | string | boolean | null | undefined
}

/** A column of a scenario table. */
export interface Column {
  readonly key: string
  readonly title: string
  readonly digits: number
  /** Print `value / baseline` next to it; `higher` or `lower` says which way is better. */
  readonly ratio?: 'higher' | 'lower'
  /** Print `value − baseline` next to it instead (latencies: the target is in ms). */
  readonly delta?: boolean
}

/** A target from the issue, evaluated on this run. */
export interface Target {
  readonly name: string
  /** The measured figure, formatted (`0.94`, `+0.4 ms`, `212 MiB`). */
  readonly value: string
  /** The bound, formatted (`≥ 0.90`). */
  readonly limit: string
  readonly pass: boolean
  /**
   * Why this run cannot judge the target (its load was scaled down from the issue's size): printed
   * `SCALED` instead of PASS or FAIL, and counted as neither.
   */
  readonly scaled?: string
  /**
   * Why this run's figure measures its load generator, not the subjects (it saturated its core
   * against every row compared): printed `LOAD-BOUND` instead of PASS or FAIL, counted as neither.
   */
  readonly loadBound?: string
}

export type Verdict = 'PASS' | 'FAIL' | 'SCALED' | 'LOAD-BOUND'

/** `PASS`, `FAIL`, `SCALED` for a target measured below the issue's size, `LOAD-BOUND` for one the load limited. */
export function verdict(t: Target): Verdict {
  return t.scaled !== undefined ? 'SCALED' : t.loadBound !== undefined ? 'LOAD-BOUND' : t.pass ? 'PASS' : 'FAIL'
}

/** Why the target is not judged in this run, if it is not. */
export function notJudged(t: Target): string | undefined {
  return t.scaled ?? t.loadBound
}

/** The target's measured value, with the reason it is not judged when it is not. */
export function targetLine(t: Target): string {
  const why = notJudged(t)
  return `${t.name}: ${t.value} (target ${t.limit}${why === undefined ? '' : `; not judged: ${why}`})`
}

export interface ScenarioResult {
  readonly name: string
  readonly title: string
  /** What the load was, in one line (connections, duration, body…). */
  readonly load: string
  /** The key of the row every ratio is relative to. */
  readonly baseline: string
  readonly columns: readonly Column[]
  readonly rows: readonly Row[]
  readonly targets: readonly Target[]
  /** Things a reader must know: scaled-down runs, skipped subjects, saturated load generator. */
  readonly notes: readonly string[]
}

export interface RunResult {
  readonly schema: 1
  readonly date: string
  /** The commit the run measured (`git rev-parse --short HEAD`), and whether files differed from it; absent from older runs. */
  readonly commit?: string
  readonly dirty?: boolean
  readonly node: string
  readonly cpus: number
  readonly cpuModel: string
  readonly platform: string
  readonly mode: 'quick' | 'full'
  readonly durationSeconds: number
  readonly connections: number
  readonly rounds: number
  /** Node options Écluse's processes ran with as its image runs it (`IMAGE_NODE_ARGS`); absent from runs before it had any. */
  readonly ecluseImageNodeArgs?: readonly string[]
  /** Node options Écluse's processes ran with (`--ecluse-node-arg`), if any. */
  readonly ecluseNodeArgs?: readonly string[]
  /** Environment variables Écluse's processes ran with (`--ecluse-env`), if any. */
  readonly ecluseEnv?: Readonly<Record<string, string>>
  readonly scenarios: ScenarioResult[]
}

/** The Node major version of the Docker image (`FROM node:22-…`; a test holds them together). */
export const IMAGE_NODE_MAJOR = 22

function num(v: unknown): number | undefined {
  return typeof v === 'number' && Number.isFinite(v) ? v : undefined
}

/** `12345.6` → `12 346`; small numbers keep `digits` decimals. */
export function formatNumber(v: number, digits: number): string {
  const fixed = v.toFixed(digits)
  const [int, frac] = fixed.split('.')
  const grouped = int!.replace(/\B(?=(\d{3})+(?!\d))/g, ' ')
  return frac === undefined ? grouped : `${grouped}.${frac}`
}

interface Cell {
  readonly text: string
  readonly align: 'left' | 'right'
}

function cells(result: ScenarioResult): { head: string[]; body: Cell[][] } {
  const base = result.rows.find((r) => r.key === result.baseline)
  const head = ['subject']
  for (const c of result.columns) {
    head.push(c.title)
    if (c.ratio !== undefined) head.push('×base')
    if (c.delta === true) head.push('Δbase')
  }
  const body = result.rows.map((row) => {
    const line: Cell[] = [{ text: row.key === result.baseline ? `${row.label} (baseline)` : row.label, align: 'left' }]
    for (const c of result.columns) {
      const v = num(row[c.key])
      line.push({ text: v === undefined ? (typeof row[c.key] === 'string' ? String(row[c.key]) : '—') : formatNumber(v, c.digits), align: 'right' })
      const b = base === undefined || row.comparable === false ? undefined : num(base[c.key])
      if (c.ratio !== undefined) {
        const text = v === undefined || b === undefined || b === 0 ? '—' : row.key === result.baseline ? '1.00' : (v / b).toFixed(2)
        line.push({ text, align: 'right' })
      }
      if (c.delta === true) {
        const text = v === undefined || b === undefined ? '—' : row.key === result.baseline ? '0' : `${v - b >= 0 ? '+' : ''}${(v - b).toFixed(c.digits)}`
        line.push({ text, align: 'right' })
      }
    }
    return line
  })
  return { head, body }
}

/** The scenario as a fixed-width console table, its targets and its notes. */
export function consoleTable(result: ScenarioResult): string {
  const { head, body } = cells(result)
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((line) => line[i]!.text.length)))
  const pad = (text: string, i: number, align: 'left' | 'right') => (align === 'left' ? text.padEnd(widths[i]!) : text.padStart(widths[i]!))
  const lines = [
    `${result.title}`,
    `  ${result.load}`,
    '',
    `  ${head.map((h, i) => pad(h, i, i === 0 ? 'left' : 'right')).join('  ')}`,
    ...body.map((line) => `  ${line.map((c, i) => pad(c.text, i, c.align)).join('  ')}`),
  ]
  if (result.targets.length > 0) {
    lines.push('')
    for (const t of result.targets) lines.push(`  ${verdict(t).padEnd(11)}${targetLine(t)}`)
  }
  for (const note of result.notes) lines.push(`  note: ${note}`)
  return `${lines.join('\n')}\n`
}

/** The scenario as a markdown section (table, targets, notes). */
export function markdownTable(result: ScenarioResult): string {
  const { head, body } = cells(result)
  const lines = [
    `### ${result.name}: ${result.title}`,
    '',
    `${result.load}`,
    '',
    `| ${head.join(' | ')} |`,
    `| ${head.map((_, i) => (i === 0 ? '---' : '---:')).join(' | ')} |`,
    ...body.map((line) => `| ${line.map((c) => c.text).join(' | ')} |`),
  ]
  if (result.targets.length > 0) {
    lines.push('')
    for (const t of result.targets) lines.push(`- **${verdict(t)}** ${targetLine(t)}`)
  }
  if (result.notes.length > 0) {
    lines.push('')
    for (const note of result.notes) lines.push(`- ${note}`)
  }
  return `${lines.join('\n')}\n`
}

/** The header of a run: when, where, how. */
export function runHeader(run: RunResult): string {
  return (
    `${run.date}${run.commit === undefined ? '' : ` · code of ${run.commit}${run.dirty === true ? ' with uncommitted changes' : ''}`} · Node ${run.node} · ${run.cpus} × ${run.cpuModel} · ${run.platform} · ` +
    `${run.mode} mode (${run.durationSeconds} s per measurement, ${run.connections} connections, ${run.rounds} round${run.rounds === 1 ? '' : 's'})` +
    (run.ecluseImageNodeArgs === undefined || run.ecluseImageNodeArgs.length === 0
      ? ''
      : ` · écluse runs with its image's Node options, node ${run.ecluseImageNodeArgs.join(' ')}${run.node.startsWith(`v${IMAGE_NODE_MAJOR}.`) ? '' : ` (the image's Node is ${IMAGE_NODE_MAJOR}, this run's ${run.node})`}`) +
    (run.ecluseNodeArgs === undefined ? '' : ` · écluse runs with ${run.ecluseNodeArgs.join(' ')}`) +
    (run.ecluseEnv === undefined
      ? ''
      : ` · écluse's environment adds ${Object.entries(run.ecluseEnv)
          .map(([k, v]) => `${k}=${v}`)
          .join(' ')}`)
  )
}
