import { createHash } from 'node:crypto'
import t from 'tap'
import { generateRecords, RecordGenerator, SENSITIVE_POINTERS, SeededRandom, valueAt } from '../bench/records.js'

const serialise = (seed?: number, n = 100) =>
  generateRecords(n, seed)
    .map((r) => JSON.stringify(r))
    .join('\n')

t.test('the same seed gives byte-identical records; another seed gives others', async (t) => {
  t.equal(serialise(7), serialise(7))
  t.not(serialise(7), serialise(8))
  // A generator is a sequence: the first records of a longer run are the shorter run.
  t.equal(serialise(7, 10), serialise(7, 20).split('\n').slice(0, 10).join('\n'))
  const gen = new RecordGenerator(7)
  t.same(gen.next(), generateRecords(1, 7)[0])
})

t.test('the default output is pinned: the benchmarks send these exact bytes', async (t) => {
  // Changing the generator changes the input of every benchmark figure: update this deliberately.
  const digest = createHash('sha256').update(serialise()).digest('hex')
  t.equal(digest, 'bbfbd7af4a78e01586f7dc140931e0fb4877f5e35625833f665b2d56b627d1cd')
})

t.test('records are about 1 KiB of valid JSON with the six sensitive fields as strings', async (t) => {
  const records = generateRecords(500, 12345)
  const ids = new Set<string>()
  for (const record of records) {
    const json = JSON.stringify(record)
    const bytes = Buffer.byteLength(json)
    if (bytes < 900 || bytes > 1150) t.fail(`record ${record.id} is ${bytes} bytes`)
    t.same(JSON.parse(json), record)
    ids.add(record.id)
    for (const pointer of SENSITIVE_POINTERS) {
      const value = valueAt(record, pointer)
      if (typeof value !== 'string' || value === '') t.fail(`${record.id} ${pointer} = ${String(value)}`)
    }
    if (!/^[a-z.]+\d+@[a-z.]+$/.test(record.holder.email)) t.fail(`e-mail ${record.holder.email}`)
    if (!/^\d{4}-\d{2}-\d{2}$/.test(record.holder.birthDate)) t.fail(`birth date ${record.holder.birthDate}`)
    if (!/^\d{2}[A-Z]{2}\d{5}$/.test(record.holder.passportNumber)) t.fail(`passport ${record.holder.passportNumber}`)
  }
  t.equal(SENSITIVE_POINTERS.length, 6)
  t.equal(ids.size, records.length, 'ids are unique')
})

t.test('the PRNG is the platform-independent sfc32 sequence', async (t) => {
  const a = new SeededRandom(1)
  const b = new SeededRandom(1)
  const seq = Array.from({ length: 1000 }, () => a.nextUint32())
  t.same(seq, Array.from({ length: 1000 }, () => b.nextUint32()))
  t.ok(seq.every((v) => Number.isInteger(v) && v >= 0 && v < 2 ** 32))
  t.ok(new Set(seq).size > 990, 'no short cycle')
})
