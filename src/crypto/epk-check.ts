/**
 * Public checks of a sealed value's ephemeral key (`epk`), for a gateway that holds public keys only
 * (`require-sealed`): that it is a point some opener could agree with. The opener finds out by its
 * agreement; the check cannot make one, but needs none (found by review: it passed every X25519
 * point of small order and P-256 points off the curve, which no opener can open).
 *
 * - X25519 (RFC 7748): a point whose order divides 8, on the curve or its twist, gives the all-zero
 *   secret, which OpenSSL refuses. Told by at most three doublings in projective x-only coordinates:
 *   BigInt arithmetic, no agreement, no inversion.
 * - P-256 (cofactor 1): a point of the curve is of large order; told by the curve's equation, in
 *   BigInt (≈ 5 µs, where importing the JWK through Node took ≈ 70 µs a fresh point; found by
 *   re-review: a list of values stored over time, each under its own `epk`, paid that per value).
 *
 * A sealer's windows reuse one `epk` for many values: results are kept for the last
 * {@link CHECKED_CACHE_SIZE} points.
 */
import { b64uDecode } from './base64url.js'
import { type Epk, openFailed } from './jwe.js'

/** Points whose verdict is kept. */
export const CHECKED_CACHE_SIZE = 1024

const P = 2n ** 255n - 19n
const A = 486_662n

/** Insertion-ordered: the oldest verdict goes first. */
const checked = new Map<string, boolean>()

/**
 * Whether X25519's `u` (32 bytes, little-endian; the top bit ignored, RFC 7748 §5) is a point of order
 * dividing 8. `P` has order ≤ 2 when `x(x² + Ax + 1) = 0`, and [8]P = O exactly when one of P, [2]P,
 * [4]P has: with x = X/Z, `X(X² + AXZ + Z²) = 0`, and [2](X : Z) = ((X² − Z²)² : 4XZ(X² + AXZ + Z²)).
 */
export function x25519HasSmallOrder(u: Uint8Array): boolean {
  let n = 0n
  for (let i = 31; i >= 0; i--) n = (n << 8n) | BigInt(i === 31 ? u[i]! & 0x7f : u[i]!)
  let x = n % P
  let z = 1n
  for (let doublings = 0; doublings < 3; doublings++) {
    const xx = (x * x) % P
    const zz = (z * z) % P
    const xz = (x * z) % P
    const t = (xx + A * xz + zz) % P
    if ((x * t) % P === 0n) return true
    const d = (xx - zz + P) % P
    x = (d * d) % P
    z = (4n * xz * t) % P
  }
  return false
}

/** Throws `open_failed` unless an opener could agree with `epk` (none: RSA, nothing to check). */
export function assertUsableEpk(epk: Epk | undefined): void {
  if (epk !== undefined && !isUsableEpk(epk)) openFailed('epk is no point an agreement can use (off the curve, or of small order)')
}

/** Whether an opener could agree with `epk` (see the module's comment). */
export function isUsableEpk(epk: Epk): boolean {
  const id = `${epk.crv}.${epk.x}.${epk.y ?? ''}`
  const known = checked.get(id)
  if (known !== undefined) return known
  const usable = check(epk)
  if (checked.size >= CHECKED_CACHE_SIZE) checked.delete(checked.keys().next().value!)
  checked.set(id, usable)
  return usable
}

/** P-256 (SEC 2 / FIPS 186-4): y² = x³ − 3x + b over GF(p). */
const P256 = 2n ** 256n - 2n ** 224n + 2n ** 192n + 2n ** 96n - 1n
const P256_B = 0x5ac635d8aa3a93e7b3ebbd55769886bc651d06b0cc53b0f63bce3c3e27d2604bn

/** Whether big-endian `x`, `y` (32 bytes each) are the coordinates of a point of P-256. */
export function isP256Point(x: Uint8Array, y: Uint8Array): boolean {
  const bx = BigInt(`0x${Buffer.from(x).toString('hex')}`)
  const by = BigInt(`0x${Buffer.from(y).toString('hex')}`)
  if (bx >= P256 || by >= P256) return false
  return (by * by - (bx * bx * bx - 3n * bx + P256_B)) % P256 === 0n
}

function check(epk: Epk): boolean {
  const x = b64uDecode(epk.x)
  if (x === undefined || x.length !== 32) return false
  if (epk.kty === 'OKP' && epk.crv === 'X25519') return !x25519HasSmallOrder(x)
  if (epk.kty === 'EC' && epk.crv === 'P-256' && epk.y !== undefined) {
    const y = b64uDecode(epk.y)
    return y !== undefined && y.length === 32 && isP256Point(x, y)
  }
  return false
}
