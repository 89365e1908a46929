// The CA and leaf certificates carry the X.509 structure a serious PKI needs (RFC 5280): read back
// both with OpenSSL (node:crypto X509Certificate) and with forge's ASN.1 parser for the bits Node
// does not expose (criticality, key usage bits, raw names).
import { generateKeyPairSync, X509Certificate } from 'node:crypto'
import { createRequire } from 'node:module'
import type * as Forge from 'node-forge'
import t from 'tap'
import { createCa, DEV_SPONSOR_CA_NAME, DEV_TRUSTED_CA_NAME } from '../src/pki/dev-pki.js'
import { issueCertificate, makeTestPki, type TestCert } from './helpers/pki.js'

const forge: typeof Forge = createRequire(import.meta.url)('node-forge')

interface Ext {
  name: string
  critical?: boolean
  [k: string]: unknown
}

function parse(pem: string) {
  const cert = forge.pki.certificateFromPem(pem)
  const ext = (name: string) => cert.getExtension(name) as Ext | undefined
  // TBSCertificate: [0] version, serial, signature, issuer, validity, subject, ...
  const tbs = forge.asn1.fromDer(forge.asn1.toDer(forge.pki.certificateToAsn1(cert)).getBytes()).value[0] as Forge.asn1.Asn1
  const der = (i: number) => forge.asn1.toDer((tbs.value as Forge.asn1.Asn1[])[i]!).toHex()
  return { cert, ext, serialDer: (tbs.value as Forge.asn1.Asn1[])[1]!.value as string, issuerDer: der(3), subjectDer: der(5) }
}

t.test('certificates carry the expected extensions', async (t) => {
  const pki = await makeTestPki()

  for (const [label, ca, cn] of [
    ['sponsor CA', pki.sponsorCa, DEV_SPONSOR_CA_NAME],
    ['trusted CA', pki.trustedCa, DEV_TRUSTED_CA_NAME],
  ] as const) {
    t.test(label, async (t) => {
      const x = new X509Certificate(ca.certPem)
      const f = parse(ca.certPem)
      t.equal(x.subject, `CN=${cn}`, 'the UTF-8 name reads back intact')
      t.equal(x.issuer, x.subject, 'self-issued')
      t.ok(x.checkIssued(x) && x.verify(x.publicKey), 'self-signed')
      t.equal(x.ca, true)
      t.match(f.ext('basicConstraints'), { cA: true, critical: true })
      t.match(f.ext('keyUsage'), { keyCertSign: true, cRLSign: true, digitalSignature: false, critical: true })
      t.match(f.ext('subjectKeyIdentifier'), { subjectKeyIdentifier: /^[0-9a-f]{40}$/ })
      t.equal(f.cert.siginfo.algorithmOid, forge.pki.oids['sha256WithRSAEncryption'])
      t.equal(x.publicKey.asymmetricKeyDetails?.modulusLength, 2048)
      t.equal(f.issuerDer, f.subjectDer)
    })
  }

  const leaves: Array<[string, TestCert, TestCert, 'server' | 'client', string]> = [
    [
      'gatewaySponsorServer',
      pki.gatewaySponsorServer,
      pki.sponsorCa,
      'server',
      'DNS:localhost, DNS:ecluse.sponsor.test, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1',
    ],
    ['sponsorClient', pki.sponsorClient, pki.sponsorCa, 'client', 'URI:spiffe://sponsor.test/accreditation-app'],
    [
      'trustedServer',
      pki.trustedServer,
      pki.trustedCa,
      'server',
      'DNS:accreditation.trusted.test, DNS:localhost, IP Address:127.0.0.1',
    ],
    ['gatewayTrustedClient', pki.gatewayTrustedClient, pki.trustedCa, 'client', 'URI:spiffe://trusted.test/ecluse-gateway'],
    ['otherSponsorClient', pki.otherSponsorClient, pki.sponsorCa, 'client', 'URI:spiffe://sponsor.test/other-app'],
    ['trustedCaClient', pki.trustedCaClient, pki.trustedCa, 'client', 'URI:spiffe://sponsor.test/accreditation-app'],
  ]
  for (const [label, leaf, ca, usage, san] of leaves) {
    t.test(label, async (t) => {
      const x = new X509Certificate(leaf.certPem)
      const caX = new X509Certificate(ca.certPem)
      const f = parse(leaf.certPem)
      const caF = parse(ca.certPem)
      t.equal(x.subjectAltName, san)
      t.equal(x.ca, false)
      t.ok(x.checkIssued(caX) && x.verify(caX.publicKey), 'issued and signed by its CA')
      t.equal(f.issuerDer, caF.subjectDer, 'issuer is byte-for-byte the CA subject (RFC 5280 §4.1.2.4)')
      t.match(f.ext('basicConstraints'), { cA: false, critical: true })
      t.match(f.ext('keyUsage'), {
        digitalSignature: true,
        keyEncipherment: true,
        keyCertSign: false,
        critical: true,
      })
      t.same(x.keyUsage, [usage === 'server' ? '1.3.6.1.5.5.7.3.1' : '1.3.6.1.5.5.7.3.2'], 'one extended key usage')
      // forge does not decode the AKI on read: AuthorityKeyIdentifier ::= SEQUENCE { [0] keyIdentifier, ... }
      const aki = forge.asn1.fromDer(f.ext('authorityKeyIdentifier')?.['value'] as string).value as Forge.asn1.Asn1[]
      t.equal(aki[0]?.type, 0, 'AKI has a keyIdentifier')
      t.equal(
        forge.util.bytesToHex(aki[0]?.value as string),
        caF.ext('subjectKeyIdentifier')?.['subjectKeyIdentifier'],
        'AKI is the CA SKI',
      )
      t.ok(f.ext('subjectKeyIdentifier'))
      t.equal(f.serialDer.length, 16, 'a 16-byte serial')
      t.ok(f.serialDer.charCodeAt(0) >= 0x01 && f.serialDer.charCodeAt(0) < 0x80, 'positive, minimally encoded')
      t.equal(x.publicKey.asymmetricKeyDetails?.modulusLength, 2048)
    })
  }

  t.test('names match what the demo and the tests connect to', async (t) => {
    const gw = new X509Certificate(pki.gatewaySponsorServer.certPem)
    t.equal(gw.checkHost('ecluse.sponsor.test'), 'ecluse.sponsor.test')
    t.equal(gw.checkIP('::1'), '::1')
    t.equal(gw.checkIP('127.0.0.1'), '127.0.0.1')
    const ts = new X509Certificate(pki.trustedServer.certPem)
    t.equal(ts.checkHost('accreditation.trusted.test'), 'accreditation.trusted.test')
    t.equal(new X509Certificate(pki.wrongNameTrustedServer.certPem).checkHost('accreditation.trusted.test'), undefined)
    t.equal(new X509Certificate(pki.sponsorServerWithoutIp.certPem).checkIP('127.0.0.1'), undefined)
    const client = new X509Certificate(pki.sponsorClient.certPem)
    t.equal(client.subject, 'CN=accreditation-app\nOU=accreditation')
    t.equal(new X509Certificate(pki.otherSponsorClient.certPem).subject, 'CN=other-app\nOU=other')
  })

  t.test('serials are distinct', async (t) => {
    const all = [pki.sponsorCa, pki.trustedCa, ...leaves.map((l) => l[1])]
    t.equal(new Set(all.map((c) => new X509Certificate(c.certPem).serialNumber)).size, all.length)
  })

  t.test('a hostile URI SAN stays one URI entry', async (t) => {
    const uri = 'spiffe://sponsor.test/x, DNS:evil'
    const c = issueCertificate(pki.sponsorCa, {
      commonName: 'evil',
      uris: [uri],
      usage: 'client',
      keyPem: pki.sponsorClient.keyPem,
    })
    const san = parse(c.certPem).ext('subjectAltName')?.['altNames'] as Array<{ type: number; value: string }>
    t.same(
      san.map((n) => [n.type, n.value]),
      [[6, uri]],
    )
    // Node quotes and escapes such a value (`URI:"spiffe://sponsor.test/x\u002c DNS:evil"`), so a
    // consumer splitting subjectAltName on ", " cannot be fooled into seeing a DNS entry.
    const text = String(new X509Certificate(c.certPem).subjectAltName)
    t.match(text, /^URI:"/)
    t.notMatch(text, /(^|, )DNS:/)
  })

  t.test('IPv4-suffixed IPv6 literals are encoded', async (t) => {
    const c = issueCertificate(pki.sponsorCa, {
      commonName: 'v6',
      ips: ['::ffff:192.0.2.1', '2001:db8::8:800:200c:417a'],
      usage: 'server',
      keyPem: pki.gatewaySponsorServer.keyPem,
    })
    const x = new X509Certificate(c.certPem)
    t.equal(x.checkIP('::ffff:192.0.2.1'), '::ffff:192.0.2.1')
    t.equal(x.checkIP('2001:db8:0:0:8:800:200c:417a'), '2001:db8:0:0:8:800:200c:417a')
  })

  t.test('bad specifications are refused before a key is generated', async (t) => {
    const base = { commonName: 'x', usage: 'server' as const }
    const ca = pki.sponsorCa
    t.throws(() => issueCertificate(ca, { ...base, ips: ['300.1.1.1'] }), TypeError)
    t.throws(() => issueCertificate(ca, { ...base, ips: ['fe80::1%eth0'] }), TypeError)
    t.throws(() => issueCertificate(ca, { ...base, ips: ['localhost'] }), TypeError)
    t.throws(() => issueCertificate(ca, { ...base, dnsNames: ['é.test'] }), TypeError)
    t.throws(() => issueCertificate(ca, { ...base, uris: [''] }), TypeError)
    t.throws(() => issueCertificate(ca, base), TypeError, 'no SAN at all')
    const now = new Date()
    t.throws(() => issueCertificate(ca, { ...base, dnsNames: ['a.test'], notBefore: now, notAfter: now }), RangeError)
    t.throws(() => createCa('x', { validityDays: 0 }), RangeError)
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' })
    t.throws(() => issueCertificate(ca, { ...base, dnsNames: ['a.test'], keyPem: String(ec) }), TypeError)
    t.throws(() => issueCertificate({ ...ca, keyPem: String(ec) }, { ...base, dnsNames: ['a.test'] }), TypeError)
  })
})
