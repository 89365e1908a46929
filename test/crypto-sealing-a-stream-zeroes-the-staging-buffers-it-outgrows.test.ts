/**
 * The sealer stages each record's plaintext in a buffer of its own, grown by doubling as bytes
 * arrive. Each buffer it outgrows held plaintext: it is zeroed when replaced, as the last one is when
 * the stream ends (before, only the last one was). The buffers are caught where they are made, by a
 * spy on `Buffer.allocUnsafe`.
 */
import { Readable, Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import t from 'tap'
import { generateKeySet, parseKeySet } from '../src/crypto/keys.js'
import { createSealStream } from '../src/crypto/stream.js'

t.test('no staging buffer the sealer made still holds plaintext once the stream is over', async (t) => {
  const pub = parseKeySet(generateKeySet().publicJwks, { publicOnly: true })
  const marker = Buffer.from('PLAINTEXT-MARKER')
  // 40 chunks of 1,000 bytes into one 64 KiB record: staging grows 16 → 32 → 64 KiB.
  const chunks = Array.from({ length: 40 }, () => Buffer.concat(Array.from({ length: 62 }, () => marker), 1000))
  const made: Buffer[] = []
  const allocUnsafe = Buffer.allocUnsafe
  Buffer.allocUnsafe = ((size: number) => {
    const buf = allocUnsafe(size)
    if (size >= 16 * 1024) made.push(buf)
    return buf
  }) as typeof Buffer.allocUnsafe
  let sealed = 0
  try {
    await pipeline(
      Readable.from(chunks),
      createSealStream(pub, { contentType: 'application/octet-stream', recordSize: 64 * 1024 }),
      new Writable({
        write(c: Buffer, _e, cb) {
          sealed += c.length
          cb()
        },
      }),
    )
  } finally {
    Buffer.allocUnsafe = allocUnsafe
  }
  t.ok(sealed > 40_000, 'the body was sealed')
  t.ok(made.length >= 3, `the staging grew (${made.length} buffers of 16 KiB or more)`)
  for (const [i, buf] of made.entries()) t.equal(buf.indexOf(marker), -1, `buffer ${i} (${buf.length} bytes) holds no plaintext`)
})
