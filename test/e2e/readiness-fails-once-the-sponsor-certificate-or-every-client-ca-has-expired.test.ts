/**
 * From the admin review: `/readyz` said `certificates: ok` as a constant. Past the sponsor
 * certificate's notAfter every client handshake fails, and past the last client CA's every client
 * certificate is refused, yet the pod stayed ready and kept its traffic (a restart would not even
 * boot: both are refused at load). An upstream's expiry was seen, through its probe's fresh
 * handshake; the sponsor side has no probe.
 */
import { writeFile } from 'node:fs/promises'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { createCa, DEV_LEAF_SPECS } from '../../src/pki/dev-pki.js'
import { Harness } from '../helpers/harness.js'
import { issueCertificate, makeTestPki, saveTestCert } from '../helpers/pki.js'

const LIFETIME_MS = 3_000

async function readyz(h: Harness): Promise<{ status: number; body: { status: string; checks: Record<string, string> } }> {
  const res = await fetch(`${h.adminOrigin}/readyz`)
  return { status: res.status, body: (await res.json()) as { status: string; checks: Record<string, string> } }
}

/** A notAfter LIFETIME_MS from now, on a whole second (X.509 times have no fraction). */
function soon(): Date {
  return new Date(Math.ceil((Date.now() + LIFETIME_MS) / 1000) * 1000)
}

/** Waits past `notAfter` and past the cached readiness answer (2 s). */
async function pastExpiry(notAfter: Date): Promise<void> {
  await sleep(notAfter.getTime() - Date.now() + 2_200)
}

t.test('past the sponsor certificate’s notAfter the gateway is not ready: certificate_expired', async (t) => {
  const pki = await makeTestPki()
  const notAfter = soon()
  const shortLived = await saveTestCert(
    'short-lived-sponsor-server',
    issueCertificate(pki.sponsorCa, { ...DEV_LEAF_SPECS.gatewaySponsorServer, notBefore: new Date(Date.now() - 60_000), notAfter }),
  )
  const h = await Harness.start({ sponsor: { tls: { cert: shortLived.certPath, key: shortLived.keyPath } } })
  t.teardown(() => h.close())
  const before = await readyz(h)
  t.equal(before.status, 200)
  t.equal(before.body.checks['certificates'], 'ok')
  await pastExpiry(notAfter)
  const after = await readyz(h)
  t.equal(after.status, 503, 'not ready')
  t.equal(after.body.checks['certificates'], 'certificate_expired', 'the code, without the detail')
  t.equal(after.body.checks['upstream:backend'], 'ok', 'the upstream still answers')
  // Control: what the check stands for. A client's handshake fails now.
  await t.rejects(h.request('/v1/records/1'), 'a client refuses the expired certificate')
})

t.test('past the notAfter of every client CA the gateway is not ready: certificate_expired', async (t) => {
  const notAfter = soon()
  const ca = createCa('Short-lived sponsor CA', { notBefore: new Date(Date.now() - 60_000), notAfter })
  const shortCa = await saveTestCert('short-lived-sponsor-ca', ca)
  const h = await Harness.start({ sponsor: { tls: { clientCa: shortCa.certPath } } })
  t.teardown(() => h.close())
  t.equal((await readyz(h)).status, 200)
  await pastExpiry(notAfter)
  const after = await readyz(h)
  t.equal(after.status, 503, 'not ready')
  t.equal(after.body.checks['certificates'], 'certificate_expired')
  t.match(
    h.logs.text(),
    /sponsor\.tls\.clientCa: no CA certificate of the bundle is within its validity/,
    'the detail is in the log',
  )
})

t.test('from the re-review: an expired CA beside one not valid yet is no CA at all: certificate_expired', async (t) => {
  // The next CA staged ahead of its notBefore: boot would refuse the bundle once the old one has
  // expired, and no client can be verified meanwhile.
  const notAfter = soon()
  const old = createCa('Short-lived sponsor CA', { notBefore: new Date(Date.now() - 60_000), notAfter })
  const next = createCa('Next sponsor CA', { notBefore: new Date(Date.now() + 86_400_000), notAfter: new Date(Date.now() + 400 * 86_400_000) })
  const bundle = await saveTestCert('short-lived-and-next-sponsor-ca', old)
  await writeFile(bundle.certPath, old.certPem + next.certPem)
  const h = await Harness.start({ sponsor: { tls: { clientCa: bundle.certPath } } })
  t.teardown(() => h.close())
  t.equal((await readyz(h)).status, 200)
  await pastExpiry(notAfter)
  const after = await readyz(h)
  t.equal(after.status, 503, 'not ready')
  t.equal(after.body.checks['certificates'], 'certificate_expired')
})
