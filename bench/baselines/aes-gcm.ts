/**
 * Baseline 5: node:crypto AES-256-GCM on one core — the physical limit of any sealing path on this
 * machine (field values and stream records alike are AES-256-GCM, RFC 7518 §5.3). A fresh cipher
 * per message (as every sealed value and every stream record needs its own IV), 96-bit IVs from a
 * counter, a fixed key: only the AEAD itself is timed.
 */
import { createCipheriv, randomBytes } from 'node:crypto'

/** Messages and bytes per second sealing `size`-byte messages for about `ms` milliseconds. */
export function aesGcmRate(size: number, ms: number): { opsPerSecond: number; bytesPerSecond: number } {
  const key = randomBytes(32)
  const iv = Buffer.alloc(12)
  const plaintext = randomBytes(size)
  let ops = 0
  let sink = 0
  const started = performance.now()
  let elapsed = 0
  // Check the clock every `batch` messages: performance.now() is not free next to a 32-byte seal.
  const batch = size >= 16 * 1024 ? 4 : 256
  while (elapsed < ms) {
    for (let i = 0; i < batch; i++) {
      iv.writeUInt32BE(ops++ >>> 0, 8)
      const cipher = createCipheriv('aes-256-gcm', key, iv)
      sink += cipher.update(plaintext).length
      cipher.final()
      sink += cipher.getAuthTag().length
    }
    elapsed = performance.now() - started
  }
  if (sink === 0) throw new Error('unreachable: keeps the work observable')
  const seconds = elapsed / 1000
  return { opsPerSecond: ops / seconds, bytesPerSecond: (ops * size) / seconds }
}
