import { createCipheriv, randomBytes } from 'node:crypto'
import { subscribe, unsubscribe } from 'node:diagnostics_channel'
import { Readable, Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import fc from 'fast-check'
import { pino } from 'pino'
import t from 'tap'
import { ASYMMETRIC_CHANNEL, createOpenStream, createSealStream, generateKeySet, parseKeySet } from '../src/crypto/index.js'
import { TEST_SEAM } from '../src/crypto/jwe.js'
import { deriveRecordKeys, recordNonce } from '../src/crypto/stream.js'
import { EcluseError } from '../src/errors.js'
import { createOpenBodyTransform } from '../src/transform/open-body.js'

const g = generateKeySet()
const pub = parseKeySet(g.publicJwks)
const priv = parseKeySet(g.privateJwks)
const RS = 64
const RECORDS = 10 // full records, then a short last one
const data = randomBytes(RS * RECORDS + 30)
const streamKey = randomBytes(32)

const sealedChunks: Buffer[] = []
await pipeline(
  Readable.from([data]),
  createSealStream(pub, { contentType: 'image/jpeg', recordSize: RS, [TEST_SEAM]: { streamKey: () => Buffer.from(streamKey) } }),
  new Writable({ write: (c, _e, cb) => { sealedChunks.push(c); cb() } }),
)
const sealed = Buffer.concat(sealedChunks)
const headerLen = 12 + sealed.readUInt16BE(10)
const header = sealed.subarray(0, headerLen)
const W = RS + 17
/** The wire bytes of record i (the last one is shorter). */
const record = (i: number) => sealed.subarray(headerLen + i * W, Math.min(headerLen + (i + 1) * W, sealed.length))
const allRecords = Array.from({ length: RECORDS + 1 }, (_, i) => record(i))

/** Records encrypted by hand with the real keys, to place a delimiter where a sealer never would. */
function forge(records: Array<{ data: Buffer; delimiter: number }>): Buffer {
  const { key, nonceBase } = deriveRecordKeys(streamKey, header)
  const parts: Buffer[] = [header]
  records.forEach((r, i) => {
    const c = createCipheriv('aes-256-gcm', key, recordNonce(nonceBase, i))
    parts.push(c.update(Buffer.concat([r.data, Buffer.of(r.delimiter)])), c.final(), c.getAuthTag())
  })
  return Buffer.concat(parts)
}

interface Outcome {
  error: unknown
  emitted: Buffer
  headerSeen: boolean
}

async function open(input: Buffer, chunkSize = 29, options = {}): Promise<Outcome> {
  const out: Buffer[] = []
  const chunks: Buffer[] = []
  for (let i = 0; i < input.length; i += chunkSize) chunks.push(input.subarray(i, i + chunkSize))
  const stream = createOpenStream(priv, options)
  let headerSeen = false
  stream.on('header', () => { headerSeen = true })
  let error: unknown
  try {
    await pipeline(Readable.from(chunks), stream, new Writable({ write: (c, _e, cb) => { out.push(c); cb() } }))
  } catch (err) {
    error = err
  }
  return { error, emitted: Buffer.concat(out), headerSeen }
}

/** The property every failure must have: open_failed, and only whole authentic records released. */
function failsCleanly(t: Pick<typeof import('tap').default, 'ok' | 'equal'>, o: Outcome, name: string, maxRecords = RECORDS): void {
  t.ok(o.error instanceof EcluseError && o.error.code === 'open_failed', `${name}: open_failed`)
  const n = o.emitted.length
  t.ok(n % RS === 0 && n <= maxRecords * RS && data.subarray(0, n).equals(o.emitted), `${name}: only whole verified records (${n / RS}) released`)
}

t.test('the untampered stream opens (control)', async (t) => {
  for (const size of [1, 7, 29, 81, 4096]) {
    const o = await open(sealed, size)
    t.equal(o.error, undefined)
    t.ok(o.emitted.equals(data), `chunks of ${size}`)
  }
})

t.test('truncation anywhere is detected', async (t) => {
  const cuts = [0, 3, 12, headerLen - 1, headerLen, headerLen + 1, headerLen + W - 1, headerLen + W, headerLen + 5 * W, headerLen + RECORDS * W, sealed.length - 1]
  for (const cut of cuts) {
    const o = await open(sealed.subarray(0, cut))
    failsCleanly(t, o, `cut at ${cut}`)
  }
  const withoutLast = Buffer.concat([header, ...allRecords.slice(0, RECORDS)])
  const o = await open(withoutLast)
  failsCleanly(t, o, 'missing last record')
  t.equal(o.emitted.length, RECORDS * RS, 'the verified records before the cut were released, nothing else')
  t.match((o.error as Error).message, /truncated/)
})

t.test('reordered, duplicated and dropped records are detected', async (t) => {
  const swap = [...allRecords]
  ;[swap[3], swap[4]] = [swap[4]!, swap[3]!]
  let o = await open(Buffer.concat([header, ...swap]))
  failsCleanly(t, o, 'records 3 and 4 swapped')
  t.equal(o.emitted.length, 3 * RS, 'records 0..2 released, nothing from 3 on')
  const dup = [...allRecords.slice(0, 5), allRecords[4]!, ...allRecords.slice(5)]
  o = await open(Buffer.concat([header, ...dup]))
  failsCleanly(t, o, 'record 4 duplicated')
  t.equal(o.emitted.length, 5 * RS)
  const dropped = [...allRecords.slice(0, 2), ...allRecords.slice(3)]
  o = await open(Buffer.concat([header, ...dropped]))
  failsCleanly(t, o, 'record 2 dropped')
  t.equal(o.emitted.length, 2 * RS)
  const lastTwice = [...allRecords, allRecords[RECORDS]!]
  failsCleanly(t, await open(Buffer.concat([header, ...lastTwice])), 'last record repeated')
})

t.test('trailing data after the last record is detected and the last record withheld', async (t) => {
  for (const extra of [Buffer.of(0), randomBytes(17), randomBytes(W), allRecords[0]!]) {
    const o = await open(Buffer.concat([sealed, extra]))
    failsCleanly(t, o, `${extra.length} trailing bytes`)
  }
  // A full-size last record followed by more bytes: authentic, but held back until the end, so the
  // trailing bytes fail the stream before its plaintext is released.
  const fullLast = forge([
    { data: data.subarray(0, RS), delimiter: 1 },
    { data: data.subarray(RS, 2 * RS), delimiter: 2 },
  ])
  const ok = await open(fullLast)
  t.equal(ok.error, undefined, 'control: full-size last record opens')
  const o = await open(Buffer.concat([fullLast, Buffer.of(1)]))
  failsCleanly(t, o, 'bytes after a full-size last record')
  t.equal(o.emitted.length, RS, 'only the first record was released')
  t.match((o.error as Error).message, /trailing data/)
})

t.test('misplaced, missing or invalid delimiters are detected', async (t) => {
  const rec = (i: number, delimiter: number) => ({ data: data.subarray(i * RS, (i + 1) * RS), delimiter })
  let o = await open(forge([rec(0, 1), rec(1, 2), rec(2, 1), { data: Buffer.alloc(0), delimiter: 2 }]))
  failsCleanly(t, o, 'last marker in the middle')
  t.equal(o.emitted.length, RS)
  o = await open(forge([rec(0, 1), rec(1, 1)]))
  failsCleanly(t, o, 'no last marker at the end')
  t.equal(o.emitted.length, 2 * RS)
  o = await open(forge([rec(0, 1), { data: data.subarray(RS, RS + 10), delimiter: 1 }]))
  failsCleanly(t, o, 'short record not marked last')
  o = await open(forge([rec(0, 3), { data: Buffer.alloc(0), delimiter: 2 }]))
  failsCleanly(t, o, 'invalid delimiter 3', 0)
  o = await open(forge([rec(0, 0), { data: Buffer.alloc(0), delimiter: 2 }]))
  failsCleanly(t, o, 'invalid delimiter 0', 0)
})

t.test('record-size abuse is refused before any record is buffered', async (t) => {
  const bigger = Buffer.from(sealed)
  bigger.writeUInt32BE(2048, 6)
  const ops: unknown[] = []
  const count = (m: unknown) => ops.push(m)
  subscribe(ASYMMETRIC_CHANNEL, count)
  let o = await open(bigger, 29, { maxRecordSize: 1024 })
  unsubscribe(ASYMMETRIC_CHANNEL, count)
  failsCleanly(t, o, 'declared size beyond the configured cap', 0)
  t.equal(ops.length, 0, 'refused before the key JWE is even opened')
  t.match((o.error as Error).message, /record size 2048/)
  o = await open(bigger)
  failsCleanly(t, o, 'declared size changed within the cap', 0)
  const smaller = Buffer.from(sealed)
  smaller.writeUInt32BE(32, 6)
  failsCleanly(t, await open(smaller), 'declared size made smaller', 0)
  const huge = Buffer.from(sealed)
  huge.writeUInt32BE(0xffffffff, 6)
  failsCleanly(t, await open(huge), 'declared size 4 GiB', 0)
  const longJwe = Buffer.from(sealed)
  longJwe.writeUInt16BE(60000, 10)
  failsCleanly(t, await open(longJwe), 'declared key JWE length beyond the cap', 0)
  // A record longer than the size declared shifts every later boundary: the record fails.
  const inserted = Buffer.concat([header, allRecords[0]!, Buffer.of(0), ...allRecords.slice(1)])
  o = await open(inserted)
  failsCleanly(t, o, 'one byte inserted into record 1')
  t.equal(o.emitted.length, RS)
})

t.test('a bit flip anywhere (header, key JWE, records) is detected', async (t) => {
  let failures = 0
  for (let pos = 0; pos < sealed.length; pos++) {
    const copy = Buffer.from(sealed)
    copy[pos]! ^= 1 << (pos % 8)
    const o = await open(copy, 61)
    const inRecord = pos >= headerLen ? Math.floor((pos - headerLen) / W) : -1
    const clean =
      o.error instanceof EcluseError &&
      o.error.code === 'open_failed' &&
      o.emitted.length === Math.max(0, inRecord) * RS &&
      data.subarray(0, o.emitted.length).equals(o.emitted) &&
      // The header is announced only once authenticated, i.e. after record 0 verified.
      o.headerSeen === inRecord > 0
    if (!clean) {
      failures++
      t.fail(`flip at byte ${pos} (record ${inRecord}) was not cleanly refused`)
    }
  }
  t.equal(failures, 0, `all ${sealed.length} single-bit flips refused; only the records before the flip released`)
})

t.test('random damage never releases an unauthenticated byte', async (t) => {
  await fc.assert(
    fc.asyncProperty(
      fc.oneof(
        fc.record({ kind: fc.constant('flip' as const), pos: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }),
        fc.record({ kind: fc.constant('cut' as const), pos: fc.nat() }),
        fc.record({ kind: fc.constant('insert' as const), pos: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 40 }) }),
        fc.record({ kind: fc.constant('delete' as const), pos: fc.nat(), len: fc.integer({ min: 1, max: 90 }) }),
      ),
      fc.integer({ min: 1, max: 200 }),
      async (damage, chunk) => {
        const pos = damage.pos % sealed.length
        let bad: Buffer
        if (damage.kind === 'flip') {
          bad = Buffer.from(sealed)
          bad[pos]! ^= 1 << damage.bit
        } else if (damage.kind === 'cut') {
          bad = sealed.subarray(0, pos)
        } else if (damage.kind === 'insert') {
          bad = Buffer.concat([sealed.subarray(0, pos), Buffer.from(damage.bytes), sealed.subarray(pos)])
        } else {
          bad = Buffer.concat([sealed.subarray(0, pos), sealed.subarray(pos + damage.len)])
        }
        const o = await open(bad, chunk)
        const n = o.emitted.length
        return (
          o.error instanceof EcluseError &&
          o.error.code === 'open_failed' &&
          n % RS === 0 &&
          data.subarray(0, n).equals(o.emitted)
        )
      },
    ),
    { numRuns: 150 },
  )
  t.pass('150 random damages refused cleanly')
})

t.test('wrong key, unknown kid, or not a sealed stream at all', async (t) => {
  const other = generateKeySet({ kid: g.publicJwks.keys[0]!.kid as string })
  const o1 = await (async () => {
    const out: Buffer[] = []
    try {
      await pipeline(Readable.from([sealed]), createOpenStream(parseKeySet(other.privateJwks)), new Writable({ write: (c, _e, cb) => { out.push(c); cb() } }))
    } catch (err) {
      return { error: err, emitted: Buffer.concat(out), headerSeen: false }
    }
    return { error: undefined, emitted: Buffer.concat(out), headerSeen: false }
  })()
  failsCleanly(t, o1, 'same kid, another private key', 0)
  const unknown = await (async () => {
    try {
      await pipeline(Readable.from([sealed]), createOpenStream(parseKeySet(generateKeySet().privateJwks)), new Writable({ write: (_c, _e, cb) => cb() }))
    } catch (err) {
      return err
    }
    return undefined
  })()
  t.match(unknown, { code: 'open_failed', message: /not accepted/ }, 'unknown kid')
  failsCleanly(t, await open(Buffer.from('%PDF-1.7 this is plaintext, not a sealed stream')), 'plaintext', 0)
  failsCleanly(t, await open(Buffer.alloc(0)), 'empty input', 0)
  t.throws(() => createOpenStream(pub), { code: 'key_material_invalid' }, 'opening needs a private set')
  t.throws(() => createOpenStream(priv, { maxRecordSize: 8 }), { code: 'config_invalid' })
})

t.test('records smaller than minRecordSize are refused at the header, before any record is opened', async (t) => {
  const o = await open(sealed, 29, { minRecordSize: RS * 2 })
  failsCleanly(t, o, `rs ${RS} under a floor of ${RS * 2}`, 0)
  t.match(o.error, { message: new RegExp(`record size ${RS} outside ${RS * 2}\\.\\.`) })
  const at = await open(sealed, 29, { minRecordSize: RS })
  t.equal(at.error, undefined, 'rs at the floor opens')
  t.ok(at.emitted.equals(data))
  t.throws(() => createOpenStream(priv, { minRecordSize: 8 }), { code: 'config_invalid', message: /minRecordSize/ })
  t.throws(() => createOpenStream(priv, { minRecordSize: 4096, maxRecordSize: 1024 }), { code: 'config_invalid', message: /minRecordSize/ })
  const env = { log: pino({ level: 'silent' }) }
  t.throws(() => createOpenBodyTransform({ keys: 'k', minRecordSize: 4096, maxRecordSize: 1024 }, env), {
    code: 'config_invalid',
    message: 'minRecordSize: must not exceed maxRecordSize',
  })
  // A route configured for small records before the floor existed keeps its records: the default
  // floor is no higher than its maxRecordSize.
  const keySets = new Map([['k', priv]])
  const step = createOpenBodyTransform({ keys: 'k', maxRecordSize: RS }, { ...env, keySets })
  const forRoute = Buffer.concat(await Readable.from([data]).pipe(createSealStream(pub, { contentType: 'image/jpeg', recordSize: RS, route: 'r' })).toArray())
  const headers: Record<string, string> = { 'content-type': 'application/vnd.ecluse.sealed' }
  const stream = step.begin({ direction: 'request', routeName: 'r', path: '/', requestId: 'x', principal: { id: 'uri:x' } as never, headers, log: env.log })!
  const out: Buffer[] = []
  await pipeline(Readable.from([forRoute]), stream, new Writable({ write: (c, _e, cb) => { out.push(c); cb() } }))
  t.ok(Buffer.concat(out).equals(data), `records of ${RS} bytes open under maxRecordSize ${RS} with no minRecordSize set`)
})
