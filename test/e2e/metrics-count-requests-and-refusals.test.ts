import t from 'tap'
import { request } from 'undici'
import { Harness, metricValue } from '../helpers/harness.js'

t.test('metrics show requests, refusals, bytes and open connections; readiness follows the upstream', async (t) => {
  const h = await Harness.start()
  t.teardown(() => h.close())
  await h.request('/v1/records/1')
  await h.request('/v1/records/2', { method: 'POST', body: 'x'.repeat(100) })
  await h.request('/nope')
  await h.request('/v1/records', { method: 'DELETE' })
  await h.request('/v1/records/1', { cert: h.pki.otherSponsorClient })
  const m = await h.metrics()
  t.equal(metricValue(m, 'ecluse_requests_total', { side: 'sponsor', route: 'records' }), 3)
  t.equal(metricValue(m, 'ecluse_requests_total', { side: 'sponsor', route: 'unmatched' }), 2, 'requests no route took are counted too')
  t.equal(metricValue(m, 'ecluse_responses_total', { side: 'sponsor', route: 'records', status_class: '2xx' }), 2)
  t.equal(metricValue(m, 'ecluse_responses_total', { side: 'upstream', route: 'records', status_class: '2xx' }), 2)
  t.equal(metricValue(m, 'ecluse_responses_total', { side: 'sponsor', route: 'unmatched', status_class: '4xx' }), 2)
  t.equal(metricValue(m, 'ecluse_authorization_denials_total', { route: 'unmatched', reason: 'route_not_found' }), 1)
  t.equal(metricValue(m, 'ecluse_authorization_denials_total', { route: 'unmatched', reason: 'method_not_allowed' }), 1)
  t.equal(metricValue(m, 'ecluse_authorization_denials_total', { route: 'records', reason: 'principal_not_allowed' }), 1)
  t.equal(metricValue(m, 'ecluse_body_bytes_total', { route: 'records', direction: 'request' }), 100)
  t.ok(metricValue(m, 'ecluse_request_duration_seconds_count', { route: 'records' }) === 3)
  t.ok(metricValue(m, 'ecluse_upstream_ttfb_seconds_count', { route: 'records' }) === 2)
  t.ok(metricValue(m, 'ecluse_open_connections', { side: 'sponsor' }) >= 1)
  t.notMatch(m, /v1\/records\/1|accreditation-app|other-app/, 'no raw path or principal in any label')
  t.match(m, /ecluse_process_cpu_seconds_total|ecluse_process_cpu_user_seconds_total/, 'default Node metrics are there')

  t.notMatch(m, /^ecluse_upstream_ready\{/m, 'no readiness gauge before a readiness check: a scrape probes nothing')
  const hits = h.upstream.hits
  const ready = await request(`${h.adminOrigin}/readyz`)
  t.equal(ready.statusCode, 200)
  await ready.body.dump()
  t.equal(h.upstream.hits, hits + 1, 'the readiness check probed the upstream')
  const after = await h.metrics()
  t.equal(metricValue(after, 'ecluse_upstream_ready', { upstream: 'backend' }), 1, 'the gauge says what the check found')
  t.equal(h.upstream.hits, hits + 1, 'the scrape sent nothing to the upstream')
  const health = await request(`${h.adminOrigin}/healthz`)
  t.equal(health.statusCode, 200)
  await health.body.dump()
})

t.test('readiness is 503 while the upstream does not answer', async (t) => {
  const h = await Harness.start({ upstreamPort: 1 })
  t.teardown(() => h.close())
  const ready = await request(`${h.adminOrigin}/readyz`)
  t.equal(ready.statusCode, 503)
  const body = (await ready.body.json()) as { checks: Record<string, string> }
  t.not(body.checks['upstream:backend'], 'ok')
  // Unready, the pod gets no requests and counts no upstream error: the gauge still says why.
  t.match(await h.metrics(), /^ecluse_upstream_ready\{upstream="backend"\} 0$/m, 'the gauge says the upstream is not ready')
})


t.test('an upstream handshake that fails counts as a TLS failure on the upstream side; a body over its limit as a rejected request', async (t) => {
  // The upstream's certificate does not name what the gateway expects: its handshake fails.
  const h = await Harness.start({ upstream: { serverName: 'someone-else.trusted.test' } })
  t.teardown(() => h.close())
  const res = await h.request('/v1/records/1')
  t.equal(res.status, 502)
  t.equal((res.json() as { error: string }).error, 'upstream_tls')
  const tooLarge = await h.request('/v1/records/2', { method: 'POST', body: 'x'.repeat(1024 * 1024 + 1) })
  t.equal(tooLarge.status, 413)
  const m = await h.metrics()
  t.equal(metricValue(m, 'ecluse_upstream_errors_total', { upstream: 'backend', kind: 'upstream_tls' }), 1)
  const reasons = ['no_certificate', 'untrusted_certificate', 'expired_certificate', 'handshake_timeout', 'protocol', 'other']
  const upstreamTls = reasons.reduce((n, reason) => n + metricValue(m, 'ecluse_tls_handshake_failures_total', { side: 'upstream', reason }), 0)
  t.equal(upstreamTls, 1, 'one upstream TLS failure, with its reason')
  t.equal(metricValue(m, 'ecluse_rejected_requests_total', { reason: 'body_too_large' }), 1)
})
