/**
 * What every TLS context of the gateway allows, on both sides: the sponsor listener and each
 * upstream client. Node's defaults are broader than a gateway of sensitive data should accept:
 *
 * - its cipher list takes TLS 1.2 suites with a static RSA key exchange (`AES256-SHA`,
 *   `AES128-GCM-SHA256`): recorded traffic opens later to whoever gets the server key;
 * - OpenSSL's security level 1 takes RSA keys of 1,024 bits in certificates, ours and the peer's;
 * - TLS 1.2 renegotiation is allowed, and a certificate presented in a renegotiation is never
 *   verified (Node checks the peer once, after the first handshake), while a reload that takes a CA
 *   out judges the connection by the chain it last presented.
 *
 * The list is Mozilla's "intermediate" profile without DHE: AEAD suites with ECDHE only.
 */
import { constants, type X509Certificate } from 'node:crypto'
import { createRequire } from 'node:module'
import type * as Forge from 'node-forge'

/**
 * node-forge, loaded on first need: only a bundle holding a CA that is not self-signed needs it, and
 * a gateway that never does keeps it out of its memory. CommonJS whose names an ESM import cannot
 * see (as in src/pki/dev-pki.ts).
 */
let forgeModule: typeof Forge | undefined
function forge(): typeof Forge {
  forgeModule ??= createRequire(import.meta.url)('node-forge') as typeof Forge
  return forgeModule
}

/**
 * TLS 1.3 suites, TLS 1.2 suites with forward secrecy, and OpenSSL's security level 2 for every key
 * and certificate either peer presents (RSA of 2,048 bits or more, curves of 224 bits or more, no
 * SHA-1 signatures), on top of the checks of tls-material.ts.
 */
export const TLS_CIPHERS = [
  'TLS_AES_128_GCM_SHA256',
  'TLS_AES_256_GCM_SHA384',
  'TLS_CHACHA20_POLY1305_SHA256',
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
  '@SECLEVEL=2',
].join(':')

/** No renegotiation, either way (Node passes these to `SSL_CTX_set_options`). */
export const TLS_SECURE_OPTIONS = constants.SSL_OP_NO_RENEGOTIATION

/** The curves a certificate's EC key may use: those TLS negotiates with OpenSSL's defaults. */
const EC_CURVES: ReadonlySet<string> = new Set(['prime256v1', 'secp384r1', 'secp521r1'])
const MIN_RSA_BITS = 2048

/**
 * Why a certificate's public key is too weak for the gateway's TLS, or `undefined`: RSA under 2,048
 * bits, an EC key off P-256, P-384 and P-521, or a key type TLS certificates do not use here (DSA).
 * Checked on every certificate of a chain and a bundle at load, so that material `config check`
 * passes is material the handshakes accept (OpenSSL would otherwise take a P-192 server key at
 * boot, then fail every handshake).
 */
export function weakKeyProblem(cert: X509Certificate): string | undefined {
  const key = cert.publicKey
  const details = key.asymmetricKeyDetails ?? {}
  switch (key.asymmetricKeyType) {
    case 'rsa':
    case 'rsa-pss':
      return (details.modulusLength ?? 0) < MIN_RSA_BITS ? `has an RSA key of ${details.modulusLength} bits (at least ${MIN_RSA_BITS} are required)` : undefined
    case 'ec':
      return EC_CURVES.has(details.namedCurve ?? '') ? undefined : `has an EC key on ${details.namedCurve ?? 'an unnamed curve'} (P-256, P-384 or P-521 are required)`
    case 'ed25519':
    case 'ed448':
      return undefined
    default:
      return `has a ${key.asymmetricKeyType ?? 'unknown'} key (RSA, EC, Ed25519 or Ed448 are required)`
  }
}

/** Hash algorithms security level 2 accepts in a signature (112 bits or more): SHA-2 and SHA-3. */
const STRONG_HASHES: ReadonlySet<string> = new Set([
  '2.16.840.1.101.3.4.2.1', // SHA-256
  '2.16.840.1.101.3.4.2.2', // SHA-384
  '2.16.840.1.101.3.4.2.3', // SHA-512
  '2.16.840.1.101.3.4.2.4', // SHA-224
  '2.16.840.1.101.3.4.2.5', // SHA-512/224
  '2.16.840.1.101.3.4.2.6', // SHA-512/256
  '2.16.840.1.101.3.4.2.7', // SHA3-224
  '2.16.840.1.101.3.4.2.8', // SHA3-256
  '2.16.840.1.101.3.4.2.9', // SHA3-384
  '2.16.840.1.101.3.4.2.10', // SHA3-512
])
/** Signature algorithms accepted as they are: RSA and ECDSA over SHA-2 or SHA-3, EdDSA. */
const STRONG_SIGNATURES: ReadonlySet<string> = new Set([
  '1.2.840.113549.1.1.11', // sha256WithRSAEncryption
  '1.2.840.113549.1.1.12', // sha384WithRSAEncryption
  '1.2.840.113549.1.1.13', // sha512WithRSAEncryption
  '1.2.840.113549.1.1.14', // sha224WithRSAEncryption
  '1.2.840.113549.1.1.15', // sha512-224WithRSAEncryption
  '1.2.840.113549.1.1.16', // sha512-256WithRSAEncryption
  '2.16.840.1.101.3.4.3.13', // RSA with SHA3-224
  '2.16.840.1.101.3.4.3.14', // RSA with SHA3-256
  '2.16.840.1.101.3.4.3.15', // RSA with SHA3-384
  '2.16.840.1.101.3.4.3.16', // RSA with SHA3-512
  '1.2.840.10045.4.3.1', // ecdsa-with-SHA224
  '1.2.840.10045.4.3.2', // ecdsa-with-SHA256
  '1.2.840.10045.4.3.3', // ecdsa-with-SHA384
  '1.2.840.10045.4.3.4', // ecdsa-with-SHA512
  '2.16.840.1.101.3.4.3.9', // ECDSA with SHA3-224
  '2.16.840.1.101.3.4.3.10', // ECDSA with SHA3-256
  '2.16.840.1.101.3.4.3.11', // ECDSA with SHA3-384
  '2.16.840.1.101.3.4.3.12', // ECDSA with SHA3-512
  '1.3.101.112', // Ed25519
  '1.3.101.113', // Ed448
])
/** Names of the weak ones met in practice, for the message. */
const WEAK_SIGNATURE_NAMES: ReadonlyMap<string, string> = new Map([
  ['1.2.840.113549.1.1.2', 'MD2 with RSA'],
  ['1.2.840.113549.1.1.3', 'MD4 with RSA'],
  ['1.2.840.113549.1.1.4', 'MD5 with RSA'],
  ['1.2.840.113549.1.1.5', 'SHA-1 with RSA'],
  ['1.3.14.3.2.29', 'SHA-1 with RSA'],
  ['1.2.840.10045.4.1', 'ECDSA with SHA-1'],
  ['1.2.840.10040.4.3', 'DSA with SHA-1'],
])
const RSASSA_PSS = '1.2.840.113549.1.1.10'
const SHA1 = '1.3.14.3.2.26'

/**
 * Why a certificate's signature is too weak for the gateway's TLS, or `undefined`: only RSA, ECDSA
 * or RSASSA-PSS over SHA-2 or SHA-3, and Ed25519 or Ed448, are accepted (an allow-list: OpenSSL's
 * security level 2 refuses MD5, SHA-1, RIPEMD-160 and others in a peer's chain). OpenSSL checks
 * the certificates the gateway presents when it loads them, but loads a CA bundle unchecked: an
 * intermediate CA signed with SHA-1 passed `config check`, then every client it issued was refused
 * (found by review). A self-signed certificate is exempt: a trust anchor's own signature is not
 * checked.
 */
export function weakSignatureProblem(cert: X509Certificate): string | undefined {
  if (cert.issuer === cert.subject && cert.verify(cert.publicKey)) return undefined
  const { asn1, util } = forge()
  const certificate = asn1.fromDer(util.createBuffer(cert.raw.toString('binary')))
  // Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm AlgorithmIdentifier, signature }
  const algorithm = (certificate.value as Forge.asn1.Asn1[])[1]!.value as Forge.asn1.Asn1[]
  const oid = asn1.derToOid(algorithm[0]!.value as string)
  if (STRONG_SIGNATURES.has(oid)) return undefined
  if (oid === RSASSA_PSS) {
    const hash = pssHash(algorithm[1])
    if (hash === undefined) return 'is signed with RSASSA-PSS whose parameters do not parse (RFC 4055 §3.1)'
    return STRONG_HASHES.has(hash) ? undefined : `is signed with RSASSA-PSS over ${hash === SHA1 ? 'SHA-1' : `the hash ${hash}`} (SHA-224 or stronger is required)`
  }
  return `is signed with ${WEAK_SIGNATURE_NAMES.get(oid) ?? `the algorithm ${oid}`} (RSA, ECDSA or RSASSA-PSS over SHA-224 or stronger, or EdDSA, is required)`
}

/**
 * RSASSA-PSS-params' hashAlgorithm ([0], SHA-1 when absent: RFC 4055 §3.1), or `undefined` when it
 * is there but is no AlgorithmIdentifier (Node parses such a certificate: `[0] {}` crashed the load
 * with a TypeError that named no key, found by review).
 */
function pssHash(params: Forge.asn1.Asn1 | undefined): string | undefined {
  const { asn1 } = forge()
  const fields = Array.isArray(params?.value) ? (params.value as Forge.asn1.Asn1[]) : []
  const hash = fields.find((f) => f.tagClass === asn1.Class.CONTEXT_SPECIFIC && f.type === 0)
  if (hash === undefined) return SHA1
  const identifier = Array.isArray(hash.value) ? (hash.value[0] as Forge.asn1.Asn1 | undefined) : undefined
  const oid = Array.isArray(identifier?.value) ? (identifier.value[0] as Forge.asn1.Asn1 | undefined) : undefined
  if (oid === undefined || oid.tagClass !== asn1.Class.UNIVERSAL || oid.type !== asn1.Type.OID || typeof oid.value !== 'string') return undefined
  return asn1.derToOid(oid.value)
}
