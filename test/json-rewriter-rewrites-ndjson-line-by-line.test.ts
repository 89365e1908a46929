import fc from 'fast-check'
import t from 'tap'
import { arbCuts, arbJsonValue, chunked, everyByte, runEngine } from './json-helpers.js'

const ndjson = { mode: 'ndjson' as const }

t.test('passes NDJSON through byte-exact, with \\n, \\r\\n, blank lines and no final newline', async (t) => {
  const bodies = [
    '',
    '{"a":1}\n',
    '{"a":1}\n{"a":2}\n',
    '{"a":1}\r\n[2]\r\n',
    '\n\n{"a":1}\n\n\n"s"\n',
    '\r\n{"a":1}',
    '  {"a" : 1}\t \n7',
    '1\n2\n3',
  ]
  for (const body of bodies) {
    for (const chunks of [[Buffer.from(body)], everyByte(Buffer.from(body))]) {
      const r = runEngine(chunks, [], () => 'keep', ndjson)
      t.equal(r.err, undefined, JSON.stringify(body))
      t.equal(r.out, body)
    }
  }
})

/**
 * A value as an NDJSON producer that means its lines writes it: JSON.stringify leaves U+2028, U+2029
 * and U+0085 raw, which NDJSON refuses (readers that split lines there would see other records).
 * They can only sit in strings, where their escapes mean the same.
 */
function ndjsonLine(v: unknown): string {
  return JSON.stringify(v).replace(/[\u2028\u2029\u0085]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)
}

t.test('any sequence of values, one per line, passes through at any chunking', async () => {
  fc.assert(
    fc.property(fc.array(arbJsonValue('grapheme'), { maxLength: 8 }), fc.boolean(), arbCuts, (values, crlf, cuts) => {
      const body = values.map((v) => ndjsonLine(v) + (crlf ? '\r\n' : '\n')).join('')
      const r = runEngine(chunked(Buffer.from(body), cuts), [], () => 'keep', ndjson)
      return r.err === undefined && r.out === body
    }),
    { numRuns: 150 },
  )
})

t.test('targets apply on every line, with the line value index', async (t) => {
  const body = '{"id":1,"ssn":"A"}\n\n{"ssn":"B","id":2}\r\n{"id":3}\n{"id":4,"ssn":"D"}'
  const seen: [number, unknown][] = []
  const r = runEngine(everyByte(Buffer.from(body)), ['/ssn'], (tg) => {
    seen.push([tg.documentIndex, tg.value])
    return tg.documentIndex === 1 ? 'remove' : { replace: '"S"' }
  }, ndjson)
  t.equal(r.err, undefined)
  t.same(seen, [[0, 'A'], [1, 'B'], [3, 'D']])
  t.equal(r.out, '{"id":1,"ssn":"S"}\n\n{"id":2}\r\n{"id":3}\n{"id":4,"ssn":"S"}')
})

t.test('refuses what would let two NDJSON readers split the stream differently', async (t) => {
  const cases: [string, string][] = [
    ['two values on one line', '{"a":1} {"a":2}\n'],
    ['a value spanning two lines', '{"a":\n1}\n'],
    ['a line break inside an array', '[1,\r\n2]\n'],
    ['a bare carriage return between values', '{"a":1}\r{"a":2}\n'],
    ['a carriage return inside a value', '{"a":1,\r"b":2}\n'],
    ['a whitespace-only line', '{"a":1}\n  \n{"a":2}\n'],
    ['a final whitespace-only line', '{"a":1}\n\t'],
    ['a truncated last value', '{"a":1}\n{"a":'],
    ['a carriage return at the very end', '{"a":1}\r'],
    ['a syntax error on a later line', '{"a":1}\n{"a":01}\n'],
    ['a duplicate name on a later line', '{"a":1}\n{"a":1,"a":2}\n'],
    ['a byte order mark', '\ufeff{"a":1}\n'],
    // Python's splitlines() and JavaScript's line terminators split there: `[1,2]` would be a record.
    ['a raw U+2028 in a string', '{"a":"x\u2028[1,2]\u2028y"}\n'],
    ['a raw U+2029 in a string', '{"a":"x\u2029"}\n'],
    ['a raw U+0085 in a string', '{"a":"x\u0085"}\n'],
    ['a raw U+2028 in a member name', '{"a\u2028":1}\n'],
  ]
  for (const [name, body] of cases) {
    for (const chunks of [[Buffer.from(body)], everyByte(Buffer.from(body))]) {
      t.equal(runEngine(chunks, [], () => 'keep', ndjson).err?.code, 'json_invalid', `${name} (${chunks.length} chunks)`)
    }
  }
})

t.test('a value JSON.stringify writes with a raw U+2028 is refused, and passes as ndjsonLine escapes it', async (t) => {
  const raw = `${JSON.stringify({ a: 'x\u2028y' })}\n`
  t.equal(runEngine([Buffer.from(raw)], [], () => 'keep', ndjson).err?.code, 'json_invalid')
  const escaped = `${ndjsonLine({ a: 'x\u2028y' })}\n`
  t.equal(escaped, '{"a":"x\\u2028y"}\n')
  t.equal(runEngine([Buffer.from(escaped)], [], () => 'keep', ndjson).err, undefined)
  t.same(JSON.parse(escaped), { a: 'x\u2028y' }, 'the same value')
})

t.test('Unicode line breaks pass escaped in NDJSON, and raw in a document; other characters of their lead bytes pass raw', async (t) => {
  for (const body of ['{"a":"x\\u2028\\u2029\\u0085"}\n', '{"a":"\u2027\u202a\u00a9\u0084\u20ac"}\n']) {
    for (const chunks of [[Buffer.from(body)], everyByte(Buffer.from(body))]) {
      const r = runEngine(chunks, [], () => 'keep', ndjson)
      t.equal(r.err, undefined, `${JSON.stringify(body)} (${chunks.length} chunks)`)
      t.equal(r.out, body)
    }
  }
  t.equal(runEngine([Buffer.from('{"a":"x\u2028"}')], [], () => 'keep').err, undefined, 'a document is not split by lines')
})

t.test('a replacement must not break the line', async (t) => {
  const r = runEngine([Buffer.from('{"o":1}\n')], ['/o'], () => ({ replace: '{\n"a": 1}' }), ndjson)
  t.equal(r.err?.code, 'internal')
  const u = runEngine([Buffer.from('{"o":1}\n')], ['/o'], () => ({ replace: '"a\u2028b"' }), ndjson)
  t.equal(u.err?.code, 'internal', 'nor with a raw U+2028')
  const d = runEngine([Buffer.from('{"o":1}')], ['/o'], () => ({ replace: '{\n"a": 1}' }))
  t.equal(d.out, '{"o":{\n"a": 1}}', 'while a document may hold a pretty-printed replacement')
})
