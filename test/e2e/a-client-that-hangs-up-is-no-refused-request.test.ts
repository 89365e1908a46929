/**
 * Found by review: every hang-up of a sponsor client reached the listener's `clientError` and was
 * counted as a request refused (`bad_request`) and logged as the HTTP parser's refusal: a reset of
 * an idle keep-alive connection (no request at all), and an upload abandoned by a reset or an end of
 * input, which its exchange also counts, as `aborted`. A request head cut by the end of input is
 * still refused as before: no request began.
 */
import { once } from 'node:events'
import net from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import tls from 'node:tls'
import t from 'tap'
import { Harness, metricValue } from '../helpers/harness.js'

const refusedAsBadRequest = async (h: Harness) => metricValue(await h.metrics(), 'ecluse_rejected_requests_total', { reason: 'bad_request' })
const aborted = async (h: Harness) => metricValue(await h.metrics(), 'ecluse_responses_total', { side: 'sponsor', route: 'records', status_class: 'aborted' })

/** A verified raw connection, and a reset of its TCP connection; resolves once it is up. */
async function connect(h: Harness): Promise<tls.TLSSocket & { reset(): void }> {
  const options = h.sponsorTls()
  const tcp = net.connect(options.port!, '127.0.0.1')
  tcp.on('error', () => {})
  const socket = Object.assign(tls.connect({ ...options, socket: tcp }), { reset: () => tcp.resetAndDestroy() })
  socket.on('error', () => {})
  await once(socket, 'secureConnect')
  return socket
}

/** Waits until the upstream has seen `n` requests start. */
async function upstreamStarted(h: Harness, n: number): Promise<void> {
  for (let waited = 0; h.upstream.hits < n && waited < 5000; waited += 20) await sleep(20)
}

t.test('a reset after an answer, or in the middle of an upload, counts no refused request', async (t) => {
  const h = await Harness.start({
    handler: (req, res) => {
      if (req.method === 'GET') {
        if (req.url?.endsWith('/slow')) setTimeout(() => res.end('{}'), 300)
        else res.end('{}')
        return
      }
      req.resume()
      req.on('end', () => res.end('{}'))
    },
  })
  t.teardown(() => h.close())

  // An idle keep-alive connection reset after its answer.
  const idle = await connect(h)
  idle.write('GET /v1/records/1 HTTP/1.1\r\nhost: localhost\r\n\r\n')
  await once(idle, 'data')
  idle.reset()
  await sleep(200)
  t.equal(await refusedAsBadRequest(h), 0, 'an idle reset refused nothing')

  // Uploads abandoned halfway: by a reset, then by an end of input.
  for (const [how, leave] of [
    ['reset', (s: tls.TLSSocket & { reset(): void }) => s.reset()],
    ['end of input', (s: tls.TLSSocket) => s.end()],
  ] as const) {
    const before = await aborted(h)
    const hits = h.upstream.hits
    const upload = await connect(h)
    upload.write(`PUT /v1/records/2 HTTP/1.1\r\nhost: localhost\r\ncontent-length: 100000\r\n\r\n${'a'.repeat(1000)}`)
    await upstreamStarted(h, hits + 1)
    leave(upload)
    for (let waited = 0; (await aborted(h)) === before && waited < 3000; waited += 50) await sleep(50)
    t.equal(await aborted(h), before + 1, `${how}: counted once, as an aborted exchange`)
    t.equal(await refusedAsBadRequest(h), 0, `${how}: not as a refused request`)
  }
  t.equal(h.logs.find('sponsor request refused by the HTTP parser').length, 0, 'no parser refusal logged')

  // A request head cut by the end of input never began: still refused, answered and counted.
  const cut = await connect(h)
  let answer = ''
  cut.setEncoding('utf8')
  cut.on('data', (d: string) => {
    answer += d
  })
  cut.end('GET /v1/records/3 HTTP/1.1\r\nhost: loc')
  await once(cut, 'close')
  t.match(answer, /^HTTP\/1\.1 400 /)
  t.equal(await refusedAsBadRequest(h), 1, 'a cut request head is a refused request')

  // Found by re-review: also when it is pipelined behind a complete request still being answered.
  const pipelined = await connect(h)
  pipelined.end('GET /v1/records/slow HTTP/1.1\r\nhost: localhost\r\n\r\nGET /v1/records/4 HTTP/1.1\r\nhost: lo')
  await once(pipelined, 'close')
  for (let waited = 0; (await refusedAsBadRequest(h)) < 2 && waited < 3000; waited += 50) await sleep(50)
  t.equal(await refusedAsBadRequest(h), 2, 'a cut head behind an answer in flight is still a refused request')
})
