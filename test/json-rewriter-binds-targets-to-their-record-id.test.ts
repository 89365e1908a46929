import fc from 'fast-check'
import t from 'tap'
import type { JsonTarget } from '../src/transform/json/rewriter.js'
import { arbCuts, chunked, everyByte, runEngine } from './json-helpers.js'

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
    ['a duplicate id', '{"records":[{"id":1,"passport":"P","id":2}]}', 'json_invalid'],
    ['a record over maxRecordBytes', `{"records":[{"id":1,"pad":"${'x'.repeat(80)}"}]}`, 'value_too_large'],
  ]
  for (const [name, body, code] of cases) {
    for (const chunks of [[Buffer.from(body)], everyByte(Buffer.from(body))]) {
      const r = runEngine(chunks, ['/records/*/passport'], () => 'keep', { record, maxRecordBytes: 64 })
      t.equal(r.err?.code, code, `${name} (${chunks.length} chunks)`)
    }
  }
  const ok = runEngine([Buffer.from('{"records":[{"id":1.0e3,"passport":"P"}]}')], ['/records/*/passport'], (tg) => {
    t.equal(tg.recordId, 1000, 'an integral number in any spelling is its value')
    return 'keep'
  }, { record })
  t.equal(ok.err, undefined)
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
