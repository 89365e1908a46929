/**
 * Certificates the development PKI will not make, for tests of what a client can send: any subject
 * and issuer name, key, signer, CA flag, key usage and key identifiers (node-forge for the structure,
 * OpenSSL for the signature).
 */
import { createPrivateKey, generateKeyPairSync, randomBytes, sign } from 'node:crypto'
import { createRequire } from 'node:module'
import type * as Forge from 'node-forge'

const forge: typeof Forge = createRequire(import.meta.url)('node-forge')
const UTF8 = forge.asn1.Type.UTF8 as unknown as Forge.asn1.Class

export type Name = Forge.pki.CertificateField[]

export const commonName = (value: string): Name => [{ shortName: 'CN', value, valueTagClass: UTF8 }]

/** The subject of `pem`, ready to be the subject or issuer of another certificate. */
export function subjectOf(pem: string): Name {
  return forge.pki.certificateFromPem(pem).subject.attributes.map((a: Forge.pki.CertificateField) => {
    const field: Forge.pki.CertificateField = { type: a.type, value: a.value }
    if (a.valueTagClass !== undefined) field.valueTagClass = a.valueTagClass
    if (a.valueTagClass === UTF8 && typeof a.value === 'string') field.value = forge.util.decodeUtf8(a.value)
    return field
  })
}

export function subjectKeyIdOf(pem: string): string | undefined {
  const ext = forge.pki.certificateFromPem(pem).getExtension('subjectKeyIdentifier') as { subjectKeyIdentifier?: string } | undefined
  return ext?.subjectKeyIdentifier
}

export function publicKeyOf(pem: string): string {
  return forge.pki.publicKeyToPem(forge.pki.certificateFromPem(pem).publicKey)
}

export function newKeyPair(): { publicKey: string; privateKey: string } {
  return generateKeyPairSync('rsa', {
    modulusLength: 2048,
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  })
}

export interface HandmadeCertificate {
  subject: Name
  issuer: Name
  publicKeyPem: string
  signingKeyPem: string
  /** basicConstraints cA; absent: no basicConstraints at all. */
  ca?: boolean
  /** keyUsage bits (forge's names); absent: no keyUsage at all. */
  keyUsage?: Record<string, boolean>
  /** A subjectKeyIdentifier, computed from the key. */
  subjectKeyId?: boolean
  authorityKeyIdHex?: string
  /** URI subjectAltNames (an identity, for a client certificate). */
  uris?: readonly string[]
  /** The signature's digest (an RSA signing key): SHA-256 unless told. */
  digest?: 'sha1' | 'sha256' | 'ripemd160'
}

export function makeCertificate(c: HandmadeCertificate): string {
  const cert = forge.pki.createCertificate()
  cert.publicKey = forge.pki.publicKeyFromPem(c.publicKeyPem)
  cert.serialNumber = `01${randomBytes(8).toString('hex')}`
  cert.validity.notBefore = new Date(Date.now() - 600_000)
  cert.validity.notAfter = new Date(Date.now() + 86_400_000)
  cert.setSubject(c.subject)
  cert.setIssuer(c.issuer)
  const extensions: unknown[] = []
  if (c.ca !== undefined) extensions.push({ name: 'basicConstraints', cA: c.ca, critical: true })
  if (c.keyUsage !== undefined) extensions.push({ name: 'keyUsage', ...c.keyUsage, critical: true })
  if (c.subjectKeyId === true) extensions.push({ name: 'subjectKeyIdentifier' })
  if (c.uris !== undefined) extensions.push({ name: 'subjectAltName', altNames: c.uris.map((value) => ({ type: 6, value })) })
  if (c.authorityKeyIdHex !== undefined) extensions.push({ name: 'authorityKeyIdentifier', keyIdentifier: forge.util.hexToBytes(c.authorityKeyIdHex) })
  cert.setExtensions(extensions as never)
  const digest = c.digest ?? 'sha256'
  // forge knows no name for RIPEMD-160 with RSA (ISO/TeleTrusT's OID).
  cert.signatureOid = digest === 'ripemd160' ? '1.3.36.3.3.1.2' : forge.pki.oids[`${digest}WithRSAEncryption`]!
  ;(cert as unknown as { siginfo: { algorithmOid: string } }).siginfo.algorithmOid = cert.signatureOid
  const tbsOf = (forge.pki as unknown as { getTBSCertificate(c: Forge.pki.Certificate): Forge.asn1.Asn1 }).getTBSCertificate
  ;(cert as unknown as { tbsCertificate: unknown }).tbsCertificate = tbsOf(cert)
  const tbs = Buffer.from(forge.asn1.toDer(tbsOf(cert)).getBytes(), 'binary')
  cert.signature = sign(digest, tbs, createPrivateKey(c.signingKeyPem)).toString('binary')
  return forge.pki.certificateToPem(cert)
}
