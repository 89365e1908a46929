import { X509Certificate } from 'node:crypto'
import { copyFile, writeFile } from 'node:fs/promises'
import type { IncomingMessage } from 'node:http'
import { join } from 'node:path'
import type { TLSSocket } from 'node:tls'
import t from 'tap'
import { Harness, metricValue } from '../helpers/harness.js'
import { issueCertificate, saveTestCert, weakRsaKeyPem } from '../helpers/pki.js'

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
  t.match(await h.gateway.reload(), { ok: true })
  t.equal((await h.request('/v1/added')).status, 200, 'the new route is live')
  // What it runs with now, so that a reload of files not yet refreshed can be told from a real one.
  const [reloaded] = h.logs.find('reloaded') as Array<{ loaded: { certificates: Record<string, string>; caBundles: Record<string, string> } }>
  const started = h.logs.find('écluse gateway started')[0] as { loaded: { certificates: Record<string, string> } }
  const fingerprint = new X509Certificate(h.pki.gatewaySponsorServer.certPem).fingerprint256
  t.equal(started.loaded.certificates['sponsor_server'], fingerprint, 'the boot line names the certificates by fingerprint')
  t.equal(reloaded!.loaded.certificates['sponsor_server'], fingerprint, 'and so does the reload line')
  t.equal(reloaded!.loaded.certificates['upstream:backend'], new X509Certificate(h.pki.gatewayTrustedClient.certPem).fingerprint256)
  t.match(reloaded!.loaded.caBundles, { sponsor_clients: /^sha256:[0-9a-f]{64}$/, 'upstream:backend': /^sha256:[0-9a-f]{64}$/ })
  t.notMatch(JSON.stringify(h.logs.lines), /PRIVATE KEY/, 'no key material in any log line')
  const metrics = await h.metrics()
  t.equal(metricValue(metrics, 'ecluse_reloads_total', { result: 'failed' }), 1)
  t.equal(metricValue(metrics, 'ecluse_reloads_total', { result: 'ok' }), 1)
})

t.test('a reload that fails on any certificate changes none: the upstream client certificate rotated in the same reload stays the old one', async (t) => {
  const h = await Harness.start()
  t.teardown(() => h.close())
  const presented: string[] = []
  h.upstream.server.prependListener('request', (req: IncomingMessage) => {
    presented.push((req.socket as TLSSocket).getPeerCertificate().fingerprint256)
  })
  // The gateway's client pair at paths of this test's own, so that it can be replaced in place.
  const clientCert = join(h.dir, 'client.crt')
  const clientKey = join(h.dir, 'client.key')
  await copyFile(h.pki.gatewayTrustedClient.certPath, clientCert)
  await copyFile(h.pki.gatewayTrustedClient.keyPath, clientKey)
  const upstreams = h.config['upstreams'] as { backend: { tls: Record<string, unknown> } }
  const sponsor = h.config['sponsor'] as { tls: Record<string, unknown> }
  const withClient = { ...h.config, upstreams: { backend: { ...upstreams.backend, tls: { ...upstreams.backend.tls, cert: clientCert, key: clientKey } } } }
  await h.writeConfig(withClient)
  t.match(await h.gateway.reload(), { ok: true })
  t.equal((await h.request('/v1/records/1')).status, 200)
  const before = presented.at(-1)

  // The operator rotates the client pair in place and, in the same reload, installs a sponsor
  // certificate that is refused (a 512-bit key) though it is otherwise well formed.
  const rotated = issueCertificate(h.pki.trustedCa, { commonName: 'ecluse-gateway', uris: ['spiffe://trusted.test/ecluse-gateway'], usage: 'client' })
  await writeFile(clientCert, rotated.certPem)
  await writeFile(clientKey, rotated.keyPem, { mode: 0o600 })
  const weakKey = weakRsaKeyPem()
  const weak = await saveTestCert(
    'weak-sponsor-server',
    issueCertificate(h.pki.sponsorCa, { commonName: 'ecluse.sponsor.test', dnsNames: ['localhost'], ips: ['127.0.0.1'], usage: 'server', keyPem: weakKey }),
  )
  await h.writeConfig({ ...withClient, sponsor: { ...sponsor, tls: { ...sponsor.tls, cert: weak.certPath, key: weak.keyPath } } })
  const failed = await h.gateway.reload()
  t.equal(failed.ok, false, 'the reload fails')
  t.match((failed as { error: string }).error, /sponsor\.tls\.cert: .*has an RSA key of 512 bits/)
  t.equal((await h.request('/v1/records/2')).status, 200, 'still serving')
  t.equal(presented.at(-1), before, 'the upstream still sees the old client certificate: nothing was half-applied')
  t.not(before, new X509Certificate(rotated.certPem).fingerprint256)
})

t.test('reloads asked for together run one at a time: those asked for during one share a single reload after it', async (t) => {
  const h = await Harness.start()
  t.teardown(() => h.close())
  const route = { name: 'added', methods: ['GET'], path: '/v1/added', allow: ['uri:spiffe://sponsor.test/accreditation-app'], upstream: 'backend' }
  await h.writeConfig({ ...h.config, routes: [...(h.config['routes'] as object[]), route] })
  // Side by side, two reloads could finish out of order and leave the older files' state in place.
  const first = h.gateway.reload()
  const again = [h.gateway.reload(), h.gateway.reload(), h.gateway.reload()]
  t.not(again[0], first, 'one asked for during a reload is not answered by it (the files may have changed since it read them)')
  t.equal(again[0], again[2], 'those asked for meanwhile share one reload')
  t.match(await first, { ok: true })
  for (const r of await Promise.all(again)) t.match(r, { ok: true })
  t.equal(h.logs.find('reloaded').length, 2, 'two reloads in turn, not four side by side')
  t.equal(metricValue(await h.metrics(), 'ecluse_reloads_total', { result: 'ok' }), 2)
  t.equal((await h.request('/v1/added')).status, 200)
})
