import fc from 'fast-check'
import t from 'tap'
import { compileRules } from '../src/transform/json/pointer.js'
import { exactSafeInteger, type JsonAction, type JsonTarget, MAX_NUMBER_CHARS } from '../src/transform/json/rewriter.js'
import { arbCuts, arbJsonValue, arbSpelling, chunked, escapeToken, everyByte, runEngine, spell } from './json-helpers.js'

const record = { pattern: '/records/*', idMember: 'id' }

t.test('every targeted value in a record receives the record id, before or after the field', async (t) => {
  const body = JSON.stringify({
    records: [
      { id: 'r1', passport: 'P1', name: 'a' },
      { passport: 'P2', name: 'b', id: 'r2' },
      { name: 'c', contact: { phone: '555' }, passport: 'P3', id: 42 },
      { name: 'd', passport: 'P4' },
    ],
    meta: { token: 'T' },
  })
  for (const chunks of [[Buffer.from(body)], everyByte(Buffer.from(body))]) {
    const seen: string[] = []
    const r = runEngine(chunks, ['/records/*/passport', '/records/*/contact/phone', '/meta/token'], (tg) => {
      seen.push(`${tg.pointer.join('.')} id=${String(tg.recordId)} rec=${tg.record?.pointer.join('.')}`)
      return { replace: JSON.stringify(`sealed:${String(tg.recordId)}`) }
    }, { record })
    t.equal(r.err, undefined)
    t.same(seen, [
      'records.0.passport id=r1 rec=records.0',
      'records.1.passport id=r2 rec=records.1',
      'records.2.contact.phone id=42 rec=records.2',
      'records.2.passport id=42 rec=records.2',
      'records.3.passport id=undefined rec=records.3',
      'meta.token id=undefined rec=undefined',
    ])
    const out = JSON.parse(r.out)
    t.equal(out.records[1].passport, 'sealed:r2', 'the id after the field was bound')
    t.equal(out.records[2].contact.phone, 'sealed:42')
  }
})

t.test('the id member is recognised after unescaping, and only directly in the record', async (t) => {
  const body = '{"records":[{"x":{"id":"inner"},"passport":"P","i\\u0064":"outer"}]}'
  const ids: unknown[] = []
  runEngine([Buffer.from(body)], ['/records/*/passport'], (tg) => {
    ids.push(tg.recordId)
    return 'keep'
  }, { record })
  t.same(ids, ['outer'])
})

t.test('the id is bound in plaintext even when the id itself is targeted', async (t) => {
  const body = '{"records":[{"passport":"P","id":"r9"}]}'
  const seen: [string, unknown][] = []
  const r = runEngine([Buffer.from(body)], ['/records/*/passport', '/records/*/id'], (tg) => {
    seen.push([String(tg.pointer[2]), tg.recordId])
    return { replace: '"S"' }
  }, { record })
  t.same(seen, [['passport', 'r9'], ['id', 'r9']])
  t.equal(r.out, '{"records":[{"passport":"S","id":"S"}]}')
})

t.test('removals inside a buffered record keep the record valid', async (t) => {
  const body = '{"records":[{"passport":"P","id":1,"visa":"V"},{"id":2,"visa":"V","passport":"P"},{"passport":"P","visa":"V"}]}'
  for (const chunks of [[Buffer.from(body)], everyByte(Buffer.from(body))]) {
    const r = runEngine(chunks, ['/records/*/passport', '/records/*/visa'], () => 'remove', { record })
    t.equal(r.out, '{"records":[{"id":1},{"id":2},{}]}')
  }
})

t.test('refuses an id that cannot bind, and a record over its cap', async (t) => {
  const cases: [string, string, string][] = [
    ['a boolean id', '{"records":[{"id":true,"passport":"P"}]}', 'json_invalid'],
    ['an object id', '{"records":[{"id":{"v":1},"passport":"P"}]}', 'json_invalid'],
    ['a null id', '{"records":[{"id":null}]}', 'json_invalid'],
    ['an id beyond 2^53', '{"records":[{"id":9007199254740993,"passport":"P"}]}', 'json_invalid'],
    ['a fractional id', '{"records":[{"passport":"P","id":1.5}]}', 'json_invalid'],
    // Regression (found by review): ids that a double rounds to an integer were bound as it, so a
    // value sealed in record 1 opened in record 0.99999999999999999, which an upstream reading
    // numbers exactly (Python's Decimal, BigDecimal, json.Number) takes for another record.
    ['an id just under 1', '{"records":[{"passport":"P","id":0.99999999999999999}]}', 'json_invalid'],
    ['an id just over 1', '{"records":[{"passport":"P","id":1.0000000000000001}]}', 'json_invalid'],
    ['an id a double reads as 0', '{"records":[{"passport":"P","id":1e-400}]}', 'json_invalid'],
    ['an id just over 2^53 - 1 with a fraction', '{"records":[{"passport":"P","id":9007199254740991.4}]}', 'json_invalid'],
    ['an id of 2^53', '{"records":[{"passport":"P","id":9007199254740992}]}', 'json_invalid'],
    ['an id of 10^16 in exponent form', '{"records":[{"passport":"P","id":1e16}]}', 'json_invalid'],
    ['a duplicate id', '{"records":[{"id":1,"passport":"P","id":2}]}', 'json_invalid'],
    ['a record over maxRecordBytes', `{"records":[{"id":1,"pad":"${'x'.repeat(80)}"}]}`, 'value_too_large'],
  ]
  for (const [name, body, code] of cases) {
    for (const chunks of [[Buffer.from(body)], everyByte(Buffer.from(body))]) {
      const r = runEngine(chunks, ['/records/*/passport'], () => 'keep', { record, maxRecordBytes: 64 })
      t.equal(r.err?.code, code, `${name} (${chunks.length} chunks)`)
    }
  }
  const integral: [string, number][] = [
    ['1.0e3', 1000],
    ['100000e-2', 1000],
    ['-0', 0],
    ['0.0e5', 0],
    ['-9007199254740991', -9007199254740991],
    ['900719925474099.1e1', 9007199254740991],
  ]
  for (const [spelled, value] of integral) {
    const ok = runEngine([Buffer.from(`{"records":[{"id":${spelled},"passport":"P"}]}`)], ['/records/*/passport'], (tg) => {
      t.equal(tg.recordId, value, `${spelled}: an integral number in any spelling is its value`)
      t.ok(!Object.is(tg.recordId, -0), 'never -0')
      return 'keep'
    }, { record })
    t.equal(ok.err, undefined)
  }
})

t.test('found by review: an id of a million digits is judged in linear time', async (t) => {
  // Trailing zeros were stripped with /0+$/, which retries at every zero of a run: an id of
  // 1, a million zeros and 1 held the event loop for minutes. A loop takes milliseconds; the bound
  // below is far above that and far below the quadratic time, so a slow machine does not fail it.
  const zeros = '0'.repeat(1_000_000)
  const cases: [string, string][] = [
    ['1 zeros 1', `1${zeros}1`],
    ['0. zeros 1', `0.${zeros}1`],
    ['1 zeros e-1000000', `1${zeros}e-1000000`],
  ]
  // A body refuses numbers over MAX_NUMBER_CHARS since (a later review: consumers refuse them), so
  // the judgement itself is timed on these ids, and a body holds the longest number it may.
  for (const [name, id] of cases) {
    const started = performance.now()
    const value = exactSafeInteger(id)
    const ms = performance.now() - started
    if (name === '1 zeros e-1000000') t.equal(value, 1, `${name}: 10^1000000 × 10^-1000000 is 1`)
    else t.equal(value, undefined, `${name}: not a safe integer`)
    t.ok(ms < 5000, `${name}: judged in ${ms.toFixed(0)} ms`)
    const body = `{"records":[{"passport":"P","id":${id}}]}`
    const r = runEngine([Buffer.from(body)], ['/records/*/passport'], () => 'keep', { record, maxRecordBytes: 2 * 1024 * 1024 })
    t.equal(r.err?.code, 'json_invalid', `${name}: a body holding it is refused (a number over ${MAX_NUMBER_CHARS} characters)`)
  }
  const ids: unknown[] = []
  const longest = `1${'0'.repeat(994)}e-994`
  t.equal(longest.length, MAX_NUMBER_CHARS)
  const r = runEngine([Buffer.from(`{"records":[{"passport":"P","id":${longest}}]}`)], ['/records/*/passport'], (tg) => {
    ids.push(tg.recordId)
    return 'keep'
  }, { record })
  t.same([r.err, ids], [undefined, [1]], 'the longest number a body may hold, 10^994 × 10^-994, binds as 1')
})

t.test('in NDJSON the top level of each line is the record', async (t) => {
  const body = '{"ssn":"A","id":"x"}\n{"id":"y","ssn":"B"}\n'
  const seen: unknown[] = []
  const r = runEngine(everyByte(Buffer.from(body)), ['/ssn'], (tg) => {
    seen.push([tg.documentIndex, tg.recordId, tg.record?.pointer])
    return 'remove'
  }, { mode: 'ndjson', record: { pattern: '', idMember: 'id' } })
  t.same(seen, [[0, 'x', []], [1, 'y', []]])
  t.equal(r.out, '{"id":"x"}\n{"id":"y"}\n')
})

t.test('record binding changes nothing but the id the actions see', async (t) => {
  const arbRecord = fc.record(
    {
      id: fc.oneof(fc.string(), fc.integer()),
      passport: fc.string(),
      visa: fc.jsonValue({ maxDepth: 2 }),
      note: fc.jsonValue({ maxDepth: 2 }),
    },
    { requiredKeys: [] },
  )
  fc.assert(
    fc.property(fc.array(arbRecord, { maxLength: 6 }), arbCuts, fc.nat(), (records, cuts, seed) => {
      const body = Buffer.from(JSON.stringify({ records, n: 1 }))
      const decide = (tg: JsonTarget<string>) => {
        const h = (seed + Number(tg.pointer[1]) + String(tg.pointer[2]).length) % 3
        return h === 0 ? 'keep' : h === 1 ? 'remove' : { replace: '"S"' }
      }
      const patterns = ['/records/*/passport', '/records/*/visa']
      const ids: unknown[] = []
      const bound = runEngine(chunked(body, cuts), patterns, (tg) => {
        ids.push(tg.recordId)
        return decide(tg)
      }, { record })
      const plain = runEngine([body], patterns, decide)
      if (bound.err !== undefined) throw bound.err
      const expectedIds = records.flatMap((r) =>
        ['passport', 'visa'].filter((k) => k in r).map(() => ('id' in r ? r.id : undefined)),
      )
      t.same(ids, expectedIds)
      return bound.out === plain.out
    }),
    { numRuns: 150 },
  )
})

t.test('inside records, removals and replacements anywhere give the same bytes as without record binding', async (t) => {
  // Record binding decides a record's values at its end, with fewer undecided entries than members
  // (only those whose commas a removal can change): any record content, any targets inside it,
  // must come out exactly as the one-value-at-a-time path writes it.
  let edited = 0
  fc.assert(
    fc.property(arbJsonValue('grapheme'), arbSpelling, arbCuts, fc.array(fc.nat(), { minLength: 1, maxLength: 5 }), fc.nat(15), fc.nat(), (v, sp, cuts, picks, stars, seed) => {
      const { text, spans } = spell(v, sp)
      fc.pre(text.startsWith('{') || text.startsWith('['))
      const inner = spans.filter((s) => s.path.length > 0)
      fc.pre(inner.length > 0)
      const patterns: string[] = []
      for (const p of picks) {
        const path = inner[p % inner.length]!.path
        const pattern = `/records/*${path.map((seg, i) => `/${(stars >> i) & 1 ? '*' : escapeToken(String(seg))}`).join('')}`
        try {
          compileRules({ targets: [...patterns, pattern].map((x) => ({ pattern: x, rule: x })), record: { pattern: '/records/*', idMember: '\u0000id' } })
          patterns.push(pattern)
        } catch {
          // ambiguous with an earlier pattern: left out, as the compiler refuses the set
        }
      }
      fc.pre(patterns.length > 0)
      const body = Buffer.from(`{"records":[${text},${text}], "n":1}`)
      const decide = (tg: JsonTarget<string>): JsonAction => {
        const h = (seed + tg.pointer.length * 7 + String(tg.pointer.at(-1)).length * 13 + Number(tg.pointer[1])) % 3
        return h === 0 ? 'keep' : h === 1 ? 'remove' : { replace: `"S${tg.pointer.length}"` }
      }
      const bound = runEngine(chunked(body, cuts), patterns, decide, { record: { pattern: '/records/*', idMember: '\u0000id' } })
      const plain = runEngine([body], patterns, decide)
      if (bound.err !== undefined) throw bound.err
      if (plain.out !== body.toString()) edited++
      return bound.out === plain.out
    }),
    { numRuns: 300 },
  )
  t.ok(edited > 100, `the property exercised real edits (${edited})`)
})

t.test('a record member spelled like the id member but for case is refused, whatever the chunks', async (t) => {
  // `{"id":"A","ID":"B"}`: Go's encoding/json reads the id as "B", and a value bound to A would
  // open in B. Deeper down, and outside records, such a name is just a name.
  for (const [body, refused] of [
    ['{"records":[{"id":"A","ID":"B","passport":"P"}]}', true],
    ['{"records":[{"Id":"B","id":"A","passport":"P"}]}', true],
    ['{"records":[{"id":"A","\\u0049D":"B","passport":"P"}]}', true],
    ['{"records":[{"id":"A","ıd":"B","passport":"P"}]}', true],
    ['{"records":[{"id":"A","x":{"ID":"B"},"passport":"P"}]}', false],
    ['{"records":[{"id":"A","idx":"B","passport":"P"}]}', false],
    ['{"ID":"B","records":[{"id":"A","passport":"P"}]}', false],
    // json-c and cJSON end a name at a NUL: to them `id\u0000` is the id, "B".
    ['{"records":[{"id":"A","id\\u0000":"B","passport":"P"}]}', 'nul'],
    ['{"records":[{"id\\u0000x":"B","id":"A","passport":"P"}]}', 'nul'],
  ] as const) {
    for (const chunks of [[Buffer.from(body)], everyByte(Buffer.from(body))]) {
      const r = runEngine(chunks, ['/records/*/passport'], () => 'keep', { record })
      if (refused === 'nul') t.match(r.err, { code: 'json_invalid', message: /member name holds a NUL/ }, body)
      else if (refused) t.match(r.err, { code: 'json_invalid', message: /differs from the record id member only by case/ }, body)
      else t.equal(r.err, undefined, body)
    }
  }
  // Found by review: folding changes lengths, so an ASCII name as long as the id member was the only
  // one checked, and `STRASSE` passed beside an id member `straße` (and `FID` beside `ﬁd`).
  for (const [idMember, other] of [
    ['straße', 'STRASSE'],
    ['straße', 'strasse'],
    ['ﬁd', 'FID'],
  ] as const) {
    const body = `{"records":[{"${idMember}":"A","${other}":"B","passport":"P"}]}`
    for (const chunks of [[Buffer.from(body)], everyByte(Buffer.from(body))]) {
      const r = runEngine(chunks, ['/records/*/passport'], () => 'keep', { record: { pattern: '/records/*', idMember } })
      t.match(r.err, { code: 'json_invalid', message: /differs from the record id member only by case/ }, body)
    }
  }
})
