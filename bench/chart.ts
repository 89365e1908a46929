/**
 * The chart of docs/benchmarks.md: an SVG drawn from a run's JSON by this small script (no
 * dependency). One panel per main scenario, one bar per subject, the bar length being the ratio to
 * the scenario's baseline (the absolute figure is printed beside it), with the target as a dashed
 * line where the issue sets one. Each panel has its own linear scale, from 0 to a little past its
 * longest bar or target: the sealing scenarios compare against a baseline many times slower.
 *
 *   node --import tsx bench/chart.ts bench/results/<run>.json > docs/benchmarks.svg
 */
import { readFileSync } from 'node:fs'
import { isMain } from './lib/child.js'
import { formatNumber, type RunResult, type ScenarioResult } from './lib/results.js'

interface Panel {
  readonly scenario: string
  readonly title: string
  /** The row field charted, and how it is printed. */
  readonly metric: string
  readonly unit: string
  readonly digits: number
  /** A ratio target (dashed line), if the issue sets one. */
  readonly target?: number
  /** Rows drawn lighter: references of the same requests without the transform under test. */
  readonly references?: readonly string[]
}

const PASS_THROUGH = ['ecluse', 'bare'] as const

/** The main scenarios, in the order they are drawn. */
const PANELS: readonly Panel[] = [
  { scenario: 'passthrough', title: 'passthrough — requests/s', metric: 'rps', unit: 'req/s', digits: 0, target: 0.9 },
  { scenario: 'handshakes', title: 'handshakes — new mTLS connections/s', metric: 'rps', unit: 'conn/s', digits: 0, target: 0.8 },
  { scenario: 'seal-fields', title: 'seal-fields — requests/s, six fields sealed per record (vs naive jose)', metric: 'rps', unit: 'req/s', digits: 0, target: 5, references: PASS_THROUGH },
  { scenario: 'open-fields', title: 'open-fields — requests/s, six fields opened per record (vs naive jose)', metric: 'rps', unit: 'req/s', digits: 0, target: 5, references: PASS_THROUGH },
  { scenario: 'bulk-seal', title: 'bulk-seal — fields sealed/s, one gateway process (vs naive jose)', metric: 'fieldsPerSecond', unit: 'fields/s', digits: 0, references: PASS_THROUGH },
  { scenario: 'stream-seal', title: 'stream-seal — upload MB/s (vs écluse without a transform)', metric: 'mbps', unit: 'MB/s', digits: 1, target: 0.7, references: PASS_THROUGH },
  { scenario: 'stream-open', title: 'stream-open — download MB/s (vs écluse without a transform)', metric: 'mbps', unit: 'MB/s', digits: 1, target: 0.7, references: PASS_THROUGH },
  { scenario: 'concurrency', title: 'concurrency — upload MB/s (500 in flight)', metric: 'mbps', unit: 'MB/s', digits: 1 },
  { scenario: 'metrics', title: 'metrics — requests/s with a scrape every second', metric: 'rps', unit: 'req/s', digits: 0, target: 0.97 },
  { scenario: 'workers', title: 'workers — requests/s, 1 → 2 workers', metric: 'rps', unit: 'req/s', digits: 0 },
]

const WIDTH = 760
const LABEL_W = 200
const BAR_W = 380
const ROW_H = 22
const GAP = 30

/** The panel's scale: 0 … a round number past its longest bar, its target and 1.0. */
function scaleOf(ratios: readonly number[], target: number | undefined): number {
  const top = Math.max(1, target ?? 0, ...ratios) * 1.1
  const step = top <= 2 ? 0.25 : top <= 5 ? 0.5 : top <= 20 ? 2 : 10 ** Math.floor(Math.log10(top))
  return Math.ceil(top / step) * step
}

function escapeXml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')
}

function colour(key: string, baseline: string, references: readonly string[]): string {
  if (key === baseline) return '#9aa5b1'
  const reference = references.includes(key)
  if (key.startsWith('ecluse')) return reference ? '#a5c8f5' : '#1f6feb'
  return reference ? '#ecd699' : '#d4a72c'
}

/** The SVG text of the chart for `run` (scenarios absent from the run are left out). */
export function renderChart(run: RunResult): string {
  const parts: string[] = []
  let y = 76
  for (const panel of PANELS) {
    const s: ScenarioResult | undefined = run.scenarios.find((x) => x.name === panel.scenario)
    if (s === undefined) continue
    const base = s.rows.find((r) => r.key === s.baseline)
    const baseValue = typeof base?.[panel.metric] === 'number' ? (base[panel.metric] as number) : undefined
    if (baseValue === undefined || baseValue === 0) continue
    // Rows measured otherwise than the baseline (micro-benchmarks beside network rows) are left out.
    const bars = s.rows.filter((r) => r.comparable !== false && typeof r[panel.metric] === 'number')
    const max = scaleOf(
      bars.map((r) => (r[panel.metric] as number) / baseValue),
      panel.target,
    )
    const x = (ratio: number) => LABEL_W + (Math.min(ratio, max) / max) * BAR_W
    parts.push(
      `<text x="16" y="${y}" class="h">${escapeXml(panel.title)}</text>`,
      `<text x="${WIDTH - 16}" y="${y}" class="s" text-anchor="end">scale 0–${max}×</text>`,
    )
    y += 10
    const top = y
    for (const r of bars) {
      const v = r[panel.metric] as number
      const ratio = v / baseValue
      const w = Math.max(1, x(ratio) - LABEL_W)
      parts.push(
        `<text x="${LABEL_W - 8}" y="${y + 15}" class="l">${escapeXml(r.label)}</text>`,
        `<rect x="${LABEL_W}" y="${y + 3}" width="${w.toFixed(1)}" height="${ROW_H - 6}" fill="${colour(r.key, s.baseline, panel.references ?? [])}"/>`,
        `<text x="${LABEL_W + w + 6}" y="${y + 15}" class="v">${ratio.toFixed(2)}× · ${escapeXml(formatNumber(v, panel.digits))} ${panel.unit}</text>`,
      )
      y += ROW_H
    }
    parts.push(`<line x1="${x(1)}" y1="${top}" x2="${x(1)}" y2="${y}" class="one"/>`)
    if (panel.target !== undefined) {
      const xt = x(panel.target)
      parts.push(`<line x1="${xt}" y1="${top}" x2="${xt}" y2="${y}" class="t"/>`, `<text x="${xt}" y="${y + 11}" class="tl">target ${panel.target}×</text>`)
    }
    y += GAP
  }
  const height = y + 10
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" font-family="system-ui, -apple-system, Segoe UI, sans-serif">`,
    '<style>.h{font-size:14px;font-weight:600;fill:#24292f}.l{font-size:12px;text-anchor:end;fill:#24292f}' +
      '.v{font-size:12px;fill:#57606a;paint-order:stroke;stroke:#ffffff;stroke-width:3px}' +
      '.one{stroke:#24292f;stroke-width:1}.t{stroke:#cf222e;stroke-width:1.5;stroke-dasharray:4 3}.tl{font-size:10px;fill:#cf222e;text-anchor:middle}' +
      '.s{font-size:11px;fill:#57606a}</style>',
    `<rect width="${WIDTH}" height="${height}" fill="#ffffff"/>`,
    `<text x="16" y="22" class="h">Écluse vs its baselines — ratio to the baseline of each scenario (grey), same run</text>`,
    `<text x="16" y="38" class="s">${escapeXml(`${run.date.slice(0, 10)} · Node ${run.node} · ${run.cpus} × ${run.cpuModel} · ${run.mode} mode`)}</text>`,
    '<text x="16" y="54" class="s">solid line: 1.0× the baseline · dashed: the target · light bars: the same requests without the transform under test</text>',
    ...parts,
    '</svg>',
    '',
  ].join('\n')
}

if (isMain(import.meta.url)) {
  const file = process.argv[2]
  if (file === undefined) {
    process.stderr.write('usage: node --import tsx bench/chart.ts bench/results/<run>.json > chart.svg\n')
    process.exit(2)
  }
  process.stdout.write(renderChart(JSON.parse(readFileSync(file, 'utf8')) as RunResult))
}
