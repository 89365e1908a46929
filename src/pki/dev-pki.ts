/**
 * The development PKI: two independent CAs (sponsor side, trusted side) and the demo leaves, built
 * with node-forge for the X.509 structure and Node's OpenSSL for key generation and signing. The
 * chained demo (edge gateway → trusted sidecar gateway) adds two leaves and no CA: the edge reaches
 * the sidecar as a sponsor-side client, the sidecar answers as a trusted-side server.
 *
 * Development only: the CA private keys sit next to the certificates they issue. Production uses
 * certificates from the operator's own PKI; nothing in the gateway depends on this module.
 */
import {
  createPrivateKey,
  createPublicKey,
  generateKeyPair,
  generateKeyPairSync,
  type KeyObject,
  type RSAKeyPairOptions,
  randomBytes,
  sign,
  X509Certificate,
} from 'node:crypto'
import { mkdir, stat } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { isIPv4, isIPv6 } from 'node:net'
import { basename, join, resolve } from 'node:path'
import type * as Forge from 'node-forge'
import { MAX_PEM_BYTES } from '../config/tls-material.js'
import { EcluseError } from '../errors.js'
import { readBoundedFile, unreadable } from '../read-bounded-file.js'
import { writeFileAtomic } from '../write-file-atomic.js'

// node-forge is CommonJS whose names cjs-module-lexer cannot see (`module.exports = require(...)`),
// so an ESM namespace import has only `default`, and a default import needs esModuleInterop.
const forge: typeof Forge = createRequire(import.meta.url)('node-forge')

/** A certificate and its private key, both PEM (the key is unencrypted PKCS#8). */
export interface CertifiedKey {
  certPem: string
  keyPem: string
}

/** Options for {@link createCa}. */
export interface CaOptions {
  /** Validity from now; default 3650 days. The start is back-dated 5 minutes for clock skew. */
  validityDays?: number
  /** Sign it with this CA (an intermediate CA) instead of itself (a root). Tests only. */
  issuer?: CertifiedKey
  /**
   * Certify this existing private key (PEM) instead of generating a new one: with another `issuer`,
   * a cross-signed copy of a CA (same name and key). Tests only.
   */
  keyPem?: string
  /** Explicit validity, instead of `validityDays` from now (an expired CA). Tests only. */
  notBefore?: Date
  notAfter?: Date
  /**
   * How many intermediate CAs may stand below this one (RFC 5280 §4.2.1.9, `pathLenConstraint`).
   * Default 0: it issues leaves only, so its key cannot mint a CA that verifiers would accept. Tests
   * of chains give a root 1.
   */
  pathLength?: number
}

/** What to put in a leaf certificate issued by {@link issueCertificate}. */
export interface LeafSpec {
  commonName: string
  organizationalUnit?: string
  /** URI SANs, e.g. SPIFFE IDs. Only checked to be IA5 (ASCII), so tests can craft hostile names. */
  uris?: readonly string[]
  /** DNS SANs. Only checked to be IA5 (ASCII), so tests can craft hostile names. */
  dnsNames?: readonly string[]
  /** IP SANs, IPv4 or IPv6 literals (no zone id). */
  ips?: readonly string[]
  /** `serverAuth` or `clientAuth` extended key usage (RFC 5280 §4.2.1.12). */
  usage: 'server' | 'client'
  /** Default: now − 5 minutes, but not before the CA's own start. Explicit values are used as given. */
  notBefore?: Date
  /** Default: now + 365 days, but not after the CA's own end. Explicit values are used as given. */
  notAfter?: Date
  /** Certify this existing private key (PEM) instead of generating a new one. */
  keyPem?: string
}

/** Absolute paths of one certificate and its key. */
export interface Pair {
  cert: string
  key: string
}

/** The files of the development PKI, all absolute paths under `dir`. */
export interface DevPki {
  dir: string
  sponsorCa: Pair
  trustedCa: Pair
  gatewaySponsorServer: Pair
  sponsorClient: Pair
  trustedServer: Pair
  gatewayTrustedClient: Pair
  /**
   * Chained demo: the trusted sidecar gateway's server certificate on its sponsor side, issued by the
   * trusted CA (the edge trusts only the trusted CA for its upstream, never the sponsor CA it accepts
   * clients from).
   */
  sidecarServer: Pair
  /** Chained demo: the edge gateway's client certificate towards the sidecar, issued by the sponsor CA. */
  edgeClient: Pair
}

/** Options for {@link generateDevPki}. */
export interface DevPkiOptions {
  outDir: string
  /** Regenerate everything even if the files exist. */
  force?: boolean
  /** Validity of every CA and leaf; default 365 days. */
  validityDays?: number
  /** The CAs' `pathLength` (see {@link CaOptions}); default 0. Tests that chain an intermediate to them give 1. */
  caPathLength?: number
}

const DAY_MS = 86_400_000
/** Back-dating of default start times, so a peer whose clock is a little behind still accepts. */
const SKEW_MS = 5 * 60_000
const RSA_BITS = 2048
const DEFAULT_CA_DAYS = 3650
const DEFAULT_LEAF_DAYS = 365
const DEFAULT_DEV_DAYS = 365

/** forge's CertificateField types `valueTagClass` as asn1.Class, but it is an asn1.Type (tag number). */
const UTF8_TAG = forge.asn1.Type.UTF8 as unknown as Forge.asn1.Class

/** forge exports this but @types/node-forge does not declare it. */
const getTbsCertificate = (forge.pki as unknown as { getTBSCertificate(c: Forge.pki.Certificate): Forge.asn1.Asn1 })
  .getTBSCertificate

interface KeyPairPem {
  publicKey: string
  privateKey: string
}

const KEYGEN_OPTIONS: RSAKeyPairOptions<'pem', 'pem'> = {
  modulusLength: RSA_BITS,
  publicExponent: 0x10001,
  publicKeyEncoding: { type: 'spki', format: 'pem' },
  privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
}

// Key generation goes straight to OpenSSL: forge would do the same when it detects Node, but a silent
// fall-back to its pure-JavaScript generator takes seconds per key. The async form runs on the libuv
// pool, so several keys are generated in parallel.
function generateKeySync(): KeyPairPem {
  const { publicKey, privateKey } = generateKeyPairSync('rsa', KEYGEN_OPTIONS)
  return { publicKey, privateKey }
}

function generateKeyAsync(): Promise<KeyPairPem> {
  return new Promise((resolve, reject) => {
    generateKeyPair('rsa', KEYGEN_OPTIONS, (err, publicKey, privateKey) => {
      if (err) reject(err)
      else resolve({ publicKey, privateKey })
    })
  })
}

/** sha256WithRSAEncryption is the only signature this module writes, so every key must be RSA. */
function rsaPrivateKey(pem: string, what: string): KeyObject {
  const key = createPrivateKey(pem)
  if (key.asymmetricKeyType !== 'rsa') throw new TypeError(`${what} must be RSA, got ${key.asymmetricKeyType}`)
  return key
}

function keyPairFromPrivate(keyPem: string): KeyPairPem {
  const key = rsaPrivateKey(keyPem, 'keyPem')
  return {
    privateKey: key.export({ type: 'pkcs8', format: 'pem' }) as string,
    publicKey: createPublicKey(key).export({ type: 'spki', format: 'pem' }) as string,
  }
}

/**
 * 16 random bytes, positive and minimally encoded: RFC 5280 §4.1.2.2 wants a positive serial of at
 * most 20 octets, and OpenSSL rejects a DER INTEGER with a redundant leading zero, so the top byte is
 * forced into 0x40..0x7f (126 random bits remain).
 */
function randomSerialHex(): string {
  const bytes = randomBytes(16)
  bytes[0] = (bytes[0]! & 0x3f) | 0x40
  return bytes.toString('hex')
}

function name(commonName: string, organizationalUnit?: string): Forge.pki.CertificateField[] {
  // RFC 5280 §4.1.2.4: new certificates use UTF8String (forge's default would be PrintableString,
  // which cannot hold "É").
  const attrs: Forge.pki.CertificateField[] = [{ shortName: 'CN', value: commonName, valueTagClass: UTF8_TAG }]
  if (organizationalUnit !== undefined) attrs.push({ shortName: 'OU', value: organizationalUnit, valueTagClass: UTF8_TAG })
  return attrs
}

function assertIa5(kind: string, value: string): void {
  // GeneralName dNSName and uniformResourceIdentifier are IA5String (RFC 5280 §4.2.1.6).
  if (value.length === 0 || !/^[\x00-\x7f]+$/.test(value)) throw new TypeError(`${kind} SAN must be non-empty ASCII`)
}

/** Network-order bytes of an IP literal, strictly validated (forge's own parser accepts "300.1.1.1"). */
function ipBytes(ip: string): string {
  if (isIPv4(ip)) return Buffer.from(ip.split('.').map(Number)).toString('binary')
  if (!isIPv6(ip) || ip.includes('%')) throw new TypeError(`not an IP address literal: ${ip}`)
  let text = ip
  const dotted = /(\d+\.\d+\.\d+\.\d+)$/.exec(text)
  if (dotted) {
    // IPv4-suffixed form (::ffff:192.0.2.1): rewrite the last 32 bits as two hex groups.
    const [a, b, c, d] = dotted[1]!.split('.').map(Number) as [number, number, number, number]
    text = text.slice(0, dotted.index) + ((a << 8) | b).toString(16) + ':' + ((c << 8) | d).toString(16)
  }
  const [head = '', tail] = text.split('::')
  const headGroups = head === '' ? [] : head.split(':')
  const tailGroups = tail === undefined || tail === '' ? [] : tail.split(':')
  const zeros = tail === undefined ? [] : new Array<string>(8 - headGroups.length - tailGroups.length).fill('0')
  const groups = [...headGroups, ...zeros, ...tailGroups]
  const out = Buffer.alloc(16)
  for (const [i, g] of groups.entries()) out.writeUInt16BE(Number.parseInt(g, 16), i * 2)
  return out.toString('binary')
}

function altNames(spec: LeafSpec): Array<{ type: number; value: string }> {
  const names: Array<{ type: number; value: string }> = []
  for (const dns of spec.dnsNames ?? []) {
    assertIa5('DNS', dns)
    names.push({ type: 2, value: dns })
  }
  for (const uri of spec.uris ?? []) {
    assertIa5('URI', uri)
    names.push({ type: 6, value: uri })
  }
  for (const ip of spec.ips ?? []) names.push({ type: 7, value: ipBytes(ip) })
  return names
}

function checkValidity(notBefore: Date, notAfter: Date): void {
  if (Number.isNaN(notBefore.getTime()) || Number.isNaN(notAfter.getTime())) throw new RangeError('invalid validity date')
  if (notBefore.getTime() >= notAfter.getTime()) throw new RangeError('notBefore must be before notAfter')
}

/**
 * forge's `cert.sign()` runs RSA in JavaScript (tens of ms per signature on a busy machine); this does
 * the same steps (sha256WithRSAEncryption over the DER TBSCertificate, RFC 5280 §4.1.1.3) with OpenSSL.
 */
function signCertificate(cert: Forge.pki.Certificate, key: KeyObject): string {
  cert.signatureOid = forge.pki.oids['sha256WithRSAEncryption']!
  cert.siginfo.algorithmOid = cert.signatureOid
  cert.tbsCertificate = getTbsCertificate(cert)
  const tbs = Buffer.from(forge.asn1.toDer(cert.tbsCertificate).getBytes(), 'binary')
  cert.signature = sign('sha256', tbs, key).toString('binary')
  return forge.pki.certificateToPem(cert)
}

function buildCa(commonName: string, opts: CaOptions, keys: KeyPairPem): CertifiedKey {
  const days = opts.validityDays ?? DEFAULT_CA_DAYS
  const now = Date.now()
  const cert = forge.pki.createCertificate()
  cert.publicKey = forge.pki.publicKeyFromPem(keys.publicKey)
  cert.serialNumber = randomSerialHex()
  cert.validity.notBefore = opts.notBefore ?? new Date(now - SKEW_MS)
  cert.validity.notAfter = opts.notAfter ?? new Date(now + days * DAY_MS)
  const subject = name(commonName)
  cert.setSubject(subject)
  const issuerCert = opts.issuer === undefined ? undefined : forge.pki.certificateFromPem(opts.issuer.certPem)
  cert.setIssuer(issuerCert === undefined ? subject : issuerName(issuerCert))
  // RFC 5280 §4.2.1.9 and §4.2.1.3: both critical on a CA. The dev CAs issue leaves directly, so a
  // path length of 0 by default: an intermediate signed with their key does not verify.
  cert.setExtensions([
    { name: 'basicConstraints', cA: true, pathLenConstraint: opts.pathLength ?? 0, critical: true },
    { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
    { name: 'subjectKeyIdentifier' },
    ...(issuerCert === undefined ? [] : [{ name: 'authorityKeyIdentifier', keyIdentifier: authorityKeyIdOf(issuerCert) }]),
  ])
  const signer = opts.issuer === undefined ? keys.privateKey : opts.issuer.keyPem
  return { certPem: signCertificate(cert, rsaPrivateKey(signer, 'the CA key')), keyPem: keys.privateKey }
}

/**
 * The issuer's subject as forge attributes ready to encode again. forge parses a UTF8String value to
 * its raw UTF-8 bytes but encodes one from a JavaScript string, so without decoding here "É" would be
 * encoded twice and the issuer name would no longer match the CA's subject (RFC 5280 §4.1.2.4).
 */
function issuerName(ca: Forge.pki.Certificate): Forge.pki.CertificateField[] {
  return ca.subject.attributes.map((a: Forge.pki.CertificateField) => {
    const attr: Forge.pki.CertificateField = { type: a.type, value: a.value }
    if (a.valueTagClass !== undefined) attr.valueTagClass = a.valueTagClass
    if (a.valueTagClass === UTF8_TAG && typeof a.value === 'string') attr.value = forge.util.decodeUtf8(a.value)
    return attr
  })
}

interface LeafPlan {
  caCert: Forge.pki.Certificate
  caKey: KeyObject
  notBefore: Date
  notAfter: Date
  sans: Array<{ type: number; value: string }>
}

/** Everything about a leaf that can be wrong, checked before a key is spent on it. */
function planLeaf(ca: CertifiedKey, spec: LeafSpec, defaultDays = DEFAULT_LEAF_DAYS): LeafPlan {
  const caCert = forge.pki.certificateFromPem(ca.certPem)
  const caKey = rsaPrivateKey(ca.keyPem, 'the issuer key')
  const now = Date.now()
  const caStart = caCert.validity.notBefore.getTime()
  const caEnd = caCert.validity.notAfter.getTime()
  const notBefore = spec.notBefore ?? new Date(Math.max(now - SKEW_MS, caStart))
  const notAfter = spec.notAfter ?? new Date(Math.min(now + defaultDays * DAY_MS, caEnd))
  checkValidity(notBefore, notAfter)
  const sans = altNames(spec)
  if (sans.length === 0) throw new TypeError('a leaf certificate needs at least one SAN')
  return { caCert, caKey, notBefore, notAfter, sans }
}

/** The AKI of a certificate `ca` issues: the CA's own SKI (forge's `keyIdentifier: true` would hash the subject's key). */
function authorityKeyIdOf(ca: Forge.pki.Certificate): string {
  const ski = ca.getExtension('subjectKeyIdentifier') as { subjectKeyIdentifier?: string } | undefined
  return ski?.subjectKeyIdentifier !== undefined ? forge.util.hexToBytes(ski.subjectKeyIdentifier) : ca.generateSubjectKeyIdentifier().getBytes()
}

function buildLeaf(plan: LeafPlan, spec: LeafSpec, keys: KeyPairPem): CertifiedKey {
  const { caCert } = plan
  const cert = forge.pki.createCertificate()
  cert.publicKey = forge.pki.publicKeyFromPem(keys.publicKey)
  cert.serialNumber = randomSerialHex()
  cert.validity.notBefore = plan.notBefore
  cert.validity.notAfter = plan.notAfter
  cert.setSubject(name(spec.commonName, spec.organizationalUnit))
  cert.setIssuer(issuerName(caCert))
  const authorityKeyId = authorityKeyIdOf(caCert)
  cert.setExtensions([
    { name: 'basicConstraints', cA: false, critical: true },
    // keyEncipherment for TLS 1.2 RSA key transport; digitalSignature for (EC)DHE and TLS 1.3.
    { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
    spec.usage === 'server' ? { name: 'extKeyUsage', serverAuth: true } : { name: 'extKeyUsage', clientAuth: true },
    // RFC 5280 §4.2.1.6: the SAN is critical when the subject name is empty; ours never is.
    { name: 'subjectAltName', altNames: plan.sans },
    { name: 'subjectKeyIdentifier' },
    { name: 'authorityKeyIdentifier', keyIdentifier: authorityKeyId },
  ])
  return { certPem: signCertificate(cert, plan.caKey), keyPem: keys.privateKey }
}

function leafKeys(spec: LeafSpec): KeyPairPem | undefined {
  return spec.keyPem === undefined ? undefined : keyPairFromPrivate(spec.keyPem)
}

function checkCaOptions(opts: CaOptions): void {
  if (opts.validityDays !== undefined && !(opts.validityDays > 0)) throw new RangeError('validityDays must be positive')
  if (opts.pathLength !== undefined && !(Number.isInteger(opts.pathLength) && opts.pathLength >= 0)) throw new RangeError('pathLength must be an integer of at least 0')
}

/**
 * A self-signed root CA (RSA 2048, SHA-256) with a fresh key (or `opts.keyPem`); with `opts.issuer`, an intermediate CA
 * signed by that one (tests of chains).
 *
 * @example
 * const ca = createCa('Example dev CA', { validityDays: 30 })
 */
export function createCa(commonName: string, opts: CaOptions = {}): CertifiedKey {
  checkCaOptions(opts)
  return buildCa(commonName, opts, opts.keyPem === undefined ? generateKeySync() : keyPairFromPrivate(opts.keyPem))
}

/** {@link createCa} with the key generated off the main thread (none is generated with `keyPem`). */
export async function createCaAsync(commonName: string, opts: CaOptions = {}): Promise<CertifiedKey> {
  checkCaOptions(opts)
  return buildCa(commonName, opts, opts.keyPem === undefined ? await generateKeyAsync() : keyPairFromPrivate(opts.keyPem))
}

/**
 * A leaf certificate for a server or a client, signed by `ca` (RSA 2048 unless `spec.keyPem` is given).
 *
 * @example
 * const client = issueCertificate(ca, { commonName: 'app', uris: ['spiffe://example.test/app'], usage: 'client' })
 */
export function issueCertificate(ca: CertifiedKey, spec: LeafSpec): CertifiedKey {
  const plan = planLeaf(ca, spec)
  return buildLeaf(plan, spec, leafKeys(spec) ?? generateKeySync())
}

/** {@link issueCertificate} with the key generated off the main thread. */
export async function issueCertificateAsync(ca: CertifiedKey, spec: LeafSpec): Promise<CertifiedKey> {
  const plan = planLeaf(ca, spec)
  return buildLeaf(plan, spec, leafKeys(spec) ?? (await generateKeyAsync()))
}

// ---------------------------------------------------------------------------------------------------
// The development PKI on disk

const FILES = {
  sponsorCa: 'sponsor-ca',
  trustedCa: 'trusted-ca',
  gatewaySponsorServer: 'gateway-sponsor',
  sponsorClient: 'sponsor-client',
  trustedServer: 'trusted-server',
  gatewayTrustedClient: 'gateway-trusted-client',
  sidecarServer: 'sidecar-server',
  edgeClient: 'edge-client',
} as const satisfies Record<Exclude<keyof DevPki, 'dir'>, string>

type PairName = keyof typeof FILES

/**
 * Leaves added after the first release of this module (the chained demo). A PKI written before them
 * is completed with certificates from its own CAs instead of being refused as incomplete.
 */
const LATER_LEAVES = ['sidecarServer', 'edgeClient'] as const satisfies readonly PairName[]
type LaterLeaf = (typeof LATER_LEAVES)[number]
/** Which CA issues each later leaf. */
const LATER_LEAF_ISSUER: Record<LaterLeaf, 'sponsorCa' | 'trustedCa'> = {
  sidecarServer: 'trustedCa',
  edgeClient: 'sponsorCa',
}

/** The CA names, part of the demo's contract (docs and curl commands refer to them). */
export const DEV_SPONSOR_CA_NAME = 'Écluse dev sponsor CA'
export const DEV_TRUSTED_CA_NAME = 'Écluse dev trusted CA'

/** The demo leaves. Exported so tests and docs use the same names as the files. */
export const DEV_LEAF_SPECS = {
  gatewaySponsorServer: {
    commonName: 'ecluse.sponsor.test',
    dnsNames: ['localhost', 'ecluse.sponsor.test'],
    ips: ['127.0.0.1', '::1'],
    usage: 'server',
  },
  sponsorClient: {
    commonName: 'accreditation-app',
    organizationalUnit: 'accreditation',
    uris: ['spiffe://sponsor.test/accreditation-app'],
    usage: 'client',
  },
  trustedServer: {
    commonName: 'accreditation.trusted.test',
    dnsNames: ['accreditation.trusted.test', 'localhost'],
    ips: ['127.0.0.1'],
    usage: 'server',
  },
  gatewayTrustedClient: {
    commonName: 'ecluse-gateway',
    uris: ['spiffe://trusted.test/ecluse-gateway'],
    usage: 'client',
  },
  sidecarServer: {
    commonName: 'ecluse.trusted.test',
    dnsNames: ['ecluse.trusted.test', 'localhost'],
    ips: ['127.0.0.1'],
    usage: 'server',
  },
  edgeClient: {
    commonName: 'ecluse-edge',
    organizationalUnit: 'edge',
    uris: ['spiffe://sponsor.test/ecluse-edge'],
    usage: 'client',
  },
} as const satisfies Record<Exclude<PairName, 'sponsorCa' | 'trustedCa'>, LeafSpec>

/** The paths {@link generateDevPki} writes under `outDir`, without touching the disk. */
export function devPkiPaths(outDir: string): DevPki {
  const dir = resolve(outDir)
  const pair = (base: string): Pair => ({ cert: join(dir, `${base}.crt`), key: join(dir, `${base}.key`) })
  return {
    dir,
    sponsorCa: pair(FILES.sponsorCa),
    trustedCa: pair(FILES.trustedCa),
    gatewaySponsorServer: pair(FILES.gatewaySponsorServer),
    sponsorClient: pair(FILES.sponsorClient),
    trustedServer: pair(FILES.trustedServer),
    gatewayTrustedClient: pair(FILES.gatewayTrustedClient),
    sidecarServer: pair(FILES.sidecarServer),
    edgeClient: pair(FILES.edgeClient),
  }
}

function pairsOf(pki: DevPki): Array<[PairName, Pair]> {
  return (Object.keys(FILES) as PairName[]).map((n) => [n, pki[n]])
}

async function exists(file: string): Promise<boolean> {
  try {
    await stat(file)
    return true
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false
    throw err
  }
}


/**
 * A file of an existing PKI, as the gateway reads its PEM files: a regular file, at most
 * MAX_PEM_BYTES (a FIFO or `/dev/zero` planted there would hang or exhaust the command).
 */
async function readPem(file: string): Promise<Buffer> {
  try {
    return await readBoundedFile(file, MAX_PEM_BYTES)
  } catch (err) {
    throw new EcluseError('tls_material_invalid', `${file}: ${unreadable(err, 'cannot read')}; regenerate with --force`, { cause: err })
  }
}

/** An existing PKI is reused only if every certificate (that is there) parses and has not expired. */
async function checkExisting(pki: DevPki): Promise<void> {
  const now = Date.now()
  for (const [, pair] of pairsOf(pki)) {
    if (!(await exists(pair.cert))) continue
    const certPem = await readPem(pair.cert)
    let cert: X509Certificate
    try {
      cert = new X509Certificate(certPem)
    } catch (err) {
      throw new EcluseError('tls_material_invalid', `${pair.cert} is not a certificate; regenerate with --force`, {
        cause: err,
      })
    }
    if (Date.parse(cert.validTo) <= now) {
      throw new EcluseError('tls_material_invalid', `${pair.cert} expired on ${cert.validTo}; regenerate with --force`)
    }
    // A --force run killed between its key and certificate writes leaves every file present, new
    // keys beside old certificates: complete-looking, and unusable.
    if (!(await exists(pair.key))) continue
    const keyPem = await readPem(pair.key)
    let matches: boolean
    try {
      matches = cert.checkPrivateKey(createPrivateKey(keyPem))
    } catch {
      matches = false
    }
    if (!matches) {
      throw new EcluseError('tls_material_invalid', `${pair.key} does not match ${pair.cert} (an interrupted --force run?); regenerate with --force`)
    }
  }
}

/**
 * Issue the missing later leaves (whole pairs) from the CAs already on disk, keys first. The CA
 * files have just passed `checkExisting`.
 */
async function completeLaterLeaves(pki: DevPki, names: readonly LaterLeaf[], validityDays: number): Promise<void> {
  const cas: Record<'sponsorCa' | 'trustedCa', CertifiedKey> = {
    sponsorCa: { certPem: (await readPem(pki.sponsorCa.cert)).toString('utf8'), keyPem: (await readPem(pki.sponsorCa.key)).toString('utf8') },
    trustedCa: { certPem: (await readPem(pki.trustedCa.cert)).toString('utf8'), keyPem: (await readPem(pki.trustedCa.key)).toString('utf8') },
  }
  const plans = names.map((n) => planLeaf(cas[LATER_LEAF_ISSUER[n]], DEV_LEAF_SPECS[n], validityDays))
  const keys = await Promise.all(names.map(() => generateKeyAsync()))
  const material = names.map((n, i) => buildLeaf(plans[i]!, DEV_LEAF_SPECS[n], keys[i]!))
  for (const [i, n] of names.entries()) await writeFileAtomic(pki[n].key, material[i]!.keyPem, 0o600)
  for (const [i, n] of names.entries()) await writeFileAtomic(pki[n].cert, material[i]!.certPem, 0o644)
}

/**
 * Create the development PKI in `outDir`: the sponsor CA, the trusted CA (independent roots) and the
 * demo leaves, keys 0600, the directory 0700 if it has to be created. Idempotent: if every file is
 * already there and `force` is not set, nothing is written and the paths are returned (`npm start`
 * calls this every time). A set written before the chained demo's leaves existed (`sidecar-server`,
 * `edge-client`) is completed from its own CAs. Any other partial set, an expired or unreadable
 * certificate, or a key that does not match its certificate (a `--force` run killed half-way), is an error (`tls_material_invalid`) rather than silently overwritten. Not safe
 * against two concurrent generations into the same directory.
 *
 * @example
 * const pki = await generateDevPki({ outDir: 'certs' })
 * https.createServer({ cert: readFileSync(pki.gatewaySponsorServer.cert), ... })
 */
export async function generateDevPki(opts: DevPkiOptions): Promise<DevPki> {
  const pki = devPkiPaths(opts.outDir)
  const validityDays = opts.validityDays ?? DEFAULT_DEV_DAYS
  if (!(validityDays > 0)) throw new RangeError('validityDays must be positive')
  const caOptions: CaOptions = { validityDays, ...(opts.caPathLength === undefined ? {} : { pathLength: opts.caPathLength }) }
  checkCaOptions(caOptions)

  if (!opts.force) {
    const pairs = pairsOf(pki)
    const files = pairs.flatMap(([, p]) => [p.cert, p.key])
    const present = await Promise.all(files.map(exists))
    if (present.every(Boolean)) {
      await checkExisting(pki)
      return pki
    }
    if (present.some(Boolean)) {
      // A set written before the chained demo existed lacks only whole later leaves: complete it
      // from its own CAs rather than refuse it (`npm start` must keep working after a pull).
      const state = new Map(pairs.map(([n], i) => [n, { cert: present[2 * i]!, key: present[2 * i + 1]! }]))
      const later = new Set<PairName>(LATER_LEAVES)
      const completable = pairs.every(([n]) => {
        const s = state.get(n)!
        return later.has(n) ? s.cert === s.key : s.cert && s.key
      })
      if (completable) {
        await checkExisting(pki)
        await completeLaterLeaves(pki, LATER_LEAVES.filter((n) => !state.get(n)!.cert), validityDays)
        return pki
      }
      const missing = files.filter((_, i) => !present[i]).map((f) => basename(f))
      throw new EcluseError(
        'tls_material_invalid',
        `incomplete development PKI in ${pki.dir} (missing ${missing.join(', ')}); regenerate with --force`,
      )
    }
  }

  // All ten keys in parallel on the libuv pool, then the (fast, OpenSSL-signed) certificates.
  const [sponsorCaKeys, trustedCaKeys, ...leafKeyPairs] = await Promise.all(
    Array.from({ length: 10 }, () => generateKeyAsync()),
  )
  const sponsorCa = buildCa(DEV_SPONSOR_CA_NAME, caOptions, sponsorCaKeys!)
  const trustedCa = buildCa(DEV_TRUSTED_CA_NAME, caOptions, trustedCaKeys!)
  const leaf = (ca: CertifiedKey, spec: LeafSpec, i: number): CertifiedKey =>
    buildLeaf(planLeaf(ca, spec, validityDays), spec, leafKeyPairs[i]!)
  const material: Record<PairName, CertifiedKey> = {
    sponsorCa,
    trustedCa,
    gatewaySponsorServer: leaf(sponsorCa, DEV_LEAF_SPECS.gatewaySponsorServer, 0),
    sponsorClient: leaf(sponsorCa, DEV_LEAF_SPECS.sponsorClient, 1),
    trustedServer: leaf(trustedCa, DEV_LEAF_SPECS.trustedServer, 2),
    gatewayTrustedClient: leaf(trustedCa, DEV_LEAF_SPECS.gatewayTrustedClient, 3),
    sidecarServer: leaf(trustedCa, DEV_LEAF_SPECS.sidecarServer, 4),
    edgeClient: leaf(sponsorCa, DEV_LEAF_SPECS.edgeClient, 5),
  }

  await mkdir(pki.dir, { recursive: true, mode: 0o700 })
  // Keys first, then certificates: an interrupted run leaves a set that is visibly incomplete.
  for (const [n, pair] of pairsOf(pki)) await writeFileAtomic(pair.key, material[n].keyPem, 0o600)
  for (const [n, pair] of pairsOf(pki)) await writeFileAtomic(pair.cert, material[n].certPem, 0o644)
  return pki
}
