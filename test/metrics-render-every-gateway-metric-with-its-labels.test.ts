import t from 'tap'
import { GatewayMetrics, statusClass } from '../src/observability/metrics.js'

/** The value of the sample with exactly these labels (order-insensitive), or undefined. */
function sample(text: string, name: string, labels: Record<string, string>): number | undefined {
  const want = Object.entries(labels)
    .map(([k, v]) => `${k}="${v}"`)
    .sort()
    .join(',')
  for (const line of text.split('\n')) {
    const m = /^([a-z_:]+)(?:\{(.*)\})? (\S+)$/.exec(line)
    if (m === null || m[1] !== name) continue
    const got = (m[2] ?? '').split(',').filter(Boolean).sort().join(',')
    if (got === want) return Number(m[3])
  }
  return undefined
}

t.test('renders every gateway metric with bounded labels and the increments made', async (t) => {
  const metrics = new GatewayMetrics({ routes: ['accreditations', 'status'], upstreams: ['trusted'], version: '9.9.9' })
  t.equal(metrics.contentType, 'text/plain; version=0.0.4; charset=utf-8')

  const route = metrics.forRoute('accreditations')
  route.requestReceived()
  route.requestReceived()
  route.sponsorResponse(statusClass(201))
  route.sponsorResponse('aborted')
  route.upstreamResponse(statusClass(503))
  route.requestDuration(0.004)
  route.upstreamTtfb(0.002)
  route.requestBytes(100)
  route.responseBytes(2048)
  route.authorizationDenied('principal_not_allowed')
  // The by-name API lands on the same series.
  metrics.requestReceived('accreditations')
  metrics.bodyBytes('accreditations', 'request', 23)
  metrics.authorizationDenied('unmatched', 'route_not_found')
  metrics.upstreamError('trusted', 'upstream_timeout')
  metrics.forUpstream('trusted').error('upstream_tls')
  metrics.tlsHandshakeFailure('sponsor', 'expired_certificate')
  metrics.tlsHandshakeFailure('upstream', 'untrusted_certificate')
  metrics.connectionOpened('sponsor')
  metrics.connectionOpened('sponsor')
  metrics.connectionClosed('sponsor')
  metrics.connectionOpened('admin')
  metrics.requestRejected('headers_too_large')
  metrics.reload('ok')
  metrics.reload('failed')
  metrics.reload('ok')
  metrics.certificateExpiry('sponsor', 'sponsor_server', new Date('2030-01-02T03:04:05Z'))
  metrics.certificateExpiry('upstream', 'upstream:trusted', Date.UTC(2031, 0, 1))

  const text = await metrics.render()
  const rt = { route: 'accreditations' }
  t.equal(sample(text, 'ecluse_requests_total', { side: 'sponsor', ...rt }), 3)
  t.equal(sample(text, 'ecluse_responses_total', { side: 'sponsor', ...rt, status_class: '2xx' }), 1)
  t.equal(sample(text, 'ecluse_responses_total', { side: 'sponsor', ...rt, status_class: 'aborted' }), 1)
  t.equal(sample(text, 'ecluse_responses_total', { side: 'sponsor', ...rt, status_class: '5xx' }), 0, 'zero series exist from boot')
  t.equal(sample(text, 'ecluse_responses_total', { side: 'upstream', ...rt, status_class: '5xx' }), 1)
  // The upstream side counts a status line when it arrives; an always-0 `aborted` series was
  // exported beside it (found by review): a body cut short is the sponsor side's `aborted`.
  t.equal(sample(text, 'ecluse_responses_total', { side: 'upstream', ...rt, status_class: 'aborted' }), undefined, 'no upstream aborted series')
  t.equal(sample(text, 'ecluse_request_duration_seconds_count', rt), 1)
  t.equal(sample(text, 'ecluse_request_duration_seconds_bucket', { ...rt, le: '0.005' }), 1)
  t.equal(sample(text, 'ecluse_request_duration_seconds_bucket', { ...rt, le: '0.0025' }), 0)
  t.equal(sample(text, 'ecluse_request_duration_seconds_bucket', { ...rt, le: '30' }), 1)
  t.equal(sample(text, 'ecluse_upstream_ttfb_seconds_count', rt), 1)
  t.equal(sample(text, 'ecluse_upstream_ttfb_seconds_sum', rt), 0.002)
  t.equal(sample(text, 'ecluse_request_duration_seconds_count', { route: 'status' }), 0, 'histograms zeroed at boot')
  t.equal(sample(text, 'ecluse_body_bytes_total', { ...rt, direction: 'request' }), 123)
  t.equal(sample(text, 'ecluse_body_bytes_total', { ...rt, direction: 'response' }), 2048)
  t.equal(sample(text, 'ecluse_authorization_denials_total', { ...rt, reason: 'principal_not_allowed' }), 1)
  t.equal(sample(text, 'ecluse_authorization_denials_total', { route: 'unmatched', reason: 'route_not_found' }), 1)
  t.equal(sample(text, 'ecluse_upstream_errors_total', { upstream: 'trusted', kind: 'upstream_timeout' }), 1)
  t.equal(sample(text, 'ecluse_upstream_errors_total', { upstream: 'trusted', kind: 'upstream_tls' }), 1)
  t.equal(sample(text, 'ecluse_upstream_errors_total', { upstream: 'trusted', kind: 'upstream_refused' }), 0)
  t.equal(sample(text, 'ecluse_tls_handshake_failures_total', { side: 'sponsor', reason: 'expired_certificate' }), 1)
  t.equal(sample(text, 'ecluse_tls_handshake_failures_total', { side: 'upstream', reason: 'untrusted_certificate' }), 1)
  t.equal(sample(text, 'ecluse_tls_handshake_failures_total', { side: 'upstream', reason: 'handshake_timeout' }), 0)
  t.equal(sample(text, 'ecluse_open_connections', { side: 'sponsor' }), 1)
  t.equal(sample(text, 'ecluse_open_connections', { side: 'admin' }), 1)
  t.equal(sample(text, 'ecluse_rejected_requests_total', { reason: 'headers_too_large' }), 1)
  t.equal(sample(text, 'ecluse_rejected_requests_total', { reason: 'overloaded' }), 0)
  t.equal(sample(text, 'ecluse_reloads_total', { result: 'ok' }), 2)
  t.equal(sample(text, 'ecluse_reloads_total', { result: 'failed' }), 1)
  t.equal(
    sample(text, 'ecluse_certificate_expiry_timestamp_seconds', { side: 'sponsor', name: 'sponsor_server' }),
    Date.UTC(2030, 0, 2, 3, 4, 5) / 1000,
  )
  t.equal(
    sample(text, 'ecluse_certificate_expiry_timestamp_seconds', { side: 'upstream', name: 'upstream:trusted' }),
    Date.UTC(2031, 0, 1) / 1000,
  )
  t.equal(sample(text, 'ecluse_build_info', { version: '9.9.9', node: process.version }), 1)
  t.match(text, /^# TYPE ecluse_requests_total counter$/m)
  t.match(text, /^# TYPE ecluse_request_duration_seconds histogram$/m)
  t.match(text, /^# TYPE ecluse_open_connections gauge$/m)
  t.match(text, /^ecluse_process_cpu_user_seconds_total /m, 'Node default metrics carry the ecluse_ prefix')
  t.notMatch(text, /^process_cpu/m, 'nothing lands unprefixed')

  // Counters are folded in at scrape time by delta: a second scrape does not double-count.
  route.requestReceived()
  const again = await metrics.render()
  t.equal(sample(again, 'ecluse_requests_total', { side: 'sponsor', ...rt }), 4)
  t.equal(sample(again, 'ecluse_body_bytes_total', { ...rt, direction: 'response' }), 2048)
})

t.test('two gateways keep separate registries', async (t) => {
  const a = new GatewayMetrics({ routes: ['r'], defaultMetrics: false })
  const b = new GatewayMetrics({ routes: ['r'], defaultMetrics: false })
  a.requestReceived('r')
  t.equal(sample(await a.render(), 'ecluse_requests_total', { side: 'sponsor', route: 'r' }), 1)
  t.equal(sample(await b.render(), 'ecluse_requests_total', { side: 'sponsor', route: 'r' }), 0)
  t.notMatch(await b.render(), /ecluse_process_/, 'default metrics can be left out')
})

t.test('build info defaults to the package version', async (t) => {
  const m = new GatewayMetrics({ routes: [], defaultMetrics: false })
  t.match(await m.render(), /^ecluse_build_info\{version="\d+\.\d+\.\d+[^"]*",node="v\d+/m)
})
