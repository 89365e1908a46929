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
