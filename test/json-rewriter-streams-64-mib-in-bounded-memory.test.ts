import { Readable, Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import t from 'tap'
import { compileRules } from '../src/transform/json/pointer.js'
import { createJsonRewriter } from '../src/transform/json/rewriter.js'

const TOTAL = 64 * 1024 * 1024
const CHUNK = 64 * 1024

/** `{"records":[…]}` of ~TOTAL bytes, generated chunk by chunk on demand (never held whole). */
function generated(): { source: Readable; records: () => number } {
  const rec = (i: number) =>
    `{"passport":"P${String(i).padStart(9, '0')}","status":"ok","notes":"${'n'.repeat(180)}","n":[1,2.5e3,{"k":true}],"id":${i}}`
  let i = 0
  let sent = 0
  let done = false
  const source = new Readable({
    read() {
      if (done) return
      let s = sent === 0 ? '{"records":[' : ''
      while (s.length < CHUNK && sent + s.length < TOTAL) s += (i === 0 ? '' : ',') + rec(i++)
      if (sent + s.length >= TOTAL) {
        s += ']}'
        done = true
      }
      sent += s.length
      this.push(Buffer.from(s))
      if (done) this.push(null)
    },
  })
  return { source, records: () => i }
}

t.test('a 64 MiB array of records streams through with memory bounded by the caps, not the body', async (t) => {
  const rules = compileRules({
    targets: [{ pattern: '/records/*/passport', rule: 'seal' }],
    record: { pattern: '/records/*', idMember: 'id' },
  })
  const { source, records } = generated()
  let calls = 0
  let lastId = -1
  const rewriter = createJsonRewriter({
    rules,
    mode: 'document',
    maxValueBytes: 64,
    maxRecordBytes: 4096,
    onValue: (tg) => {
      calls++
      lastId = tg.recordId as number
      return { replace: '"sealed"' }
    },
  })

  const before = process.memoryUsage()
  let peakRss = before.rss
  let outBytes = 0
  let tail = ''
  await pipeline(
    source,
    rewriter,
    new Writable({
      write(chunk: Buffer, _enc, cb) {
        outBytes += chunk.length
        tail = (tail + chunk.toString('latin1')).slice(-64)
        const rss = process.memoryUsage.rss()
        if (rss > peakRss) peakRss = rss
        cb()
      },
    }),
  )
  const growth = (peakRss - before.rss) / (1024 * 1024)
  t.equal(calls, records(), 'every passport reached the action')
  t.equal(lastId, records() - 1, 'with its record id')
  t.ok(outBytes > 60 * 1024 * 1024, `the whole body came out (${outBytes} bytes)`)
  t.match(tail, /"id":\d+\}\]\}$/, 'the document ends as it came')
  t.ok(growth < 24, `rss grew by ${growth.toFixed(1)} MiB for a 64 MiB body`)
})
