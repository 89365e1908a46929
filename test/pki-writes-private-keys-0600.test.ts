// generateDevPki writes keys 0600 in a 0700 directory, leaves an existing set alone, replaces it only
// with force, and refuses (without writing) an incomplete or expired set.
import { X509Certificate } from 'node:crypto'
import { chmod, mkdtemp, readFile, rm, stat, unlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { type DevPki, devPkiPaths, generateDevPki, issueCertificate } from '../src/pki/dev-pki.js'

const NAMES = [
  'sponsorCa',
  'trustedCa',
  'gatewaySponsorServer',
  'sponsorClient',
  'trustedServer',
  'gatewayTrustedClient',
] as const

const mode = async (file: string) => (await stat(file)).mode & 0o777

async function snapshot(pki: DevPki): Promise<Record<string, string>> {
  const out: Record<string, string> = {}
  for (const n of NAMES) {
    out[pki[n].cert] = await readFile(pki[n].cert, 'utf8')
    out[pki[n].key] = await readFile(pki[n].key, 'utf8')
  }
  return out
}

t.test('the development PKI is written with private keys 0600, idempotently', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'ecluse-pki-modes-'))
  t.teardown(() => rm(root, { recursive: true, force: true }))
  const outDir = join(root, 'nested', 'certs')

  const pki = await generateDevPki({ outDir, validityDays: 30 })
  t.same(pki, devPkiPaths(outDir), 'the returned paths are devPkiPaths(outDir)')
  t.equal(pki.sponsorCa.cert, join(outDir, 'sponsor-ca.crt'))
  t.equal(pki.gatewayTrustedClient.key, join(outDir, 'gateway-trusted-client.key'))
  t.equal(await mode(outDir), 0o700, 'a missing directory is created 0700')
  for (const n of NAMES) {
    t.equal(await mode(pki[n].key), 0o600, `${n} key is 0600`)
    t.equal(await mode(pki[n].cert), 0o644, `${n} certificate is 0644`)
  }
  const ca = new X509Certificate(await readFile(pki.sponsorCa.cert))
  const days = (Date.parse(ca.validTo) - Date.now()) / 86_400_000
  t.ok(days > 29.9 && days <= 30, 'validityDays is honoured')

  t.test('a second call leaves every file alone', async (t) => {
    const before = await snapshot(pki)
    const stamps = await Promise.all(NAMES.map(async (n) => (await stat(pki[n].key)).mtimeMs))
    t.same(await generateDevPki({ outDir }), pki)
    t.same(await snapshot(pki), before)
    t.same(await Promise.all(NAMES.map(async (n) => (await stat(pki[n].key)).mtimeMs)), stamps)
  })

  t.test('an incomplete set is refused with tls_material_invalid and nothing is written', async (t) => {
    const before = await snapshot(pki)
    const clientKey = before[pki.sponsorClient.key]!
    await unlink(pki.sponsorClient.key)
    await t.rejects(generateDevPki({ outDir }), { code: 'tls_material_invalid', message: /sponsor-client\.key/ })
    await writeFile(pki.sponsorClient.key, clientKey, { mode: 0o600 })
    t.same(await snapshot(pki), before)
  })

  t.test('an expired certificate in the set is refused with tls_material_invalid', async (t) => {
    const original = await readFile(pki.trustedServer.cert, 'utf8')
    const trustedCa = {
      certPem: await readFile(pki.trustedCa.cert, 'utf8'),
      keyPem: await readFile(pki.trustedCa.key, 'utf8'),
    }
    const expired = issueCertificate(trustedCa, {
      commonName: 'accreditation.trusted.test',
      dnsNames: ['accreditation.trusted.test'],
      usage: 'server',
      notBefore: new Date(Date.now() - 2 * 86_400_000),
      notAfter: new Date(Date.now() - 86_400_000),
      keyPem: await readFile(pki.trustedServer.key, 'utf8'),
    })
    await writeFile(pki.trustedServer.cert, expired.certPem)
    await t.rejects(generateDevPki({ outDir }), { code: 'tls_material_invalid', message: /trusted-server\.crt expired/ })
    await writeFile(pki.trustedServer.cert, original)
  })

  t.test('force replaces every file and restores 0600 on a loosened key', async (t) => {
    const before = await snapshot(pki)
    await chmod(pki.sponsorCa.key, 0o644)
    t.same(await generateDevPki({ outDir, force: true }), pki)
    const after = await snapshot(pki)
    for (const file of Object.keys(before)) t.not(after[file], before[file], `${file} was regenerated`)
    for (const n of NAMES) t.equal(await mode(pki[n].key), 0o600, `${n} key is 0600`)
    const leaf = new X509Certificate(after[pki.sponsorClient.cert]!)
    t.ok(leaf.checkIssued(new X509Certificate(after[pki.sponsorCa.cert]!)), 'the new set is consistent')
  })
})
