import { Readable, Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { compileRules } from '../src/transform/json/pointer.js'
import { createJsonRewriter } from '../src/transform/json/rewriter.js'

t.test('a slow reader holds the source back instead of filling memory', async (t) => {
  const CHUNK = 16 * 1024
  const CHUNKS = 200
  const rec = `{"passport":"P","pad":"${'x'.repeat(200)}"}`
  let produced = 0
  let consumed = 0
  let maxLead = 0
  let n = 0
  const source = new Readable({
    highWaterMark: CHUNK,
    read() {
      if (n === CHUNKS) {
        this.push(null)
        return
      }
      let s = n === 0 ? '[' : ','
      while (s.length < CHUNK) s += rec + ','
      s += rec
      if (++n === CHUNKS) s += ']'
      produced += s.length
      maxLead = Math.max(maxLead, produced - consumed)
      this.push(Buffer.from(s))
    },
  })
  const rewriter = createJsonRewriter({
    rules: compileRules({ targets: [{ pattern: '/*/passport', rule: 'seal' }] }),
    mode: 'document',
    onValue: () => ({ replace: '"S"' }),
  })
  await pipeline(
    source,
    rewriter,
    new Writable({
      highWaterMark: CHUNK,
      async write(chunk: Buffer, _enc, cb) {
        consumed += chunk.length
        await sleep(1)
        cb()
      },
    }),
  )
  t.equal(n, CHUNKS)
  // Source, rewriter (both sides) and sink buffers: a handful of chunks, never the ~3 MiB body.
  t.ok(maxLead < 16 * CHUNK, `the source ran at most ${(maxLead / 1024).toFixed(0)} KiB ahead of the reader`)
})
