/**
 * Where the time goes: a summary of a V8 CPU profile (`node --cpu-prof`, e.g. from
 * `npm run bench -- --scenario passthrough --cpu-prof /tmp/prof`), by self time per area of the
 * code and per function.
 *
 *   node --import tsx bench/profile.ts /tmp/prof/<subject>/CPU.*.cpuprofile [--top 30] [--skip-ms 8000]
 *
 * `--skip-ms` leaves out the first milliseconds of the profile (boot, warm-up and prime), so the
 * shares are those of the steady state. Shares are of the CPU samples that remain, idle excluded.
 */
import { readFileSync } from 'node:fs'
import { parseArgs } from 'node:util'

interface ProfileNode {
  id: number
  callFrame: { functionName: string; url: string; lineNumber: number }
  hitCount?: number
  children?: number[]
}

interface Profile {
  nodes: ProfileNode[]
  startTime: number
  endTime: number
  samples?: number[]
  timeDeltas?: number[]
}

/** The area a frame belongs to: our stages by folder, libraries by package, Node internals by module. */
export function areaOf(url: string, functionName: string): string {
  if (url === '') {
    if (functionName === '(garbage collector)') return 'V8 garbage collector'
    if (functionName === '(idle)' || functionName === '(program)') return functionName
    return `native: ${functionName || '(anonymous)'}`
  }
  const src = /\/src\/([^/]+)(?:\/([^/]+))?/.exec(url)
  if (src !== null && !url.includes('node_modules')) return src[2] === undefined ? `src/${src[1]}` : `src/${src[1]}/`
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url)
  if (pkg !== null) return `npm: ${pkg[1]}`
  if (url.startsWith('node:')) return url.replace(/^node:internal\//, 'node:').split('/').slice(0, 2).join('/')
  return url
}

export function summarise(profile: Profile, skipMs = 0): { totalMs: number; byArea: Map<string, number>; byFunction: Map<string, number> } {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]))
  const selfMs = new Map<number, number>()
  const samples = profile.samples ?? []
  const deltas = profile.timeDeltas ?? []
  // timeDeltas[i] is the time since the previous sample; sample i lies at startTime + Σ deltas[0..i].
  let atUs = 0
  for (let i = 0; i < samples.length; i++) {
    atUs += deltas[i] ?? 0
    if (atUs < skipMs * 1000) continue
    selfMs.set(samples[i]!, (selfMs.get(samples[i]!) ?? 0) + (deltas[i] ?? 0) / 1000)
  }
  const byArea = new Map<string, number>()
  const byFunction = new Map<string, number>()
  let totalMs = 0
  for (const [id, ms] of selfMs) {
    const node = byId.get(id)!
    const { functionName, url, lineNumber } = node.callFrame
    if (functionName === '(idle)') continue
    totalMs += ms
    const area = areaOf(url, functionName)
    byArea.set(area, (byArea.get(area) ?? 0) + ms)
    const fn = `${functionName || '(anonymous)'} ${url.replace(/^.*\/(src|node_modules)\//, '$1/')}:${lineNumber + 1}`
    byFunction.set(fn, (byFunction.get(fn) ?? 0) + ms)
  }
  return { totalMs, byArea, byFunction }
}

function table(title: string, map: Map<string, number>, totalMs: number, top: number): string {
  const rows = [...map].sort((a, b) => b[1] - a[1]).slice(0, top)
  return [title, ...rows.map(([name, ms]) => `  ${((ms / totalMs) * 100).toFixed(1).padStart(5)} %  ${ms.toFixed(0).padStart(7)} ms  ${name}`)].join('\n')
}

const { values, positionals } = parseArgs({ options: { top: { type: 'string', default: '25' }, 'skip-ms': { type: 'string', default: '0' } }, allowPositionals: true })
if (positionals.length === 0) {
  process.stderr.write('usage: node --import tsx bench/profile.ts FILE.cpuprofile… [--top N] [--skip-ms MS]\n')
  process.exit(2)
}
for (const file of positionals) {
  const { totalMs, byArea, byFunction } = summarise(JSON.parse(readFileSync(file, 'utf8')) as Profile, Number(values['skip-ms']))
  const top = Number(values.top)
  process.stdout.write(`${file}: ${totalMs.toFixed(0)} ms of CPU samples (idle excluded)\n\n`)
  process.stdout.write(`${table('by area (self time):', byArea, totalMs, top)}\n\n${table('by function (self time):', byFunction, totalMs, top)}\n\n`)
}
