import t from 'tap'
import { GatewayMetrics, LATENCY_BUCKETS_SECONDS, UNMATCHED_ROUTE, UPSTREAM_ERROR_KINDS } from '../src/observability/metrics.js'

function seriesCount(text: string): number {
  return text.split('\n').filter((l) => l.startsWith('ecluse_') && !l.startsWith('ecluse_build_info')).length
}

t.test('raw paths, principals and header values never become label values', async (t) => {
  const metrics = new GatewayMetrics({ routes: ['accreditations'], defaultMetrics: false })
  const before = await metrics.render()

  const hostile = [
    '/v1/accreditations/123?ssn=1850512345678',
    'uri:spiffe://sponsor.test/app',
    'Bearer eyJhbGciOi',
    'Accreditations',
    '',
  ]
  for (const name of hostile) {
    metrics.requestReceived(name)
    metrics.sponsorResponse(name, '4xx')
    metrics.requestDuration(name, 0.01)
    metrics.bodyBytes(name, 'request', 10)
    metrics.authorizationDenied(name, 'route_not_found')
    t.equal(metrics.forRoute(name), metrics.unmatched, `${JSON.stringify(name)} → unmatched`)
  }
  metrics.upstreamError('Bearer eyJhbGciOi', 'upstream_reset')

  const after = await metrics.render()
  for (const name of hostile.filter(Boolean)) t.notOk(after.includes(name), `${JSON.stringify(name)} is not rendered`)
  t.equal(
    seriesCount(after),
    // Its error kinds, its retries, and its pool wait histogram (the buckets, +Inf, sum and count).
    seriesCount(before) + UPSTREAM_ERROR_KINDS.length + 1 + LATENCY_BUCKETS_SECONDS.length + 3,
    'only the fixed `other` upstream series appeared',
  )
  t.match(after, /ecluse_upstream_errors_total\{upstream="other",kind="upstream_reset"\} 1/)
  t.match(after, new RegExp(`ecluse_requests_total\\{side="sponsor",route="${UNMATCHED_ROUTE}"\\} 5`))
})

t.test('forRoute returns the same object built once at boot', async (t) => {
  const metrics = new GatewayMetrics({ routes: ['a', 'b'], defaultMetrics: false })
  const a = metrics.forRoute('a')
  t.equal(metrics.forRoute('a'), a)
  t.not(metrics.forRoute('b'), a)
  t.equal(a.route, 'a')
  const before = seriesCount(await metrics.render())
  for (let i = 0; i < 1000; i++) {
    a.requestReceived()
    a.sponsorResponse('2xx')
    a.upstreamResponse('2xx')
    a.requestDuration(i / 1000)
    a.upstreamTtfb(i / 2000)
    a.bodyBytes('response', i)
  }
  const text = await metrics.render()
  t.equal(seriesCount(text), before, 'increments create no series: every child existed at boot')
  t.match(text, /ecluse_requests_total\{side="sponsor",route="a"\} 1000/)
  t.match(text, /ecluse_body_bytes_total\{route="a",direction="response"\} 499500/)
})

t.test('routes added by a reload get their series; names must be valid labels', async (t) => {
  const metrics = new GatewayMetrics({ routes: ['a'], defaultMetrics: false })
  t.equal(metrics.forRoute('b'), metrics.unmatched)
  metrics.registerRoutes(['a', 'b'])
  t.not(metrics.forRoute('b'), metrics.unmatched)
  t.equal(metrics.forRoute('b').route, 'b')

  for (const bad of ['unmatched', '/v1/x', 'UPPER', 'a'.repeat(64)]) {
    t.throws(() => metrics.registerRoutes([bad]), { name: 'EcluseError', code: 'config_invalid' }, `${bad.slice(0, 20)} is refused`)
  }
})
