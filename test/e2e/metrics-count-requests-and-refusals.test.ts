import t from 'tap'
import { request } from 'undici'
import { Harness, metricValue } from '../helpers/harness.js'

t.test('metrics show requests, refusals, bytes and open connections; readiness follows the upstream', async (t) => {
  const h = await Harness.start()
  t.teardown(() => h.close())
  await h.request('/v1/records/1')
  await h.request('/v1/records/2', { method: 'POST', body: 'x'.repeat(100) })
  await h.request('/nope')
  await h.request('/v1/records/1', { cert: h.pki.otherSponsorClient })
  const m = await h.metrics()
  t.equal(metricValue(m, 'ecluse_requests_total', { side: 'sponsor', route: 'records' }), 3)
  t.equal(metricValue(m, 'ecluse_responses_total', { side: 'sponsor', route: 'records', status_class: '2xx' }), 2)
  t.equal(metricValue(m, 'ecluse_responses_total', { side: 'upstream', route: 'records', status_class: '2xx' }), 2)
  t.equal(metricValue(m, 'ecluse_responses_total', { side: 'sponsor', route: 'unmatched', status_class: '4xx' }), 1)
  t.equal(metricValue(m, 'ecluse_authorization_denials_total', { route: 'unmatched', reason: 'route_not_found' }), 1)
  t.equal(metricValue(m, 'ecluse_authorization_denials_total', { route: 'records', reason: 'principal_not_allowed' }), 1)
  t.equal(metricValue(m, 'ecluse_body_bytes_total', { route: 'records', direction: 'request' }), 100)
  t.ok(metricValue(m, 'ecluse_request_duration_seconds_count', { route: 'records' }) === 3)
  t.ok(metricValue(m, 'ecluse_upstream_ttfb_seconds_count', { route: 'records' }) === 2)
  t.ok(metricValue(m, 'ecluse_open_connections', { side: 'sponsor' }) >= 1)
  t.notMatch(m, /v1\/records\/1|accreditation-app|other-app/, 'no raw path or principal in any label')
  t.match(m, /ecluse_process_cpu_seconds_total|ecluse_process_cpu_user_seconds_total/, 'default Node metrics are there')

  const ready = await request(`${h.adminOrigin}/readyz`)
  t.equal(ready.statusCode, 200)
  await ready.body.dump()
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
})
