import { Readable, Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import fc from 'fast-check'
import t from 'tap'
import { createOpenStream, createSealStream, generateKeySet, parseKeySet } from '../src/crypto/index.js'
import { RECORD_OVERHEAD } from '../src/crypto/stream.js'
import { EcluseError } from '../src/errors.js'
import { splitAt } from './helpers/chunks.js'

const g = generateKeySet()
const pub = parseKeySet(g.publicJwks)
const priv = parseKeySet(g.privateJwks)

/** `buf` cut at `cuts`, or in 1-byte chunks. */
function chunked(buf: Buffer, cuts: number[], oneByte: boolean): Buffer[] {
  return oneByte ? Array.from(buf, (b) => Buffer.of(b)) : splitAt(buf, cuts)
}

async function run(chunks: Buffer[], transform: NodeJS.ReadWriteStream): Promise<{ out: Buffer; error: unknown }> {
  const out: Buffer[] = []
  let error: unknown
  try {
    await pipeline(Readable.from(chunks), transform, new Writable({ write: (c, _e, cb) => { out.push(c); cb() } }))
  } catch (err) {
    error = err
  }
  return { out: Buffer.concat(out), error }
}

// Wire chunkings that cut the header, straddle record boundaries or come one byte at a time: the
// body opens byte for byte, and a flipped bit anywhere fails the stream having released exactly the
// records before the damaged one, never a byte of it or after it.
t.test('under any chunking, a stream opens exactly and a flipped bit releases only the records before it', async (t) => {
  await fc.assert(
    fc.asyncProperty(
      // size 'max': fast-check's default size keeps arrays to about ten elements, under one record.
      fc.uint8Array({ minLength: 0, maxLength: 1500, size: 'max' }),
      fc.integer({ min: 16, max: 200 }),
      fc.array(fc.nat(), { maxLength: 10, size: 'max' }),
      fc.array(fc.nat(), { maxLength: 40, size: 'max' }),
      fc.boolean(),
      fc.nat(),
      fc.integer({ min: 0, max: 7 }),
      async (bytes, rs, plainCuts, wireCuts, oneByte, flipAt, bit) => {
        const data = Buffer.from(bytes)
        const sealed = await run(chunked(data, plainCuts, false), createSealStream(pub, { contentType: 'application/octet-stream', recordSize: rs }))
        if (sealed.error !== undefined) return false
        const wire = sealed.out
        const opened = await run(chunked(wire, wireCuts, oneByte), createOpenStream(priv))
        if (opened.error !== undefined || !opened.out.equals(data)) return false

        const headerLen = 12 + wire.readUInt16BE(10)
        const pos = flipAt % wire.length
        const bad = Buffer.from(wire)
        bad[pos]! ^= 1 << bit
        const o = await run(chunked(bad, wireCuts, oneByte), createOpenStream(priv))
        const before = pos < headerLen ? 0 : Math.floor((pos - headerLen) / (rs + RECORD_OVERHEAD))
        return (
          o.error instanceof EcluseError &&
          o.error.code === 'open_failed' &&
          o.out.length === before * rs &&
          data.subarray(0, o.out.length).equals(o.out)
        )
      },
    ),
    { numRuns: 150 },
  )
  t.pass('150 random bodies, record sizes, chunkings and bit flips')
})
