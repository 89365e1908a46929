import { createHash } from 'node:crypto'
import { IncomingMessage } from 'node:http'
import { Readable } from 'node:stream'
import t from 'tap'
import { request } from 'undici'
import { UpstreamPool, type UpstreamRequest } from '../src/upstream/pool.js'
import { Harness } from './helpers/harness.js'

// Memory per upload in flight is what the stages between the request and undici hold (docs/benchmarks.md,
// "Concurrency's memory"): a body of declared length that no transform reads goes to undici as the
// request itself, with nothing in between; a chunked one goes through BodyLimit, which enforces the
// route's limit as it counts. The stalled-upload e2e test bounds the memory; this pins the shape,
// which that bound cannot tell apart (one stage more costs ≈ 25 KiB per upload).
t.test('a body of declared length reaches undici as the request itself; a chunked one through a counting stage; both arrive whole', async (t) => {
  const handed: unknown[] = []
  const original = UpstreamPool.prototype.request
  UpstreamPool.prototype.request = function (this: UpstreamPool, opts: UpstreamRequest) {
    handed.push(opts.body)
    return original.call(this, opts)
  }
  t.teardown(() => {
    UpstreamPool.prototype.request = original
  })
  const h = await Harness.start({
    handler: (req, res) => {
      const hash = createHash('sha256')
      let bytes = 0
      req.on('data', (c: Buffer) => {
        hash.update(c)
        bytes += c.length
      })
      req.on('end', () => res.end(JSON.stringify({ bytes, sha256: hash.digest('hex'), chunked: req.headers['transfer-encoding'] === 'chunked' })))
    },
  })
  t.teardown(() => h.close())
  const body = Buffer.alloc(256 * 1024, 7)
  const sha256 = createHash('sha256').update(body).digest('hex')
  const send = async (payload: Buffer | Readable) => {
    const res = await request(`${h.sponsorOrigin}/v1/records/1`, { method: 'PUT', body: payload, dispatcher: h.agent() })
    return { status: res.statusCode, answer: (await res.body.json()) as { bytes: number; sha256: string; chunked: boolean } }
  }

  const declared = await send(body)
  t.same(declared, { status: 200, answer: { bytes: body.length, sha256, chunked: false } }, 'the declared-length body arrived whole')
  t.ok(handed[0] instanceof IncomingMessage, 'undici was handed the request itself')

  const chunked = await send(Readable.from([body.subarray(0, 1000), body.subarray(1000)]))
  t.same(chunked, { status: 200, answer: { bytes: body.length, sha256, chunked: true } }, 'the chunked body arrived whole')
  t.ok(handed[1] instanceof Readable && !(handed[1] instanceof IncomingMessage), 'undici was handed the counting stage')
  t.equal(handed.length, 2)
})
