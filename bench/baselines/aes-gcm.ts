/**
 * Baseline 5: node:crypto AES-256-GCM on one core — the physical limit of any sealing path on this
 * machine (field values and stream records alike are AES-256-GCM, RFC 7518 §5.3). A fresh cipher
 * per message (as every sealed value and every stream record needs its own IV), 96-bit IVs from a
 * counter, a fixed key: only the AEAD itself is timed, sealing (`aesGcmRate`) and opening, the tag
 * checked (`aesGcmOpenRate`).
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto'

/** Messages and bytes per second, for `size`-byte messages. */
export interface AeadRate {
  readonly opsPerSecond: number
  readonly bytesPerSecond: number
}

/** Repeats `op` in batches for about `ms` milliseconds (the clock is read once per batch). */
function rate(sizes: readonly number[], ms: number, op: (i: number) => number): AeadRate {
  let ops = 0
  let bytes = 0
  let sink = 0
  const started = performance.now()
  let elapsed = 0
  // Check the clock every `batch` messages: performance.now() is not free next to a 32-byte seal.
  const batch = sizes[0]! >= 16 * 1024 ? 4 : 256
  while (elapsed < ms) {
    for (let i = 0; i < batch; i++) {
      bytes += sizes[ops % sizes.length]!
      sink += op(ops++)
    }
    elapsed = performance.now() - started
  }
  if (sink === 0) throw new Error('unreachable: keeps the work observable')
  const seconds = elapsed / 1000
  return { opsPerSecond: ops / seconds, bytesPerSecond: bytes / seconds }
}

/** One size, or the sizes of the messages to cycle through (the field values of a corpus). */
type Sizes = number | readonly number[]

function sizesOf(size: Sizes): readonly number[] {
  return typeof size === 'number' ? [size] : size
}

/** Sealing `size`-byte messages (or messages of each of `size` in turn) for about `ms` milliseconds. */
export function aesGcmRate(size: Sizes, ms: number): AeadRate {
  const key = randomBytes(32)
  const iv = Buffer.alloc(12)
  const sizes = sizesOf(size)
  const plaintexts = sizes.map((n) => randomBytes(n))
  return rate(sizes, ms, (i) => {
    iv.writeUInt32BE(i >>> 0, 8)
    const cipher = createCipheriv('aes-256-gcm', key, iv)
    const n = cipher.update(plaintexts[i % plaintexts.length]!).length
    cipher.final()
    return n + cipher.getAuthTag().length
  })
}

/** Opening (decrypting and verifying the tag of) `size`-byte messages for about `ms` milliseconds. */
export function aesGcmOpenRate(size: Sizes, ms: number): AeadRate {
  const key = randomBytes(32)
  const iv = randomBytes(12)
  const sizes = sizesOf(size)
  const sealed = sizes.map((n) => {
    const cipher = createCipheriv('aes-256-gcm', key, iv)
    const ciphertext = Buffer.concat([cipher.update(randomBytes(n)), cipher.final()])
    return { ciphertext, tag: cipher.getAuthTag() }
  })
  return rate(sizes, ms, (i) => {
    const { ciphertext, tag } = sealed[i % sealed.length]!
    const decipher = createDecipheriv('aes-256-gcm', key, iv)
    decipher.setAuthTag(tag)
    const n = decipher.update(ciphertext).length
    decipher.final()
    return n + 1
  })
}
