/**
 * The crypto path of `stream-seal` and `stream-open`, in its own process (one core, no network):
 * Écluse's sealed-stream transforms (src/crypto/stream.ts) fed through a stream pipeline, beside
 * baseline 5, raw AES-256-GCM on the same 64 KiB records (bench/baselines/aes-gcm.ts).
 *
 *   node --import tsx bench/stream-micro.ts '{"seconds":1,"direction":"seal"}'   (optional "chunk": input chunk bytes,
 *                                                                                "small": body bytes, see below)
 *
 * The input arrives in 16 KiB chunks, as a TLS socket delivers a body (one TLS record each); the
 * stream's own records are 64 KiB (the default `recordSize`). The two rows are timed in alternating
 * slices (raw, stream, raw, stream…) and summed, so a change of the machine's load during the run
 * weighs on both alike. Prints one line `{"event":"result","rows":[…]}` with MB/s of plaintext.
 *
 * With `"small": N` two more rows time whole streams of N bytes each (photos of tens of KiB), one
 * after the other, beside raw AES-256-GCM of N-byte messages: there the per-stream work (the key
 * JWE, HKDF, the transform itself) weighs as much as the records. The opening side shares one
 * `KekCache` between its streams, as the `open-body` step does; the streams it opens were sealed in
 * one sealing window, as a gateway's within a second are.
 */
import { randomBytes } from 'node:crypto'
import { Readable, type Transform, Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { KekCache } from '../src/crypto/kek-cache.js'
import { generateKeySet, parseKeySet } from '../src/crypto/keys.js'
import { createOpenStream, createSealStream } from '../src/crypto/stream.js'
import { aesGcmOpenRate, aesGcmRate } from './baselines/aes-gcm.js'

const { seconds, direction, chunk, small } = JSON.parse(process.argv[2] ?? '{}') as {
  seconds?: number
  direction?: 'seal' | 'open'
  chunk?: number
  small?: number
}
const MS = (seconds ?? 1) * 1000
const RECORD = 64 * 1024
/** Input chunk size (`chunk`, default 16 KiB). */
const INPUT_CHUNK = chunk ?? 16 * 1024
/** Bytes streamed per pass; passes repeat until the time is up. */
const PASS = 64 * 1024 * 1024
/** Alternating slices per row. */
const SLICES = 4
const ROUTE = 'blobs'

const { privateJwks, publicJwks } = generateKeySet({ alg: 'ECDH-ES+A256KW', crv: 'X25519' })
const recipients = parseKeySet(publicJwks, { publicOnly: true })
const privateKeys = parseKeySet(privateJwks, { requirePrivate: true })

function* chunks(body: Buffer, size: number, total: number): Generator<Buffer> {
  for (let off = 0; off < total; off += size) yield body.subarray(off % body.length, (off % body.length) + Math.min(size, total - off))
}

/** A sink that only counts, so nothing but the transform is measured. */
function counter(): { sink: Writable; bytes: () => number } {
  let n = 0
  const sink = new Writable({
    highWaterMark: RECORD,
    write(chunk: Buffer, _enc, done) {
      n += chunk.length
      done()
    },
  })
  return { sink, bytes: () => n }
}

/** Bytes and milliseconds of `pass()` (each pass streams PASS bytes) repeated for about `ms`. */
async function timed(pass: () => Promise<number>, ms: number): Promise<{ bytes: number; ms: number }> {
  let bytes = 0
  const started = performance.now()
  while (performance.now() - started < ms) bytes += await pass()
  return { bytes, ms: performance.now() - started }
}

/** MB/s of the raw AEAD and of the stream, timed in alternating slices of MS / SLICES each. */
async function alternate(raw: (ms: number) => { bytesPerSecond: number }, pass: () => Promise<number>): Promise<{ raw: number; stream: number }> {
  let rawBytes = 0
  let rawMs = 0
  let streamBytes = 0
  let streamMs = 0
  for (let i = 0; i < SLICES; i++) {
    const slice = MS / SLICES
    const r = raw(slice)
    rawBytes += (r.bytesPerSecond * slice) / 1000
    rawMs += slice
    const t = await timed(pass, slice)
    streamBytes += t.bytes
    streamMs += t.ms
  }
  return { raw: rawBytes / rawMs / 1000, stream: streamBytes / streamMs / 1000 }
}

// 1 MiB of random input, reused: AES-GCM's speed does not depend on the bytes.
const input = randomBytes(1024 * 1024)

async function sealPass(): Promise<number> {
  const { sink, bytes } = counter()
  await pipeline(Readable.from(chunks(input, INPUT_CHUNK, PASS)), createSealStream(recipients, { contentType: 'application/octet-stream', route: ROUTE }), sink)
  if (bytes() <= PASS) throw new Error('sealed stream shorter than its input')
  return PASS
}

async function sealedBody(): Promise<Buffer> {
  const parts: Buffer[] = []
  await pipeline(
    Readable.from(chunks(input, INPUT_CHUNK, PASS)),
    createSealStream(recipients, { contentType: 'application/octet-stream', route: ROUTE }),
    new Writable({
      write(chunk: Buffer, _enc, done) {
        parts.push(chunk)
        done()
      },
    }),
  )
  return Buffer.concat(parts)
}

/**
 * `body` written to `transform` in input chunks and its output counted, without `pipeline`: for a
 * small body, `pipeline` and `Readable.from` cost more than the transform (100–200 µs a stream, in a
 * scratch measurement), which the gateway does not pay per body.
 */
function through(transform: Transform, body: Buffer, keep?: Buffer[]): Promise<number> {
  return new Promise((resolve, reject) => {
    let n = 0
    transform.on('data', (c: Buffer) => {
      n += c.length
      keep?.push(c)
    })
    transform.once('end', () => resolve(n))
    transform.once('error', reject)
    for (const c of chunks(body, INPUT_CHUNK, body.length)) transform.write(c)
    transform.end()
  })
}

const rows: Array<{ key: string; label: string; mbps: number }> = []
if (direction === 'open') {
  const sealed = await sealedBody()
  const openPass = async () => {
    const { sink, bytes } = counter()
    await pipeline(Readable.from(chunks(sealed, INPUT_CHUNK, sealed.length)), createOpenStream(privateKeys, { route: ROUTE }), sink)
    if (bytes() !== PASS) throw new Error('opened stream differs in length from what was sealed')
    return PASS
  }
  // Warm up the JIT and OpenSSL before the first timing.
  aesGcmOpenRate(RECORD, 100)
  await openPass()
  const mbps = await alternate((ms) => aesGcmOpenRate(RECORD, ms), openPass)
  rows.push({ key: 'aes-open', label: 'AES-256-GCM open, 64 KiB records (raw, baseline 5)', mbps: mbps.raw })
  rows.push({ key: 'crypto-open', label: 'écluse open stream (crypto path, 1 core)', mbps: mbps.stream })
} else {
  aesGcmRate(RECORD, 100)
  await sealPass()
  const mbps = await alternate((ms) => aesGcmRate(RECORD, ms), sealPass)
  rows.push({ key: 'aes-seal', label: 'AES-256-GCM seal, 64 KiB records (raw, baseline 5)', mbps: mbps.raw })
  rows.push({ key: 'crypto-seal', label: 'écluse seal stream (crypto path, 1 core)', mbps: mbps.stream })
}

if (small !== undefined) {
  const kib = `${Math.round(small / 1024)} KiB`
  const body = input.subarray(0, small)
  /** Streams per pass: about 2 MiB of them. */
  const perPass = Math.max(1, Math.floor((2 * 1024 * 1024) / small))
  const op = direction === 'open' ? 'open' : 'seal'
  let one: () => Promise<void>
  if (op === 'open') {
    const parts: Buffer[] = []
    await through(createSealStream(recipients, { contentType: 'image/jpeg', route: ROUTE }), body, parts)
    const sealed = Buffer.concat(parts)
    const keks = new KekCache(privateKeys)
    one = async () => {
      const n = await through(createOpenStream(privateKeys, { route: ROUTE, kekCache: keks }), sealed)
      if (n !== small) throw new Error('opened stream differs in length from what was sealed')
    }
  } else {
    one = async () => {
      const n = await through(createSealStream(recipients, { contentType: 'image/jpeg', route: ROUTE }), body)
      if (n <= small) throw new Error('sealed stream shorter than its input')
    }
  }
  const raw = op === 'open' ? aesGcmOpenRate : aesGcmRate
  const smallPass = async () => {
    for (let i = 0; i < perPass; i++) await one()
    return perPass * small
  }
  raw(small, 100)
  await smallPass()
  const mbps = await alternate((ms) => raw(small, ms), smallPass)
  rows.push({ key: `aes-${op}-small`, label: `AES-256-GCM ${op}, ${kib} messages (raw)`, mbps: mbps.raw })
  rows.push({ key: `crypto-${op}-small`, label: `écluse ${op} stream, ${kib} bodies one after the other (crypto path, 1 core)`, mbps: mbps.stream })
}

process.stdout.write(`${JSON.stringify({ event: 'result', rows, inputChunk: INPUT_CHUNK, recordSize: RECORD })}\n`)
