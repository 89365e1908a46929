import fc from 'fast-check'
import t from 'tap'
import { arbCuts, arbJsonValue, arbSpelling, chunked, runEngine, spell } from './json-helpers.js'

const fatal = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true })

/** The independent judge: strict UTF-8, then the platform's JSON parser. */
function platformAccepts(b: Buffer): boolean {
  try {
    JSON.parse(fatal.decode(b))
    return true
  } catch {
    return false
  }
}

// Bytes that matter to a JSON tokenizer, plus UTF-8 lead and continuation bytes.
const arbByte = fc.oneof(
  fc.constantFrom(...Buffer.from('{}[]:,"\\/ \t\r\n0123456789-+.eEtfnulrsaxu')),
  fc.constantFrom(0x00, 0x1f, 0x7f, 0x80, 0xbf, 0xc0, 0xc2, 0xe0, 0xed, 0xef, 0xf0, 0xf4, 0xf5, 0xff),
)
const arbMutation = fc.record({ at: fc.nat(), op: fc.constantFrom('insert', 'delete', 'replace'), byte: arbByte })

function mutate(b: Buffer, muts: { at: number; op: string; byte: number }[]): Buffer {
  const a = [...b]
  for (const m of muts) {
    const i = a.length === 0 ? 0 : m.at % (a.length + (m.op === 'insert' ? 1 : 0))
    if (m.op === 'insert') a.splice(i, 0, m.byte)
    else if (m.op === 'delete') a.splice(i, 1)
    else a[i] = m.byte
  }
  return Buffer.from(a)
}

t.test('whatever the rewriter accepts, strict UTF-8 + JSON.parse accepts, and it comes out unchanged', async (t) => {
  let accepted = 0
  let refused = 0
  fc.assert(
    fc.property(
      arbJsonValue('grapheme'),
      arbSpelling,
      fc.array(arbMutation, { minLength: 1, maxLength: 3 }),
      arbCuts,
      (v, sp, muts, cuts) => {
        const body = mutate(Buffer.from(spell(v, sp).text), muts)
        const r = runEngine(chunked(body, cuts), ['/a', '/b/*/c', '/0'], () => 'keep')
        if (r.err === undefined) {
          accepted++
          return platformAccepts(body) && r.out === body.toString('utf8')
        }
        refused++
        return r.err.code === 'json_invalid'
      },
    ),
    { numRuns: 800 },
  )
  t.ok(accepted > 25 && refused > 300, `both sides exercised (${accepted} accepted, ${refused} refused)`)
})

t.test('limits are inclusive: exactly at the cap passes', async (t) => {
  const name = 'n'.repeat(16)
  t.equal(runEngine([Buffer.from(`{"${name}":1}`)], [], () => 'keep', { maxMemberNameBytes: 16 }).err, undefined)
  t.equal(runEngine([Buffer.from('[[[1]]]')], [], () => 'keep', { maxDepth: 3 }).err, undefined)
  t.equal(runEngine([Buffer.from(`{"p":"${'x'.repeat(30)}"}`)], ['/p'], () => 'keep', { maxValueBytes: 32 }).err, undefined)
  const gap = `{"a":1,${' '.repeat(7)}"p":"P"}`
  t.equal(runEngine([Buffer.from(gap)], ['/p'], () => 'remove', { maxGapBytes: 8, maxMemberNameBytes: 1 }).out, '{"a":1}')
})
