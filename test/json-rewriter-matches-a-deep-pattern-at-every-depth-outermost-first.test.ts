/**
 * `/**\/name` names a member at any depth: a shape-independent rule, for an upstream whose shapes the
 * patterns cannot all foresee. The rewriter hands over the outermost match whole (what it contains
 * goes with it), under any chunking, inside and outside records, and refuses a case variant of the
 * name wherever it stands.
 */
import t from 'tap'
import type { JsonTarget } from '../src/transform/json/rewriter.js'
import { runEngine } from './json-helpers.js'

const body = JSON.stringify({
  name: 'top',
  list: [{ name: 'in-array', other: 1 }, [{ deeper: { name: 'deepest' } }]],
  nested: { name: { name: 'inner', x: 1 }, names: 'not-it', Name2: 'not-it' },
  flat: 'name',
})

/** Every chunking of `text` into pieces of 1, 2, 3, 7 and 64 bytes, and whole. */
function chunkings(text: string): Buffer[][] {
  const whole = Buffer.from(text)
  const pieces = (n: number) => Array.from({ length: Math.ceil(whole.length / n) }, (_, k) => whole.subarray(k * n, (k + 1) * n))
  return [[whole], ...[1, 2, 3, 7, 64].map(pieces)]
}

t.test('every name at any depth is replaced; a name inside a matched name goes with it', async (t) => {
  for (const chunks of chunkings(body)) {
    const seen: string[] = []
    const { out, err } = runEngine(chunks, ['/**/name'], (target: JsonTarget<string>) => {
      seen.push(`${target.pointer.join('/')}=${target.raw.toString()}`)
      return { replace: '"X"' }
    })
    t.equal(err, undefined, `${chunks.length} chunks: no refusal`)
    t.same(JSON.parse(out), {
      name: 'X',
      list: [{ name: 'X', other: 1 }, [{ deeper: { name: 'X' } }]],
      nested: { name: 'X', names: 'not-it', Name2: 'not-it' },
      flat: 'name',
    }, `${chunks.length} chunks: the output`)
    t.same(seen, ['name="top"', 'list/0/name="in-array"', 'list/1/0/deeper/name="deepest"', 'nested/name={"name":"inner","x":1}'], `${chunks.length} chunks: four targets, the outer name whole`)
  }
})

t.test('strip removes the member wherever it stands', async (t) => {
  const { out, err } = runEngine([Buffer.from(body)], ['/**/name'], () => 'remove')
  t.equal(err, undefined)
  t.same(JSON.parse(out), { list: [{ other: 1 }, [{ deeper: {} }]], nested: { names: 'not-it', Name2: 'not-it' }, flat: 'name' })
})

t.test('a case variant of the name is refused at any depth', async (t) => {
  for (const variant of ['{"a":{"b":[{"NAME":"x"}]}}', '{"Name":1}', '{"a":{"na\\u006De":1,"nAme":2}}']) {
    const { err } = runEngine([Buffer.from(variant)], ['/**/name'], () => 'keep')
    t.equal(err?.code, 'json_invalid', variant)
  }
})

t.test('inside records the targets carry their record and id at any depth', async (t) => {
  const doc = JSON.stringify({ records: [{ id: 'a', holder: { name: 'n1' } }, { id: 7, name: 'n2', kin: [{ name: 'n3' }] }], name: 'outside' })
  const seen: Array<[string, string | number | undefined, boolean]> = []
  const { out, err } = runEngine([Buffer.from(doc)], ['/**/name'], (target: JsonTarget<string>) => {
    seen.push([target.pointer.join('/'), target.recordId, target.record !== undefined])
    return 'keep'
  }, { record: { pattern: '/records/*', idMember: 'id' } })
  t.equal(err, undefined)
  t.equal(out, doc, 'kept byte for byte')
  t.same(seen, [
    ['records/0/holder/name', 'a', true],
    ['records/1/name', 7, true],
    ['records/1/kin/0/name', 7, true],
    ['name', undefined, false],
  ])
})
