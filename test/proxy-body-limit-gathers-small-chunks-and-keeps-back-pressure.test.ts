import { setImmediate as tick } from 'node:timers/promises'
import fc from 'fast-check'
import t from 'tap'
import { BodyLimit, SMALL_CHUNK_BYTES } from '../src/proxy/body-limit.js'

/**
 * Writes `chunks` into `limit` as a well-behaved source does (waiting for 'drain'), letting the event
 * loop turn after every `perTurn` chunks as a socket's reads do; counts the bytes accepted.
 */
async function writeAll(limit: BodyLimit, chunks: readonly Buffer[], accepted: { bytes: number }, perTurn = Infinity): Promise<void> {
  for (const [i, c] of chunks.entries()) {
    accepted.bytes += c.length
    if (!limit.write(c)) await new Promise((resolve) => limit.once('drain', resolve))
    else if ((i + 1) % perTurn === 0) await tick()
  }
  limit.end()
}

t.test('any chunking comes out as the same bytes in the same order, small chunks gathered', async (t) => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.oneof(fc.integer({ min: 1, max: 64 }), fc.integer({ min: 1, max: 3 * SMALL_CHUNK_BYTES })), { minLength: 1, maxLength: 300 }),
      fc.integer({ min: 0, max: 3 }),
      async (sizes, pace) => {
        let seed = 1
        const chunks = sizes.map((n) => Buffer.from(Array.from({ length: n }, () => (seed = (seed * 31 + 7) & 0xff))))
        const input = Buffer.concat(chunks)
        const limit = new BodyLimit(input.length)
        const out: Buffer[] = []
        const done = new Promise<void>((resolve) => limit.on('end', resolve))
        limit.on('data', (c: Buffer) => {
          out.push(Buffer.from(c)) // a copy: a handed-over staging buffer must never be written again
          // A reader that sometimes stalls for a few turns of the event loop.
          if (pace > 0 && out.length % pace === 0) {
            limit.pause()
            void tick().then(() => limit.resume())
          }
        })
        await writeAll(limit, chunks, { bytes: 0 })
        await done
        const small = sizes.filter((n) => n < SMALL_CHUNK_BYTES).length
        return Buffer.concat(out).equals(input) && (small < 20 || out.length < sizes.length)
      },
    ),
    { numRuns: 200 },
  )
  t.pass('200 chunkings and reading paces')
})

t.test('a reader that reads nothing stops a writer of one-byte chunks after a bounded amount', async (t) => {
  const one = Buffer.from('x')
  const chunks = Array.from({ length: 1024 * 1024 }, () => one)
  // All at once, and a few hundred bytes per turn of the event loop (as from a socket's reads), when
  // what was gathered is passed on after the turn rather than because the staging buffer is full.
  for (const perTurn of [Infinity, 300]) {
    const limit = new BodyLimit(64 * 1024 * 1024)
    const accepted = { bytes: 0 }
    void writeAll(limit, chunks, accepted, perTurn)
    for (let i = 0; i < 500; i++) await tick()
    const held = limit.readableLength + limit.writableLength
    t.ok(accepted.bytes < 128 * 1024, `${perTurn} per turn: the writer stopped after ${accepted.bytes} bytes, with a reader that reads nothing`)
    t.ok(held <= 64 * 1024, `${perTurn} per turn: the stage holds ${held} bytes`)
    limit.destroy()
  }
})

t.test('the limit still counts every byte, gathered or not', async (t) => {
  const limit = new BodyLimit(10)
  const failed = new Promise<Error>((resolve) => limit.once('error', resolve))
  limit.resume()
  for (let i = 0; i < 11; i++) limit.write(Buffer.from('x'))
  t.match(await failed, { code: 'body_too_large' })
})
