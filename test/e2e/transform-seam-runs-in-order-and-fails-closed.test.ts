import { Readable, Transform, type TransformCallback } from 'node:stream'
import t from 'tap'
import { request } from 'undici'
import { EcluseError } from '../../src/errors.js'
import { registerTransform } from '../../src/transform/registry.js'
import type { BodyTransform } from '../../src/transform/types.js'
import { Harness } from '../helpers/harness.js'

/** Appends `[tag]` to the body, so the order of stages shows in the bytes. */
class Append extends Transform {
  readonly #tag: string
  constructor(tag: string) {
    super()
    this.#tag = tag
  }
  override _transform(chunk: Buffer, _e: BufferEncoding, cb: TransformCallback): void {
    cb(null, chunk)
  }
  override _flush(cb: TransformCallback): void {
    cb(null, Buffer.from(`[${this.#tag}]`))
  }
}

/** Refuses, mid-stream, any body containing the canary; passes everything before it. */
class RefuseCanary extends Transform {
  override _transform(chunk: Buffer, _e: BufferEncoding, cb: TransformCallback): void {
    if (chunk.includes('CANARY-PLAINTEXT')) cb(new EcluseError('plaintext_refused', 'canary seen'))
    else cb(null, chunk)
  }
}

/** Every stage `test-tracked` began, to see that each is destroyed however its message ends. */
const trackedStages: Append[] = []

const unregister = [
  registerTransform('test-append', (opts) => {
    const tag = String(opts['tag'])
    return { type: 'test-append', begin: () => new Append(tag) } satisfies BodyTransform
  }),
  registerTransform('test-refuse-canary', () => ({ type: 'test-refuse-canary', begin: () => new RefuseCanary() })),
  registerTransform('test-tracked', () => ({
    type: 'test-tracked',
    begin: () => {
      const stage = new Append('tracked')
      trackedStages.push(stage)
      return stage
    },
  })),
  registerTransform('test-refuse-at-begin', () => ({
    type: 'test-refuse-at-begin',
    begin: (ctx) => {
      if (ctx.headers['content-type'] !== 'application/json') throw new EcluseError('unsupported_media_type', 'not json')
      return null
    },
  })),
]
t.teardown(() => {
  for (const u of unregister) u()
})

const allow = ['uri:spiffe://sponsor.test/accreditation-app']
const routes = [
  {
    name: 'ordered',
    methods: ['POST'],
    path: '/v1/ordered',
    allow,
    upstream: 'backend',
    transforms: {
      request: [{ type: 'test-append', tag: 'req1' }, { type: 'test-append', tag: 'req2' }],
      response: [{ type: 'test-append', tag: 'res1' }, { type: 'test-append', tag: 'res2' }],
    },
  },
  { name: 'guarded', methods: ['POST'], path: '/v1/guarded', allow, upstream: 'backend', transforms: { request: [{ type: 'test-refuse-canary' }] } },
  {
    name: 'guarded-big',
    methods: ['POST'],
    path: '/v1/guarded-big',
    allow,
    upstream: 'backend',
    maxBodyBytes: 4 * 1024 * 1024,
    requestHoldBytes: 1024,
    transforms: { request: [{ type: 'test-refuse-canary' }] },
  },
  { name: 'typed', methods: ['POST'], path: '/v1/typed', allow, upstream: 'backend', transforms: { request: [{ type: 'test-refuse-at-begin' }] } },
  {
    name: 'typed-late',
    methods: ['POST'],
    path: '/v1/typed-late',
    allow,
    upstream: 'backend',
    transforms: { request: [{ type: 'test-tracked' }, { type: 'test-refuse-at-begin' }] },
  },
  { name: 'response-guard', methods: ['GET'], path: '/v1/leaky', allow, upstream: 'backend', transforms: { response: [{ type: 'test-refuse-canary' }] } },
  {
    name: 'response-guard-streamed',
    methods: ['GET'],
    path: '/v1/leaky-streamed',
    allow,
    upstream: 'backend',
    // Smaller than the first chunk: the status line goes out before the canary arrives.
    responseHoldBytes: 4,
    transforms: { response: [{ type: 'test-refuse-canary' }] },
  },
]

t.test('request transforms run in order, response transforms in reverse, lengths recomputed', async (t) => {
  const received: string[] = []
  const h = await Harness.start({
    routes,
    handler: (req, res) => {
      const chunks: Buffer[] = []
      req.on('data', (c: Buffer) => chunks.push(c))
      req.on('end', () => {
        received.push(Buffer.concat(chunks).toString())
        res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 4 })
        res.end('body')
      })
    },
  })
  t.teardown(() => h.close())
  const res = await h.request('/v1/ordered', { method: 'POST', body: 'hello' })
  t.equal(res.status, 200)
  t.equal(received[0], 'hello[req1][req2]', 'request stages ran in the listed order')
  // Both bodies ended within their hold windows: each goes on whole, with its new length, not chunked.
  const upstreamHeaders = h.upstream.seen[0]!.headers
  t.equal(upstreamHeaders['content-length'], '17', 'the upstream got the transformed length, not the stale one')
  t.equal(upstreamHeaders['transfer-encoding'], undefined, 'and no chunked framing')
  t.equal(res.body.toString(), 'body[res2][res1]', 'response stages ran in reverse order')
  t.equal(res.headers['content-length'], '16', 'the sponsor got the transformed length')
  t.equal(res.headers['transfer-encoding'], undefined, 'and no chunked framing')
})

t.test('a body refused within the hold window never reaches the upstream at all', async (t) => {
  const h = await Harness.start({ routes })
  t.teardown(() => h.close())
  const res = await h.request('/v1/guarded', { method: 'POST', body: '{"name":"CANARY-PLAINTEXT"}' })
  t.equal(res.status, 422)
  t.equal((res.json() as { error: string }).error, 'plaintext_refused')
  t.notMatch(res.body.toString(), /CANARY/, 'the error does not echo the value')
  t.equal(h.upstream.hits, 0, 'the upstream was never contacted')
  t.notMatch(h.logs.text(), /CANARY-PLAINTEXT/, 'the value is not in the log')
  const ok = await h.request('/v1/guarded', { method: 'POST', body: '{"name":"sealed"}' })
  t.equal(ok.status, 200)
})

t.test('a large body refused after the window reaches the upstream only as an aborted request', async (t) => {
  let completed = 0
  let sawCanary = false
  const h = await Harness.start({
    routes,
    handler: (req, res) => {
      req.on('data', (c: Buffer) => {
        if (c.includes('CANARY')) sawCanary = true
      })
      req.on('end', () => {
        completed++
        res.end('{}')
      })
    },
  })
  t.teardown(() => h.close())
  async function* body() {
    for (let i = 0; i < 64; i++) yield Buffer.alloc(16 * 1024, 0x61)
    yield Buffer.from('CANARY-PLAINTEXT')
    for (let i = 0; i < 64; i++) yield Buffer.alloc(16 * 1024, 0x61)
  }
  const res = await request(`${h.sponsorOrigin}/v1/guarded-big`, { method: 'POST', body: Readable.from(body()), dispatcher: h.agent() }).then(
    async (r) => ({ status: r.statusCode, body: await r.body.text() }),
    (err: Error) => ({ status: 0, body: err.message }),
  )
  if (res.status !== 0) t.equal(res.status, 422, 'refused with the transform code')
  t.equal(completed, 0, 'the upstream never received a complete request')
  t.notOk(sawCanary, 'the refused value never reached the upstream')
})

t.test('a transform that refuses at begin is a clean 4xx on requests and 502 on responses', async (t) => {
  const h = await Harness.start({
    routes,
    handler: (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' })
      res.write('{"ok":1,')
      setTimeout(() => res.end('"name":"CANARY-PLAINTEXT"}'), 20)
    },
  })
  t.teardown(() => h.close())
  const typed = await h.request('/v1/typed', { method: 'POST', body: 'x', headers: { 'content-type': 'text/plain' } })
  t.equal(typed.status, 415)
  t.equal((typed.json() as { error: string }).error, 'unsupported_media_type')
  t.equal(h.upstream.hits, 0)

  // Refused within the response hold window: nothing of the response has crossed, a clean 502.
  const held = await h.request('/v1/leaky')
  t.equal(held.status, 502, 'refused before the status line went out')
  t.equal((held.json() as { error: string }).error, 'transform_failed', 'with the response-side code (a 4xx code would blame the sponsor)')
  t.notMatch(held.body.toString(), /CANARY|ok/, 'and none of the upstream body')

  // Refused after the window: the status line is gone, the only safe signal left is an abort.
  const leaky = await request(`${h.sponsorOrigin}/v1/leaky-streamed`, { dispatcher: h.agent() })
  t.equal(leaky.statusCode, 200, 'headers went out before the canary arrived')
  const got = await leaky.body.text().then(
    (text) => ({ ok: true, text }),
    () => ({ ok: false, text: '' }),
  )
  t.notOk(got.ok, 'the client sees an abort, not a complete body')
  t.notMatch(got.text, /CANARY/, 'the plaintext never reached the sponsor')
  t.notMatch(h.logs.text(), /CANARY-PLAINTEXT/, 'nor the log')
})

t.test('a step refusing at begin destroys the stages begun before it (a seal stage wipes its key on destroy)', async (t) => {
  const h = await Harness.start({ routes })
  t.teardown(() => h.close())
  const res = await h.request('/v1/typed-late', { method: 'POST', body: 'x', headers: { 'content-type': 'text/plain' } })
  t.equal(res.status, 415)
  t.equal(h.upstream.hits, 0)
  t.equal(trackedStages.length, 1, 'the first step had begun')
  t.ok(trackedStages[0]!.destroyed, 'and its stage was destroyed with the refusal')
})
