/**
 * The crypto path of `stream-seal` and `stream-open`, in its own process (one core, no network):
 * Écluse's sealed-stream transforms (src/crypto/stream.ts) fed through a stream pipeline, beside
 * baseline 5, raw AES-256-GCM on the same 64 KiB records (bench/baselines/aes-gcm.ts).
 *
 *   node --import tsx bench/stream-micro.ts '{"seconds":1,"direction":"seal"}'
 *
 * The input arrives in 16 KiB chunks, as a TLS socket delivers a body (one TLS record each); the
 * stream's own records are 64 KiB (the default `recordSize`). Prints one line
 * `{"event":"result","rows":[…]}` with MB/s of plaintext for each row.
 */
import { randomBytes } from 'node:crypto'
import { Readable, Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { generateKeySet, parseKeySet } from '../src/crypto/keys.js'
import { createOpenStream, createSealStream } from '../src/crypto/stream.js'
import { aesGcmOpenRate, aesGcmRate } from './baselines/aes-gcm.js'

const { seconds, direction } = JSON.parse(process.argv[2] ?? '{}') as { seconds?: number; direction?: 'seal' | 'open' }
const MS = (seconds ?? 1) * 1000
const RECORD = 64 * 1024
const INPUT_CHUNK = 16 * 1024
/** Bytes streamed per pass; passes repeat until the time is up. */
const PASS = 64 * 1024 * 1024
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

/** Plaintext bytes per second through `pass()` (each pass streams PASS bytes), for about MS ms. */
async function timed(pass: () => Promise<number>): Promise<number> {
  let bytes = 0
  const started = performance.now()
  while (performance.now() - started < MS) bytes += await pass()
  return bytes / ((performance.now() - started) / 1000)
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
  rows.push({ key: 'aes-open', label: 'AES-256-GCM open, 64 KiB records (raw, baseline 5)', mbps: aesGcmOpenRate(RECORD, MS).bytesPerSecond / 1e6 })
  rows.push({ key: 'crypto-open', label: 'écluse open stream (crypto path, 1 core)', mbps: (await timed(openPass)) / 1e6 })
} else {
  aesGcmRate(RECORD, 100)
  await sealPass()
  rows.push({ key: 'aes-seal', label: 'AES-256-GCM seal, 64 KiB records (raw, baseline 5)', mbps: aesGcmRate(RECORD, MS).bytesPerSecond / 1e6 })
  rows.push({ key: 'crypto-seal', label: 'écluse seal stream (crypto path, 1 core)', mbps: (await timed(sealPass)) / 1e6 })
}

process.stdout.write(`${JSON.stringify({ event: 'result', rows, inputChunk: INPUT_CHUNK, recordSize: RECORD })}\n`)
