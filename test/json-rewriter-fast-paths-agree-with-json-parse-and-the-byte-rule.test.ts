/**
 * The per-target fast paths of the rewriter and of the field transforms (docs/json-rewriter.md,
 * "Performance") against what they shortcut:
 *  - the replacement check's word-at-a-time scan against the byte rule it implements, at every
 *    alignment;
 *  - `target.value` of a string without escapes against `JSON.parse` of its raw text;
 *  - the `ecl.ptr` claims computed once per pattern against `formatPointer` of where each value sits;
 *  - member names interned in a cache shared by the streams of one rule set against fresh streams.
 */
import fc from 'fast-check'
import t from 'tap'
import { compileRules, formatPointer } from '../src/transform/json/pointer.js'
import { isPlainJsonString, JsonRewriteEngine, type JsonTarget } from '../src/transform/json/rewriter.js'
import { compileFieldRules, pointerClaim } from '../src/transform/json-fields.js'
import { arbCuts, arbJsonValue, arbSpelling, chunked, runEngine, spell } from './json-helpers.js'

/** The rule, byte by byte: quotes around printable ASCII (0x20–0x7f) without '"' or '\'. */
function plainByTheRule(b: Uint8Array): boolean {
  if (b.length < 2 || b[0] !== 0x22 || b[b.length - 1] !== 0x22) return false
  for (let i = 1; i < b.length - 1; i++) {
    const c = b[i]!
    if (c < 0x20 || c > 0x7f || c === 0x22 || c === 0x5c) return false
  }
  return true
}

t.test('the word-at-a-time replacement check decides exactly as the byte rule, at every alignment', async () => {
  const b64ish = fc.constantFrom(...'ABCabc012-_.~ '.split('').map((c) => c.charCodeAt(0)))
  const special = fc.oneof(fc.constantFrom(0x00, 0x09, 0x0a, 0x1f, 0x20, 0x22, 0x5c, 0x7e, 0x7f, 0x80, 0xc3, 0xff), fc.integer({ min: 0, max: 255 }))
  fc.assert(
    fc.property(
      // Good bytes with at most a couple of others injected anywhere: a single bad byte must be seen
      // wherever it falls, in the word-aligned middle or at the unaligned ends.
      fc.array(b64ish, { maxLength: 400, size: 'max' }),
      fc.array(fc.tuple(fc.nat(), special), { maxLength: 2 }),
      fc.nat(7),
      fc.boolean(),
      (good, injected, offset, quoted) => {
        const inner = [...good]
        for (const [at, c] of injected) inner.splice(inner.length === 0 ? 0 : at % (inner.length + 1), 0, c)
        const bytes = quoted ? [0x22, ...inner, 0x22] : inner
        const backing = new Uint8Array(bytes.length + 16)
        backing.set(bytes, offset)
        const b = backing.subarray(offset, offset + bytes.length)
        return isPlainJsonString(b) === plainByTheRule(b)
      },
    ),
    { numRuns: 4000 },
  )
})

t.test('target.value of a string equals JSON.parse of its raw text, escaped or not, in any chunking', async () => {
  const value = fc.string({ unit: fc.oneof(fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }), fc.constantFrom('"', '\\', '/', '\u0000', '\u2028', 'é', '😀', 'A')), maxLength: 30 })
  fc.assert(
    fc.property(value, arbSpelling, arbCuts, (v, sp, cuts) => {
      const body = Buffer.from(spell({ a: v, b: [v] }, sp).text, 'utf8')
      const rules = compileFieldRules({ fields: ['/a', '/b/0'], format: 'json', maxValueBytes: 1 << 20, maxRecordBytes: 1 << 20, maxFieldsPerRecord: 1000 }).rules
      const seen: unknown[] = []
      const e = new JsonRewriteEngine({
        mode: 'document',
        rules,
        onValue: (tg) => {
          seen.push(tg.value, JSON.parse(tg.raw.toString('utf8')))
          return 'keep'
        },
      })
      for (const c of chunked(body, cuts)) e.write(c)
      e.end()
      return seen.length === 4 && seen[0] === v && seen[1] === v && seen[2] === v && seen[3] === v
    }),
    { numRuns: 400 },
  )
})

t.test('claims computed once per pattern equal formatPointer of where each value sits', async (t) => {
  const body = {
    contact: { phone: 1, 'a/b~c': 2 },
    people: [{ name: 'x', tags: ['t0', 't1'] }, { name: 'y', tags: [] }],
    records: [
      { id: 'r1', passport: 'p', addr: { city: 'c', zip: 'z' }, list: ['l0'] },
      { id: 7, passport: 'q', addr: { city: 'd', zip: 'w' }, list: ['l0', 'l1'] },
    ],
  }
  const fields = ['/contact/phone', '/contact/a~1b~0c', '/people/*/name', '/people/0/tags/1', '/records/*/passport', '/records/*/addr/*', '/records/1/list/0']
  for (const records of [undefined, { pattern: '/records/*', id: 'id' }]) {
    const rules = compileFieldRules({ fields, records, format: 'json', maxValueBytes: 1 << 20, maxRecordBytes: 1 << 20, maxFieldsPerRecord: 1000 })
    const claims: string[] = []
    const reference: string[] = []
    const e = new JsonRewriteEngine({
      mode: 'document',
      rules: rules.rules,
      onValue: (tg: JsonTarget<(typeof rules.rules.targets)[number]['rule']>) => {
        claims.push(pointerClaim(tg, rules.recordPattern, false))
        const rec = tg.record
        reference.push(rec === undefined || rules.recordPattern === undefined ? formatPointer(tg.pointer) : rules.recordPattern + formatPointer(tg.pointer.slice(rec.pointer.length)))
        return 'keep'
      },
    })
    e.write(Buffer.from(JSON.stringify(body)))
    e.end()
    t.same(claims, reference, records === undefined ? 'outside records' : 'with record binding')
    t.ok(claims.length >= 9, `every target seen (${claims.length})`)
  }
  const r = compileFieldRules({ fields: ['/records/*/addr/*', '/x/y'], records: { pattern: '/records/*', id: 'id' }, format: 'json', maxValueBytes: 1, maxRecordBytes: 1, maxFieldsPerRecord: 1 }).rules
  t.same(
    r.targets.map((x) => x.rule),
    [
      { claim: undefined, recordClaim: undefined },
      { claim: '/x/y', recordClaim: undefined },
    ],
    'a wildcard where the value shows leaves the claim to be formatted per value',
  )
})

t.test('streams sharing one rule set (and its interned names) decide exactly as streams with rules of their own', async () => {
  const patterns = ['/a', '/records/*/name', '/x/*/y']
  const shared = compileRules({ targets: patterns.map((p) => ({ pattern: p, rule: p })) })
  const handler = (tg: JsonTarget<string>) => ({ replace: JSON.stringify(`<${tg.pattern}>`) })
  // Bodies whose names repeat across messages, with duplicates and escaped spellings of them.
  const body = fc.oneof(
    arbJsonValue('grapheme-ascii').map((v) => JSON.stringify({ a: v, records: [{ name: v }], x: [{ y: 1 }] })),
    fc.constantFrom('{"a":1,"a":2}', '{"name":1,"n\\u0061me":2}', '{"records":[{"name":1},{"name":2,"name":3}]}', '{"x":[{"y":1,"\\u0079":2}]}'),
  )
  fc.assert(
    fc.property(fc.array(body, { minLength: 1, maxLength: 6 }), arbCuts, (bodies, cuts) => {
      for (const b of bodies) {
        const chunks = chunked(Buffer.from(b), cuts)
        const fresh = runEngine(chunks, patterns, handler)
        const e = new JsonRewriteEngine<string>({ mode: 'document', rules: shared, onValue: handler })
        const outs: Buffer[] = []
        let code: string | undefined
        try {
          for (const c of chunks) {
            e.write(c)
            const o = e.takeOutput()
            if (o) outs.push(o)
          }
          e.end()
          const o = e.takeOutput()
          if (o) outs.push(o)
        } catch (err) {
          code = (err as { code: string }).code
        }
        if (code !== fresh.err?.code) return false
        if (code === undefined && Buffer.concat(outs).toString('utf8') !== fresh.out) return false
      }
      return true
    }),
    { numRuns: 300 },
  )
})
