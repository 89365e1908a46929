/**
 * Found by review: undici keeps a TLS session cache per pool, and a resumed session skips verifying
 * the upstream's chain. A TLS 1.3 upstream hands out a fresh ticket at each resumption, so a gateway
 * that reconnected often enough never checked the upstream's certificate again: requests went on,
 * 200 each on a resumed session, past its notAfter (while the readiness probe, with a fresh
 * handshake, already said it had expired). The pool resumes no session now: every new upstream
 * connection verifies the upstream in full.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { DEV_LEAF_SPECS } from '../../src/pki/dev-pki.js'
import { Harness, metricValue, TestUpstream } from '../helpers/harness.js'
import { issueCertificate, makeTestPki } from '../helpers/pki.js'

const LIFETIME_MS = 3_000

t.test('past the upstream certificate’s notAfter the next connection fails upstream_tls, resumed or not', async (t) => {
  const pki = await makeTestPki()
  const notAfter = new Date(Math.ceil((Date.now() + LIFETIME_MS) / 1000) * 1000)
  const shortLived = issueCertificate(pki.trustedCa, { ...DEV_LEAF_SPECS.trustedServer, notBefore: new Date(Date.now() - 60_000), notAfter })
  const resumed: boolean[] = []
  // Every answer closes its connection: each request needs a new one, resumed if the gateway can.
  const upstream = new TestUpstream(pki, (_req, res) => res.writeHead(200, { connection: 'close' }).end('ok'), { ...shortLived, certPath: '', keyPath: '' })
  upstream.server.on('secureConnection', (socket) => resumed.push(socket.isSessionReused()))
  const port = await upstream.listen()
  t.teardown(() => upstream.close())
  const h = await Harness.start({ upstreamPort: port })
  t.teardown(() => h.close())

  let before = 0
  while (Date.now() < notAfter.getTime() - 500) {
    const res = await h.request('/v1/records/1')
    t.equal(res.status, 200, 'served while the upstream certificate is valid')
    before++
    await sleep(200)
  }
  t.ok(before >= 2, `${before} requests before notAfter`)
  t.same(resumed.filter(Boolean), [], 'no upstream session was resumed')
  await sleep(notAfter.getTime() - Date.now() + 1_100)
  const after = await h.request('/v1/records/1')
  t.equal(after.status, 502, 'past notAfter: refused')
  t.match(JSON.parse(after.body.toString()), { error: 'upstream_tls' })
  t.ok(metricValue(await h.metrics(), 'ecluse_upstream_errors_total', { kind: 'upstream_tls' }) >= 1, 'counted as an upstream TLS failure')
})
