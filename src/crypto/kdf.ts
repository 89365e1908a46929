/**
 * Key derivation and key wrapping primitives for ECDH-ES+A256KW, written against synchronous
 * `node:crypto` because the field hot path cannot afford WebCrypto's per-call promise (see
 * docs/sealing.md, "Performance"). Both are checked byte for byte against jose and Node's own
 * `id-aes256-wrap` in test/crypto-*.test.ts.
 */
import { type Cipher, createCipheriv, createDecipheriv, createHash, type Decipher } from 'node:crypto'

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

  /** Frees OpenSSL's copy of the KEK now (see {@link endContext}); the wrapper wraps nothing more. */
  erase(): void {
    endContext(this.#ecb)
  }

  /**
   * Wrap `count` 32-byte keys laid end to end in `keys`; returns `count` 40-byte wrapped keys end to
   * end.
   *
   * Each step of RFC 3394 §2.2.1 encrypts `A ‖ R[i]` for every key at once. The cipher's output for
   * one step already holds the next step's `A` (to be XORed with `t`) in its first half: only
   * `R[i]` is moved out of it and `R[i+1]` into it, so the output of one step, patched in place,
   * is the input of the next.
   */
  wrap256(keys: Uint8Array, count: number): Buffer {
    // Word copies (byte order does not matter for moving bytes) from an aligned copy of the keys.
    const words = new Int32Array(count * 8)
    new Uint8Array(words.buffer).set(keys.subarray(0, count * 32))
    // R[1..4] of every key, two words each, in four arrays (R[i] of key k at 2k, 2k + 1).
    const r = [new Int32Array(count * 2), new Int32Array(count * 2), new Int32Array(count * 2), new Int32Array(count * 2)]
    for (let i = 0; i < 4; i++) {
      const ri = r[i]!
      for (let k = 0; k < count; k++) {
        ri[2 * k] = words[8 * k + 2 * i]!
        ri[2 * k + 1] = words[8 * k + 2 * i + 1]!
      }
    }
    // The only plaintext copy of the batch's CEKs this makes that outlives the call: the steps below
    // overwrite every R[i] with its wrapped value.
    words.fill(0)
    // The first input of every key: A = the RFC 3394 IV, then R[1].
    const block = new Int32Array(count * 4)
    const block8 = new Uint8Array(block.buffer)
    const r1 = r[0]!
    for (let k = 0; k < count; k++) {
      block[4 * k] = A6
      block[4 * k + 1] = A6
      block[4 * k + 2] = r1[2 * k]!
      block[4 * k + 3] = r1[2 * k + 1]!
    }
    for (let j = 0; j < 6; j++) {
      for (let i = 1; i <= 4; i++) {
        block8.set(this.#ecb.update(block8))
        const t = (4 * j + i) << T_SHIFT // t = n·j + i < 256: only the last byte of A changes
        const out = r[i - 1]!
        const next = r[i & 3]! // R[i + 1], or R[1] for the next round
        for (let k = 0; k < count; k++) {
          const b = 4 * k
          block[b + 1]! ^= t
          out[2 * k] = block[b + 2]!
          out[2 * k + 1] = block[b + 3]!
          block[b + 2] = next[2 * k]!
          block[b + 3] = next[2 * k + 1]!
        }
      }
    }
    // C = A ‖ R[1] ‖ … ‖ R[4] per key.
    const c = new Int32Array(count * 10)
    for (let k = 0; k < count; k++) {
      const o = 10 * k
      c[o] = block[4 * k]!
      c[o + 1] = block[4 * k + 1]!
      for (let i = 0; i < 4; i++) {
        c[o + 2 + 2 * i] = r[i]![2 * k]!
        c[o + 3 + 2 * i] = r[i]![2 * k + 1]!
      }
    }
    return Buffer.from(c.buffer, 0, count * 40)
  }
}

/** `A6A6A6A6` in either byte order. */
const A6 = 0xa6a6a6a6
/**
 * Where `t` goes in the second 32-bit word of `A` (its last byte, as A is big-endian): the word's
 * high byte on a little-endian host, its low byte on a big-endian one.
 */
const T_SHIFT = new Uint8Array(new Int32Array([1]).buffer)[0] === 1 ? 24 : 0

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
      endContext(ctx)
      this.#ctx = undefined
      return undefined
    }
  }

  /** Zeroes the KEK, and frees OpenSSL's copy of it, once the unwrapper is no longer used. */
  erase(): void {
    this.#kek.fill(0)
    if (this.#ctx !== undefined) endContext(this.#ctx)
    this.#ctx = undefined
  }
}

/**
 * Ends a cipher context now: `final()` makes Node free OpenSSL's context, which cleanses the key
 * schedule it holds. Dropped without it, the context (and the KEK in it) stayed in memory until a
 * garbage collection, whatever the docs said of an erased KEK (found by review). Its output, and an
 * error of a context left mid-operation, are of no use.
 */
function endContext(ctx: Cipher | Decipher): void {
  try {
    ctx.final()
  } catch {
    // freed all the same
  }
}
