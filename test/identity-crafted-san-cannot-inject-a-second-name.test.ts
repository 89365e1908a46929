import { X509Certificate } from 'node:crypto'
import t from 'tap'
import { isAllowed } from '../src/identity/authorize.js'
import { parseSubjectAltName, principalFromCertificate } from '../src/identity/from-certificate.js'
import type { CompiledRoute } from '../src/route/table.js'
import { createCa, issueCertificate } from './helpers/pki.js'

// One CA whose key also serves the leaves: a single RSA key generation for the whole file.
const ca = createCa('SAN injection test CA', { validityDays: 1 })
const leaf = (spec: { uris?: string[]; dnsNames?: string[] }) =>
  new X509Certificate(issueCertificate(ca, { commonName: 'crafted', usage: 'client', keyPem: ca.keyPem, ...spec }).certPem)

const adminRoute = { allow: new Set(['dns:evil.example', 'uri:spiffe://sponsor.test/admin']) } as unknown as CompiledRoute

t.test('a URI SAN containing ", DNS:evil.example" is read as one URI, and the certificate refused', async (t) => {
  const cert = leaf({ uris: ['spiffe://sponsor.test/app, DNS:evil.example'], dnsNames: ['app.sponsor.test'] })
  t.match(cert.subjectAltName, /\\u002c DNS:evil\.example/, 'Node prints the value quoted, its comma escaped')
  t.strictSame(
    parseSubjectAltName(cert.subjectAltName!),
    [
      ['DNS', 'app.sponsor.test'],
      ['URI', 'spiffe://sponsor.test/app, DNS:evil.example'],
    ],
    'one URI entry, no injected DNS entry',
  )
  // A space is not a URI character (RFC 3986): such a certificate names nobody, it is not trimmed.
  t.throws(() => principalFromCertificate(cert), { code: 'forbidden', status: 403, message: /invalid URI subjectAltName/ })
})

t.test('commas, quotes and backslashes cannot split or close a value early', async (t) => {
  const uris = [
    'spiffe://sponsor.test/app,DNS:evil.example',
    'spiffe://x",URI:spiffe://sponsor.test/admin',
    'spiffe://x\\",URI:"spiffe://sponsor.test/admin',
    "spiffe://x',URI:spiffe://sponsor.test/admin",
    'spiffe://x\\',
  ]
  // One per certificate (two URI SANs are refused): each stays one URI, whatever it spells. Each has
  // an authority that is no plain host[:port], or a `:` after it, so the certificate names no one at
  // all (since 2026-12-07: OpenSSL's name constraints read such a host otherwise than a URI parser).
  for (const uri of uris) {
    const cert = leaf({ uris: [uri] })
    t.strictSame(parseSubjectAltName(cert.subjectAltName!), [['URI', uri]], `${uri}: one URI, no injected name`)
    t.throws(
      () => principalFromCertificate(cert),
      { code: 'forbidden', message: /URI subjectAltName whose (authority is not a plain host\[:port\]|host OpenSSL reads otherwise than a URI parser)/ },
      uri,
    )
  }
  // Commas and quotes in a URI's path, with no `:` to move OpenSSL's host: accepted, one URI, granting nothing else.
  for (const uri of ['spiffe://sponsor.test/app,DNS=evil.example', 'spiffe://sponsor.test/x",URI=spiffe//sponsor.test/admin']) {
    const principal = principalFromCertificate(leaf({ uris: [uri] }))
    t.equal(principal.id, `uri:${uri}`, uri)
    t.strictSame([...principal.attributes].sort(), ['cn:crafted', `uri:${uri}`], `${uri}: one URI, no injected name`)
    t.notOk(isAllowed(adminRoute, principal), `${uri}: no injected name grants anything`)
  }
  // Together they are five URI SANs: refused, now by the first one's host already.
  t.throws(() => principalFromCertificate(leaf({ uris })), { code: 'forbidden', message: /URI subjectAltName whose host OpenSSL reads otherwise/ })
  // Two plain ones are refused as two.
  t.throws(() => principalFromCertificate(leaf({ uris: ['spiffe://sponsor.test/app', 'spiffe://sponsor.test/admin'] })), { code: 'forbidden', message: /more than one URI subjectAltName/ })
})

t.test('a DNS SAN cannot inject a URI either', async (t) => {
  const principal = principalFromCertificate(leaf({ dnsNames: ['app.sponsor.test,URI:spiffe://sponsor.test/admin'] }))
  t.strictSame([...principal.attributes].sort(), ['cn:crafted', 'dns:app.sponsor.test,URI:spiffe://sponsor.test/admin'])
  t.notOk(isAllowed(adminRoute, principal))
})

t.test('a SAN with CR LF or NUL is refused outright', async (t) => {
  t.throws(() => principalFromCertificate(leaf({ uris: ['spiffe://x\r\nDNS:evil.example'] })), { code: 'forbidden', status: 403 })
  t.throws(() => principalFromCertificate(leaf({ dnsNames: ['evil.example\u0000.sponsor.test'] })), { code: 'forbidden' })
  t.throws(() => principalFromCertificate(leaf({ uris: ['spiffe://x y'] })), { code: 'forbidden' }, 'a space is not a URI character')
})

t.test('the subjectAltName parser reads Node’s format exactly and refuses anything else', async (t) => {
  t.strictSame(parseSubjectAltName('DNS:a.test, URI:"spiffe://x\\u002c DNS:evil", IP Address:127.0.0.1, email:a@b.test'), [
    ['DNS', 'a.test'],
    ['URI', 'spiffe://x, DNS:evil'],
    ['IP Address', '127.0.0.1'],
    ['email', 'a@b.test'],
  ])
  t.strictSame(parseSubjectAltName('URI:"a\\"b\\\\", DNS:c'), [
    ['URI', 'a"b\\'],
    ['DNS', 'c'],
  ])
  const malformed = [
    'DNS:a,DNS:b', // an unquoted comma is never Node's output
    'URI:"unterminated',
    'URI:"a"b, DNS:c', // text after a closing quote
    'DNS:a, ', // dangling separator
    'no-colon',
    ':empty-type',
    'URI:"bad \\x escape"',
    'DNS:a"b',
  ]
  for (const san of malformed) t.throws(() => parseSubjectAltName(san), { code: 'forbidden' }, JSON.stringify(san))
})
