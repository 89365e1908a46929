import { copyFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { Harness, metricValue } from '../helpers/harness.js'

t.test('a reload with a broken certificate keeps the old state and says why; a good reload applies', async (t) => {
  const h = await Harness.start()
  t.teardown(() => h.close())
  t.equal((await h.request('/v1/records/1')).status, 200)

  // Point the sponsor certificate at a file that is not a certificate.
  const broken = join(h.dir, 'broken.crt')
  await writeFile(broken, '-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n')
  const sponsor = h.config['sponsor'] as { tls: Record<string, unknown> }
  await h.writeConfig({ ...h.config, sponsor: { ...sponsor, tls: { ...sponsor.tls, cert: broken } } })
  const failed = await h.gateway.reload()
  t.equal(failed.ok, false)
  t.match((failed as { error: string }).error, /sponsor\.tls\.cert/, 'the error names the offending key')
  t.equal((await h.request('/v1/records/1')).status, 200, 'still serving with the old certificate')
  t.ok(h.logs.find('reload failed; keeping the previous configuration and certificates').length === 1)

  // A good reload: a copy of the certificate and a new route.
  const copy = join(h.dir, 'copy.crt')
  await copyFile(h.pki.gatewaySponsorServer.certPath, copy)
  const routes = [
    ...(h.config['routes'] as object[]),
    { name: 'added', methods: ['GET'], path: '/v1/added', allow: ['uri:spiffe://sponsor.test/accreditation-app'], upstream: 'backend' },
  ]
  t.equal((await h.request('/v1/added')).status, 404, 'the route does not exist yet')
  await h.writeConfig({ ...h.config, routes, sponsor: { ...sponsor, tls: { ...sponsor.tls, cert: copy } } })
  t.same(await h.gateway.reload(), { ok: true })
  t.equal((await h.request('/v1/added')).status, 200, 'the new route is live')
  const metrics = await h.metrics()
  t.equal(metricValue(metrics, 'ecluse_reloads_total', { result: 'failed' }), 1)
  t.equal(metricValue(metrics, 'ecluse_reloads_total', { result: 'ok' }), 1)
})
