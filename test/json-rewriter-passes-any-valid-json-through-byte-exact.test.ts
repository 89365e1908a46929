import fc from 'fast-check'
import t from 'tap'
import { arbCuts, arbJsonValue, arbSpelling, chunked, escapeToken, runEngine, runStream, spell } from './json-helpers.js'

const keep = () => 'keep' as const

t.test('fast-check json() text passes through unchanged at any chunking', async () => {
  fc.assert(
    fc.property(fc.json({ maxDepth: 5, stringUnit: 'grapheme' }), arbCuts, (text, cuts) => {
      const r = runEngine(chunked(Buffer.from(text), cuts), [], keep)
      return r.err === undefined && r.out === text
    }),
    { numRuns: 300 },
  )
})

t.test('any spelling (whitespace, escapes, number forms) passes through unchanged', async () => {
  fc.assert(
    fc.property(arbJsonValue('grapheme'), arbSpelling, arbCuts, (v, sp, cuts) => {
      const { text } = spell(v, sp)
      const r = runEngine(chunked(Buffer.from(text), cuts), [], keep)
      if (r.err !== undefined) throw r.err
      return r.out === text
    }),
    { numRuns: 300 },
  )
})

t.test('targeted values that are kept leave the body byte-exact, and the action sees them exactly', async () => {
  fc.assert(
    fc.property(arbJsonValue('grapheme'), arbSpelling, arbCuts, fc.nat(), (v, sp, cuts, pick) => {
      const { text, spans } = spell(v, sp)
      // Target one existing, non-root location; the action must see its exact text and value.
      const inner = spans.filter((s) => s.path.length > 0)
      fc.pre(inner.length > 0)
      const chosen = inner[pick % inner.length]!
      const pattern = chosen.path.map((s) => '/' + escapeToken(String(s))).join('')
      let sawChosen = false
      const r = runEngine(chunked(Buffer.from(text), cuts), [pattern], (tg) => {
        const raw = tg.raw.toString('utf8')
        if (raw === text.slice(chosen.start, chosen.end) && JSON.stringify(tg.pointer) === JSON.stringify(chosen.path)) {
          sawChosen = JSON.stringify(tg.value) === JSON.stringify(JSON.parse(raw))
        }
        return 'keep'
      })
      if (r.err !== undefined) throw r.err
      // A literal index token also names a member "0" elsewhere, so more than one may match.
      return r.out === text && sawChosen
    }),
    { numRuns: 200 },
  )
})

t.test('through the Transform stream, in a pipeline, the bytes are the same', async () => {
  await fc.assert(
    fc.asyncProperty(arbJsonValue('grapheme'), arbSpelling, arbCuts, async (v, sp, cuts) => {
      const { text } = spell(v, sp)
      const out = await runStream(chunked(Buffer.from(text), cuts), ['/a/*/b', '/z'], keep)
      return out.toString('utf8') === text
    }),
    { numRuns: 60 },
  )
})

t.test('an untargeted chunk is passed on as the same bytes, not re-encoded', async (t) => {
  const body = Buffer.from('{"a" : [1.0e+2, -0, "\\u00e9\\/", "é", true, null] ,\r\n "b":{}}')
  const r = runEngine([body], ['/c'], keep)
  t.equal(r.out, body.toString('utf8'))
})
