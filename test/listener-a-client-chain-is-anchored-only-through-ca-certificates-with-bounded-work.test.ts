/**
 * `anchored`, what a reload that takes a CA out asks of every open connection: is there a path of
 * signatures from the client's leaf, through what it sent, to a CA of the new bundle? Found by
 * review of its first version: a path through a certificate that is not a CA counted (a client
 * holding the key of a leaf without keyUsage could forge a copy of its removed root under it and
 * keep its connection), and the search had no memory of the certificates it had visited (a chain
 * padded with certificates that sign each other took ≈ 250 ms per connection to search: 4 minutes
 * of a stalled event loop for 1,024 such connections).
 */
import { X509Certificate } from 'node:crypto'
import t from 'tap'
import { anchored } from '../src/listener/anchored.js'
import { createCa, DEV_LEAF_SPECS, issueCertificate } from '../src/pki/dev-pki.js'
import { commonName, makeCertificate, newKeyPair, publicKeyOf, subjectKeyIdOf, subjectOf } from './helpers/handmade-certificates.js'

const x509 = (pem: string) => new X509Certificate(pem)
const root = createCa('Sponsor root', { pathLength: 1 })
const issuing = createCa('Sponsor issuing CA', { issuer: root })
const leafViaIssuing = issueCertificate(issuing, { ...DEV_LEAF_SPECS.sponsorClient })
const leafOfRoot = issueCertificate(root, { ...DEV_LEAF_SPECS.sponsorClient })

t.test('a chain is anchored through its own intermediates, to the bundle’s CAs only', async (t) => {
  const other = createCa('Another sponsor root')
  t.ok(anchored([x509(leafViaIssuing.certPem), x509(issuing.certPem)], [x509(root.certPem)], new Map()), 'leaf, intermediate, root')
  t.ok(anchored([x509(leafOfRoot.certPem)], [x509(root.certPem)], new Map()), 'a leaf the root issued')
  t.notOk(anchored([x509(leafViaIssuing.certPem)], [x509(root.certPem)], new Map()), 'without its intermediate: not anchored')
  t.notOk(anchored([x509(leafViaIssuing.certPem), x509(issuing.certPem)], [x509(other.certPem)], new Map()), 'by another root: not anchored')
  t.ok(anchored([x509(leafViaIssuing.certPem), x509(issuing.certPem)], [x509(issuing.certPem)], new Map()), 'an intermediate in the bundle anchors')
})

t.test('a path through a certificate that is not a CA anchors nothing', async (t) => {
  const newRoot = createCa('New sponsor root')
  // A certificate under the new root that says it is no CA and has no keyUsage, whose key the client holds…
  const clientKey = newKeyPair()
  const notCa = makeCertificate({
    subject: commonName('client two'),
    issuer: subjectOf(newRoot.certPem),
    publicKeyPem: clientKey.publicKey,
    signingKeyPem: newRoot.keyPem,
    ca: false,
    authorityKeyIdHex: subjectKeyIdOf(newRoot.certPem),
    subjectKeyId: true,
  })
  // …signs a copy of the old root (its name and key) as a CA.
  const forgedOldRoot = makeCertificate({
    subject: subjectOf(root.certPem),
    issuer: commonName('client two'),
    publicKeyPem: publicKeyOf(root.certPem),
    signingKeyPem: clientKey.privateKey,
    ca: true,
    keyUsage: { keyCertSign: true },
    subjectKeyId: true,
    authorityKeyIdHex: subjectKeyIdOf(notCa),
  })
  const chain = [x509(leafOfRoot.certPem), x509(forgedOldRoot), x509(notCa)]
  t.ok(chain[0]!.checkIssued(chain[1]!) && chain[1]!.checkIssued(chain[2]!), 'the names and key identifiers link up')
  t.notOk(anchored(chain, [x509(newRoot.certPem)], new Map()), 'the new root does not anchor a leaf of the old one through it')
})

t.test('a chain padded with certificates that sign each other is searched in bounded work', async (t) => {
  // A copy of the root signed by the client's own key, then four "q" and four "p" CAs that sign each
  // other: every path through them is a dead end, and there are 4^8 of them.
  const key = newKeyPair()
  const ca = (subject: string, issuer: string) =>
    makeCertificate({ subject: commonName(subject), issuer: commonName(issuer), publicKeyPem: key.publicKey, signingKeyPem: key.privateKey, ca: true, keyUsage: { keyCertSign: true } })
  const rootCopy = makeCertificate({
    subject: subjectOf(root.certPem),
    issuer: commonName('q'),
    publicKeyPem: publicKeyOf(root.certPem),
    signingKeyPem: key.privateKey,
    ca: true,
    keyUsage: { keyCertSign: true },
    subjectKeyId: true,
  })
  const padding = [...Array.from({ length: 4 }, () => ca('q', 'p')), ...Array.from({ length: 4 }, () => ca('p', 'q'))]
  // Counts the steps of the search: each visit of a certificate looks through the chain once.
  let steps = 0
  class Counted<T> extends Array<T> {
    override some(predicate: (value: T, index: number, array: T[]) => unknown): boolean {
      steps++
      return super.some(predicate)
    }
  }
  const chain = Counted.from([x509(leafOfRoot.certPem), x509(rootCopy), ...padding.map(x509)]) as X509Certificate[]
  t.notOk(anchored(chain, [x509(createCa('Another sponsor root').certPem)], new Map()), 'not anchored by another root')
  t.ok(steps <= chain.length, `each certificate visited once: ${steps} steps for ${chain.length} certificates`)
})

t.test('certificates with keys no CA has are never checked with', async (t) => {
  // Found by re-review: an RSA key with a 2,040-bit public exponent costs ≈ 1.8 ms a check (not
  // 0.03), and a client needs no private key to send a certificate holding one.
  const { createRequire } = await import('node:module')
  const forge = createRequire(import.meta.url)('node-forge') as typeof import('node-forge')
  const own = newKeyPair()
  const modulus = forge.pki.publicKeyFromPem(own.publicKey).n
  const hugeExponent = new forge.jsbn.BigInteger(`1${'0'.repeat(500)}1`, 16)
  const oddKey = forge.pki.publicKeyToPem(forge.pki.setRsaPublicKey(modulus, hugeExponent))
  const decoys = Array.from({ length: 8 }, () =>
    makeCertificate({ subject: subjectOf(issuing.certPem), issuer: commonName('q'), publicKeyPem: oddKey, signingKeyPem: own.privateKey, ca: true, keyUsage: { keyCertSign: true } }),
  )
  const verify = X509Certificate.prototype.verify
  let checkedWithOddKeys = 0
  X509Certificate.prototype.verify = function (this: X509Certificate, key) {
    if ((key.asymmetricKeyDetails?.publicExponent ?? 0n) > 2n ** 32n) checkedWithOddKeys++
    return verify.call(this, key)
  }
  t.teardown(() => {
    X509Certificate.prototype.verify = verify
  })
  const chain = [x509(leafViaIssuing.certPem), ...decoys.map(x509), x509(issuing.certPem)]
  t.ok(anchored(chain, [x509(root.certPem)], new Map()), 'the real intermediate still anchors it')
  t.equal(checkedWithOddKeys, 0, 'and no signature was checked with a decoy’s key')
})

t.test('a chain that runs out of signature checks leaves nothing false in the memo other connections share', async (t) => {
  // Fourteen copies of the intermediate (its name and key, so each verifies the leaf), each signed by
  // another key under the intermediate's name: every one is a dead end that costs a check against
  // each other one not yet visited, 119 checks before the real intermediate, last in the chain, is tried.
  const key = newKeyPair()
  const copies = Array.from({ length: 14 }, () =>
    makeCertificate({ subject: subjectOf(issuing.certPem), issuer: subjectOf(issuing.certPem), publicKeyPem: publicKeyOf(issuing.certPem), signingKeyPem: key.privateKey, ca: true, keyUsage: { keyCertSign: true } }),
  )
  const links = new Map<string, boolean>()
  const padded = [x509(leafViaIssuing.certPem), ...copies.map(x509), x509(issuing.certPem)]
  t.notOk(anchored(padded, [x509(root.certPem)], links), 'the padded chain runs out of checks: not anchored (its client reconnects)')
  t.ok(anchored([x509(leafViaIssuing.certPem), x509(issuing.certPem)], [x509(root.certPem)], links), 'another connection with the same memo is judged on its own merits')
})

t.test('a bundle CA past its validity anchors nothing, as it lets no handshake in', async (t) => {
  const expired = createCa('Expired root', { notBefore: new Date(Date.now() - 10 * 86_400_000), notAfter: new Date(Date.now() - 86_400_000) })
  const leaf = issueCertificate(expired, { ...DEV_LEAF_SPECS.sponsorClient, notBefore: new Date(Date.now() - 9 * 86_400_000), notAfter: new Date(Date.now() + 86_400_000) })
  t.notOk(anchored([x509(leaf.certPem)], [x509(expired.certPem)], new Map()))
})
