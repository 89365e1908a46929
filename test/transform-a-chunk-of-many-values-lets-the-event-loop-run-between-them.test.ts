/**
 * Found by a review: the rewriter acts on a whole chunk at once, and a chunk of small values under a
 * pattern that takes them all (`[1,1,1,…]` under `/*`, tens of thousands in 64 KiB) held the event
 * loop, every other connection with it, for as long as their work took: hundreds of milliseconds of
 * sealing per chunk. A field step now lets the event loop run every `VALUES_BETWEEN_YIELDS` values,
 * and the rewriter goes on where it was. Shown with `strip`, which needs no keys: the same
 * `FieldMessage` acts for every field step.
 */
import { type Duplex, Readable, Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { pino } from 'pino'
import t from 'tap'
import { VALUES_BETWEEN_YIELDS } from '../src/transform/json-fields.js'
import { createStripTransform } from '../src/transform/strip.js'

const log = pino({ level: 'silent' })

/**
 * Runs `body` through `stream` as one chunk; says whether a timer queued before ran before the last
 * of the output (what was made before a pause goes out then).
 */
async function inOneChunk(stream: Duplex, body: Buffer): Promise<{ output: string; timerRanFirst: boolean }> {
  let timerRan = false
  let timerRanFirst: boolean | undefined
  setImmediate(() => {
    timerRan = true
  })
  const out: Buffer[] = []
  await pipeline(
    Readable.from([body]),
    stream,
    new Writable({
      write: (c: Buffer, _e, cb) => {
        timerRanFirst = timerRan
        out.push(c)
        cb()
      },
    }),
  )
  return { output: Buffer.concat(out).toString(), timerRanFirst: timerRanFirst ?? timerRan }
}

/** Strips every element of a top-level array of `count` values given as one chunk (see `inOneChunk`). */
function stripInOneChunk(count: number): Promise<{ output: string; timerRanFirst: boolean }> {
  const step = createStripTransform({ fields: ['/*'] }, { log })
  const stream = step.begin({ direction: 'response', status: 200, routeName: 'r', path: '/', requestId: 'x', principal: { id: 'uri:x' } as never, headers: { 'content-type': 'application/json' }, log })!
  return inOneChunk(stream, Buffer.from(`[${Array.from({ length: count }, () => '1').join(',')}]`))
}

t.test('a chunk of more values than VALUES_BETWEEN_YIELDS lets a queued timer run before its output', async (t) => {
  const many = await stripInOneChunk(4 * VALUES_BETWEEN_YIELDS + 7)
  t.equal(many.output, '[]', 'every value stripped, the body whole')
  t.ok(many.timerRanFirst, 'the event loop ran while the chunk was being worked on')
  const few = await stripInOneChunk(VALUES_BETWEEN_YIELDS - 1)
  t.equal(few.output, '[]')
  t.notOk(few.timerRanFirst, 'a chunk of fewer values is worked on in one go, as before')
})

/**
 * Found by review: with RSA keys a value costs milliseconds to open, and 256 of them (the count
 * between yields) held the event loop for seconds. A step also lets it run once a chunk's
 * cryptography has taken `CRYPTO_SECONDS_BETWEEN_YIELDS`.
 */
t.test('a chunk of values whose opening takes long lets a queued timer run before its output, however few they are', async (t) => {
  const { FieldSealer } = await import('../src/crypto/field.js')
  const { generateKeySet, parseKeySet } = await import('../src/crypto/keys.js')
  const { createOpenTransform } = await import('../src/transform/open.js')
  const { CRYPTO_SECONDS_BETWEEN_YIELDS } = await import('../src/transform/json-fields.js')
  const generated = generateKeySet({ alg: 'RSA-OAEP-256' })
  const env = { log, keySets: new Map([['rsa', parseKeySet(generated.privateJwks, { requirePrivate: true })]]) }
  // Enough that even a fast core (≈ 1 ms an RSA-3072 decryption) passes the bound several times.
  const count = 40
  const sealer = new FieldSealer(parseKeySet(generated.publicJwks, { publicOnly: true }), { route: 'r' })
  const body = Buffer.from(`[${Array.from({ length: count }, (_, i) => JSON.stringify(sealer.seal(Buffer.from('1'), { ptr: `/${i}` }))).join(',')}]`)
  const step = createOpenTransform({ keys: 'rsa', fields: ['/*'] }, env)
  const stream = step.begin({ direction: 'request', routeName: 'r', path: '/', requestId: 'x', principal: { id: 'uri:x' } as never, headers: { 'content-type': 'application/json' }, log })!
  const started = performance.now()
  const { output, timerRanFirst } = await inOneChunk(stream, body)
  const seconds = (performance.now() - started) / 1000
  t.equal(output, `[${Array(count).fill('1').join(',')}]`, 'every value opened')
  t.ok(count < VALUES_BETWEEN_YIELDS, 'fewer values than the count between yields')
  t.ok(seconds > CRYPTO_SECONDS_BETWEEN_YIELDS, `but more cryptography than its bound (${seconds.toFixed(3)} s)`)
  t.ok(timerRanFirst, 'the event loop ran while the chunk was being worked on')
})
