/**
 * The algorithm table (STYLE habit 6, after jose `src/lib/jwe_algorithms.ts`). Everything not listed
 * here is refused, on sealing and on opening: no `none`, no `dir`, no PBES2, no AES-CBC-HMAC, no
 * compression. Adding an algorithm means adding a row and its tests, never a branch elsewhere.
 */

/** Key management algorithms we seal to and open from (RFC 7518 §4.6, §4.3). */
export type KeyAlg = 'ECDH-ES+A256KW' | 'RSA-OAEP-256'
/** Curves allowed for ECDH-ES (RFC 8037 §3.2 for X25519, RFC 7518 §6.2.1.1 for P-256). */
export type Curve = 'X25519' | 'P-256'
/** The one content encryption algorithm (RFC 7518 §5.3). */
export type EncAlg = 'A256GCM'

export interface EcdhAlgorithm {
  readonly kind: 'ecdh-es+kw'
  readonly alg: 'ECDH-ES+A256KW'
  /** Bits of the key-wrapping key produced by the Concat KDF (RFC 7518 §4.6.2 `keydatalen`). */
  readonly kekBits: 256
  /** Length of the AES-KW output for a 256-bit CEK (RFC 3394: n+1 64-bit blocks). */
  readonly wrappedCekBytes: 40
}

export interface RsaOaepAlgorithm {
  readonly kind: 'rsa-oaep'
  readonly alg: 'RSA-OAEP-256'
  readonly oaepHash: 'sha256'
  /** RFC 7518 §4.3: "A key of size 2048 bits or larger MUST be used". */
  readonly minModulusBits: 2048
  /** Our own ceiling, to bound the cost an attacker-chosen key file can impose. */
  readonly maxModulusBits: 8192
}

export type KeyAlgorithm = EcdhAlgorithm | RsaOaepAlgorithm

export const KEY_ALGORITHMS: Readonly<Record<KeyAlg, KeyAlgorithm>> = {
  'ECDH-ES+A256KW': { kind: 'ecdh-es+kw', alg: 'ECDH-ES+A256KW', kekBits: 256, wrappedCekBytes: 40 },
  'RSA-OAEP-256': {
    kind: 'rsa-oaep',
    alg: 'RSA-OAEP-256',
    oaepHash: 'sha256',
    minModulusBits: 2048,
    maxModulusBits: 8192,
  },
}

export interface CurveInfo {
  readonly crv: Curve
  /** JWK `kty` (RFC 8037 §2 for OKP). */
  readonly kty: 'OKP' | 'EC'
  /** Length of each public coordinate (`x`, and `y` for EC) and of `d`. */
  readonly coordinateBytes: 32
  /** Arguments for `crypto.generateKeyPairSync`. */
  readonly nodeType: 'x25519' | 'ec'
  readonly namedCurve?: 'prime256v1'
}

export const CURVES: Readonly<Record<Curve, CurveInfo>> = {
  X25519: { crv: 'X25519', kty: 'OKP', coordinateBytes: 32, nodeType: 'x25519' },
  'P-256': { crv: 'P-256', kty: 'EC', coordinateBytes: 32, nodeType: 'ec', namedCurve: 'prime256v1' },
}

export interface ContentEncryption {
  readonly enc: EncAlg
  readonly cipher: 'aes-256-gcm'
  readonly cekBytes: 32
  /** 96-bit IVs, the size GCM is specified for (NIST SP 800-38D §5.2.1.1; RFC 7518 §5.3). */
  readonly ivBytes: 12
  readonly tagBytes: 16
}

export const CONTENT_ENCRYPTION: Readonly<Record<EncAlg, ContentEncryption>> = {
  A256GCM: { enc: 'A256GCM', cipher: 'aes-256-gcm', cekBytes: 32, ivBytes: 12, tagBytes: 16 },
}

/** The default for new key sets and the recommended algorithm (see docs/sealing.md). */
export const DEFAULT_KEY_ALG: KeyAlg = 'ECDH-ES+A256KW'
export const DEFAULT_CURVE: Curve = 'X25519'

export function isKeyAlg(v: unknown): v is KeyAlg {
  return typeof v === 'string' && Object.hasOwn(KEY_ALGORITHMS, v)
}

export function isCurve(v: unknown): v is Curve {
  return typeof v === 'string' && Object.hasOwn(CURVES, v)
}

export function isEncAlg(v: unknown): v is EncAlg {
  return typeof v === 'string' && Object.hasOwn(CONTENT_ENCRYPTION, v)
}
