/**
 * Private key files that any user of the host can read are named in a warning at boot and at every
 * reload, not refused (Kubernetes mounts secrets 0644 unless told otherwise). Group-readable files,
 * as the Kubernetes example mounts them (0440), are not warned about.
 */
import { chmod } from 'node:fs/promises'
import t from 'tap'
import { Harness } from '../helpers/harness.js'
import { makeTestPki } from '../helpers/pki.js'

const WARNING = 'private key file is readable by every user of this host; make it 0600 (or 0640, 0440 for a group)'

t.test('a world-readable private key file is warned about by key path and file, at boot and at reload', async (t) => {
  // The test PKI is this process's own: its modes can change here.
  const pki = await makeTestPki()
  await chmod(pki.gatewaySponsorServer.keyPath, 0o644)
  await chmod(pki.gatewayTrustedClient.keyPath, 0o640)
  const h = await Harness.start()
  t.teardown(() => h.close())

  const atBoot = h.logs.find(WARNING)
  t.same(
    atBoot.map((l) => [l['level'], l['setting'], l['file']]),
    [['warn', 'sponsor.tls.key', pki.gatewaySponsorServer.keyPath]],
    'one warning at boot, for the world-readable key only (the group-readable one is fine)',
  )

  await chmod(pki.gatewayTrustedClient.keyPath, 0o604)
  await chmod(pki.gatewaySponsorServer.keyPath, 0o600)
  t.same(await h.gateway.reload(), { ok: true }, 'a warning does not fail the reload')
  const atReload = h.logs.find(WARNING).slice(atBoot.length)
  t.same(atReload.map((l) => l['setting']), ['upstreams.backend.tls.key'], 'at reload, the files as they are now')
  t.notMatch(h.logs.text(), /PRIVATE KEY/, 'no key material in the log')
  const res = await h.request('/v1/records/1')
  t.equal(res.status, 200, 'and the gateway serves')
})
