/**
 * Field-level sealing: one JSON value becomes one standard compact JWE for the trusted host's key
 * (docs/sealing.md). `FieldSealer` is created per message and pays for one ECDH-ES agreement for all
 * of that message's fields; `FieldOpener` is shared and keeps a bounded cache of derived KEKs, so the
 * opening side also pays at most one agreement per message.
 */
import { randomBytes, randomFillSync } from 'node:crypto'
import { EcluseError } from '../errors.js'
import { CONTENT_ENCRYPTION } from './algorithms.js'
import { KeyUnwrapper, KeyWrapper } from './kdf.js'
import type { KeySet, RecipientKey } from './keys.js'
import {
  type Agreement,
  type Expected,
  FIELD_PROFILE,
  TEST_SEAM,
  type TestSeam,
  agree,
  checkClaim,
  decryptContent,
  deriveKek,
  encryptToCompact,
  headerEnd,
  headerStart,
  openFailed,
  parseCompact,
  rsaUnwrap,
  rsaWrap,
} from './jwe.js'

const GCM = CONTENT_ENCRYPTION.A256GCM

/** RFC 6901 JSON Pointer: `""` or a sequence of `/token`, `~` only as `~0` or `~1`. */
const JSON_POINTER = /^(?:\/(?:[^~/]|~[01])*)*$/

/** Default bound on one sealed value's compact serialization (about 3 MiB of plaintext). */
export const DEFAULT_MAX_SEALED_CHARS = 4 * 1024 * 1024
/** Default number of derived KEKs kept by a `FieldOpener` (one per recent message and key). */
export const DEFAULT_KEK_CACHE_SIZE = 1024

/** CEK batches double from 8 (a record of a few fields: one batch) to 128 (long lists amortize the 24 AES calls). */
const FIRST_BATCH = 8
const MAX_BATCH = 128

/** Where the values of one message are sealed: bound into every header as `ecl.route`. */
export interface SealContext {
  readonly route: string
  /** @internal test-only, see `TEST_SEAM`. */
  readonly [TEST_SEAM]?: TestSeam
}

/** Where one value sits: its RFC 6901 JSON Pointer in the body and, if configured, its record id. */
export interface FieldBinding {
  readonly ptr: string
  readonly rid?: string | undefined
}

/** Where a sealed value was found, to be checked against its header claims on opening. */
export interface OpenExpectation {
  readonly route: string
  readonly ptr: string
  readonly rid?: string | undefined
}

function checkPointer(ptr: unknown): string {
  const v = checkClaim('ptr', ptr)
  if (!JSON_POINTER.test(v)) throw new EcluseError('seal_failed', 'ptr is not an RFC 6901 JSON Pointer')
  return v
}

/**
 * Seals the fields of one message to the current key of `recipients`.
 *
 * With ECDH-ES+A256KW the first `seal` generates one ephemeral key and derives one KEK; every field
 * then gets a fresh random CEK wrapped with that KEK, a fresh random IV, and its own protected header
 * (route, pointer, record id, all in `crit`). With RSA-OAEP-256 each field costs one RSA encryption
 * (docs/sealing.md explains why that cannot be avoided).
 *
 * @example
 * const sealer = new FieldSealer(recipients, { route: 'accreditations' })
 * const jwe = sealer.seal(Buffer.from('"1985-04-12"'), { ptr: '/person/birthDate' })
 */
export class FieldSealer {
  readonly #key: RecipientKey
  readonly #start: string
  readonly #startRid: string
  readonly #seam: TestSeam | undefined
  #end: string | undefined
  #wrapper: KeyWrapper | undefined
  #ceks: Buffer = Buffer.alloc(0)
  #ivs: Buffer = Buffer.alloc(0)
  #wrapped: Buffer = Buffer.alloc(0)
  #next = 0
  #count = 0
  #batch = FIRST_BATCH

  constructor(recipients: KeySet, ctx: SealContext) {
    this.#key = recipients.current
    const route = checkClaim('route', ctx.route)
    if (route.length === 0) throw new EcluseError('seal_failed', 'route must not be empty')
    this.#seam = ctx[TEST_SEAM]
    const r = `,"ecl.route":${JSON.stringify(route)},"ecl.ptr":`
    this.#start = headerStart(this.#key, ['ecl.route', 'ecl.ptr']) + r
    this.#startRid = headerStart(this.#key, ['ecl.route', 'ecl.ptr', 'ecl.rid']) + r
    if (this.#key.algorithm.kind === 'rsa-oaep') this.#end = headerEnd(undefined)
  }

  /** The `kid` values are sealed to. */
  get kid(): string {
    return this.#key.kid
  }

  /**
   * Seal the JSON text of one value. Throws `EcluseError('seal_failed')` if the binding is invalid
   * or the cryptography fails; never returns a partial result.
   */
  seal(value: Uint8Array, binding: FieldBinding): string {
    if (!(value instanceof Uint8Array)) throw new EcluseError('seal_failed', 'value must be bytes')
    const ptr = checkPointer(binding.ptr)
    const rid = binding.rid
    if (rid !== undefined) checkClaim('rid', rid)
    try {
      if (this.#end === undefined) this.#agree()
      const header =
        rid === undefined
          ? this.#start + JSON.stringify(ptr) + this.#end
          : this.#startRid + JSON.stringify(ptr) + ',"ecl.rid":' + JSON.stringify(rid) + this.#end
      const protectedB64 = Buffer.from(header, 'utf8').toString('base64url')
      if (this.#wrapper === undefined) return this.#sealRsa(protectedB64, value)
      if (this.#next === this.#count) this.#refill()
      const i = this.#next++
      const cek = this.#ceks.subarray(i * 32, i * 32 + 32)
      const out = encryptToCompact(
        protectedB64,
        this.#wrapped.subarray(i * 40, i * 40 + 40),
        cek,
        this.#ivs.subarray(i * GCM.ivBytes, (i + 1) * GCM.ivBytes),
        value,
      )
      cek.fill(0)
      return out
    } catch (err) {
      if (err instanceof EcluseError) throw err
      throw new EcluseError('seal_failed', `sealing failed: ${(err as Error).message}`, { cause: err })
    }
  }

  #agree(): void {
    const a: Agreement = agree(this.#key, this.#seam?.ephemeral)
    this.#wrapper = new KeyWrapper(a.kek)
    a.kek.fill(0)
    this.#end = headerEnd(a.epk)
  }

  /**
   * Draw the next batch of CEKs and IVs and wrap all the CEKs at once (see `KeyWrapper`). Batches
   * start small (a message with one field should not pay for a hundred) and grow.
   */
  #refill(): void {
    const n = this.#seam === undefined ? this.#batch : 1
    this.#batch = Math.min(this.#batch * 2, MAX_BATCH)
    // One draw from the CSPRNG for the whole batch: n CEKs, then n IVs.
    const random = randomFillSync(Buffer.allocUnsafeSlow(n * (32 + GCM.ivBytes)))
    this.#ceks = this.#seam?.cek !== undefined ? Buffer.from(this.#seam.cek()) : random.subarray(0, n * 32)
    this.#ivs = this.#seam?.iv !== undefined ? Buffer.from(this.#seam.iv()) : random.subarray(n * 32)
    this.#wrapped = this.#wrapper!.wrap256(this.#ceks, n)
    this.#next = 0
    this.#count = n
  }

  #sealRsa(protectedB64: string, value: Uint8Array): string {
    const cek = this.#seam?.cek?.() ?? randomBytes(GCM.cekBytes)
    const iv = this.#seam?.iv?.() ?? randomBytes(GCM.ivBytes)
    const out = encryptToCompact(protectedB64, rsaWrap(this.#key, cek), cek, iv, value)
    cek.fill(0)
    return out
  }
}

export interface FieldOpenerOptions {
  /** Derived KEKs kept (FIFO); default 1024. Each entry is one (kid, epk, alg, apu, apv). */
  readonly kekCacheSize?: number
  /** Longest compact serialization accepted; default 4 Mi characters. */
  readonly maxSealedChars?: number
}

function expectedClaims(e: OpenExpectation): Expected {
  return { 'ecl.route': e.route, 'ecl.ptr': e.ptr, 'ecl.rid': e.rid }
}

/**
 * Opens sealed fields with a private key set. Shared across messages: the KEK derived for a
 * message's `epk` is cached (bounded, FIFO), so all the fields of one message cost one ECDH.
 * Any failure, whatever its cause, is `EcluseError('open_failed')` with the cause in `message`
 * (the detail, for logs only).
 *
 * @example
 * const opener = new FieldOpener(privateKeys)
 * const json = opener.open(jwe, { route: 'accreditations', ptr: '/person/birthDate' })
 */
export class FieldOpener {
  readonly #keys: KeySet
  readonly #cache = new Map<string, KeyUnwrapper>()
  readonly #cacheSize: number
  readonly #maxChars: number

  constructor(keys: KeySet, options: FieldOpenerOptions = {}) {
    if (!keys.hasPrivateKeys) throw new EcluseError('key_material_invalid', 'opening needs a private key set')
    this.#keys = keys
    this.#cacheSize = options.kekCacheSize ?? DEFAULT_KEK_CACHE_SIZE
    this.#maxChars = options.maxSealedChars ?? DEFAULT_MAX_SEALED_CHARS
    if (!Number.isInteger(this.#cacheSize) || this.#cacheSize < 0) {
      throw new EcluseError('config_invalid', 'kekCacheSize must be a non-negative integer')
    }
  }

  /** Open one sealed value found at `expected`; returns the JSON text of the value. */
  open(jwe: string, expected: OpenExpectation): Buffer {
    const p = parseCompact(jwe, this.#keys, FIELD_PROFILE, expectedClaims(expected), this.#maxChars)
    if (p.key.algorithm.kind === 'rsa-oaep') {
      const { cek, ok } = rsaUnwrap(p)
      const out = decryptContent(p, cek, ok ? 'authentication tag mismatch' : 'key decryption failed')
      if (!ok) openFailed('key decryption failed')
      return out
    }
    const epk = p.epk!
    const id = `${p.key.kid}\n${p.key.alg}\n${epk.x}\n${epk.y ?? ''}\n${p.apu}\n${p.apv}`
    let unwrapper = this.#cache.get(id)
    const fresh = unwrapper === undefined
    if (unwrapper === undefined) {
      const kek = deriveKek(p)
      if (kek === undefined) openFailed('key agreement failed')
      unwrapper = new KeyUnwrapper(kek)
    }
    // A failed unwrap continues with a random CEK so it fails on the tag, in the same way and about
    // the same time as a tampered ciphertext (RFC 7516 §11.5).
    let cek = unwrapper.unwrap256(p.ek)
    const unwrapped = cek !== undefined
    cek ??= randomBytes(GCM.cekBytes)
    const out = decryptContent(p, cek, unwrapped ? 'authentication tag mismatch' : 'key unwrap failed')
    cek.fill(0)
    if (!unwrapped) openFailed('key unwrap failed')
    // Only a KEK that has opened a value is cached, so the cache cannot be filled with junk for free.
    if (fresh && this.#cacheSize > 0) {
      if (this.#cache.size >= this.#cacheSize) this.#cache.delete(this.#cache.keys().next().value!)
      this.#cache.set(id, unwrapper)
    }
    return out
  }
}

/**
 * The `require-sealed` check, possible with public keys only: true if `jwe` is a compact JWE of our
 * profile for a key in `keys` (allowed `alg`/`enc`, accepted `kid`, well-formed `epk` and segment
 * lengths) whose context claims match where it sits. It does not prove the ciphertext authentic;
 * only the holder of the private key can.
 */
export function isSealedFor(jwe: unknown, keys: KeySet, expected: OpenExpectation, maxSealedChars = DEFAULT_MAX_SEALED_CHARS): boolean {
  try {
    parseCompact(jwe, keys, FIELD_PROFILE, expectedClaims(expected), maxSealedChars)
    return true
  } catch {
    return false
  }
}

/** As `isSealedFor`, but throws `EcluseError('open_failed')` with the reason as detail, for the log. */
export function assertSealedFor(jwe: unknown, keys: KeySet, expected: OpenExpectation, maxSealedChars = DEFAULT_MAX_SEALED_CHARS): void {
  parseCompact(jwe, keys, FIELD_PROFILE, expectedClaims(expected), maxSealedChars)
}
