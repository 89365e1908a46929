/**
 * `sponsor.limits.maxConnections`: a connection past it is closed before its TLS handshake and
 * counted `overloaded`. Found by review: under `--workers`, Node's own cap (`server.maxConnections`)
 * does not close such a connection but hands it back to the primary, which offers it to the next
 * worker, and so on while every worker is full: it was never closed nor counted, had no handshake
 * timeout, and kept the primary and every worker busy passing it round. A bare TCP connection, no
 * certificate needed, was enough.
 */
import { connect as tcpConnect } from 'node:net'
import { connect as tlsConnect } from 'node:tls'
import t from 'tap'
import { request } from 'undici'
import { startEchoCluster } from './helpers/cluster.js'
import { Harness, metricValue } from './helpers/harness.js'
import type { TestPki } from './helpers/pki.js'

type Outcome = 'answered' | 'closed before TLS' | 'still waiting'

/**
 * Opens a sponsor connection and sends a GET once its handshake is done; settles as how it went.
 * `hold` keeps the connections that were answered open (they take a place under the cap).
 */
function openOne(pki: TestPki, port: number, hold: Array<{ destroy(): void }>): Promise<Outcome> {
  return new Promise((resolve) => {
    const socket = tlsConnect({ host: '127.0.0.1', port, servername: 'localhost', ca: pki.sponsorCa.certPem, cert: pki.sponsorClient.certPem, key: pki.sponsorClient.keyPem })
    hold.push(socket)
    const timer = setTimeout(() => resolve('still waiting'), 3000)
    socket.on('secureConnect', () => {
      socket.write('GET /v1/records/1 HTTP/1.1\r\nhost: localhost\r\n\r\n')
      socket.once('data', () => {
        clearTimeout(timer)
        resolve('answered')
      })
    })
    const closed = () => {
      clearTimeout(timer)
      resolve('closed before TLS')
    }
    socket.on('error', closed)
    socket.on('close', closed)
  })
}

async function overloaded(admin: string): Promise<number> {
  const res = await request(`${admin}/metrics`)
  return metricValue(await res.body.text(), 'ecluse_rejected_requests_total', { reason: 'overloaded' })
}

t.test('one process: connections past the cap are closed before TLS and counted; a place freed is taken again', async (t) => {
  const h = await Harness.start({ sponsor: { limits: { maxConnections: 2 } } })
  t.teardown(() => h.close())
  const held: Array<{ destroy(): void }> = []
  t.teardown(() => {
    for (const s of held) s.destroy()
  })
  const outcomes: Outcome[] = []
  for (let i = 0; i < 4; i++) outcomes.push(await openOne(h.pki, h.gateway.sponsorPort, held))
  t.strictSame(outcomes, ['answered', 'answered', 'closed before TLS', 'closed before TLS'])
  t.equal(await overloaded(h.adminOrigin), 2)
  // A bare TCP connection takes a place too, and is closed the same way past the cap.
  const bare = tcpConnect({ host: '127.0.0.1', port: h.gateway.sponsorPort })
  t.teardown(() => bare.destroy())
  await new Promise((resolve) => bare.on('close', resolve))
  t.equal(await overloaded(h.adminOrigin), 3)
  // Once the gateway has seen the close. (A connection destroyed but not yet closed by libuv does not
  // count either: test/e2e/slow-or-greedy-sponsor-clients-are-cut-off-before-the-upstream.test.ts
  // reconnects at once, and failed when it did.)
  held[0]!.destroy()
  await new Promise((r) => setTimeout(r, 200))
  t.equal(await openOne(h.pki, h.gateway.sponsorPort, held), 'answered', 'the place a closed connection left is taken')
})

t.test('two workers: each closes connections past its cap before TLS and counts them; none waits', async (t) => {
  const { pki, cluster } = await startEchoCluster(t, undefined, { maxConnections: 1 })
  const { sponsor, admin } = await cluster.started()
  const port = Number(new URL(sponsor).port)
  const held: Array<{ destroy(): void }> = []
  t.teardown(() => {
    for (const s of held) s.destroy()
  })
  const outcomes: Outcome[] = []
  for (let i = 0; i < 5; i++) outcomes.push(await openOne(pki, port, held))
  // Round-robin gives each worker one connection in turn: two are answered, one per worker, and the
  // rest reach a full worker and are closed (before, they waited, passed from worker to worker).
  t.equal(outcomes.filter((o) => o === 'answered').length, 2, outcomes.join(', '))
  t.notOk(outcomes.includes('still waiting'), 'no connection is left waiting')
  t.equal(await overloaded(admin), 3, 'the three closed are counted')
})
