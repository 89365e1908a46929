/**
 * Opening compact JWEs with a bounded cache of derived KEKs. A sealing gateway shares one ECDH-ES
 * agreement between everything it seals to a key within one sealing window (docs/sealing.md), field
 * values and sealed-stream headers alike, so an opener that keeps the KEK of each `epk` pays one
 * agreement per window of the sealer instead of one per value or per stream.
 */
import { randomBytes } from 'node:crypto'
import { EcluseError } from '../errors.js'
import { CONTENT_ENCRYPTION } from './algorithms.js'
import { type CompactParts, decryptWithCek, deriveKek, type Epk, openFailed, rsaUnwrap } from './jwe.js'
import { KeyUnwrapper } from './kdf.js'
import type { KeySet, RecipientKey } from './keys.js'

const GCM = CONTENT_ENCRYPTION.A256GCM

/** Default number of derived KEKs kept (one per recent sealing window and key). */
export const DEFAULT_KEK_CACHE_SIZE = 1024

/** Why `KekCache.open` refused a value that needed an asymmetric operation it was not allowed. */
export const NO_AGREEMENT_LEFT = 'a key agreement beyond the bound of its message'

/**
 * Derived KEKs of one private key set, by `(kid, alg, epk, apu, apv)`, FIFO and bounded. A KEK
 * enters the cache only after it has opened a value (unwrap and tag both verified), so the cache
 * cannot be filled with junk for free (values really sealed under keys of their own do fill it, and
 * evict what other traffic cached). Any failure is `EcluseError('open_failed')`.
 */
export class KekCache {
  /** The key set whose KEKs these are: parts parsed against another set are refused. */
  readonly keys: KeySet
  readonly #cache = new Map<string, KeyUnwrapper>()
  readonly #size: number
  // The KEK of the last value opened: the next value usually comes from the same window.
  #lastKey: RecipientKey | undefined
  #lastEpk: Epk | undefined
  #lastUnwrapper: KeyUnwrapper | undefined
  #erased = false
  #asymmetric = 0

  constructor(keys: KeySet, size: number = DEFAULT_KEK_CACHE_SIZE) {
    if (!keys.hasPrivateKeys) throw new EcluseError('key_material_invalid', 'opening needs a private key set')
    if (!Number.isInteger(size) || size < 0) throw new EcluseError('config_invalid', 'kekCacheSize must be a non-negative integer')
    this.keys = keys
    this.#size = size
  }

  /** KEKs cached now. */
  get size(): number {
    return this.#cache.size
  }

  /**
   * The asymmetric operations (key agreements, RSA decryptions) this cache has made, failed ones
   * included: `open`'s `maxKeyAgreements` bounds a message's share of them.
   */
  get asymmetricOperations(): number {
    return this.#asymmetric
  }

  /** True once `erase` has run: the cache then opens nothing. */
  get erased(): boolean {
    return this.#erased
  }

  /**
   * Zeroes every cached KEK and empties the cache for good: its owner is retired (a reload replaced
   * the route table, and the table's last request has ended). Opening through it afterwards fails.
   */
  erase(): void {
    this.#erased = true
    for (const unwrapper of this.#cache.values()) unwrapper.erase()
    this.#cache.clear()
    this.#lastKey = undefined
    this.#lastEpk = undefined
    this.#lastUnwrapper = undefined
  }

  /**
   * The plaintext of one parsed, validated compact JWE (`parseCompact` against `keys`). `mayAgree`
   * false: one whose KEK is not cached (or an RSA one) is refused with `NO_AGREEMENT_LEFT` before any
   * asymmetric operation (a message's bound, `open`'s `maxKeyAgreements`).
   */
  open(p: CompactParts, mayAgree = true): Buffer {
    if (this.#erased) openFailed('the key cache was erased: its route table was retired by a reload')
    if (this.keys.get(p.key.kid) !== p.key) openFailed('parsed against another key set')
    if (p.key.algorithm.kind === 'rsa-oaep') {
      if (!mayAgree) openFailed(NO_AGREEMENT_LEFT)
      this.#asymmetric++
      const { cek, ok } = rsaUnwrap(p)
      return decryptWithCek(p, cek, ok, 'key decryption failed')
    }
    const epk = p.epk!
    let unwrapper: KeyUnwrapper | undefined
    let id: string | undefined
    const last = this.#lastEpk
    if (this.#lastKey === p.key && last !== undefined && last.x === epk.x && last.y === epk.y && p.apu === '' && p.apv === '') {
      unwrapper = this.#lastUnwrapper
    } else {
      id = `${p.key.kid}\n${p.key.alg}\n${epk.x}\n${epk.y ?? ''}\n${p.apu}\n${p.apv}`
      unwrapper = this.#cache.get(id)
    }
    const fresh = unwrapper === undefined
    if (unwrapper === undefined) {
      if (!mayAgree) openFailed(NO_AGREEMENT_LEFT)
      this.#asymmetric++
      const kek = deriveKek(p)
      if (kek === undefined) openFailed('key agreement failed')
      unwrapper = new KeyUnwrapper(kek)
    }
    // A failed unwrap continues with a random CEK so it fails on the tag, in the same way as a
    // tampered ciphertext (RFC 7516 §11.5): one uniform error. Not in the same time: a refused
    // unwrap also rebuilds its OpenSSL context (≈ 35 µs against ≈ 24 µs for a bad tag, measured in
    // a review), which tells only whether the wrapped key was well formed, never anything of a key.
    const cek = unwrapper.unwrap256(p.ek)
    let out: Buffer
    try {
      out = decryptWithCek(p, cek ?? randomBytes(GCM.cekBytes), cek !== undefined, 'key unwrap failed')
    } catch (err) {
      if (fresh) unwrapper.erase() // a KEK enters the cache only once it has opened a value
      throw err
    }
    if (fresh && this.#size > 0) {
      if (this.#cache.size >= this.#size) this.#evictOldest()
      this.#cache.set(id!, unwrapper)
    } else if (fresh) {
      unwrapper.erase() // no cache: used once
    }
    if (p.apu === '' && p.apv === '' && (fresh ? this.#size > 0 : true)) {
      this.#lastKey = p.key
      this.#lastEpk = epk
      this.#lastUnwrapper = unwrapper
    }
    return out
  }

  /** Drops the oldest KEK (FIFO) and zeroes it; the memoized last one too, if it was that one. */
  #evictOldest(): void {
    const [id, unwrapper] = this.#cache.entries().next().value!
    this.#cache.delete(id)
    if (unwrapper === this.#lastUnwrapper) {
      this.#lastKey = undefined
      this.#lastEpk = undefined
      this.#lastUnwrapper = undefined
    }
    unwrapper.erase()
  }
}
