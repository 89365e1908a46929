/**
 * From the admin review: a CA bundle's `ecluse_certificate_expiry_timestamp_seconds` was its soonest
 * valid CA as judged at load. Once that CA expired with no reload since, the series kept its past
 * date: `EcluseCertificateExpiresVerySoon` fired on while a newer CA of the bundle served, and pods
 * differed by when each had last reloaded. It is judged at each scrape now.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { GatewayMetrics } from '../src/observability/metrics.js'
import { metricValue } from './helpers/harness.js'

const series = { side: 'sponsor', name: 'sponsor_client_ca' }

t.test('the soonest CA still ahead, at each scrape; the latest once all have passed', async (t) => {
  const metrics = new GatewayMetrics({ routes: [] })
  const now = Date.now()
  const soon = new Date(Math.ceil((now + 1_200) / 1000) * 1000)
  const later = new Date(now + 30 * 86_400_000)
  metrics.certificateExpiry('sponsor', 'sponsor_client_ca', [later, soon])
  t.equal(metricValue(await metrics.render(), 'ecluse_certificate_expiry_timestamp_seconds', series), soon.getTime() / 1000, 'the soonest first')
  await sleep(soon.getTime() - Date.now() + 100)
  t.equal(
    metricValue(await metrics.render(), 'ecluse_certificate_expiry_timestamp_seconds', series),
    Math.floor(later.getTime() / 1000),
    'once it has passed, the next: no reload in between',
  )

  const past = [new Date(now - 86_400_000), new Date(now - 3_600_000)]
  metrics.certificateExpiry('sponsor', 'sponsor_client_ca', past)
  t.equal(
    metricValue(await metrics.render(), 'ecluse_certificate_expiry_timestamp_seconds', series),
    Math.floor(past[1]!.getTime() / 1000),
    'every CA past: the last to go, in the past (the alert fires)',
  )
  metrics.clearCertificateExpiry()
  t.notMatch(await metrics.render(), /ecluse_certificate_expiry_timestamp_seconds\{/, 'a cleared bundle leaves no series')
})
