/**
 * Prometheus' `increase()` sees nothing in a series that first appears already at 1: the shipped
 * alerts on transform refusals (`EclusePlaintextRefused`) and upstream errors
 * (`EcluseUpstreamTLSFailures`) would miss a one-off event. So those series exist at 0 from boot:
 * every configured upstream's error kinds, and the refusal reasons of every route with transforms.
 */
import { X509Certificate } from 'node:crypto'
import { writeFile } from 'node:fs/promises'
import t from 'tap'
import { stringify } from 'yaml'
import { metricValue } from './helpers/harness.js'
import { SPONSOR_APP, startSealing, tempDir, writeKeyFiles } from './helpers/sealing.js'

t.test('the series the alerts watch are at 0 from boot, then count the first event', async (t) => {
  const dir = await tempDir()
  const keys = await writeKeyFiles(dir, 'th')
  const s = await startSealing({
    dir,
    keys: { th: { file: keys.publicPath } },
    routes: [
      {
        name: 'verify',
        methods: ['POST'],
        path: '/v1/verify',
        allow: [SPONSOR_APP],
        upstream: 'backend',
        transforms: { request: [{ type: 'require-sealed', recipients: 'th', context: 'acc', fields: ['/passport'] }] },
      },
      { name: 'plain', methods: ['GET'], path: '/v1/plain', allow: [SPONSOR_APP], upstream: 'backend' },
    ],
  })
  t.teardown(s.close)

  const boot = await s.gw.metrics()
  const has = (text: string, line: string) => text.split('\n').includes(line)
  for (const reason of ['plaintext_refused', 'open_failed', 'seal_failed', 'json_invalid', 'value_too_large', 'unsupported_media_type', 'record_id_missing']) {
    t.ok(has(boot, `ecluse_transform_refusals_total{route="verify",reason="${reason}"} 0`), `refusals of ${reason} on a route with transforms exist at 0`)
  }
  t.notMatch(boot, /ecluse_transform_refusals_total\{route="plain"/, 'a route without transforms has none')
  for (const kind of ['upstream_tls', 'upstream_refused', 'upstream_reset', 'upstream_timeout']) {
    t.ok(has(boot, `ecluse_upstream_errors_total{upstream="backend",kind="${kind}"} 0`), `${kind} of the configured upstream exists at 0`)
  }

  // EcluseCertificateExpiresSoon watches the CA bundles too: an expired CA refuses every client it issued.
  const seconds = (pem: string) => Math.floor(new Date(new X509Certificate(pem).validTo).getTime() / 1000)
  t.equal(metricValue(boot, 'ecluse_certificate_expiry_timestamp_seconds', { side: 'sponsor', name: 'sponsor_client_ca' }), seconds(s.pki.sponsorCa.certPem))
  t.equal(metricValue(boot, 'ecluse_certificate_expiry_timestamp_seconds', { side: 'upstream', name: 'upstream_ca:backend' }), seconds(s.pki.trustedCa.certPem))

  const res = await s.gw.request('/v1/verify', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"passport":"P"}' })
  t.equal(res.status, 422)
  t.equal(metricValue(await s.gw.metrics(), 'ecluse_transform_refusals_total', { route: 'verify', reason: 'plaintext_refused' }), 1, 'then counts from there')
})

t.test('a reload that fails binds no series for the routes it would have added; one that succeeds does', async (t) => {
  const dir = await tempDir()
  const keys = await writeKeyFiles(dir, 'th')
  const verify = (name: string, recipients: string) => ({
    name,
    methods: ['POST'],
    path: `/v1/${name}`,
    allow: [SPONSOR_APP],
    upstream: 'backend',
    transforms: { request: [{ type: 'require-sealed', recipients, context: 'acc', fields: ['/passport'] }] },
  })
  const s = await startSealing({ dir, keys: { th: { file: keys.publicPath } }, routes: [verify('verify', 'th')] })
  t.teardown(s.close)
  const withRoutes = (routes: unknown[]) => writeFile(s.gw.configPath, stringify({ ...s.gw.config, routes }))

  // The new route names a key set that does not exist: its chain fails to compile.
  await withRoutes([verify('verify', 'th'), verify('added', 'nosuchset')])
  const failed = await s.gw.gateway.reload()
  t.equal(failed.ok, false, 'the reload fails')
  const after = await s.gw.metrics()
  t.notMatch(after, /route="added"/, 'no series of any family for a route that never served')
  t.match(after, /ecluse_transform_refusals_total\{route="verify",reason="open_failed"\} 0/, 'the live route keeps its series')

  await withRoutes([verify('verify', 'th'), verify('added', 'th')])
  t.match(await s.gw.gateway.reload(), { ok: true })
  const live = await s.gw.metrics()
  t.match(live, /ecluse_transform_refusals_total\{route="added",reason="plaintext_refused"\} 0/, 'the route that went live has its refusal series at 0')
  t.match(live, /ecluse_requests_total\{side="sponsor",route="added"\} 0/, 'and its request series')
})
