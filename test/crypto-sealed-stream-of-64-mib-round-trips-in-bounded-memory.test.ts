import { createHash, randomFillSync } from 'node:crypto'
import { Readable, Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import t from 'tap'
import { createOpenStream, createSealStream, generateKeySet, parseKeySet } from '../src/crypto/index.js'

// A full GC before each sample measures what is retained, not garbage awaiting collection.
setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as () => void

const TOTAL = 64 * 1024 * 1024
const CHUNK = 64 * 1024

t.test('a 64 MiB body seals and opens through one pipeline with bounded memory', async (t) => {
  const g = generateKeySet()
  const inHash = createHash('sha256')
  const outHash = createHash('sha256')
  let produced = 0
  let consumed = 0
  let wire = 0
  // Odd chunk sizes on purpose, so records straddle chunks on both sides.
  const source = new Readable({
    read() {
      if (produced >= TOTAL) return void this.push(null)
      const n = Math.min(CHUNK - 13, TOTAL - produced)
      const chunk = randomFillSync(Buffer.allocUnsafe(n))
      inHash.update(chunk)
      produced += n
      this.push(chunk)
    },
  })
  const seal = createSealStream(parseKeySet(g.publicJwks), { contentType: 'application/octet-stream' })
  seal.on('data', (c: Buffer) => { wire += c.length })
  const open = createOpenStream(parseKeySet(g.privateJwks))
  gc()
  const base = process.memoryUsage()
  let peakRss = 0
  let peakAb = 0
  let samples = 0
  let writes = 0
  function sample(): void {
    // Twice: the backing stores a full collection finds dead are freed by a concurrent sweeper, so
    // right after one gc() `arrayBuffers` still counts megabytes of garbage; after a second, only
    // what is retained.
    gc()
    gc()
    const m = process.memoryUsage()
    peakRss = Math.max(peakRss, m.rss - base.rss)
    peakAb = Math.max(peakAb, m.arrayBuffers - base.arrayBuffers)
    samples++
  }
  const sink = new Writable({
    highWaterMark: CHUNK,
    write(c: Buffer, _e, cb) {
      outHash.update(c)
      consumed += c.length
      // Sampled here, synchronously: in-process streams advance on nextTick and would starve a timer.
      if (++writes % 64 === 0) sample()
      cb()
    },
  })

  await pipeline(source, seal, open, sink)

  t.ok(samples > 12, `memory sampled ${samples} times during the transfer`)
  t.equal(consumed, TOTAL)
  t.equal(outHash.digest('hex'), inHash.digest('hex'), 'the opened body is the original')
  const records = Math.floor(TOTAL / (64 * 1024)) + 1
  t.ok(wire > TOTAL + 17 * records, 'the wire carried the header and one tag and delimiter per 64 KiB record')
  // Had any stage buffered the body, retained memory would grow towards 64 MiB; a few records is all
  // that may be alive at once (the streams' high-water marks plus one record per transform).
  t.ok(peakAb < 8 * 1024 * 1024, `ArrayBuffer growth stayed small (${(peakAb / 1048576).toFixed(1)} MiB)`)
  t.ok(peakRss < 48 * 1024 * 1024, `RSS growth stayed small (${(peakRss / 1048576).toFixed(1)} MiB)`)
})
