/**
 * Found by review: Node hands every TLS handshake failure to the server's `clientError` too, where
 * the gateway took it for an HTTP parser error: it wrote an HTTP 400 that a socket still in its
 * handshake can never send, then waited its 5 s refusal grace before closing. A client with no
 * certificate that sends nothing held its connection slot for handshakeTimeoutMs + 5 s, and every
 * scanner's failed handshake was counted as a refused request (`bad_request`) beside its TLS failure.
 */
import { connect, type Socket } from 'node:net'
import t from 'tap'
import { Harness, metricValue } from '../helpers/harness.js'

/** Connects, writes `bytes` (if any), and resolves with what came back and how long the gateway took to close. */
function rawClient(port: number, bytes: string | null): Promise<{ ms: number; received: Buffer }> {
  return new Promise((resolve, reject) => {
    const started = Date.now()
    const chunks: Buffer[] = []
    const socket: Socket = connect(port, '127.0.0.1', () => {
      if (bytes !== null) socket.write(bytes)
    })
    socket.on('data', (chunk: Buffer) => chunks.push(chunk))
    socket.on('error', () => {}) // a reset is a close too
    socket.on('close', () => resolve({ ms: Date.now() - started, received: Buffer.concat(chunks) }))
    setTimeout(() => reject(new Error('the gateway never closed the connection')), 20_000).unref()
  })
}

t.test('a silent client and one speaking plain HTTP are closed at the handshake timeout, counted as TLS failures only', async (t) => {
  const HANDSHAKE_MS = 1000
  const h = await Harness.start({ sponsor: { tls: { handshakeTimeoutMs: HANDSHAKE_MS } } })
  t.teardown(() => h.close())
  const port = h.gateway.sponsorPort

  const silent = await rawClient(port, null)
  t.ok(silent.ms >= HANDSHAKE_MS - 100, `not closed before the handshake timeout (${silent.ms} ms)`)
  // The old code closed it at HANDSHAKE_MS + 5000; the margin is for a busy machine.
  t.ok(silent.ms < HANDSHAKE_MS + 3000, `closed at the handshake timeout, not seconds after it (${silent.ms} ms)`)
  t.equal(silent.received.length, 0, 'nothing written to a client that never finished its handshake')

  const plain = await rawClient(port, 'GET /v1/records/1 HTTP/1.1\r\nhost: x\r\n\r\n')
  t.notMatch(plain.received.toString('latin1'), /HTTP\/1\.1/, 'no HTTP answer on a TLS port')
  t.ok(plain.ms < HANDSHAKE_MS + 3000, `closed without the refusal grace (${plain.ms} ms)`)

  const metrics = await h.metrics()
  t.equal(metricValue(metrics, 'ecluse_rejected_requests_total', { reason: 'bad_request' }), 0, 'no request was refused: none was ever read')
  const handshakeFailures = metrics
    .split('\n')
    .filter((line) => line.startsWith('ecluse_tls_handshake_failures_total{') && line.includes('side="sponsor"'))
    .reduce((sum, line) => sum + Number(line.slice(line.lastIndexOf(' ') + 1)), 0)
  t.ok(handshakeFailures >= 2, `both counted as TLS handshake failures (${handshakeFailures})`)
  t.equal(h.upstream.hits, 0, 'the upstream saw nothing')
  // A parser error on a verified connection is still answered and counted.
  const bad = await h.raw('GET /v1/records/1 HTTP/1.1\r\nhost: x\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n')
  t.match(bad, /^HTTP\/1\.1 400 /)
  t.equal(metricValue(await h.metrics(), 'ecluse_rejected_requests_total', { reason: 'request_framing' }) + metricValue(await h.metrics(), 'ecluse_rejected_requests_total', { reason: 'bad_request' }), 1, 'counted once')
})
