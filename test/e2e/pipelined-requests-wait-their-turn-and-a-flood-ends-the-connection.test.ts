/**
 * HTTP/1.1 pipelining: Node parses every pipelined request as it arrives and stops reading only for
 * outgoing bytes, so a client pipelining thousands of tiny requests to a slow upstream made the
 * gateway hold thousands of exchanges (≈ 5 KB each for 31 bytes sent). Now one exchange per
 * connection runs at a time, the next waits with the socket paused, and a connection with more than
 * MAX_PIPELINED_REQUESTS waiting is closed (counted as `overloaded`); in-order pipelining still works.
 * A connection that goes away with requests waiting ends every exchange: none is left counted in
 * flight (which would stall the drain and keep a reloaded route table, and its keys, alive).
 */
import tls from 'node:tls'
import t from 'tap'
import { MAX_PIPELINED_REQUESTS } from '../../src/listener/sponsor.js'
import { Harness, metricValue } from '../helpers/harness.js'

const GET = (path: string) => `GET ${path} HTTP/1.1\r\nhost: localhost\r\n\r\n`

t.test('pipelined requests are answered in order, one exchange at a time', async (t) => {
  let inUpstream = 0
  let mostAtOnce = 0
  const h = await Harness.start({
    handler: (req, res) => {
      mostAtOnce = Math.max(mostAtOnce, ++inUpstream)
      setTimeout(() => {
        inUpstream--
        res.end(`answer ${req.url}`)
      }, 20)
    },
  })
  t.teardown(() => h.close())
  const out = await h.raw(GET('/v1/records/1') + GET('/v1/records/2') + `GET /v1/records/3 HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n`)
  const answers = out.match(/answer \/v1\/records\/\d/g)
  t.same(answers, ['answer /v1/records/1', 'answer /v1/records/2', 'answer /v1/records/3'], 'all three, in order')
  t.equal(mostAtOnce, 1, 'never two exchanges of one connection at the upstream at once')
})

t.test('a connection that pipelines a flood into a stalled upstream is closed; the gateway holds one exchange', async (t) => {
  const h = await Harness.start({ handler: () => {}, shutdown: { drainTimeoutMs: 200 } })
  t.teardown(() => h.close())
  const flood = Array.from({ length: 2000 }, (_, i) => GET(`/v1/records/${i}`)).join('')
  // The gateway may reset the connection while the flood is still being written: any ending will do.
  const out = await new Promise<string>((resolve) => {
    const socket = tls.connect(h.sponsorTls())
    let received = ''
    socket.setEncoding('utf8')
    socket.on('secureConnect', () => socket.write(flood))
    socket.on('data', (d: string) => {
      received += d
    })
    socket.on('error', () => {})
    socket.on('close', () => resolve(received))
  })
  t.equal(out, '', 'closed without an answer (the first exchange still waits on the upstream)')
  t.ok(h.upstream.hits <= 1, `at most the exchange in progress reached the upstream (${h.upstream.hits})`)
  const m = await h.metrics()
  t.equal(metricValue(m, 'ecluse_rejected_requests_total', { reason: 'overloaded' }), 1)
  t.equal(h.logs.find('sponsor connection pipelined too many requests; closed')[0]?.['waiting'], MAX_PIPELINED_REQUESTS)
})

t.test('a connection cut with a request waiting its turn leaves no exchange in flight', async (t) => {
  const h = await Harness.start({
    handler: (req, res) => {
      setTimeout(() => res.end(`answer ${req.url}`), 200)
    },
  })
  t.teardown(() => h.close())
  const socket = tls.connect(h.sponsorTls())
  socket.on('error', () => {})
  await new Promise<void>((resolve) => socket.on('secureConnect', () => resolve()))
  socket.write(GET('/v1/records/1') + GET('/v1/records/2'))
  for (let i = 0; i < 100 && h.upstream.hits === 0; i++) await new Promise((r) => setTimeout(r, 10))
  t.equal(h.gateway.proxy.inFlight, 1, 'the first exchange runs, the second waits')
  socket.destroy()
  for (let i = 0; i < 100 && h.gateway.proxy.inFlight > 0; i++) await new Promise((r) => setTimeout(r, 10))
  t.equal(h.gateway.proxy.inFlight, 0, 'none left in flight')
  t.equal(h.upstream.hits, 1, 'the waiting request never began: nothing of it reached the upstream')
})

t.test('past sponsor.limits.maxRequestsPerSocket the connection closes after its last answer; a request pipelined behind it is never begun', async (t) => {
  // Node's own limit answered the third request with a bare 503 (no error code, not logged).
  const h = await Harness.start({ sponsor: { limits: { maxRequestsPerSocket: 2 } }, handler: (req, res) => res.end(`answer ${req.url}`) })
  t.teardown(() => h.close())
  const out = await h.raw(GET('/v1/records/1') + GET('/v1/records/2') + GET('/v1/records/3'))
  const heads = out.split(/(?=HTTP\/1\.1 )/)
  t.same(out.match(/answer \/v1\/records\/\d/g), ['answer /v1/records/1', 'answer /v1/records/2'], 'the first two, in order')
  t.equal(heads.length, 2, 'two responses and nothing else')
  t.match(heads[0], /^HTTP\/1\.1 200 /)
  t.notMatch(heads[0], /connection: close/i, 'the first keeps the connection')
  t.match(heads[1], /^HTTP\/1\.1 200 .*\r\nconnection: close\r\n/is, 'the last says it closes')
  t.equal(h.upstream.hits, 2, 'the third never reached the upstream')

  // A new connection gets its own count.
  const again = await h.raw(GET('/v1/records/4') + GET('/v1/records/5'))
  t.same(again.match(/answer \/v1\/records\/\d/g), ['answer /v1/records/4', 'answer /v1/records/5'], 'a new connection counts from zero')
  t.equal(h.upstream.hits, 4)
})
