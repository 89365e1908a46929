import { setTimeout as sleep } from 'node:timers/promises'
import tls from 'node:tls'
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

t.test('a flood of handshakes without a certificate is counted whole, and logged at most 20 lines a second plus a summary', async (t) => {
  const h = await Harness.start()
  t.teardown(() => h.close())
  const { REFUSAL_LINES_PER_SECOND } = await import('../../src/listener/sponsor.js')
  const { NOT_LOGGED_MSG } = await import('../../src/observability/log-quota.js')
  t.equal(REFUSAL_LINES_PER_SECOND, 20)
  const flood = 80
  const began = performance.now()
  // A scanner: connections without a client certificate, as fast as the listener takes them.
  await Promise.all(
    Array.from(
      { length: flood },
      () =>
        new Promise<void>((resolve) => {
          const socket = tls.connect({ ...h.sponsorTls(), cert: undefined, key: undefined })
          socket.on('error', () => {})
          socket.on('close', () => resolve())
          socket.on('secureConnect', () => socket.write('GET /v1/records/1 HTTP/1.1\r\nhost: localhost\r\n\r\n'))
        }),
    ),
  )
  const seconds = Math.ceil((performance.now() - began) / 1000)
  t.equal(metricValue(await h.metrics(), 'ecluse_tls_handshake_failures_total', { side: 'sponsor', reason: 'no_certificate' }), flood, 'every refusal counted')
  // The summary of the last second comes when that second ends.
  const summarised = () => h.logs.find(NOT_LOGGED_MSG).reduce((n, l) => n + (l['notLogged'] as number), 0)
  const logged = () => h.logs.find('sponsor client certificate refused').length
  for (let waited = 0; logged() + summarised() < flood && waited < 5000; waited += 50) await sleep(50)
  t.equal(logged() + summarised(), flood, 'every refusal is a line or part of a summary')
  t.ok(logged() <= REFUSAL_LINES_PER_SECOND * (seconds + 1), `${logged()} lines in ${seconds} s: within the quota`)
  const summaries = h.logs.find(NOT_LOGGED_MSG)
  t.ok(summaries.length > 0 || logged() === flood, 'a summary whenever lines were held back')
  t.ok(
    summaries.every((l) => l['level'] === 'warn' && l['kind'] === 'sponsor client certificate refused' && l['perSecond'] === 20),
    'each summary a warning that names the lines',
  )
  t.equal(h.upstream.hits, 0, 'the upstream saw nothing')
})
