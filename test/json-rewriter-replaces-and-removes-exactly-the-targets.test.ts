import fc from 'fast-check'
import t from 'tap'
import { compileRules } from '../src/transform/json/pointer.js'
import type { JsonAction } from '../src/transform/json/rewriter.js'
import {
  arbCuts,
  arbJsonValue,
  arbSpelling,
  chunked,
  escapeToken,
  matches,
  type Path,
  runEngine,
  spell,
} from './json-helpers.js'

/** Turns chosen concrete paths into a compilable pattern set (some segments made wildcards). */
function patternsFor(paths: Path[], stars: number[]): string[] {
  const chosen: string[] = []
  paths.forEach((p, k) => {
    const mask = stars[k % stars.length] ?? 0
    const pattern = p.map((seg, i) => '/' + ((mask >> i) & 1 ? '*' : escapeToken(String(seg)))).join('')
    try {
      compileRules({ targets: [...chosen, pattern].map((x) => ({ pattern: x, rule: x })) })
      chosen.push(pattern)
    } catch {
      // ambiguous with an earlier pattern: the compiler refuses such sets, so leave it out
    }
  })
  return chosen
}

/** The independent oracle: the same edits on the parsed value. */
function applyEdits(v: unknown, spans: { path: Path }[], patterns: string[], decide: (path: Path) => JsonAction): unknown {
  const clone = JSON.parse(JSON.stringify(v)) as unknown
  // Edit in reverse document order, so that removing an array element never shifts a location
  // still to be edited (targets never nest, so this order is total on them).
  const hits = spans.filter((s) => s.path.length > 0 && patterns.some((p) => matches(p, s.path)))
  const before = (a: Path, b: Path): number => {
    for (let i = 0; i < Math.min(a.length, b.length); i++) {
      const x = a[i]!
      const y = b[i]!
      if (x === y) continue
      if (typeof x === 'number' && typeof y === 'number') return x - y
      return 0 // members of one object: their order does not matter to the edits
    }
    return 0
  }
  hits.sort((a, b) => before(b.path, a.path))
  for (const { path } of hits) {
    const parent = path.slice(0, -1).reduce<unknown>((x, seg) => (x as Record<string, unknown>)[seg], clone) as Record<string, unknown> | unknown[]
    const last = path[path.length - 1]!
    const a = decide(path)
    if (a === 'keep') continue
    if (a === 'remove') {
      if (Array.isArray(parent)) parent.splice(last as number, 1)
      else delete parent[last as string]
    } else {
      const nv = JSON.parse(String(a.replace))
      if (Array.isArray(parent)) parent[last as number] = nv
      else Object.defineProperty(parent, last as string, { value: nv, enumerable: true, writable: true, configurable: true })
    }
  }
  return clone
}

function decideBy(seed: number): (path: Path) => JsonAction {
  return (path) => {
    const h = (seed + path.length * 7 + String(path[path.length - 1]).length * 13) % 3
    return h === 0 ? 'keep' : h === 1 ? 'remove' : { replace: JSON.stringify({ sealed: path.join('.') }) }
  }
}

const arbCase = fc.record({
  v: arbJsonValue('grapheme'),
  sp: arbSpelling,
  cuts: arbCuts,
  picks: fc.array(fc.nat(), { minLength: 1, maxLength: 5 }),
  stars: fc.array(fc.nat(15), { minLength: 1, maxLength: 3 }),
  seed: fc.nat(),
})

t.test('keep / replace / remove give what JSON.parse + the same edit gives, at any chunking', async (t) => {
  let edited = 0
  fc.assert(
    fc.property(arbCase, ({ v, sp, cuts, picks, stars, seed }) => {
      const { text, spans } = spell(v, sp)
      const inner = spans.filter((s) => s.path.length > 0)
      fc.pre(inner.length > 0)
      const patterns = patternsFor(picks.map((p) => inner[p % inner.length]!.path), stars)
      const decide = decideBy(seed)
      const r = runEngine(chunked(Buffer.from(text), cuts), patterns, (tg) => decide(tg.pointer as Path))
      if (r.err !== undefined) throw r.err
      const expected = applyEdits(v, spans, patterns, decide)
      if (r.out !== text) edited++
      t.same(JSON.parse(r.out), expected)
      return true
    }),
    { numRuns: 250 },
  )
  t.ok(edited > 50, `the property exercised real edits (${edited})`)
})

t.test('a replacement changes the targeted bytes and nothing else', async () => {
  fc.assert(
    fc.property(arbCase, ({ v, sp, cuts, picks, stars }) => {
      const { text, spans } = spell(v, sp)
      const inner = spans.filter((s) => s.path.length > 0)
      fc.pre(inner.length > 0)
      const patterns = patternsFor(picks.map((p) => inner[p % inner.length]!.path), stars)
      const r = runEngine(chunked(Buffer.from(text), cuts), patterns, (tg) => ({ replace: `"S${tg.pointer.length}"` }))
      if (r.err !== undefined) throw r.err
      // Expected by splicing the recorded spans, outermost last (targets never nest).
      let expected = text
      const hits = spans.filter((s) => s.path.length > 0 && patterns.some((p) => matches(p, s.path)))
      hits.sort((a, b) => b.start - a.start)
      for (const h of hits) expected = expected.slice(0, h.start) + `"S${h.path.length}"` + expected.slice(h.end)
      return r.out === expected
    }),
    { numRuns: 250 },
  )
})

t.test('number spellings, escapes and whitespace around edits are preserved', async (t) => {
  const body = '{ "n" : 1.0e+2 ,\n  "pass\\u0070ort" : "X1",\t"tags":[ "a" , "\\u00e9" ], "z":-0 }'
  const r = runEngine([Buffer.from(body)], ['/passport', '/tags/0'], (tg) =>
    tg.pointer[0] === 'passport' ? { replace: '"eyJ.sealed"' } : 'remove',
  )
  t.equal(r.out, '{ "n" : 1.0e+2 ,\n  "pass\\u0070ort" : "eyJ.sealed",\t"tags":[   "\\u00e9" ], "z":-0 }')
})

t.test('removing the first, a middle, the last and every member leaves valid JSON', async (t) => {
  const body = '{"a":1, "b":2, "c":3}'
  const cases: [string[], string][] = [
    [['/a'], '{ "b":2, "c":3}'],
    [['/b'], '{"a":1, "c":3}'],
    [['/c'], '{"a":1, "b":2}'],
    [['/a', '/b'], '{ "c":3}'],
    [['/a', '/c'], '{ "b":2}'],
    [['/b', '/c'], '{"a":1}'],
    [['/a', '/b', '/c'], '{}'],
  ]
  for (const [patterns, expected] of cases) {
    for (const chunks of [[Buffer.from(body)], [...Buffer.from(body)].map((b) => Buffer.from([b]))]) {
      const r = runEngine(chunks, patterns, () => 'remove')
      t.equal(r.out, expected, `remove ${patterns.join(' ')} (${chunks.length} chunks)`)
    }
  }
  t.equal(runEngine([Buffer.from('[1,2,3]')], ['/0', '/2'], () => 'remove').out, '[2]', 'array elements too')
  t.equal(runEngine([Buffer.from('[[1],{"a":[]}]')], ['/*/0', '/*/a'], () => 'remove').out, '[[],{}]')
})

t.test('wildcards reach every array element and every object member', async (t) => {
  const body = JSON.stringify({ records: [{ passport: 'P1' }, { passport: 'P2', x: 1 }], byId: { a: { phone: 1 }, b: { phone: 2 } } })
  const seen: string[] = []
  const r = runEngine([Buffer.from(body)], ['/records/*/passport', '/byId/*/phone'], (tg) => {
    seen.push(`${tg.pointer.join('.')}=${tg.raw}:${tg.type}`)
    return { replace: '"S"' }
  })
  t.same(seen, ['records.0.passport="P1":string', 'records.1.passport="P2":string', 'byId.a.phone=1:number', 'byId.b.phone=2:number'])
  t.same(JSON.parse(r.out), { records: [{ passport: 'S' }, { passport: 'S', x: 1 }], byId: { a: { phone: 'S' }, b: { phone: 'S' } } })
})

t.test('targeted values of every type arrive whole and parsed', async (t) => {
  const body = '{"s":"x\\n","n":-1.5e3,"o":{"k":[1,{"d":2}]},"a":[],"b":false,"z":null}'
  const seen: Record<string, [string, string, unknown]> = {}
  runEngine([Buffer.from(body)], ['/s', '/n', '/o', '/a', '/b', '/z'], (tg) => {
    seen[tg.pointer[0] as string] = [tg.type, tg.raw.toString(), tg.value]
    return 'keep'
  })
  t.same(seen, {
    s: ['string', '"x\\n"', 'x\n'],
    n: ['number', '-1.5e3', -1500],
    o: ['object', '{"k":[1,{"d":2}]}', { k: [1, { d: 2 }] }],
    a: ['array', '[]', []],
    b: ['boolean', 'false', false],
    z: ['null', 'null', null],
  })
})
