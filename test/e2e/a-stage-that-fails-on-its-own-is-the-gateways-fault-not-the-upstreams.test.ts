/**
 * Who is blamed for a failure decides which alert fires and where an operator looks. A body stage
 * that fails with an error of its own (not an EcluseError: a bug in a transform registered with
 * `registerTransform`, a stream misused) used to be reported as the upstream's: `502
 * upstream_bad_response` to the client and `ecluse_upstream_errors_total{kind="upstream_bad_response"}`
 * counted, both ways. It is the gateway's: `transform_failed` on a response, `request_transform_failed`
 * on a request, and no upstream error is counted; the response still fails closed. And a chunked
 * body refused by its route's limit while every upstream connection is busy is answered at once
 * (413), not after `connectTimeoutMs` with an `upstream_unavailable` counted against the upstream.
 * The log names such an error by its name, never its message, which may quote the body (V8's
 * JSON.parse quotes the input it choked on).
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import { Readable, Transform, type TransformCallback } from 'node:stream'
import t from 'tap'
import { registerTransform } from '../../src/transform/registry.js'
import { Harness, metricValue } from '../helpers/harness.js'

const SECRET = 'P-CANARY-0612345678'

/** Passes the first 100,000 bytes, then fails the way a bug does, quoting what it read. */
class FailsAfterAWhile extends Transform {
  #seen = 0
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.#seen += chunk.length
    // Foreign errors quote their input, as V8's JSON.parse does.
    if (this.#seen > 100_000) cb(new SyntaxError(`Unexpected token 'P', "${SECRET}" is not valid JSON`))
    else cb(null, chunk)
  }
}
registerTransform('test-fails-after-a-while', () => ({ type: 'test-fails-after-a-while', begin: () => new FailsAfterAWhile() }))

const allow = ['uri:spiffe://sponsor.test/accreditation-app']
const UPSTREAM_KINDS = ['upstream_bad_response', 'upstream_reset', 'upstream_unavailable', 'upstream_timeout']

async function* slowly(chunks: number): AsyncGenerator<Buffer> {
  for (let i = 0; i < chunks; i++) {
    yield Buffer.alloc(16 * 1024, 0x61)
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}

t.test('a stage failing on its own: the gateway is blamed, the upstream is not counted', async (t) => {
  const received: string[] = []
  const h = await Harness.start({
    routes: [
      // A hold window larger than the body: the failure comes before the status line (a clean 502)…
      { name: 'response-held', methods: ['GET'], path: '/v1/held', allow, upstream: 'backend', responseHoldBytes: 1024 * 1024, transforms: { response: [{ type: 'test-fails-after-a-while' }] } },
      // …and smaller: it comes mid-stream, after the status line (an abort).
      { name: 'response-streamed', methods: ['GET'], path: '/v1/streamed', allow, upstream: 'backend', responseHoldBytes: 1024, transforms: { response: [{ type: 'test-fails-after-a-while' }] } },
      // The request goes upstream before the stage fails (a hold window smaller than the body).
      { name: 'request', methods: ['POST'], path: '/v1/upload', allow, upstream: 'backend', maxBodyBytes: 10_000_000, requestHoldBytes: 1024, transforms: { request: [{ type: 'test-fails-after-a-while' }] } },
    ],
    handler: (req: IncomingMessage, res: ServerResponse) => {
      received.push(req.url ?? '')
      if (req.method === 'GET') {
        res.writeHead(200, { 'content-type': 'application/octet-stream' })
        res.end(Buffer.alloc(300_000, 1))
        return
      }
      req.resume()
      req.on('end', () => res.end('{}'))
      req.on('error', () => {})
    },
  })
  t.teardown(() => h.close())

  const held = await h.request('/v1/held')
  t.equal(held.status, 502)
  t.same(held.json(), { error: 'transform_failed', requestId: held.headers['x-request-id'] }, 'response stage: transform_failed')

  const streamed = await h.request('/v1/streamed').then(
    (r) => ({ status: r.status, length: r.body.length }),
    (err: Error) => ({ error: err.message }),
  )
  t.notMatch(streamed, { status: 200, length: 300_000 }, 'mid-stream: never a complete response')

  const upload = await h.request('/v1/upload', { method: 'POST', headers: { 'content-type': 'application/octet-stream' }, body: Readable.from(slowly(20)) })
  t.equal(upload.status, 500, 'the gateway’s fault: a 5xx, not a 4xx that blames the client')
  t.same(upload.json(), { error: 'request_transform_failed', requestId: upload.headers['x-request-id'] }, 'request stage: request_transform_failed')

  const metrics = await h.metrics()
  for (const kind of UPSTREAM_KINDS) t.equal(metricValue(metrics, 'ecluse_upstream_errors_total', { upstream: 'backend', kind }) ?? 0, 0, `no ${kind} counted`)
  const refused = h.logs.lines.filter((l) => l.msg === 'request refused' || l.msg === 'response aborted mid-stream')
  t.same(
    refused.map((l) => [l.route, l.code]),
    [
      ['response-held', 'transform_failed'],
      ['response-streamed', 'transform_failed'],
      ['request', 'request_transform_failed'],
    ],
    'the log names the stage, for each',
  )
  t.ok(refused.every((l) => /stage failed: SyntaxError$/.test(String(l.detail ?? l.err))), 'with the error’s name')
  t.notMatch(h.logs.raw.join('\n'), SECRET, 'and never its message, which quotes the body')
  t.same(received.sort(), ['/v1/held', '/v1/streamed', '/v1/upload'])
})

t.test('a chunked body over its limit while every connection is busy: 413 at once, nothing counted against the upstream', async (t) => {
  let release: (() => void) | undefined
  const h = await Harness.start({
    upstream: { connections: 1, connectTimeoutMs: 3000 },
    // Under the stage's high-water mark: the body is read up to it while the request waits (back-
    // pressure holds the rest), so the limit is crossed before a connection frees up.
    routes: [{ name: 'upload', methods: ['GET', 'POST'], path: '/v1/:what', allow, upstream: 'backend', maxBodyBytes: 8 * 1024 }],
    handler: (req: IncomingMessage, res: ServerResponse) => {
      if (req.url === '/v1/slow') {
        release = () => res.end('{}')
        return
      }
      req.resume()
      req.on('end', () => res.end('{}'))
    },
  })
  t.teardown(() => h.close())
  // The one connection is taken by a request the upstream holds.
  const slow = h.request('/v1/slow')
  while (release === undefined) await new Promise((resolve) => setTimeout(resolve, 10))
  const started = performance.now()
  const big = await h.request('/v1/upload', { method: 'POST', headers: { 'content-type': 'application/octet-stream' }, body: Readable.from(slowly(8)) })
  const waited = performance.now() - started
  t.equal(big.status, 413)
  t.same(big.json(), { error: 'body_too_large', requestId: big.headers['x-request-id'] })
  t.ok(waited < 2000, `answered without waiting out connectTimeoutMs (${Math.round(waited)} ms)`)
  t.equal(metricValue(await h.metrics(), 'ecluse_upstream_errors_total', { upstream: 'backend', kind: 'upstream_unavailable' }) ?? 0, 0, 'no upstream_unavailable counted')
  release()
  t.equal((await slow).status, 200)
})

t.test('a client breaking its body off while it is held back is not logged as a stage’s failure', async (t) => {
  // Found by re-review: the body's own error (a chunk the HTTP parser refused, which the listener
  // answers `400 request_framing`) fell through to `request_transform_failed`, a 5xx code in the log.
  const h = await Harness.start({
    routes: [{ name: 'upload', methods: ['POST'], path: '/v1/upload', allow, upstream: 'backend', transforms: { request: [{ type: 'test-fails-after-a-while' }] } }],
  })
  t.teardown(() => h.close())
  const { connect } = await import('node:tls')
  const answer = await new Promise<string>((resolve) => {
    const socket = connect(h.sponsorTls())
    let out = ''
    socket.setEncoding('latin1')
    socket.on('data', (d: string) => {
      out += d
    })
    socket.on('error', () => {})
    socket.on('close', () => resolve(out))
    socket.once('secureConnect', () => {
      socket.write('POST /v1/upload HTTP/1.1\r\nhost: gateway\r\ncontent-type: application/octet-stream\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n')
      setTimeout(() => socket.write('zz\r\nxx\r\n0\r\n\r\n'), 100)
    })
  })
  t.match(answer, /^HTTP\/1\.1 400 [\s\S]*"error":"request_framing"/, 'the parser’s answer')
  await new Promise((r) => setTimeout(r, 100))
  t.same(
    h.logs.lines.filter((l) => l.code === 'request_transform_failed'),
    [],
    'no request_transform_failed in the log',
  )
  t.equal(h.upstream.seen.length, 0, 'nothing reached the upstream')
})
