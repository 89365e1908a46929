import tls from 'node:tls'
import t from 'tap'
import { Harness, metricValue } from '../helpers/harness.js'

// The sponsor listener's own defences against slow and greedy clients: a header block dripped byte
// by byte (slowloris), an oversized header block, a connection that sends nothing, and more
// connections than the cap. Each is cut off by the listener; none of them reaches the upstream.

const LIMITS = { maxHeaderBytes: 4096, headersTimeoutMs: 1000, requestTimeoutMs: 2000, idleTimeoutMs: 1500, maxConnections: 3 }

/** A verified mTLS connection to the sponsor listener, and what it receives until it closes. */
function connect(h: Harness): Promise<{ socket: tls.TLSSocket; closed: Promise<string> }> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect(h.sponsorTls())
    let out = ''
    socket.setEncoding('utf8')
    socket.on('data', (d: string) => (out += d))
    const closed = new Promise<string>((done) => socket.once('close', () => done(out)))
    let secure = false
    socket.once('secureConnect', () => {
      secure = true
      resolve({ socket, closed })
    })
    // A socket the server drops before the handshake ends may close without an error.
    socket.once('error', (err) => secure || reject(err))
    socket.once('close', () => secure || reject(new Error('closed before the TLS handshake completed')))
  })
}

/** Resolves with the elapsed milliseconds when `p` settles, or rejects after `ms`. */
async function within<T>(p: Promise<T>, ms: number, what: string): Promise<{ value: T; elapsed: number }> {
  const start = performance.now()
  let timer: NodeJS.Timeout | undefined
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: still open after ${ms} ms`)), ms)
  })
  try {
    const value = await Promise.race([p, deadline])
    return { value, elapsed: performance.now() - start }
  } finally {
    clearTimeout(timer)
  }
}

t.test('slow, oversized, silent and surplus connections are refused by the sponsor listener', async (t) => {
  // The idle timeout must outlast the upstream's (the schema refuses it otherwise).
  const h = await Harness.start({ sponsor: { limits: LIMITS }, upstream: { connectTimeoutMs: 400, headersTimeoutMs: 1000, bodyTimeoutMs: 1000 } })
  t.teardown(() => h.close())

  await t.test('a header block dripped byte by byte is answered 408 request_timeout', async (t) => {
    const { socket, closed } = await connect(h)
    socket.write('GET /v1/records/1 HTTP/1.1\r\nhost: localhost\r\n')
    // One byte every 200 ms keeps the socket from ever being idle, and never ends the headers.
    const drip = setInterval(() => socket.writable && socket.write('x'), 200)
    t.teardown(() => clearInterval(drip))
    // Generous: several times the limit, far below what a slowloris needs to be useful.
    const { value: answer } = await within(closed, 15_000, 'the dripping connection')
    clearInterval(drip)
    t.match(answer, /^HTTP\/1\.1 408 Request Timeout\r\n/, '408')
    t.match(answer, /\{"error":"request_timeout"\}$/, 'request_timeout')
  })

  await t.test('a header block over maxHeaderBytes is answered 431 headers_too_large', async (t) => {
    const { socket, closed } = await connect(h)
    socket.write(`GET /v1/records/1 HTTP/1.1\r\nhost: localhost\r\nx-padding: ${'a'.repeat(LIMITS.maxHeaderBytes)}\r\n\r\n`)
    const { value: answer } = await within(closed, 10_000, 'the oversized request')
    t.match(answer, /^HTTP\/1\.1 431 Request Header Fields Too Large\r\n/, '431')
    t.match(answer, /\{"error":"headers_too_large"\}$/)
  })

  await t.test('a connection that sends nothing is closed at the headers timeout', async (t) => {
    // The headers timeout runs from the connection's first moment, and is shorter here than the idle one.
    const { closed } = await connect(h)
    const { value: answer } = await within(closed, 15_000, 'the silent connection')
    t.match(answer, /^HTTP\/1\.1 408 Request Timeout\r\n[\s\S]*\{"error":"request_timeout"\}$/, '408 request_timeout, then closed')
  })

  await t.test('connections over maxConnections are dropped; a freed slot is usable again', async (t) => {
    const held = await Promise.all(Array.from({ length: LIMITS.maxConnections }, () => connect(h)))
    // Keep them busy (not idle) for the duration of the check.
    for (const c of held) c.socket.write('GET /v1/records/1 HTTP/1.1\r\nhost: localhost\r\n')
    const surplus = await connect(h).then(
      async (c) => ({ connected: true, answer: await within(c.closed, 5000, 'the surplus connection') }),
      () => ({ connected: false, answer: undefined }),
    )
    t.ok(!surplus.connected || surplus.answer?.value === '', 'the surplus connection gets no HTTP answer')
    for (const c of held) c.socket.destroy()
    await Promise.all(held.map((c) => c.closed))
    const res = await h.request('/v1/records/1')
    t.equal(res.status, 200, 'once connections close, a new one is served')
  })

  t.equal(h.upstream.hits, 1, 'only the last, well-formed request reached the upstream')
  const metrics = await h.metrics()
  t.ok(metricValue(metrics, 'ecluse_rejected_requests_total', { reason: 'request_timeout' }) >= 1, 'timeouts counted')
  t.equal(metricValue(metrics, 'ecluse_rejected_requests_total', { reason: 'headers_too_large' }), 1, 'the oversized header counted')
  t.equal(metricValue(metrics, 'ecluse_rejected_requests_total', { reason: 'overloaded' }), 1, 'the connection over maxConnections counted')
})
