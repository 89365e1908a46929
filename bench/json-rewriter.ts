/**
 * Micro-benchmark of the streaming JSON rewriter (no cryptography: the action is a constant
 * replacement, so this measures the tokenizer and the splicing, not sealing).
 *
 *   node --import tsx bench/json-rewriter.ts [--mib 16] [--chunk 65536]
 *
 * Each figure is printed next to its baseline, `JSON.parse` of the same bytes (what a non-streaming
 * implementation would at least pay, before re-serialising), as a ratio. Rows:
 *  - pass-through: an array of ~1 KiB records (16 MiB by default), no targets;
 *  - 6 fields sealed per record (the sealing benchmark's shape), with and without record binding;
 *  - the same as NDJSON.
 */
import { performance } from 'node:perf_hooks'
import { compileRules } from '../src/transform/json/pointer.js'
import { type JsonAction, JsonRewriteEngine, type JsonRewriterOptions } from '../src/transform/json/rewriter.js'

const args = new Map<string, string>()
for (let i = 2; i < process.argv.length; i += 2) args.set(process.argv[i]!.replace(/^--/, ''), process.argv[i + 1] ?? '')
const MIB = Number(args.get('mib') ?? 16)
const CHUNK = Number(args.get('chunk') ?? 64 * 1024)

const FIELDS = ['passport', 'ssn', 'birthDate', 'phone', 'email', 'address']

/** One ~1 KiB record with the six sensitive fields spread among ordinary ones. */
function record(i: number): Record<string, unknown> {
  return {
    id: `rec-${i}`,
    passport: `P${String(i).padStart(8, '0')}`,
    status: 'accredited',
    ssn: `${100 + (i % 800)}-55-${String(i % 10000).padStart(4, '0')}`,
    issuedAt: '2024-05-01T10:00:00Z',
    birthDate: '1980-01-01',
    scopes: ['read', 'write', 'audit', 'export'],
    phone: '+33 1 23 45 67 89',
    notes: 'Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore et dolore magna aliqua. Ut enim ad minim veniam, quis nostrud exercitation ullamco laboris nisi ut aliquip ex ea commodo consequat.',
    email: `holder${i}@example.org`,
    score: 1234.5 + i,
    flags: { verified: true, revoked: false, level: 3 },
    address: { street: '1 rue de la Paix', city: 'Paris', zip: '75002', country: 'FR' },
    history: [
      { at: '2023-01-01T00:00:00Z', by: 'officer-12', action: 'created' },
      { at: '2023-06-01T00:00:00Z', by: 'officer-7', action: 'renewed' },
    ],
    tags: ['alpha', 'beta', 'gamma'],
    remarks: 'Duis aute irure dolor in reprehenderit in voluptate velit esse cillum dolore eu fugiat nulla pariatur, excepteur sint occaecat cupidatat non proident.',
    reviewer: { name: 'Officer Martin', badge: 'B-2231', unit: 'North' },
  }
}

function buildArray(bytes: number): { body: Buffer; records: number } {
  const parts: string[] = []
  let size = 14
  let n = 0
  while (size < bytes) {
    const s = JSON.stringify(record(n++))
    parts.push(s)
    size += s.length + 1
  }
  return { body: Buffer.from(`{"records":[${parts.join(',')}]}`), records: n }
}

const SEALED: JsonAction = { replace: '"eyJhbGciOiJkaXIiLCJlbmMiOiJBMjU2R0NNIn0..c2VhbGVk.Y2lwaGVydGV4dA.dGFn"' }

function run(body: Buffer, opts: Omit<JsonRewriterOptions<string>, 'onValue'>, onValue: () => JsonAction): { ms: number; out: number; calls: number } {
  let calls = 0
  const e = new JsonRewriteEngine<string>({
    maxRecordBytes: 64 * 1024,
    ...opts,
    onValue: () => {
      calls++
      return onValue()
    },
  })
  let out = 0
  const t0 = performance.now()
  for (let i = 0; i < body.length; i += CHUNK) {
    e.write(body.subarray(i, i + CHUNK))
    out += e.takeOutput()?.length ?? 0
  }
  e.end()
  out += e.takeOutput()?.length ?? 0
  return { ms: performance.now() - t0, out, calls }
}

function best<T extends { ms: number }>(f: () => T, reps = 5): T {
  let b: T | null = null
  for (let k = 0; k < reps; k++) {
    const r = f()
    if (b === null || r.ms < b.ms) b = r
  }
  return b!
}

const { body, records } = buildArray(MIB * 1024 * 1024)
const ndjsonBody = Buffer.from(
  (JSON.parse(body.toString()) as { records: unknown[] }).records.map((r) => JSON.stringify(r)).join('\n') + '\n',
)
const mb = body.length / 1e6

const parse = best(() => {
  const t0 = performance.now()
  JSON.parse(body.toString('utf8'))
  return { ms: performance.now() - t0 }
})
const parseNd = best(() => {
  const t0 = performance.now()
  for (const line of ndjsonBody.toString('utf8').split('\n')) if (line !== '') JSON.parse(line)
  return { ms: performance.now() - t0 }
})

const none = compileRules<string>({ targets: [] })
const sealTargets = FIELDS.map((f) => ({ pattern: `/records/*/${f}`, rule: f }))
const sealRules = compileRules({ targets: sealTargets })
const boundRules = compileRules({ targets: sealTargets, record: { pattern: '/records/*', idMember: 'id' } })
const ndRules = compileRules({ targets: FIELDS.map((f) => ({ pattern: `/${f}`, rule: f })), record: { pattern: '', idMember: 'id' } })

const rows: [string, number, number, number][] = []
const row = (name: string, r: { ms: number; calls: number }, baseMs: number, bytes: number) => rows.push([name, bytes / 1e6 / (r.ms / 1000), r.calls / (r.ms / 1000), baseMs / r.ms])

row('pass-through (no targets)', best(() => run(body, { rules: none, mode: 'document' }, () => 'keep')), parse.ms, body.length)
row('6 fields/record kept', best(() => run(body, { rules: sealRules, mode: 'document' }, () => 'keep')), parse.ms, body.length)
row('6 fields/record replaced', best(() => run(body, { rules: sealRules, mode: 'document' }, () => SEALED)), parse.ms, body.length)
row('6 fields/record replaced, record-bound', best(() => run(body, { rules: boundRules, mode: 'document' }, () => SEALED)), parse.ms, body.length)
row('NDJSON, 6 fields replaced, record-bound', best(() => run(ndjsonBody, { rules: ndRules, mode: 'ndjson' }, () => SEALED)), parseNd.ms, ndjsonBody.length)

console.log(`body: ${mb.toFixed(1)} MB, ${records} records of ~${Math.round(body.length / records)} B, ${CHUNK} B chunks, Node ${process.version}`)
console.log(`baseline JSON.parse: ${(mb / (parse.ms / 1000)).toFixed(0)} MB/s (document), ${(ndjsonBody.length / 1e6 / (parseNd.ms / 1000)).toFixed(0)} MB/s (NDJSON, per line)`)
console.log('')
console.log('| case | MB/s | fields/s | vs JSON.parse |')
console.log('|---|---:|---:|---:|')
for (const [name, mbs, fps, ratio] of rows) {
  console.log(`| ${name} | ${mbs.toFixed(0)} | ${fps === 0 ? '-' : Math.round(fps).toLocaleString('en')} | ${ratio.toFixed(2)}x |`)
}
