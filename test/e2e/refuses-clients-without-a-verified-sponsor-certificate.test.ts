import t from 'tap'
import { Harness, metricValue } from '../helpers/harness.js'

// Each of these clients must be refused at the TLS layer: no HTTP request is parsed, the upstream
// is never contacted, and the refusal is counted by reason.
t.test('clients without a verified sponsor certificate never reach the upstream', async (t) => {
  const h = await Harness.start()
  t.teardown(() => h.close())
  const cases = [
    { name: 'no client certificate', cert: null, reason: 'no_certificate' },
    { name: 'a certificate from the trusted CA', cert: h.pki.trustedCaClient, reason: 'untrusted_certificate' },
    { name: 'an expired sponsor certificate', cert: h.pki.expiredSponsorClient, reason: 'expired_certificate' },
  ] as const
  for (const c of cases) {
    await t.rejects(h.request('/v1/records/1', { cert: c.cert }), `${c.name} is refused`)
  }
  t.equal(h.upstream.hits, 0, 'the upstream saw nothing')
  const metrics = await h.metrics()
  for (const c of cases) {
    t.ok(
      metricValue(metrics, 'ecluse_tls_handshake_failures_total', { side: 'sponsor', reason: c.reason }) >= 1,
      `handshake failure counted as ${c.reason}`,
    )
  }
  // And the legitimate client still gets through on the same listener.
  const ok = await h.request('/v1/records/1')
  t.equal(ok.status, 200)
  t.equal(h.upstream.hits, 1)
})
