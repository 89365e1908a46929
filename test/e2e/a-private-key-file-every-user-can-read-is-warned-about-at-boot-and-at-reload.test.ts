/**
 * Private key files that any user of the host can read are named in a warning at boot and at every
 * reload, not refused (Kubernetes mounts secrets 0644 unless told otherwise). Group-readable files,
 * as the Kubernetes example mounts them (0440), are not warned about.
 */
import { chmod } from 'node:fs/promises'
import t from 'tap'
import { WRITABLE_FILE_WARNING } from '../../src/config/key-file-modes.js'
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
  t.match(await h.gateway.reload(), { ok: true }, 'a warning does not fail the reload')
  const atReload = h.logs.find(WARNING).slice(atBoot.length)
  t.same(atReload.map((l) => l['setting']), ['upstreams.backend.tls.key'], 'at reload, the files as they are now')
  t.notMatch(h.logs.text(), /PRIVATE KEY/, 'no key material in the log')
  const res = await h.request('/v1/records/1')
  t.equal(res.status, 200, 'and the gateway serves')
})

t.test('found by a review of reloads: a file every user can write, or replace through its folder, is warned about too', async (t) => {
  const h = await Harness.start()
  t.teardown(() => h.close())
  const writable = () => h.logs.lines.filter((l) => l['msg'] === WRITABLE_FILE_WARNING)
  t.same(writable(), [], 'none at boot: the files are the owner’s to write')

  await chmod(h.configPath, 0o666)
  t.match(await h.gateway.reload(), { ok: true }, 'a warning does not fail the reload')
  t.same(writable().map((l) => [l['level'], l['setting'], l['file']]), [['warn', 'the configuration file', h.configPath]], 'the configuration file any user may write')

  await chmod(h.configPath, 0o644)
  await chmod(h.dir, 0o777)
  t.teardown(() => chmod(h.dir, 0o700))
  t.match(await h.gateway.reload(), { ok: true })
  t.same(writable().slice(1).map((l) => l['setting']), ['the configuration file'], 'or whose folder any user may write: it can be replaced')

  await chmod(h.dir, 0o1777)
  t.match(await h.gateway.reload(), { ok: true })
  t.equal(writable().length, 2, 'a sticky folder keeps others to their own files: no warning')
})
