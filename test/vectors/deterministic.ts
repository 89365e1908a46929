/**
 * Deterministic test keys for the published vectors. No private key is committed: each private
 * scalar is SHA-256 of a public label (documented in docs/sealed-stream-format.md §Test vectors), so
 * anyone can rebuild the keys, and nobody should ever use them for anything else.
 */
import { createECDH, createHash, createPrivateKey, type KeyObject, randomBytes } from 'node:crypto'

export function scalar(seed: string): Buffer {
  return createHash('sha256').update(seed, 'utf8').digest()
}

/** X25519 private key with `d = SHA-256(seed)` (RFC 8410 §7 PKCS#8). */
export function x25519FromSeed(seed: string): KeyObject {
  const der = Buffer.concat([Buffer.from('302e020100300506032b656e04220420', 'hex'), scalar(seed)])
  return createPrivateKey({ key: der, format: 'der', type: 'pkcs8' })
}

/** P-256 private key with `d = SHA-256(seed)` (valid for our labels: 0 < d < n). */
export function p256FromSeed(seed: string): KeyObject {
  const d = scalar(seed)
  const ecdh = createECDH('prime256v1')
  ecdh.setPrivateKey(d)
  const point = ecdh.getPublicKey()
  return createPrivateKey({
    key: {
      kty: 'EC',
      crv: 'P-256',
      x: point.subarray(1, 33).toString('base64url'),
      y: point.subarray(33, 65).toString('base64url'),
      d: d.toString('base64url'),
    },
    format: 'jwk',
  })
}

export function fromSeed(crv: 'X25519' | 'P-256', seed: string): KeyObject {
  return crv === 'X25519' ? x25519FromSeed(seed) : p256FromSeed(seed)
}

/**
 * A random ephemeral private key for the sealer's test seam, imported rather than made by
 * `generateKeyPairSync`: the seam exports its public half as a JWK, and on Node 20 that export of a
 * freshly generated key can deadlock the process (docs/sealing.md, "Node 20: no JWK export of a
 * fresh key").
 */
export function randomEphemeral(crv: 'X25519' | 'P-256'): KeyObject {
  return fromSeed(crv, randomBytes(16).toString('hex'))
}

/** The private JWK (for tests at run time only) and public JWK of a seeded recipient key. */
export function seededRecipient(crv: 'X25519' | 'P-256', seed: string, kid: string) {
  const priv = fromSeed(crv, seed)
  const privateJwk = { kid, use: 'enc', alg: 'ECDH-ES+A256KW', ...priv.export({ format: 'jwk' }) }
  const { d: _d, ...pub } = privateJwk as Record<string, unknown>
  return { privateJwk: privateJwk as Record<string, unknown>, publicJwk: pub }
}
