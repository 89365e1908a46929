/**
 * TLS material for both sides, read and checked at boot (and on reload) so that a broken or
 * dangerous file fails with the key that names it instead of a handshake error at 3 a.m.:
 *
 * - the private key matches the leaf certificate, and is not passphrase-protected;
 * - every certificate of the chain is currently valid and the chain is in issuing order;
 * - a CA bundle holds CA certificates only, at least one of them currently valid;
 * - no certificate file carries a private key;
 * - every key is strong enough (`weakKeyProblem`: RSA of 2,048 bits or more, P-256/384/521), a
 *   bundle's CAs are not signed with SHA-1 (`weakSignatureProblem`), and OpenSSL itself accepts
 *   what the gateway presents under its TLS policy (tls-policy.ts: security level 2);
 * - the sponsor side and the trusted side never trust each other's CA (`loadAllTls`).
 *
 * Messages are `<config key path>: <file>: <reason>`; they never include key bytes.
 */
import { createPrivateKey, type KeyObject, X509Certificate } from 'node:crypto'
import { createSecureContext } from 'node:tls'
import { EcluseError } from '../errors.js'
import { neverOpened, readBoundedFile, unreadable } from '../read-bounded-file.js'
import type { Config, UpstreamConfig } from './schema.js'
import { TLS_CIPHERS, weakKeyProblem, weakSignatureProblem } from './tls-policy.js'

/** A PEM file larger than this is refused unread (bounded by default). */
export const MAX_PEM_BYTES = 1024 * 1024

/** Certificates, key and trust bundle as Buffers, ready for `tls.createSecureContext`. */
export interface TlsMaterial {
  /** The PEM certificate chain, leaf first, as read. */
  readonly cert: Buffer
  /** The PEM private key, as read. Never log it. */
  readonly key: Buffer
  /** The PEM bundle of trusted CA certificates, as read. */
  readonly ca: Buffer
  /** The same bundle, parsed: what a connection verified earlier is checked against after a reload. */
  readonly caCerts: readonly X509Certificate[]
  /** When the leaf certificate expires (for logs and the expiry metric). */
  readonly notAfter: Date
  /**
   * The soonest expiry among the bundle's CA certificates, but for one renewed within the bundle
   * (the same subject and key, valid for longer), whose peers its renewal goes on verifying. An
   * expired CA counts: the peers it issued are refused, whether or not another CA of the bundle
   * still serves others (for the expiry metric and its alerts).
   */
  readonly caNotAfter: Date
  /** The soonest expiry in the chain presented, leaf and intermediates: from then on no peer accepts it. */
  readonly chainNotAfter: Date
  /** Each CA of the bundle's validity, [notBefore, notAfter] in ms: once none holds now, no peer can be verified. */
  readonly caValidity: ReadonlyArray<readonly [number, number]>
  /** The leaf's subject on one line (`CN=…, OU=…`), for logs. */
  readonly subject: string
  /** SHA-256 fingerprint of the leaf (`AB:CD:…`), for logs. */
  readonly fingerprint256: string
}

/** The sponsor listener's certificate and key, and the sponsor CA bundle that clients must chain to. */
export type ServerTlsMaterial = TlsMaterial

/** The gateway's client certificate and key for one upstream, and the trusted CA bundle it must chain to. */
export type ClientTlsMaterial = TlsMaterial

export interface TlsLoadOptions {
  /** Config key path of the TLS block, used in messages (`sponsor.tls`, `upstreams.accreditation.tls`). */
  readonly keyPath?: string
  /** The clock validity is checked against (tests). */
  readonly now?: Date
}

/** Purposes (extendedKeyUsage OIDs) checked on the leaf when the certificate restricts them. */
const SERVER_AUTH = '1.3.6.1.5.5.7.3.1'
const CLIENT_AUTH = '1.3.6.1.5.5.7.3.2'

/**
 * Loads the sponsor listener's material: `cert` (chain), `key` and `clientCa`.
 *
 * @throws EcluseError `tls_material_invalid`
 * @example
 * const tls = await loadServerTls(config.sponsor.tls)
 * https.createServer({ cert: tls.cert, key: tls.key, ca: tls.ca, requestCert: true })
 */
export async function loadServerTls(cfg: Config['sponsor']['tls'], options: TlsLoadOptions = {}): Promise<ServerTlsMaterial> {
  return (await loadMaterial(cfg.cert, cfg.key, cfg.clientCa, 'clientCa', SERVER_AUTH, options.keyPath ?? 'sponsor.tls', options.now))
    .material
}

/**
 * Loads the gateway's material for one upstream: `cert` (chain), `key` and `ca`.
 *
 * @throws EcluseError `tls_material_invalid`
 * @example
 * const tls = await loadClientTls(config.upstreams.accreditation.tls, { keyPath: 'upstreams.accreditation.tls' })
 */
export async function loadClientTls(cfg: UpstreamConfig['tls'], options: TlsLoadOptions = {}): Promise<ClientTlsMaterial> {
  return (await loadMaterial(cfg.cert, cfg.key, cfg.ca, 'ca', CLIENT_AUTH, options.keyPath ?? 'upstreams.*.tls', options.now))
    .material
}

/** Everything the gateway presents and trusts, keyed like the configuration. */
export interface AllTlsMaterial {
  readonly sponsor: ServerTlsMaterial
  readonly upstreams: Map<string, ClientTlsMaterial>
}

/**
 * Loads the sponsor material and every upstream's, then refuses a configuration in which one side
 * trusts the other side's CA: the sponsor `clientCa` and an upstream `tls.ca` must share no
 * certificate (by bytes or by public key); nor may the certificate the sponsor listener presents and
 * an upstream's client certificate have the same key. Every problem is reported, one per line.
 *
 * @throws EcluseError `tls_material_invalid`
 * @example
 * const { sponsor, upstreams } = await loadAllTls(await loadConfigFile('config/edge.yaml'))
 */
export async function loadAllTls(config: Config, options: { now?: Date } = {}): Promise<AllTlsMaterial> {
  const sponsorTls = config.sponsor.tls
  const upstreamEntries = Object.entries(config.upstreams)
  const settled = await Promise.allSettled([
    loadMaterial(sponsorTls.cert, sponsorTls.key, sponsorTls.clientCa, 'clientCa', SERVER_AUTH, 'sponsor.tls', options.now),
    ...upstreamEntries.map(([name, u]) =>
      loadMaterial(u.tls.cert, u.tls.key, u.tls.ca, 'ca', CLIENT_AUTH, `upstreams.${name}.tls`, options.now),
    ),
  ])
  const failures = settled.filter((s) => s.status === 'rejected').map((s) => s.reason as unknown)
  if (failures.length > 0) throw combine(failures)

  const loaded = settled.map((s) => (s as PromiseFulfilledResult<Loaded>).value)
  const sponsor = loaded[0]!
  const sponsorKey = spkiId(sponsor.leaf)
  const upstreams = new Map<string, ClientTlsMaterial>()
  const problems: string[] = []
  upstreamEntries.forEach(([name, u], i) => {
    const upstream = loaded[i + 1]!
    upstreams.set(name, upstream.material)
    // One key pair for both sides: whoever takes it from the sponsor-facing listener, the most
    // exposed of the two, would also hold the gateway's identity on the trusted side.
    if (spkiId(upstream.leaf) === sponsorKey) {
      problems.push(
        `upstreams.${name}.tls.cert: ${u.tls.cert}: has the same key as sponsor.tls.cert (${sponsorTls.cert}); ` +
          'the sponsor side and the trusted side must never share a key pair',
      )
    }
    const shared = sharedCertificate(sponsor.caCerts, upstream.caCerts)
    if (sponsor.material.ca.equals(upstream.material.ca) || shared !== undefined) {
      const what = shared === undefined ? 'the same bundle' : `"${shared}"`
      problems.push(
        `sponsor.tls.clientCa: ${sponsorTls.clientCa}: trusts ${what}, as upstreams.${name}.tls.ca (${u.tls.ca}) does; ` +
          "the sponsor side and the trusted side must never trust each other's CA",
      )
    }
    // Sharing no certificate is not enough: a CA on one side that issued a CA the other side
    // trusts trusts what that one issues too (found by review: a corporate root as clientCa admitted
    // clients of the trusted side's intermediate). The certificates the gateway presents are not
    // judged so: the chained demo's edge presents a sponsor-CA certificate to its sidecar by design.
    for (const [issuers, issuedBy, where] of [
      [sponsor.caCerts, upstream.caCerts, `sponsor.tls.clientCa: ${sponsorTls.clientCa}`],
      [upstream.caCerts, sponsor.caCerts, `upstreams.${name}.tls.ca: ${u.tls.ca}`],
    ] as const) {
      const across = issuedAcross(issuers, issuedBy)
      if (across !== undefined) {
        problems.push(
          `${where}: "${across.issuer}" issued "${across.issued}", which the other side trusts; ` +
            "the sponsor side and the trusted side must never trust each other's CA",
        )
      }
    }
  })
  if (problems.length > 0) throw new EcluseError('tls_material_invalid', problems.join('\n'))
  return { sponsor: sponsor.material, upstreams }
}

// ---------------------------------------------------------------------------------------------

interface Loaded {
  readonly material: TlsMaterial
  readonly caCerts: readonly X509Certificate[]
  /** The certificate presented, for the cross-side key check. */
  readonly leaf: X509Certificate
}

async function loadMaterial(
  certFile: string,
  keyFile: string,
  caFile: string,
  caKey: 'clientCa' | 'ca',
  purpose: string,
  keyPath: string,
  now: Date = new Date(),
): Promise<Loaded> {
  const fail = (key: string, file: string, reason: string): never => {
    throw new EcluseError('tls_material_invalid', `${keyPath}.${key}: ${file}: ${reason}`)
  }
  const [certFileBytes, key, caFileBytes] = await Promise.all([
    readPem(certFile, `${keyPath}.cert`),
    readPem(keyFile, `${keyPath}.key`),
    readPem(caFile, `${keyPath}.${caKey}`),
  ])

  // --- the chain we present
  const chain = parseCertificates(certFileBytes, `${keyPath}.cert`, certFile)
  const leaf = chain[0]!
  chain.forEach((c, i) => {
    const what = i === 0 ? 'certificate' : `chain certificate ${i + 1} ("${subjectOf(c)}")`
    const reason = validityProblem(c, now) ?? weakKeyProblem(c)
    if (reason !== undefined) fail('cert', certFile, `${what} ${reason}`)
    const issuer = chain[i + 1]
    // RFC 5246 §7.4.2: each following certificate must certify the one preceding it.
    if (issuer !== undefined && !c.checkIssued(issuer)) {
      fail('cert', certFile, `certificate ${i + 2} did not issue certificate ${i + 1}: the chain must be in order, leaf first`)
    }
  })
  if (leaf.ca) fail('cert', certFile, 'the first certificate is a CA certificate, not a leaf')
  const eku = extendedKeyUsage(leaf)
  if (eku !== undefined && !eku.includes(purpose)) {
    const role = purpose === SERVER_AUTH ? 'TLS server' : 'TLS client'
    fail('cert', certFile, `certificate extendedKeyUsage does not allow ${role} authentication`)
  }

  // --- the key
  // Recognised by its PEM armour (PKCS#8 `ENCRYPTED PRIVATE KEY`, or the legacy `Proc-Type`
  // header): OpenSSL 3 reports a missing passphrase as anything from ERR_MISSING_PASSPHRASE to
  // "interrupted or cancelled", depending on the format.
  if (ENCRYPTED_KEY.test(key.toString('latin1'))) fail('key', keyFile, 'encrypted private keys are not supported')
  let privateKey: KeyObject
  try {
    privateKey = createPrivateKey({ key, format: 'pem' })
  } catch (err) {
    // OpenSSL's messages say nothing about the key's content, but there is no need to relay them.
    const code = (err as NodeJS.ErrnoException).code
    fail(
      'key',
      keyFile,
      code === 'ERR_MISSING_PASSPHRASE' ? 'encrypted private keys are not supported' : 'not a PEM private key',
    )
  }
  if (!leaf.checkPrivateKey(privateKey!)) fail('key', keyFile, `does not match the certificate in ${certFile}`)

  // --- the trust bundle
  const caCerts = parseCertificates(caFileBytes, `${keyPath}.${caKey}`, caFile)
  caCerts.forEach((c, i) => {
    // A non-CA certificate in a trust bundle would be a pinned trust anchor in OpenSSL; refuse it.
    if (!c.ca) fail(caKey, caFile, `certificate ${i + 1} ("${subjectOf(c)}") is not a CA certificate`)
    // A weak anchor is as good as none: whoever factors it issues the other side's certificates.
    // And OpenSSL loads a bundle unchecked, where it checks the chain the gateway presents.
    const weak = weakKeyProblem(c) ?? weakSignatureProblem(c)
    if (weak !== undefined) fail(caKey, caFile, `certificate ${i + 1} ("${subjectOf(c)}") ${weak}`)
  })
  if (!caCerts.some((c) => validityProblem(c, now) === undefined)) {
    fail(caKey, caFile, 'no CA certificate in the bundle is currently valid')
  }
  // OpenSSL gets the certificates checked above, as PEM rebuilt from them, never the files' bytes:
  // it would also read blocks the checks never saw (`X509 CERTIFICATE`, `TRUSTED CERTIFICATE`), so
  // a bundle could smuggle the other side's CA past the cross-side check (found by review).
  const cert = pemOf(chain)
  const ca = pemOf(caCerts)
  // Last, what only OpenSSL decides: a key too small for its security level, a weak signature. The
  // same material must not pass `config check` and then fail at boot, or half-way through a reload.
  try {
    createSecureContext({ cert, key, ca, ciphers: TLS_CIPHERS })
  } catch (err) {
    fail('cert', certFile, `rejected by OpenSSL with ${keyFile}: ${(err as Error).message}`)
  }

  return {
    material: {
      cert,
      key,
      ca,
      caCerts,
      notAfter: new Date(leaf.validTo),
      caNotAfter: soonestUnrenewed(caCerts),
      chainNotAfter: new Date(Math.min(...chain.map((c) => new Date(c.validTo).getTime()))),
      caValidity: caCerts.map((c) => [new Date(c.validFrom).getTime(), new Date(c.validTo).getTime()] as const),
      subject: subjectOf(leaf),
      fingerprint256: leaf.fingerprint256,
    },
    caCerts,
    leaf,
  }
}

/** See `TlsMaterial.caNotAfter`. */
function soonestUnrenewed(caCerts: readonly X509Certificate[]): Date {
  const notAfter = (c: X509Certificate) => new Date(c.validTo).getTime()
  const renewed = (c: X509Certificate) =>
    caCerts.some((r) => r !== c && r.subject === c.subject && r.publicKey.equals(c.publicKey) && notAfter(r) > notAfter(c))
  return new Date(Math.min(...caCerts.filter((c) => !renewed(c)).map(notAfter)))
}

async function readPem(file: string, keyPath: string): Promise<Buffer> {
  try {
    return await readBoundedFile(file, MAX_PEM_BYTES)
  } catch (err) {
    // A value that did not open is not quoted: it may be key material pasted in the path's place.
    const where = neverOpened(err) ? `${keyPath}: the file it names` : `${keyPath}: ${file}`
    throw new EcluseError('tls_material_invalid', `${where}: ${unreadable(err, 'cannot read')}`, { cause: err })
  }
}

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----\r?\n[\s\S]*?-----END CERTIFICATE-----/g
/** The label of every PEM block, however it is spelt: each must be a certificate read above. */
const PEM_BEGIN = /-----BEGIN ([^\r\n]*?)-----/g
const PEM_PRIVATE_KEY = /-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----/
const ENCRYPTED_KEY = /-----BEGIN ENCRYPTED PRIVATE KEY-----|^Proc-Type: 4,ENCRYPTED/m

/** Every PEM certificate of a file, in order; anything unparseable is an error. */
function parseCertificates(pem: Buffer, keyPath: string, file: string): X509Certificate[] {
  const fail = (reason: string): never => {
    throw new EcluseError('tls_material_invalid', `${keyPath}: ${file}: ${reason}`)
  }
  const text = pem.toString('latin1')
  // A key in a certificate file ends up wherever certificates are copied to; refuse it.
  if (PEM_PRIVATE_KEY.test(text)) fail('contains a private key; certificate files must not')
  const blocks = text.match(PEM_CERTIFICATE) ?? []
  if (blocks.length === 0) fail('no PEM certificate found')
  // Every block must be one of those: OpenSSL would read `X509 CERTIFICATE` or `TRUSTED CERTIFICATE`
  // blocks, or a `BEGIN CERTIFICATE` line with trailing spaces, that the pattern above skips.
  const labels = [...text.matchAll(PEM_BEGIN)].map((m) => m[1]!)
  const other = labels.find((label) => label !== 'CERTIFICATE')
  if (other !== undefined) fail(`holds a "${other}" PEM block; only CERTIFICATE blocks are read`)
  if (labels.length !== blocks.length) fail('holds a CERTIFICATE PEM block that is not spelt exactly (a BEGIN line with trailing characters?)')
  return blocks.map((block, i) => {
    try {
      return new X509Certificate(block)
    } catch {
      return fail(`certificate ${i + 1} cannot be parsed`)
    }
  })
}

/** Certificates as one PEM bundle, rebuilt from what was parsed (`X509Certificate.toString()`). */
function pemOf(certs: readonly X509Certificate[]): Buffer {
  return Buffer.from(certs.map((c) => c.toString()).join(''))
}

/** `undefined` when `cert` is valid at `now`, else why not. */
function validityProblem(cert: X509Certificate, now: Date): string | undefined {
  const notBefore = new Date(cert.validFrom)
  const notAfter = new Date(cert.validTo)
  if (Number.isNaN(notBefore.getTime()) || Number.isNaN(notAfter.getTime())) return 'has an unreadable validity period'
  if (now < notBefore) return `is not valid before ${notBefore.toISOString()}`
  if (now > notAfter) return `expired on ${notAfter.toISOString()}`
  return undefined
}

/** The leaf's extendedKeyUsage OIDs, or `undefined` when the extension is absent (any purpose). */
function extendedKeyUsage(cert: X509Certificate): readonly string[] | undefined {
  // Node names the extendedKeyUsage list `keyUsage` (and `extKeyUsage` from v22); it is
  // undefined when the certificate has no such extension.
  const list = (cert as unknown as { keyUsage?: string[] }).keyUsage
  return Array.isArray(list) && list.length > 0 ? list : undefined
}

/** The subject of a certificate both bundles trust (same bytes, or same public key). */
function sharedCertificate(a: readonly X509Certificate[], b: readonly X509Certificate[]): string | undefined {
  const seen = new Map<string, string>()
  for (const c of a) {
    seen.set(`raw:${c.fingerprint256}`, subjectOf(c))
    seen.set(`spki:${spkiId(c)}`, subjectOf(c))
  }
  for (const c of b) {
    const hit = seen.get(`raw:${c.fingerprint256}`) ?? seen.get(`spki:${spkiId(c)}`)
    if (hit !== undefined) return hit
  }
  return undefined
}

/** A certificate of `issuers` that issued (and signed) one of `certs`, with the one it issued. */
function issuedAcross(issuers: readonly X509Certificate[], certs: readonly X509Certificate[]): { issuer: string; issued: string } | undefined {
  for (const issuer of issuers) {
    for (const c of certs) {
      if (c.fingerprint256 !== issuer.fingerprint256 && c.checkIssued(issuer) && c.verify(issuer.publicKey)) {
        return { issuer: subjectOf(issuer), issued: subjectOf(c) }
      }
    }
  }
  return undefined
}

/** Node separates subject attributes with newlines; a message keeps one problem per line. */
function subjectOf(cert: X509Certificate): string {
  return cert.subject.replaceAll('\n', ', ')
}

/** A re-issued CA certificate with the same key still verifies what the original issued. */
function spkiId(cert: X509Certificate): string {
  return cert.publicKey.export({ type: 'spki', format: 'der' }).toString('base64')
}

function combine(errors: readonly unknown[]): Error {
  const first = errors[0]
  if (errors.length === 1 || !errors.every((e) => e instanceof EcluseError && e.code === 'tls_material_invalid')) {
    return first instanceof Error ? first : new EcluseError('internal', String(first))
  }
  return new EcluseError('tls_material_invalid', errors.map((e) => (e as Error).message).join('\n'))
}
