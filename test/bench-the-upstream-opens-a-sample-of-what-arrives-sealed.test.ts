/**
 * Found by review: the bench judged sealed traffic by its shape only (a JWE's header prefix, a
 * stream's length), which a sealer that skipped the encryption, sealed to another key or sealed the
 * wrong fields would pass. The upstream now opens a sample with the run's private key, through jose
 * and node:crypto (bench/lib/verify.ts), and compares it with what was sent. This pins that the
 * verifier itself tells a real seal from each of those.
 */
import { Readable, Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { CompactEncrypt, importJWK } from 'jose'
import t from 'tap'
import { patternBuffer } from '../bench/lib/bodies.js'
import { SealedSampleVerifier } from '../bench/lib/verify.js'
import { generateRecords, SENSITIVE_POINTERS, valueAt } from '../bench/records.js'
import { FieldSealer } from '../src/crypto/field.js'
import { generateKeySet, parseKeySet } from '../src/crypto/keys.js'
import { createSealStream } from '../src/crypto/stream.js'

const ours = generateKeySet({ alg: 'ECDH-ES+A256KW', crv: 'X25519' })
const other = generateKeySet({ alg: 'ECDH-ES+A256KW', crv: 'X25519' })
const verifier = await SealedSampleVerifier.create(ours.privateJwks)
const [first, second] = generateRecords(2) as unknown as Array<Record<string, unknown>>

function setAt(record: Record<string, unknown>, pointer: string, value: unknown): void {
  const [, parent, member] = pointer.split('/')
  ;(record[parent!] as Record<string, unknown>)[member!] = value
}

/** A record as Écluse's seal step leaves it: each sensitive value a JWE of its JSON text. */
function sealedByEcluse(record: Record<string, unknown>, keys = ours.publicJwks, sentValue = (p: string) => valueAt(record, p)): Record<string, unknown> {
  const sealer = new FieldSealer(parseKeySet(keys), { route: 'records' })
  const out = structuredClone(record)
  for (const p of SENSITIVE_POINTERS) setAt(out, p, sealer.seal(Buffer.from(JSON.stringify(sentValue(p))), { ptr: p }))
  return out
}

async function sealedByJose(record: Record<string, unknown>): Promise<Record<string, unknown>> {
  const jwk = ours.publicJwks.keys[0]!
  const key = await importJWK(jwk, 'ECDH-ES+A256KW')
  const out = structuredClone(record)
  for (const p of SENSITIVE_POINTERS) {
    setAt(out, p, await new CompactEncrypt(Buffer.from(JSON.stringify(valueAt(record, p)))).setProtectedHeader({ alg: 'ECDH-ES+A256KW', enc: 'A256GCM', kid: jwk.kid as string }).encrypt(key))
  }
  return out
}

t.test('a record: every sensitive value must open, with the run’s key, to the value sent', async (t) => {
  t.equal(await verifier.record(sealedByEcluse(first!)), true, 'sealed by Écluse')
  t.equal(await verifier.record(await sealedByJose(first!)), true, 'sealed by jose, as the naive proxy does')
  t.equal(await verifier.judge(() => verifier.record(sealedByEcluse(first!, other.publicJwks))), false, 'sealed for another key')
  const swapped = sealedByEcluse(first!, ours.publicJwks, (p) => valueAt(second, p))
  t.equal(await verifier.judge(() => verifier.record(swapped)), false, 'sealed values of another record')
  const one = sealedByEcluse(first!)
  setAt(one, SENSITIVE_POINTERS[2], valueAt(first, SENSITIVE_POINTERS[2]))
  t.equal(await verifier.judge(() => verifier.record(one)), false, 'one value left in plaintext')
  const moved = sealedByEcluse(first!)
  ;(moved as { status?: unknown }).status = 'tampered'
  t.equal(await verifier.judge(() => verifier.record(moved)), false, 'another member changed')
  const unknown = sealedByEcluse(first!)
  unknown['id'] = 'acc-0000-none'
  t.equal(await verifier.judge(() => verifier.record(unknown)), false, 'a record the load generator never sent')
})

t.test('a bulk body: its first, middle and last records', async (t) => {
  const records = generateRecords(5) as unknown as Array<Record<string, unknown>>
  const body = (rs: Array<Record<string, unknown>>) => Buffer.from(JSON.stringify({ records: rs }))
  t.equal(await verifier.bulk(body(records.map((r) => sealedByEcluse(r)))), true)
  const middle = records.map((r, i) => (i === 2 ? r : sealedByEcluse(r)))
  t.equal(await verifier.judge(() => verifier.bulk(body(middle))), false, 'the middle record in plaintext')
  t.equal(await verifier.judge(() => verifier.bulk(body([]))), false, 'no record at all')
})

async function sealStream(plain: Buffer, keys = ours.publicJwks): Promise<Buffer> {
  const parts: Buffer[] = []
  await pipeline(
    Readable.from([plain]),
    createSealStream(parseKeySet(keys), { contentType: 'application/octet-stream', route: 'blobs' }),
    new Writable({
      write(chunk: Buffer, _enc, done) {
        parts.push(chunk)
        done()
      },
    }),
  )
  return Buffer.concat(parts)
}

t.test('a sealed stream: its key opens, and its first record holds the pattern body sent', async (t) => {
  for (const size of [200_000, 65_536, 1000]) {
    const plain = patternBuffer(7, size)
    const sealed = await sealStream(plain)
    t.equal(await verifier.streamStart(sealed, sealed.length), true, `${size} bytes`)
  }
  const small = await sealStream(patternBuffer(7, 1000))
  t.equal(await verifier.judge(() => verifier.streamStart(small, small.length + 1)), false, 'a last first record, and a total that is not its length')
  const sealed = await sealStream(patternBuffer(7, 200_000))
  const flipped = Buffer.from(sealed)
  flipped[flipped.length >> 1] = flipped[flipped.length >> 1]! ^ 1
  t.equal(await verifier.streamStart(flipped, flipped.length), true, 'a record after the first is not opened (the length check covers the rest)')
  const first = Buffer.from(sealed)
  first[first.length - 200_000 + 5] = first[first.length - 200_000 + 5]! ^ 1
  t.equal(await verifier.judge(() => verifier.streamStart(first, first.length)), false, 'a byte of the first record changed')
  const foreign = await sealStream(patternBuffer(7, 200_000), other.publicJwks)
  t.equal(await verifier.judge(() => verifier.streamStart(foreign, foreign.length)), false, 'sealed for another key')
  const wrong = await sealStream(patternBuffer(7, 200_000).fill(0, 100, 101))
  t.equal(await verifier.judge(() => verifier.streamStart(wrong, wrong.length)), false, 'not the pattern of its id')
  const fake = Buffer.concat([sealed.subarray(0, 12 + sealed.readUInt16BE(10)), patternBuffer(7, 65_536 + 17)])
  t.equal(await verifier.judge(() => verifier.streamStart(fake, fake.length)), false, 'a real header over a plaintext first record')
})

t.test('one sample at a time, and at most one per interval', async (t) => {
  const sampler = await SealedSampleVerifier.create(ours.privateJwks)
  t.equal(sampler.take(60_000), true)
  t.equal(sampler.take(0), false, 'one in flight')
  await sampler.judge(async () => true)
  t.equal(sampler.take(60_000), false, 'and not again within the interval')
  t.equal(sampler.take(0), true, 'an interval of its own for another kind of message')
})
