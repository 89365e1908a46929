import { createPrivateKey, X509Certificate } from 'node:crypto'
import { readFile, writeFile } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { join } from 'node:path'
import type * as Forge from 'node-forge'
import t from 'tap'
import type { Config } from '../src/config/schema.js'
import { loadAllTls, loadClientTls, loadServerTls } from '../src/config/tls-material.js'
import { EcluseError } from '../src/errors.js'
import { createCa } from '../src/pki/dev-pki.js'
import { commonName, makeCertificate, newKeyPair, subjectOf } from './helpers/handmade-certificates.js'
import { issueCertificate, makeTestPki, saveTestCert, type TestPki, weakRsaKeyPem } from './helpers/pki.js'

const pki: TestPki = await makeTestPki()
const DAY = 86_400_000

const sponsorTls = (over: Partial<Config['sponsor']['tls']> = {}): Config['sponsor']['tls'] => ({
  cert: pki.gatewaySponsorServer.certPath,
  key: pki.gatewaySponsorServer.keyPath,
  clientCa: pki.sponsorCa.certPath,
  minVersion: 'TLSv1.2',
  handshakeTimeoutMs: 5000,
  ...over,
})

const upstreamTls = (over: Partial<Config['upstreams'][string]['tls']> = {}): Config['upstreams'][string]['tls'] => ({
  ca: pki.trustedCa.certPath,
  cert: pki.gatewayTrustedClient.certPath,
  key: pki.gatewayTrustedClient.keyPath,
  minVersion: 'TLSv1.2',
  ...over,
})

/** Only what loadAllTls reads; the rest of a Config is irrelevant here. */
const configWith = (sponsor: Config['sponsor']['tls'], upstreams: Record<string, Config['upstreams'][string]['tls']>) =>
  ({
    sponsor: { tls: sponsor },
    upstreams: Object.fromEntries(Object.entries(upstreams).map(([name, tls]) => [name, { tls }])),
  }) as unknown as Config

/** The SHA-256 fingerprints of the PEM certificates in `pem`, in order. */
function fingerprints(pem: Buffer): string[] {
  const blocks = pem.toString('latin1').match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? []
  return blocks.map((block) => new X509Certificate(block).fingerprint256)
}

/** The base64 body of a PEM key: none of it may appear in a message. */
function keyFragments(pem: string): string[] {
  return pem
    .split('\n')
    .filter((l) => l.length > 0 && !l.startsWith('-----'))
    .map((l) => l.slice(0, 24))
}

async function failure(p: Promise<unknown>): Promise<EcluseError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  )
  if (!(err instanceof EcluseError)) throw new Error(`expected an EcluseError, got ${String(err)}`)
  return err
}

t.test('good material loads into Buffers, with the leaf expiry', async (t) => {
  const all = await loadAllTls(configWith(sponsorTls(), { accreditation: upstreamTls() }))
  // Certificates come back re-encoded from what was checked (the files' other bytes never reach
  // OpenSSL): the same certificates, in the same order; the key as it is.
  t.same(fingerprints(all.sponsor.cert), fingerprints(await readFile(pki.gatewaySponsorServer.certPath)))
  t.same(all.sponsor.key, await readFile(pki.gatewaySponsorServer.keyPath))
  t.same(fingerprints(all.sponsor.ca), fingerprints(await readFile(pki.sponsorCa.certPath)))
  t.ok(Buffer.isBuffer(all.sponsor.cert))
  t.ok(all.sponsor.notAfter instanceof Date)
  t.ok(all.sponsor.notAfter.getTime() > Date.now() + 300 * DAY, 'a year of validity')
  t.equal(all.sponsor.subject, 'CN=ecluse.sponsor.test')
  t.match(all.sponsor.fingerprint256, /^([0-9A-F]{2}:){31}[0-9A-F]{2}$/)
  t.same([...all.upstreams.keys()], ['accreditation'])
  t.same(fingerprints(all.upstreams.get('accreditation')!.ca), fingerprints(await readFile(pki.trustedCa.certPath)))
  t.same(all.sponsor.chainNotAfter, all.sponsor.notAfter, 'a chain of its leaf alone expires with it')
  t.same(all.sponsor.caNotAfter, new Date(new X509Certificate(pki.sponsorCa.certPem).validTo), 'the CA bundle expires with its CA')
  t.same(all.upstreams.get('accreditation')!.caNotAfter, new Date(new X509Certificate(pki.trustedCa.certPem).validTo))
})

t.test('a CA bundle expires with the soonest of its CAs, an expired one included, but for one renewed in it', async (t) => {
  const notAfterOf = (pem: string) => new Date(new X509Certificate(pem).validTo)
  const load = async (name: string, pems: string[]) => {
    const bundle = join(pki.dir, `${name}.pem`)
    await writeFile(bundle, pems.join(''))
    return (await loadAllTls(configWith({ ...sponsorTls(), clientCa: bundle }, { accreditation: upstreamTls() }))).sponsor
  }
  // A rotation: the bundle holds the sponsor CA and another one that expires sooner.
  const soon = createCa('Soon CA', { validityDays: 30 })
  t.same((await load('bundle-with-a-soon-ca', [pki.sponsorCa.certPem, soon.certPem])).caNotAfter, notAfterOf(soon.certPem))
  // From the re-review: an expired CA still refuses every client it issued, though the bundle's
  // other CA serves: the figure stays in the past (the alert fires) until it is taken out.
  const day = 86_400_000
  const expired = createCa('Expired CA', { notBefore: new Date(Date.now() - 30 * day), notAfter: new Date(Date.now() - day) })
  const withExpired = await load('bundle-with-an-expired-ca', [pki.sponsorCa.certPem, expired.certPem])
  t.same(withExpired.caNotAfter, notAfterOf(expired.certPem), 'an expired CA counts')
  t.same(
    withExpired.caValidity,
    [pki.sponsorCa.certPem, expired.certPem].map((pem) => {
      const c = new X509Certificate(pem)
      return [new Date(c.validFrom).getTime(), new Date(c.validTo).getTime()]
    }),
    'each CA’s validity, for readiness',
  )
  // Renewed in the bundle (the same name and key, valid for longer): its clients verify through
  // the renewal, and the renewal's expiry is what counts.
  const renewal = createCa('Expired CA', { keyPem: expired.keyPem, validityDays: 60 })
  t.same((await load('bundle-with-a-renewed-ca', [pki.sponsorCa.certPem, expired.certPem, renewal.certPem])).caNotAfter, notAfterOf(renewal.certPem))
})

t.test('a key that does not match the certificate is refused, naming the key and both files', async (t) => {
  const err = await failure(loadServerTls(sponsorTls({ key: pki.sponsorClient.keyPath })))
  t.equal(err.code, 'tls_material_invalid')
  t.equal(err.status, 500)
  t.equal(
    err.message,
    `sponsor.tls.key: ${pki.sponsorClient.keyPath}: does not match the certificate in ${pki.gatewaySponsorServer.certPath}`,
  )
  for (const fragment of keyFragments(pki.sponsorClient.keyPem)) t.notMatch(err.message, fragment)
})

t.test('an expired or not-yet-valid leaf is refused', async (t) => {
  // The expired sponsor client certificate, presented as the gateway's client certificate upstream.
  const err = await failure(
    loadClientTls(
      upstreamTls({ cert: pki.expiredSponsorClient.certPath, key: pki.sponsorClient.keyPath, ca: pki.sponsorCa.certPath }),
      { keyPath: 'upstreams.accreditation.tls' },
    ),
  )
  t.equal(err.code, 'tls_material_invalid')
  t.match(err.message, new RegExp(`^upstreams\\.accreditation\\.tls\\.cert: ${pki.expiredSponsorClient.certPath}: certificate expired on \\d{4}-`))

  const later = await failure(loadServerTls(sponsorTls(), { now: new Date(Date.now() + 400 * DAY) }))
  t.match(later.message, /^sponsor\.tls\.cert: .*: certificate expired on /)
  const earlier = await failure(loadServerTls(sponsorTls(), { now: new Date(Date.now() - DAY) }))
  t.match(earlier.message, /^sponsor\.tls\.cert: .*: certificate is not valid before /)
})

t.test('the sponsor CA trusted upstream (or the reverse) is refused, naming both keys', async (t) => {
  const same = await failure(loadAllTls(configWith(sponsorTls(), { accreditation: upstreamTls({ ca: pki.sponsorCa.certPath }) })))
  t.equal(same.code, 'tls_material_invalid')
  t.match(same.message, /^sponsor\.tls\.clientCa: /)
  t.match(same.message, `upstreams.accreditation.tls.ca (${pki.sponsorCa.certPath})`)
  t.match(same.message, 'must never trust each other')

  // A bundle that merely contains the other side's CA, next to its own.
  const dir = t.testdir()
  const mixed = join(dir, 'mixed-ca.crt')
  await writeFile(mixed, pki.sponsorCa.certPem + pki.trustedCa.certPem)
  const reverse = await failure(loadAllTls(configWith(sponsorTls({ clientCa: mixed }), { a: upstreamTls(), b: upstreamTls() })))
  const lines = reverse.message.split('\n')
  t.equal(lines.length, 2, 'one line per upstream that shares a CA')
  t.match(lines[0], 'upstreams.a.tls.ca')
  t.match(lines[1], 'upstreams.b.tls.ca')
  t.match(lines[0], '"CN=Écluse dev trusted CA"')
})

t.test('one key pair on both sides is refused, naming both certificates', async (t) => {
  // The gateway's trusted-side client certificate, issued by the trusted CA, on the sponsor listener's key.
  const twin = await saveTestCert(
    'trusted-client-on-the-sponsor-key',
    issueCertificate(pki.trustedCa, { commonName: 'gateway.trusted.test', uris: ['spiffe://trusted.test/gateway'], usage: 'client', keyPem: pki.gatewaySponsorServer.keyPem }),
  )
  const err = await failure(loadAllTls(configWith(sponsorTls(), { accreditation: upstreamTls({ cert: twin.certPath, key: twin.keyPath }) })))
  t.equal(err.code, 'tls_material_invalid')
  t.ok(
    err.message.startsWith(`upstreams.accreditation.tls.cert: ${twin.certPath}: has the same key as sponsor.tls.cert (${pki.gatewaySponsorServer.certPath})`),
    err.message,
  )
  t.match(err.message, 'must never share a key pair')
  t.ok((await loadAllTls(configWith(sponsorTls(), { accreditation: upstreamTls() }))).upstreams.has('accreditation'), 'each side its own key: loads')
})

t.test('bundles, chains and files that are not what their key says are refused', async (t) => {
  const dir = t.testdir()
  const file = async (name: string, content: string) => {
    const path = join(dir, name)
    await writeFile(path, content)
    return path
  }
  const leafAsCa = await file('leaf-as-ca.crt', pki.sponsorCa.certPem + pki.sponsorClient.certPem)
  const empty = await file('empty.crt', '')
  const withKey = await file('with-key.crt', pki.gatewaySponsorServer.certPem + pki.gatewaySponsorServer.keyPem)
  const wrongChain = await file('wrong-chain.crt', pki.gatewaySponsorServer.certPem + pki.trustedCa.certPem)
  const encrypted = await file(
    'encrypted.key',
    createPrivateKey(pki.gatewaySponsorServer.keyPem).export({
      type: 'pkcs8',
      format: 'pem',
      cipher: 'aes-256-cbc',
      passphrase: 'x',
    }) as string,
  )
  // Thunks: each load starts only when its case is checked, so no rejection is left unhandled.
  const cases: Array<[string, () => Promise<unknown>, RegExp | string]> = [
    [
      'a leaf in a CA bundle',
      () => loadServerTls(sponsorTls({ clientCa: leafAsCa })),
      /^sponsor\.tls\.clientCa: .*leaf-as-ca\.crt: certificate 2 \("CN=accreditation-app, OU=accreditation"\) is not a CA certificate$/,
    ],
    ['an empty CA bundle', () => loadServerTls(sponsorTls({ clientCa: empty })), /^sponsor\.tls\.clientCa: .*empty\.crt: no PEM certificate found$/],
    [
      'a certificate file carrying a private key',
      () => loadServerTls(sponsorTls({ cert: withKey })),
      /^sponsor\.tls\.cert: .*with-key\.crt: contains a private key; certificate files must not$/,
    ],
    [
      'a chain not in issuing order',
      () => loadServerTls(sponsorTls({ cert: wrongChain })),
      /^sponsor\.tls\.cert: .*: certificate 2 did not issue certificate 1: the chain must be in order, leaf first$/,
    ],
    [
      'a CA certificate as the leaf',
      () => loadServerTls(sponsorTls({ cert: pki.sponsorCa.certPath, key: pki.sponsorCa.keyPath })),
      /^sponsor\.tls\.cert: .*: the first certificate is a CA certificate, not a leaf$/,
    ],
    [
      'a client certificate as the server certificate',
      () => loadServerTls(sponsorTls({ cert: pki.sponsorClient.certPath, key: pki.sponsorClient.keyPath })),
      /^sponsor\.tls\.cert: .*: certificate extendedKeyUsage does not allow TLS server authentication$/,
    ],
    [
      'a server certificate as the client certificate',
      () => loadClientTls(upstreamTls({ cert: pki.trustedServer.certPath, key: pki.trustedServer.keyPath }), { keyPath: 'upstreams.x.tls' }),
      /^upstreams\.x\.tls\.cert: .*: certificate extendedKeyUsage does not allow TLS client authentication$/,
    ],
    [
      'a passphrase-protected key',
      () => loadServerTls(sponsorTls({ key: encrypted })),
      /^sponsor\.tls\.key: .*encrypted\.key: encrypted private keys are not supported$/,
    ],
    ['a certificate where the key should be', () => loadServerTls(sponsorTls({ key: pki.gatewaySponsorServer.certPath })), /^sponsor\.tls\.key: .*: not a PEM private key$/],
    // Found by review: a value that does not open may be no path (key material pasted in its place): not quoted.
    ['a missing file', () => loadServerTls(sponsorTls({ cert: join(dir, 'nope.crt') })), /^sponsor\.tls\.cert: the file it names: cannot read \(ENOENT\)$/],
  ]
  t.plan(cases.length * 2)
  for (const [name, load, message] of cases) {
    const err = await failure(load())
    t.equal(err.code, 'tls_material_invalid', name)
    t.match(err.message, message, name)
  }
})

t.test('every broken side is reported at once, one line each', async (t) => {
  const err = await failure(
    loadAllTls(
      configWith(sponsorTls({ key: pki.sponsorClient.keyPath }), {
        accreditation: upstreamTls({ key: pki.trustedServer.keyPath }),
      }),
    ),
  )
  const lines = err.message.split('\n')
  t.equal(lines.length, 2)
  t.match(lines[0], /^sponsor\.tls\.key: /)
  t.match(lines[1], /^upstreams\.accreditation\.tls\.key: /)
})

t.test('found by review: a key too weak for the TLS policy is refused, in a leaf, a chain or a bundle, naming the file', async (t) => {
  // OpenSSL's default security level takes RSA-1024 (in our certificates and in the peer's), and
  // Node's P-192 server key boots and then fails every handshake: refused at load instead.
  for (const bits of [512, 1024]) {
    const weakKey = weakRsaKeyPem(bits)
    const weak = await saveTestCert(
      `weak-${bits}-sponsor-server`,
      issueCertificate(pki.sponsorCa, { commonName: 'ecluse.sponsor.test', dnsNames: ['localhost'], usage: 'server', keyPem: weakKey }),
    )
    const err = await failure(loadServerTls(sponsorTls({ cert: weak.certPath, key: weak.keyPath })))
    t.equal(err.code, 'tls_material_invalid')
    t.equal(err.message, `sponsor.tls.cert: ${weak.certPath}: certificate has an RSA key of ${bits} bits (at least 2048 are required)`)
    for (const fragment of keyFragments(weakKey)) t.notOk(err.message.includes(fragment), 'no key bytes in the message')
  }
  // A weak CA in a bundle: whoever factors its key issues certificates the gateway trusts.
  const weakCa = createCa('Weak CA', { keyPem: weakRsaKeyPem(1024) })
  const bundle = join(pki.dir, 'bundle-with-a-weak-ca.pem')
  await writeFile(bundle, pki.sponsorCa.certPem + weakCa.certPem)
  const err = await failure(loadServerTls({ ...sponsorTls(), clientCa: bundle }))
  t.equal(err.message, `sponsor.tls.clientCa: ${bundle}: certificate 2 ("CN=Weak CA") has an RSA key of 1024 bits (at least 2048 are required)`)
  // 2048 bits is the floor, not above it.
  t.ok(await loadServerTls(sponsorTls()), 'the test PKI (RSA-2048) loads')
})

/** An intermediate CA issued by the sponsor CA, its signature over `digest` (one key for all). */
const intermediateKeys = newKeyPair()
function intermediate(name: string, digest: 'sha1' | 'sha256' | 'ripemd160'): string {
  return makeCertificate({
    subject: commonName(name),
    issuer: subjectOf(pki.sponsorCa.certPem),
    publicKeyPem: intermediateKeys.publicKey,
    signingKeyPem: pki.sponsorCa.keyPem,
    ca: true,
    keyUsage: { keyCertSign: true, cRLSign: true },
    digest,
  })
}

t.test('found by review: a bundle CA signed with SHA-1 is refused (OpenSSL loads bundles unchecked); a self-signed one is not', async (t) => {
  const dir = t.testdir()
  const bundle = join(dir, 'bundle-with-a-sha1-intermediate.pem')
  await writeFile(bundle, pki.sponsorCa.certPem + intermediate('SHA-1 Intermediate CA', 'sha1'))
  const err = await failure(loadServerTls({ ...sponsorTls(), clientCa: bundle }))
  t.equal(err.message, `sponsor.tls.clientCa: ${bundle}: certificate 2 ("CN=SHA-1 Intermediate CA") is signed with SHA-1 with RSA (RSA, ECDSA or RSASSA-PSS over SHA-224 or stronger, or EdDSA, is required)`)

  // Found by review: the check listed weak algorithms, and any other passed (RIPEMD-160, which
  // security level 2 refuses too). Now only the strong ones are accepted.
  await writeFile(bundle, pki.sponsorCa.certPem + intermediate('RIPEMD-160 Intermediate CA', 'ripemd160'))
  const other = await failure(loadServerTls({ ...sponsorTls(), clientCa: bundle }))
  t.equal(
    other.message,
    `sponsor.tls.clientCa: ${bundle}: certificate 2 ("CN=RIPEMD-160 Intermediate CA") is signed with the algorithm 1.3.36.3.3.1.2 (RSA, ECDSA or RSASSA-PSS over SHA-224 or stronger, or EdDSA, is required)`,
  )

  // The same intermediate signed with SHA-256 is accepted: the digest is what was refused.
  await writeFile(bundle, pki.sponsorCa.certPem + intermediate('SHA-256 Intermediate CA', 'sha256'))
  t.ok(await loadServerTls({ ...sponsorTls(), clientCa: bundle }))

  // A self-signed root's own signature is never checked as an anchor's: SHA-1 there is no weakness.
  const rootKeys = newKeyPair()
  const sha1Root = makeCertificate({
    subject: commonName('Old SHA-1 Root'),
    issuer: commonName('Old SHA-1 Root'),
    publicKeyPem: rootKeys.publicKey,
    signingKeyPem: rootKeys.privateKey,
    ca: true,
    keyUsage: { keyCertSign: true, cRLSign: true },
    digest: 'sha1',
  })
  await writeFile(bundle, pki.sponsorCa.certPem + sha1Root)
  t.ok(await loadServerTls({ ...sponsorTls(), clientCa: bundle }), 'a self-signed SHA-1 root is accepted')
})

t.test('found by review: a bundle CA whose RSASSA-PSS parameters do not parse is refused naming the key, not with a TypeError', async (t) => {
  const forge: typeof Forge = createRequire(import.meta.url)('node-forge')
  const A = forge.asn1
  const signed = intermediate('PSS Intermediate CA', 'sha256')
  /** The intermediate with its outer signatureAlgorithm replaced by RSASSA-PSS with `params`. */
  const withPss = (params: Forge.asn1.Asn1[]) => {
    const cert = A.fromDer(forge.pem.decode(signed)[0]!.body)
    ;(cert.value as Forge.asn1.Asn1[])[1] = A.create(A.Class.UNIVERSAL, A.Type.SEQUENCE, true, [
      A.create(A.Class.UNIVERSAL, A.Type.OID, false, A.oidToDer('1.2.840.113549.1.1.10').getBytes()),
      A.create(A.Class.UNIVERSAL, A.Type.SEQUENCE, true, params),
    ])
    return forge.pem.encode({ type: 'CERTIFICATE', body: A.toDer(cert).getBytes() })
  }
  const bundle = join(t.testdir(), 'bundle-with-a-bad-pss-intermediate.pem')
  // `[0] {}`: a hashAlgorithm that holds no AlgorithmIdentifier. Node parses the certificate.
  await writeFile(bundle, pki.sponsorCa.certPem + withPss([A.create(A.Class.CONTEXT_SPECIFIC, 0, true, [])]))
  t.ok(new X509Certificate(await readFile(bundle)), 'Node parses it')
  const err = await failure(loadServerTls({ ...sponsorTls(), clientCa: bundle }))
  t.equal(err.code, 'tls_material_invalid')
  t.equal(err.message, `sponsor.tls.clientCa: ${bundle}: certificate 2 ("CN=PSS Intermediate CA") is signed with RSASSA-PSS whose parameters do not parse (RFC 4055 §3.1)`)
  // No parameters at all: SHA-1 by RFC 4055's default, refused as such.
  await writeFile(bundle, pki.sponsorCa.certPem + withPss([]))
  const sha1 = await failure(loadServerTls({ ...sponsorTls(), clientCa: bundle }))
  t.match(sha1.message, /is signed with RSASSA-PSS over SHA-1 \(SHA-224 or stronger is required\)$/)
})

t.test('material only OpenSSL refuses (a leaf signed with SHA-1) fails the load, naming the file, before any use', async (t) => {
  const leafKeys = newKeyPair()
  const certPem = makeCertificate({
    subject: commonName('ecluse.sponsor.test'),
    issuer: subjectOf(pki.sponsorCa.certPem),
    publicKeyPem: leafKeys.publicKey,
    signingKeyPem: pki.sponsorCa.keyPem,
    ca: false,
    digest: 'sha1',
  })
  const dir = t.testdir()
  const certPath = join(dir, 'sha1-server.crt')
  const keyPath = join(dir, 'sha1-server.key')
  await writeFile(certPath, certPem)
  await writeFile(keyPath, leafKeys.privateKey, { mode: 0o600 })
  const err = await failure(loadServerTls(sponsorTls({ cert: certPath, key: keyPath })))
  t.equal(err.code, 'tls_material_invalid')
  t.match(err.message, `sponsor.tls.cert: ${certPath}: rejected by OpenSSL with ${keyPath}`)
  t.match(err.message, /md too weak/)
  for (const fragment of keyFragments(leafKeys.privateKey)) t.notOk(err.message.includes(fragment), 'no key bytes in the message')
})

t.test('found by review: a bundle cannot hide the other side’s CA in a block the checks did not read', async (t) => {
  const dir = t.testdir()
  const body = (pem: string) => pem.replace(/-----(BEGIN|END) CERTIFICATE-----/g, '').trim()
  const variants: Array<[string, string, RegExp]> = [
    ['X509 CERTIFICATE', `-----BEGIN X509 CERTIFICATE-----\n${body(pki.sponsorCa.certPem)}\n-----END X509 CERTIFICATE-----\n`, /holds a "X509 CERTIFICATE" PEM block; only CERTIFICATE blocks are read/],
    ['TRUSTED CERTIFICATE', `-----BEGIN TRUSTED CERTIFICATE-----\n${body(pki.sponsorCa.certPem)}\n-----END TRUSTED CERTIFICATE-----\n`, /holds a "TRUSTED CERTIFICATE" PEM block/],
    ['a BEGIN line with trailing spaces', pki.sponsorCa.certPem.replace('-----BEGIN CERTIFICATE-----', '-----BEGIN CERTIFICATE-----  '), /not spelt exactly/],
  ]
  for (const [what, hidden, message] of variants) {
    // The trusted CA as it should be, then the sponsor CA in a form OpenSSL reads and the checks did not.
    const path = join(dir, `${what.replaceAll(' ', '-')}.crt`)
    await writeFile(path, pki.trustedCa.certPem + hidden)
    const err = await failure(loadAllTls(configWith(sponsorTls(), { accreditation: upstreamTls({ ca: path }) })))
    t.equal(err.code, 'tls_material_invalid', what)
    t.match(err.message, message, what)
  }
  // What OpenSSL is given is the certificates that were checked, re-encoded: comments and other
  // text around them are not passed on.
  const commented = join(dir, 'commented.crt')
  await writeFile(commented, `# the trusted CA\n${pki.trustedCa.certPem}`)
  const loaded = await loadAllTls(configWith(sponsorTls(), { accreditation: upstreamTls({ ca: commented }) }))
  t.equal(loaded.upstreams.get('accreditation')!.ca.toString(), new X509Certificate(pki.trustedCa.certPem).toString())
})

t.test('found by review: a CA on one side that issued a CA the other side trusts is refused', async (t) => {
  const forge: typeof Forge = createRequire(import.meta.url)('node-forge')
  // A corporate root R, and an intermediate I it signed: R as the sponsor clientCa, I as the
  // upstream's trust anchor. They share no certificate, yet every client I issues chains to R.
  const root = createCa('Corporate root')
  const intermediateKey = forge.pki.rsa.generateKeyPair(2048)
  const cert = forge.pki.createCertificate()
  cert.publicKey = intermediateKey.publicKey
  cert.serialNumber = '02'
  cert.validity.notBefore = new Date(Date.now() - 60_000)
  cert.validity.notAfter = new Date(Date.now() + 30 * DAY)
  cert.setSubject([{ shortName: 'CN', value: 'Trusted-side intermediate' }])
  cert.setIssuer(forge.pki.certificateFromPem(root.certPem).subject.attributes)
  cert.setExtensions([{ name: 'basicConstraints', cA: true, critical: true }, { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true }])
  cert.sign(forge.pki.privateKeyFromPem(root.keyPem), forge.md.sha256.create())
  const dir = t.testdir()
  const rootPath = join(dir, 'root.crt')
  const intermediatePath = join(dir, 'intermediate.crt')
  await writeFile(rootPath, root.certPem)
  await writeFile(intermediatePath, forge.pki.certificateToPem(cert))

  const err = await failure(loadAllTls(configWith(sponsorTls({ clientCa: rootPath }), { accreditation: upstreamTls({ ca: intermediatePath }) })))
  t.equal(err.code, 'tls_material_invalid')
  t.match(err.message, `sponsor.tls.clientCa: ${rootPath}: "CN=Corporate root" issued "CN=Trusted-side intermediate", which the other side trusts`)
  const reverse = await failure(loadAllTls(configWith(sponsorTls({ clientCa: intermediatePath }), { accreditation: upstreamTls({ ca: rootPath }) })))
  t.match(reverse.message, `upstreams.accreditation.tls.ca: ${rootPath}: "CN=Corporate root" issued "CN=Trusted-side intermediate"`)
})
