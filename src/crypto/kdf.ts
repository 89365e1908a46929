/**
 * Key derivation and key wrapping primitives for ECDH-ES+A256KW, written against synchronous
 * `node:crypto` because the field hot path cannot afford WebCrypto's per-call promise (see
 * docs/sealing.md, "Performance"). Both are checked byte for byte against jose and Node's own
 * `id-aes256-wrap` in test/crypto-*.test.ts.
 */
import { type Cipher, type Decipher, createCipheriv, createDecipheriv, createHash } from 'node:crypto'

/** RFC 3394 §2.2.3.1 default initial value. */
export const AES_KW_IV = Buffer.from('A6A6A6A6A6A6A6A6', 'hex')

function u32be(n: number): Buffer {
  const b = Buffer.allocUnsafe(4)
  b.writeUInt32BE(n, 0)
  return b
}

/**
 * The Concat KDF of NIST SP 800-56A §5.8.1 as profiled by RFC 7518 §4.6.2, for a 256-bit output
 * (one SHA-256 round, counter 1):
 * `SHA-256(00000001 || Z || len(alg) alg || len(apu) apu || len(apv) apv || keydatalen)`.
 * `alg` is the `alg` header value ("ECDH-ES+A256KW") since the derived key wraps the CEK.
 */
export function concatKdf256(z: Uint8Array, alg: string, apu: Uint8Array, apv: Uint8Array): Buffer {
  const algBytes = Buffer.from(alg, 'ascii')
  return createHash('sha256')
    .update(u32be(1))
    .update(z)
    .update(u32be(algBytes.length))
    .update(algBytes)
    .update(u32be(apu.length))
    .update(apu)
    .update(u32be(apv.length))
    .update(apv)
    .update(u32be(256))
    .digest()
}

/**
 * AES-256 key wrap (RFC 3394 §2.2.1) of many 256-bit keys at once, under one KEK.
 *
 * Why by hand: OpenSSL's `id-aes256-wrap` cipher runs the 24 block encryptions through the generic
 * (non AES-NI) `AES_encrypt` and costs several microseconds per key through Node, more than the
 * field's own AES-GCM. Here the 24 steps are run over a whole batch of independent keys at once,
 * each step being one AES-256-ECB call (hardware AES, constant time) over all the batch's blocks, so
 * the per-key cost is a few word copies. The result is the exact RFC 3394 output; tests compare it
 * with `id-aes256-wrap` and with jose.
 */
export class KeyWrapper {
  readonly #ecb: Cipher

  constructor(kek: Uint8Array) {
    // ECB is only ever used here as the raw block function W of RFC 3394, one block per key and step.
    this.#ecb = createCipheriv('aes-256-ecb', kek, null)
    this.#ecb.setAutoPadding(false)
  }

  /**
   * Wrap `count` 32-byte keys laid end to end in `keys`; returns `count` 40-byte wrapped keys end to
   * end.
   */
  wrap256(keys: Uint8Array, count: number): Buffer {
    const n = 4 // 64-bit blocks per 256-bit key
    const out32 = new Uint32Array(count * 10)
    const out8 = new Uint8Array(out32.buffer)
    const in32 = new Uint32Array(count * 4)
    const in8 = new Uint8Array(in32.buffer)
    for (let k = 0; k < count; k++) {
      out8.fill(0xa6, 40 * k, 40 * k + 8)
      out8.set(keys.subarray(32 * k, 32 * k + 32), 40 * k + 8)
    }
    let aligned = new Uint32Array(0)
    for (let j = 0; j < 6; j++) {
      for (let i = 1; i <= n; i++) {
        for (let k = 0; k < count; k++) {
          const o = 10 * k
          const x = 4 * k
          in32[x] = out32[o]!
          in32[x + 1] = out32[o + 1]!
          in32[x + 2] = out32[o + 2 * i]!
          in32[x + 3] = out32[o + 2 * i + 1]!
        }
        const y = this.#ecb.update(in8)
        let y32: Uint32Array
        if ((y.byteOffset & 3) === 0) {
          y32 = new Uint32Array(y.buffer, y.byteOffset, count * 4)
        } else {
          if (aligned.length !== count * 4) aligned = new Uint32Array(count * 4)
          new Uint8Array(aligned.buffer).set(y)
          y32 = aligned
        }
        const t = n * j + i // < 256: only the last byte of the 64-bit A changes
        for (let k = 0; k < count; k++) {
          const o = 10 * k
          const x = 4 * k
          out32[o] = y32[x]!
          out32[o + 1] = y32[x + 1]!
          out8[40 * k + 7]! ^= t
          out32[o + 2 * i] = y32[x + 2]!
          out32[o + 2 * i + 1] = y32[x + 3]!
        }
      }
    }
    return Buffer.from(out8.buffer, 0, count * 40)
  }
}

/**
 * AES-256 key unwrap (RFC 3394 §2.2.2) for the opening side, one key per call. Fields arrive one at
 * a time, so there is nothing to batch: this reuses one OpenSSL `id-aes256-wrap` context per KEK
 * (each `update` is a complete, independent unwrap there) and replaces it after any failure.
 */
export class KeyUnwrapper {
  readonly #kek: Buffer
  #ctx: Decipher | undefined

  constructor(kek: Buffer) {
    this.#kek = kek
  }

  /** The 32-byte key, or `undefined` if the integrity check fails. */
  unwrap256(wrapped: Uint8Array): Buffer | undefined {
    if (wrapped.length !== 40) return undefined
    if (this.#ctx === undefined) this.#ctx = createDecipheriv('id-aes256-wrap', this.#kek, AES_KW_IV)
    const ctx = this.#ctx
    try {
      const out = ctx.update(wrapped)
      return out.length === 32 ? out : undefined
    } catch {
      this.#ctx = undefined
      return undefined
    }
  }
}

/** One-shot RFC 3394 unwrap (used where a context would not be reused, e.g. a stream header). */
export function unwrap256Once(kek: Buffer, wrapped: Uint8Array): Buffer | undefined {
  return new KeyUnwrapper(kek).unwrap256(wrapped)
}
