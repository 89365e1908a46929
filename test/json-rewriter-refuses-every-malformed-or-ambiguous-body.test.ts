import t from 'tap'
import { EcluseError } from '../src/errors.js'
import { everyByte, type Handler, type RunOptions, runEngine, runStream } from './json-helpers.js'

type Case = [name: string, body: string | Buffer, code: string, patterns?: string[], opts?: RunOptions, onValue?: Handler]
const hex = (h: string) => Buffer.from(h.replace(/ /g, ''), 'hex')
const q = (inner: Buffer) => Buffer.concat([Buffer.from('{"a":["x","'), inner, Buffer.from('"]}')])

const cases: Case[] = [
  // syntax anywhere, not only near targets
  ['a trailing comma in an array', '{"x":[1,2,]}', 'json_invalid'],
  ['a trailing comma in an object', '{"x":{"a":1,}}', 'json_invalid'],
  ['a missing colon', '{"a" 1}', 'json_invalid'],
  ['an unquoted name', '{a:1}', 'json_invalid'],
  ['a single-quoted string', "{'a':1}", 'json_invalid'],
  ['a missing comma', '[1 2]', 'json_invalid'],
  ['a mismatched bracket', '{"a":[1}', 'json_invalid'],
  ['an extra closing bracket', '{"a":1}}', 'json_invalid'],
  ['a truncated document', '{"a":[1,2', 'json_invalid'],
  ['a truncated string', '{"a":"abc', 'json_invalid'],
  ['a truncated literal', '[tru', 'json_invalid'],
  ['a misspelt literal', '[nul1]', 'json_invalid'],
  ['a capitalised literal', '[True]', 'json_invalid'],
  ['an invalid escape', '["\\x41"]', 'json_invalid'],
  ['a short \\u escape', '["\\u12G4"]', 'json_invalid'],
  ['a raw control character in a string', '["a\nb"]', 'json_invalid'],
  ['a comment', '{"a":1 /* c */}', 'json_invalid'],
  ['a syntax error deep inside an untargeted value', '{"records":[{"passport":"P","x":[1,{"y":[2,]}]}]}', 'json_invalid', ['/records/*/passport']],
  ['a syntax error inside a targeted value', '{"passport":{"a":[1,,2]}}', 'json_invalid', ['/passport']],
  // the document as a whole
  ['an empty body', '', 'json_invalid'],
  ['a whitespace-only body', ' \r\n\t', 'json_invalid'],
  ['trailing garbage', '{"a":1} x', 'json_invalid'],
  ['a second document', '{} {}', 'json_invalid'],
  ['two top-level numbers', '1 2', 'json_invalid'],
  ['a UTF-8 byte order mark', Buffer.concat([hex('efbbbf'), Buffer.from('{}')]), 'json_invalid'],
  ['a non-ASCII byte outside strings', Buffer.concat([Buffer.from('{"a":1'), hex('c2a0'), Buffer.from('}')]), 'json_invalid'],
  // numbers (RFC 8259 §6)
  ['a leading zero', '[01]', 'json_invalid'],
  ['a leading zero after a minus', '[-01]', 'json_invalid'],
  ['a plus sign', '[+1]', 'json_invalid'],
  ['NaN', '[NaN]', 'json_invalid'],
  ['Infinity', '[-Infinity]', 'json_invalid'],
  ['a bare minus', '[-]', 'json_invalid'],
  ['a trailing dot', '[1.]', 'json_invalid'],
  ['a leading dot', '[.5]', 'json_invalid'],
  ['an empty exponent', '[1e]', 'json_invalid'],
  ['an exponent sign without digits', '[1e+]', 'json_invalid'],
  ['a hexadecimal number', '[0x10]', 'json_invalid'],
  ['a truncated top-level number', '-', 'json_invalid'],
  // Found by review: numbers longer than consumers take (Jackson: 1,000 characters; CPython: integers of 4,300 digits)
  ['a number of 1,001 characters', `[${'1'.repeat(1001)}]`, 'json_invalid'],
  ['a CPython-refused integer of 4,301 digits beside a target', `{"a":${'1'.repeat(4301)},"passport":"X"}`, 'json_invalid', ['/passport']],
  ['a long number inside a targeted value', `{"passport":{"n":-${'9'.repeat(600)}.${'0'.repeat(400)}}}`, 'json_invalid', ['/passport']],
  ['a long exponent at the top level', `1e${'0'.repeat(1000)}`, 'json_invalid'],
  // UTF-8 (RFC 3629 §3-4)
  ['an overlong 2-byte sequence', q(hex('c0af')), 'json_invalid'],
  ['an overlong 3-byte sequence', q(hex('e080af')), 'json_invalid'],
  ['an overlong 4-byte sequence', q(hex('f08080af')), 'json_invalid'],
  ['an encoded surrogate', q(hex('eda080')), 'json_invalid'],
  ['a code point above U+10FFFF', q(hex('f4908080')), 'json_invalid'],
  ['a byte that never appears in UTF-8', q(hex('ff')), 'json_invalid'],
  ['a lone continuation byte', q(hex('80')), 'json_invalid'],
  ['a truncated sequence', q(hex('e282')), 'json_invalid'],
  ['a truncated sequence in a member name', Buffer.concat([Buffer.from('{"'), hex('e282'), Buffer.from('":1}')]), 'json_invalid'],
  // unpaired surrogate escapes (RFC 7493 §2.1)
  ['a lone high surrogate escape in a name', '{"\\ud800":1}', 'json_invalid'],
  ['a lone low surrogate escape in a name', '{"\\udc00":1}', 'json_invalid'],
  ['a high surrogate followed by a non-surrogate escape', '{"\\ud800\\u0041":1}', 'json_invalid'],
  ['a high surrogate followed by a short escape', '{"\\ud800\\n":1}', 'json_invalid'],
  ['a high surrogate at the end of a name', '{"a\\uD800":1}', 'json_invalid'],
  ['a lone surrogate escape in a value', '{"a":"\\udfff"}', 'json_invalid'],
  // duplicate names, compared after unescaping
  ['a duplicate member', '{"a":1,"a":2}', 'json_invalid'],
  ['a duplicate spelt with an escape', '{"passport":"P","pass\\u0070ort":"Q"}', 'json_invalid', ['/passport']],
  ['a duplicate spelt with a raw and an escaped é', '{"\u00e9":1,"\\u00e9":2}', 'json_invalid'],
  ['a duplicate spelt with a surrogate pair', '{"\\ud83d\\ude00":1,"\u{1f600}":2}', 'json_invalid'],
  ['a duplicate spelt with \\/', '{"a/b":1,"a\\/b":2}', 'json_invalid'],
  ['a duplicate deep in an untargeted value', '{"x":[{"k":{"d":1,"e":2,"d":3}}]}', 'json_invalid', ['/y']],
  ['a duplicate inside a targeted value', '{"passport":{"n":1,"n":2}}', 'json_invalid', ['/passport']],
  // case variants of a targeted name, as case-insensitive consumers would read them
  ['a case variant of a targeted name', '{"holder":{"BirthDate":"1911"}}', 'json_invalid', ['/holder/birthDate']],
  ['İ (U+0130) for i, which a Turkish-locale consumer lower-cases to i', '{"holder":{"b\u0130rthDate":"1911"}}', 'json_invalid', ['/holder/birthDate']],
  ['İ raw, at any depth under **', '{"a":[{"bİrthDate":"1911"}]}', 'json_invalid', ['/**/birthDate']],
  // limits
  ['nesting beyond maxDepth', '[[[[1]]]]', 'json_invalid', [], { maxDepth: 3 }],
  ['a member name beyond its cap', `{"${'n'.repeat(17)}":1}`, 'json_invalid', [], { maxMemberNameBytes: 16 }],
  ['more members held than the cap', '{"a":{"b":1,"c":2,"f":3}}', 'json_invalid', [], { maxMembers: 3 }],
  ['a targeted value beyond maxValueBytes', `{"passport":"${'p'.repeat(30)}"}`, 'value_too_large', ['/passport'], { maxValueBytes: 31 }],
  ['a targeted container beyond maxValueBytes', `{"o":[${'1,'.repeat(20)}1]}`, 'value_too_large', ['/o'], { maxValueBytes: 32 }],
  ['whitespace held before a target beyond its cap', `{"a":1,${' '.repeat(40)}"passport":"P"}`, 'value_too_large', ['/passport'], { maxGapBytes: 8, maxMemberNameBytes: 16 }],
  // actions
  ['an action that refuses', '{"passport":"P"}', 'plaintext_refused', ['/passport'], {}, () => {
    throw new EcluseError('plaintext_refused', 'passport in plaintext')
  }],
  ['an action that throws something else', '{"passport":"P"}', 'internal', ['/passport'], {}, () => {
    throw new Error('bug')
  }],
  ['a replacement that is not one JSON value', '{"passport":"P"}', 'internal', ['/passport'], {}, () => ({ replace: '"a","b":"c"' })],
  ['an unknown decision', '{"passport":"P"}', 'internal', ['/passport'], {}, () => 'drop' as never],
]

for (const [name, body, code, patterns = [], opts = {}, onValue = () => 'keep' as const] of cases) {
  t.test(`refuses ${name} with ${code}`, async (t) => {
    const b = typeof body === 'string' ? Buffer.from(body) : body
    for (const [how, chunks] of [['one chunk', [b]], ['one byte per chunk', everyByte(b)]] as const) {
      const r = runEngine(chunks, patterns, onValue, opts)
      t.equal(r.err?.code, code, how)
      t.ok(r.err instanceof EcluseError, `${how}: an EcluseError`)
    }
  })
}

t.test('names are forgotten when their object closes, so the member cap bounds what is open', async (t) => {
  const body = '[{"a":1,"b":2},{"a":1,"b":2},{"c":{"d":1}}]'
  const r = runEngine([Buffer.from(body)], [], () => 'keep', { maxMembers: 2 })
  t.equal(r.err, undefined)
  t.equal(r.out, body)
})

t.test('the error detail names a reason and an offset, never the bytes', async (t) => {
  const r = runEngine([Buffer.from('{"passport":"SECRET-123\u0001"}')], ['/passport'], () => 'keep')
  t.equal(r.err?.code, 'json_invalid')
  t.match(r.err?.message, /control character in a string at byte \d+/)
  t.notMatch(r.err?.message, /SECRET/)
})

t.test('the stream errors with the code, so the proxy aborts the message', async (t) => {
  await t.rejects(runStream([Buffer.from('{"a":1,'), Buffer.from('"a":2}')], [], () => 'keep'), { code: 'json_invalid', status: 400 })
  await t.rejects(runStream([Buffer.from(`{"p":"${'x'.repeat(100)}"}`)], ['/p'], () => 'keep', { maxValueBytes: 10 }), {
    code: 'value_too_large',
    status: 413,
  })
  await t.rejects(runStream([Buffer.from('')], [], () => 'keep'), { code: 'json_invalid' }, 'an empty body ends in error too')
})

t.test('a refused stream emits nothing after the point of refusal', async (t) => {
  // Every byte that was already passed on was valid JSON so far; nothing of the bad part leaks.
  const r = runEngine([Buffer.from('{"ok":1,"passport":"P","x":[1,,'), Buffer.from('2]}')], ['/passport'], () => ({ replace: '"S"' }))
  t.equal(r.err?.code, 'json_invalid')
  t.notMatch(r.out, /"P"/)
})

t.test('a number of exactly 1,000 characters passes, byte exact, in a document and in NDJSON', async (t) => {
  const { MAX_NUMBER_CHARS } = await import('../src/transform/json/rewriter.js')
  t.equal(MAX_NUMBER_CHARS, 1000)
  const longest = `-1.${'5'.repeat(997)}`
  t.equal(longest.length, 1000)
  for (const body of [`[${longest}]`, longest, `{"a":${longest},"passport":"X"}`]) {
    const b = Buffer.from(body)
    for (const chunks of [[b], everyByte(b)]) {
      const r = runEngine(chunks, ['/passport'], () => 'keep')
      t.equal(r.err, undefined)
      t.equal(r.out, body)
    }
  }
  const over = runEngine([Buffer.from(`[${longest}1]`)], [], () => 'keep')
  t.match(over.err, { code: 'json_invalid', message: /a number longer than 1000 characters/ })
  const ndjson = runEngine([Buffer.from(`${longest}\n${longest}5\n`)], [], () => 'keep', { mode: 'ndjson' })
  t.match(ndjson.err, { code: 'json_invalid' }, 'NDJSON: the second line’s number is one too long')
})
