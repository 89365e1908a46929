/**
 * Found by review: `require-sealed` (`isSealedFor`, public keys only) checked an `epk`'s type, curve
 * and coordinate lengths, and passed every X25519 point of small order and P-256 points off the
 * curve, with which no opener can agree. It needs no agreement to tell: a point of the NIST curves is
 * checked on import, and one of X25519 by at most three doublings (`x25519HasSmallOrder`), which
 * must say exactly what OpenSSL says when it refuses the all-zero secret of such a point.
 */
import { createPublicKey, diffieHellman, generateKeyPairSync, randomBytes } from 'node:crypto'
import { Readable, type Transform } from 'node:stream'
import t from 'tap'
import { x25519HasSmallOrder } from '../src/crypto/epk-check.js'
import { FieldSealer, isSealedFor } from '../src/crypto/field.js'
import { type GenerateKeySetOptions, generateKeySet, parseKeySet } from '../src/crypto/keys.js'

const P = 2n ** 255n - 19n
/** `n` as X25519's 32 little-endian bytes. */
const le = (n: bigint): Buffer => Buffer.from(Array.from({ length: 32 }, (_, i) => Number((n >> BigInt(8 * i)) & 0xffn)))
/** Whether OpenSSL refuses an agreement with `u`. */
function openSslRefuses(u: Buffer): boolean {
  const publicKey = createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x: u.toString('base64url') }, format: 'jwk' })
  try {
    diffieHellman({ privateKey: generateKeyPairSync('x25519').privateKey, publicKey })
    return false
  } catch {
    return true
  }
}

t.test('x25519HasSmallOrder says what OpenSSL says, for the points of small order and random ones', async (t) => {
  const candidates = [
    0n,
    1n,
    P - 1n,
    P,
    P + 1n,
    // The two points of order 8 (libsodium's list of small-order points).
    325606250916557431795983626356110631294008115727848805560023387167927233504n,
    39382357235489614581723060781553021112529911719440698176882885853963445705823n,
  ].map(le)
  // The top bit is ignored (RFC 7748 §5): each again with it set.
  for (const u of [...candidates]) {
    const high = Buffer.from(u)
    high[31]! |= 0x80
    candidates.push(high)
  }
  for (let i = 0; i < 200; i++) candidates.push(randomBytes(32))
  let small = 0
  for (const u of candidates) {
    const refused = openSslRefuses(u)
    if (refused) small++
    t.equal(x25519HasSmallOrder(u), refused, u.toString('hex'))
  }
  t.equal(small, 14, 'every listed point (and only they) is of small order, both spellings')
})

/** A value sealed for a fresh key set of `crv`, its protected header's `epk` replaced by `epk`. */
function withEpk(crv: NonNullable<GenerateKeySetOptions['crv']>, epk: Record<string, string>) {
  const generated = generateKeySet({ crv })
  const keys = parseKeySet(generated.publicJwks, { publicOnly: true })
  const jwe = new FieldSealer(keys, { route: 'r' }).seal(Buffer.from('"P-19XK44210"'), { ptr: '/passport' })
  const [header, ...rest] = jwe.split('.')
  const parsed = JSON.parse(Buffer.from(header!, 'base64url').toString()) as { epk: Record<string, string> }
  const forged = { ...parsed, epk: { ...parsed.epk, ...epk } }
  return { keys, jwe, forged: [Buffer.from(JSON.stringify(forged)).toString('base64url'), ...rest].join('.') }
}

t.test('require-sealed refuses a value whose epk no opener can agree with, and passes a real one', async (t) => {
  const expected = { route: 'r', ptr: '/passport' }
  for (const u of [0n, 1n, P - 1n, 325606250916557431795983626356110631294008115727848805560023387167927233504n]) {
    const { keys, jwe, forged } = withEpk('X25519', { x: le(u).toString('base64url') })
    t.ok(isSealedFor(jwe, keys, expected), 'the value as sealed passes')
    t.notOk(isSealedFor(forged, keys, expected), `X25519 u = ${u}: refused`)
  }
  const offCurve = withEpk('P-256', { x: randomBytes(32).toString('base64url'), y: randomBytes(32).toString('base64url') })
  t.ok(isSealedFor(offCurve.jwe, offCurve.keys, expected), 'P-256: the value as sealed passes')
  t.notOk(isSealedFor(offCurve.forged, offCurve.keys, expected), 'P-256: a point off the curve is refused')
  // Another point of the curve: a usable epk (the tag is the opener's to check).
  const other = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ format: 'jwk' }) as Record<string, string>
  const moved = withEpk('P-256', { x: other['x']!, y: other['y']! })
  t.ok(isSealedFor(moved.forged, moved.keys, expected), 'P-256: a point of the curve passes')
})

t.test('isP256Point says what Node says of a P-256 point, on the curve and off it', async (t) => {
  const { isP256Point } = await import('../src/crypto/epk-check.js')
  const nodeAccepts = (x: Buffer, y: Buffer) => {
    try {
      createPublicKey({ key: { kty: 'EC', crv: 'P-256', x: x.toString('base64url'), y: y.toString('base64url') }, format: 'jwk' })
      return true
    } catch {
      return false
    }
  }
  for (let i = 0; i < 50; i++) {
    const jwk = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ format: 'jwk' }) as Record<string, string>
    const x = Buffer.from(jwk['x']!, 'base64url')
    const y = Buffer.from(jwk['y']!, 'base64url')
    t.ok(isP256Point(x, y) && nodeAccepts(x, y), 'a generated point: both accept')
    const flipped = Buffer.from(y)
    flipped[31]! ^= 1
    t.equal(isP256Point(x, flipped), nodeAccepts(x, flipped), 'a bit flipped in y: both refuse')
    t.notOk(isP256Point(x, flipped))
  }
  for (let i = 0; i < 50; i++) {
    const [x, y] = [randomBytes(32), randomBytes(32)]
    t.equal(isP256Point(x, y), nodeAccepts(x, y), 'random coordinates')
  }
  // A coordinate at or above p (the curve's equation alone would take x + p for x).
  const p = le(2n ** 256n - 2n ** 224n + 2n ** 192n + 2n ** 96n - 1n).reverse()
  t.notOk(isP256Point(p, randomBytes(32)), 'x = p')
})

t.test('require-sealed-body refuses a stream whose epk no opener can agree with (found by re-review)', async (t) => {
  const { createSealStream, createSealedStreamCheck } = await import('../src/crypto/stream.js')
  const generated = generateKeySet()
  const keys = parseKeySet(generated.publicJwks, { publicOnly: true })
  const through = async (input: Buffer, stream: Transform) => Buffer.concat((await Readable.from([input]).pipe(stream).toArray()) as Buffer[])
  const sealed = await through(Buffer.from('a photo'), createSealStream(keys, { contentType: 'image/png', route: 'photos' }))
  // The fixed header's 12 bytes end with the key JWE's length; the JWE follows.
  const jweLength = sealed.readUInt16BE(10)
  const [header, ...rest] = sealed.toString('latin1', 12, 12 + jweLength).split('.')
  const parsed = JSON.parse(Buffer.from(header!, 'base64url').toString()) as { epk: { x: string } }
  parsed.epk.x = le(0n).toString('base64url')
  const forgedJwe = [Buffer.from(JSON.stringify(parsed)).toString('base64url'), ...rest].join('.')
  t.equal(forgedJwe.length, jweLength, 'the same length: only the point differs')
  const forged = Buffer.concat([sealed.subarray(0, 12), Buffer.from(forgedJwe, 'latin1'), sealed.subarray(12 + jweLength)])
  t.same(await through(sealed, createSealedStreamCheck(keys, { route: 'photos' })), sealed, 'the stream as sealed passes, unchanged')
  await t.rejects(through(forged, createSealedStreamCheck(keys, { route: 'photos' })), { code: 'open_failed', message: /epk is no point an agreement can use/ })
})
