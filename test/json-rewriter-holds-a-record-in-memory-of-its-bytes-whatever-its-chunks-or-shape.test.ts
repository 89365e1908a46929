import { setTimeout as sleep } from 'node:timers/promises'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import t, { type Test } from 'tap'
import { compileRules } from '../src/transform/json/pointer.js'
import { JsonRewriteEngine, type JsonTarget } from '../src/transform/json/rewriter.js'
import { everyByte, runEngine } from './json-helpers.js'

// What the engine holds while a record is undecided, measured after full collections: only what
// it holds is left then, not the garbage of the chunks it has read.
setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as () => void
async function liveBytes(): Promise<number> {
  gc()
  await sleep(50) // dead Buffers are freed by a background sweeper after the collection that found them
  gc()
  const m = process.memoryUsage()
  return m.heapUsed + m.arrayBuffers
}

const MiB = 1024 * 1024
const record = { pattern: '/records/*', idMember: 'id' }

/** Feeds `text` to `engine`, `chunk` bytes at a time, through views that die as soon as they are read. */
function feed(engine: JsonRewriteEngine<string>, text: Buffer, chunk: number): void {
  for (let i = 0; i < text.length; i += chunk) {
    if (engine.write(text.subarray(i, i + chunk)) !== undefined) throw new Error('unexpected asynchronous action')
    engine.takeOutput()
  }
}

/** What the engine holds once `open` (most of one record, not yet ended) has been fed in `chunk`-byte chunks. */
async function heldWhileOpen(t: Test, patterns: string[], open: string, close: string, chunk: number): Promise<number> {
  const rules = compileRules({ targets: patterns.map((p) => ({ pattern: p, rule: p })), record })
  const engine = new JsonRewriteEngine<string>({ mode: 'document', rules, onValue: () => 'keep', maxRecordBytes: 2 * MiB })
  const text = Buffer.from(open)
  const before = await liveBytes()
  feed(engine, text, chunk)
  const held = (await liveBytes()) - before - text.length // the test's own copy of the input stays alive
  t.comment(`${(held / MiB).toFixed(2)} MiB held for ${(text.length / MiB).toFixed(2)} MiB of an open record in ${chunk}-byte chunks`)
  engine.write(Buffer.from(close))
  engine.end()
  t.ok(engine.takeOutput()?.toString().endsWith(close), 'and the record then completes')
  return held
}

t.test('a record arriving one byte per chunk is held in about its own size, not a Buffer per byte', async (t) => {
  // 1.5 MiB of a record (a long member value) sent one byte at a time. The rewriter used to copy each
  // chunk's held tail into a Buffer of its own: about 100 bytes of objects per byte held (150 MiB).
  const open = `{"records":[{"id":"r-1","notes":"${'n'.repeat(1.5 * MiB)}","tags":[`
  const held = await heldWhileOpen(t, ['/records/*/passport'], open, ']}]}', 1)
  t.ok(held < 6 * MiB, `held ${(held / MiB).toFixed(2)} MiB, under 6 MiB for 1.5 MiB of record`)
})

t.test('a record made of long arrays where members are targeted holds no entry per element', async (t) => {
  // A container that holds targets keeps its members undecided until the record ends, for the
  // commas a removal changes. An array where the fields name members (a record that is an array, or
  // `docs` under `/records/*/docs/number`) has no targeted element: the rewriter used to keep an
  // entry per element all the same, about 100 bytes each.
  const half = '0,'.repeat(0.375 * MiB)
  const open = `{"records":[{"id":"r-1","passport":"P","docs":[${half}0]},[${half}`
  const held = await heldWhileOpen(t, ['/records/*/passport', '/records/*/docs/number'], open, '0]]}', 64 * 1024)
  t.ok(held < 6 * MiB, `held ${(held / MiB).toFixed(2)} MiB, under 6 MiB for 1.5 MiB of records`)
})

t.test('a record may hold only so many targeted values: over the cap it is refused as value_too_large', async (t) => {
  const body = (n: number) => JSON.stringify({ records: [{ id: 'r-1', docs: Array.from({ length: n }, (_, i) => ({ number: `N${i}` })) }] })
  const patterns = ['/records/*/docs/*/number']
  let calls = 0
  const count = (_tg: JsonTarget<string>) => {
    calls++
    return { replace: '"S"' } as const
  }
  for (const chunks of [[Buffer.from(body(5))], everyByte(Buffer.from(body(5)))]) {
    calls = 0
    const over = runEngine(chunks, patterns, count, { record, maxRecordTargets: 4 })
    t.equal(over.err?.code, 'value_too_large', `five values over a cap of four are refused (${chunks.length} chunks)`)
    t.match(over.err?.message, /more targeted values in a record than its cap at byte \d+/)
    t.equal(calls, 0, 'no action ran for the refused record')
    t.notMatch(over.out, /N\d/, 'nothing of the record came out')
  }
  const at = runEngine([Buffer.from(body(4))], patterns, count, { record, maxRecordTargets: 4 })
  t.equal(at.err, undefined, 'four values at a cap of four pass')
  t.same(JSON.parse(at.out), { records: [{ id: 'r-1', docs: [{ number: 'S' }, { number: 'S' }, { number: 'S' }, { number: 'S' }] }] })
  const many = runEngine([Buffer.from(`{"records":[${Array.from({ length: 3 }, () => JSON.parse(body(4)).records[0]).map((r) => JSON.stringify(r)).join(',')}]}`)], patterns, count, {
    record,
    maxRecordTargets: 4,
  })
  t.equal(many.err, undefined, 'the cap is per record: three records of four values pass')
  const dflt = runEngine([Buffer.from(body(1001))], patterns, count, { record })
  t.equal(dflt.err?.code, 'value_too_large', 'the default cap is 1000 values a record')
  t.equal(runEngine([Buffer.from(body(1000))], patterns, count, { record }).err, undefined)
  const online = runEngine([Buffer.from(body(5))], patterns, count, { maxRecordTargets: 4 })
  t.equal(online.err, undefined, 'without record binding nothing is held, and the cap does not apply')
})
