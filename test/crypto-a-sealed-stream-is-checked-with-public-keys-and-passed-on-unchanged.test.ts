/**
 * `createSealedStreamCheck`, the check behind `require-sealed-body`: with public keys only, a sealed
 * stream for the key set and context passes through byte for byte under any chunking, and anything
 * else fails before a byte of it is passed on (its header is held until it checks); a stream whose
 * records do not frame fails at its end.
 */
import { Readable, Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import fc from 'fast-check'
import t from 'tap'
import { createSealStream, generateKeySet, type KeySet, parseKeySet } from '../src/crypto/index.js'
import { createSealedStreamCheck } from '../src/crypto/stream.js'
import { splitAt } from './helpers/chunks.js'
import { streamHeaderByHand } from './helpers/sealing.js'

const set = generateKeySet()
const pub = parseKeySet(set.publicJwks)
const other = parseKeySet(generateKeySet().publicJwks)

async function seal(keys: KeySet, data: Buffer, rs: number, route: string | undefined): Promise<Buffer> {
  const out: Buffer[] = []
  await pipeline(Readable.from([data]), createSealStream(keys, { contentType: 'image/jpeg', recordSize: rs, ...(route === undefined ? {} : { route }) }), new Writable({ write: (c, _e, cb) => { out.push(c); cb() } }))
  return Buffer.concat(out)
}

/** What the check passed on before it ended, and how it ended. */
async function check(chunks: Buffer[], keys: KeySet, options: { route: string; minRecordSize?: number; maxRecordSize?: number }) {
  const out: Buffer[] = []
  let error: Error | undefined
  await pipeline(Readable.from(chunks), createSealedStreamCheck(keys, options), new Writable({ write: (c, _e, cb) => { out.push(c); cb() } })).catch((err: Error) => {
    error = err
  })
  return { out: Buffer.concat(out), error }
}

t.test('a stream sealed for the set and context passes unchanged, under any chunking and record size', async (t) => {
  await fc.assert(
    fc.asyncProperty(
      fc.uint8Array({ minLength: 0, maxLength: 3000, size: 'max' }),
      fc.integer({ min: 16, max: 300 }),
      fc.array(fc.nat(), { maxLength: 30, size: 'max' }),
      async (bytes, rs, cuts) => {
        const sealed = await seal(pub, Buffer.from(bytes), rs, 'photos-out')
        const r = await check(splitAt(sealed, cuts), pub, { route: 'photos-out', minRecordSize: 16 })
        return r.error === undefined && r.out.equals(sealed)
      },
    ),
    { numRuns: 100 },
  )
  t.pass('100 random bodies, record sizes and chunkings')
})

t.test('anything else is refused before a byte of it is passed on', async (t) => {
  const photo = Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), Buffer.alloc(5000, 0x42)])
  const sealed = await seal(pub, photo, 4096, 'photos-out')
  const cases: Array<[string, Buffer[], KeySet, string, RegExp]> = [
    ['a plaintext photo', [photo], pub, 'photos-out', /bad magic/],
    ['a stream for another context', [await seal(pub, photo, 4096, 'photos-in')], pub, 'photos-out', /ecl\.route/],
    ['a stream with no context', [await seal(pub, photo, 4096, undefined)], pub, 'photos-out', /ecl\.route/],
    ['a stream for another key set', [await seal(other, photo, 4096, 'photos-out')], pub, 'photos-out', /kid/],
    ['the header cut short', [sealed.subarray(0, 100)], pub, 'photos-out', /inside its header/],
    ['the fixed header alone', [sealed.subarray(0, 12)], pub, 'photos-out', /inside its header/],
    ['a record size under the floor', [await seal(pub, photo, 1024, 'photos-out')], pub, 'photos-out', /record size 1024 outside 4096\.\./],
  ]
  for (const [what, chunks, keys, route, detail] of cases) {
    const r = await check(chunks, keys, { route, minRecordSize: 4096 })
    t.match(r.error, { code: 'open_failed', message: detail }, `${what}: refused, open_failed, saying why`)
    t.equal(r.out.length, 0, `${what}: nothing passed on`)
  }
})

t.test('records that do not frame are refused at the end, a whole stream passes', async (t) => {
  const sealed = await seal(pub, Buffer.alloc(10_000, 7), 4096, 'photos-out')
  const jweEnd = 12 + sealed.readUInt16BE(10)
  const wire = 4096 + 17
  // Full records then a last one of 10,000 − 2 × 4096 = 1808 data bytes: 1825 on the wire.
  t.equal(sealed.length - jweEnd, 2 * wire + 1825)
  for (const [what, body] of [
    ['the last record cut to 16 bytes', sealed.subarray(0, jweEnd + 2 * wire + 16)],
    ['only a partial first record', sealed.subarray(0, jweEnd + 10)],
    ['no record at all', sealed.subarray(0, jweEnd)],
  ] as const) {
    const r = await check([body], pub, { route: 'photos-out' })
    t.match(r.error, { code: 'open_failed', message: /do not frame/ }, `${what}: refused at its end`)
  }
  // Cut at a record boundary, the records frame (the last one is full size): only the private
  // key's holder can tell its delimiter says "more". The check claims no more than the framing.
  const atBoundary = await check([sealed.subarray(0, jweEnd + 2 * wire)], pub, { route: 'photos-out' })
  t.equal(atBoundary.error, undefined, 'cut at a record boundary: framing cannot tell (documented)')
  const whole = await check([sealed], pub, { route: 'photos-out' })
  t.equal(whole.error, undefined)
  t.ok(whole.out.equals(sealed), 'the whole stream, byte for byte')
})

t.test('a stream another writer serialised differently passes, as it opens', async (t) => {
  // Found by review: an upper bound on the key payload's length assumed our own JSON.stringify;
  // Go's encoding/json writes `<` as \u003c, and the opener (JSON.parse) takes it.
  const { createCipheriv, randomBytes } = await import('node:crypto')
  const { b64u } = await import('../src/crypto/base64url.js')
  const { sealCompact } = await import('../src/crypto/field.js')
  const { createOpenStream, deriveRecordKeys } = await import('../src/crypto/stream.js')
  const priv = parseKeySet(set.privateJwks, { requirePrivate: true })
  const cty = `text/plain; x="${'<'.repeat(90)}"`
  const k = randomBytes(32)
  const payload = JSON.stringify({ k: b64u(k), cty }).replace(/</g, '\\u003c')
  const jwe = sealCompact(pub.current, [['ecl.fmt', 'ecls/1'], ['ecl.route', 'r']], Buffer.from(payload))
  const header = streamHeaderByHand(jwe, 4096)
  const { key, nonceBase } = deriveRecordKeys(k, header)
  const cipher = createCipheriv('aes-256-gcm', key, nonceBase)
  const stream = Buffer.concat([header, cipher.update(Buffer.from('hello\x02')), cipher.final(), cipher.getAuthTag()])
  t.ok(payload.length > 600, `a payload of ${payload.length} bytes`)
  const opened: Buffer[] = []
  await pipeline(Readable.from([stream]), createOpenStream(priv, { route: 'r' }), new Writable({ write: (c, _e, cb) => { opened.push(c); cb() } }))
  t.equal(Buffer.concat(opened).toString(), 'hello', 'the opener opens it')
  const r = await check([stream], pub, { route: 'r' })
  t.equal(r.error, undefined, 'and the check passes it')
  t.ok(r.out.equals(stream))
})
