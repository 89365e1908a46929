/**
 * Field-level sealing: one JSON value becomes one standard compact JWE for the trusted host's key
 * (docs/sealing.md). `FieldSealer` is created per message and takes its ECDH-ES agreement from the
 * process-wide sealing window of the recipient key (one agreement per window: at most
 * `SEAL_WINDOW_MS` and `SEAL_WINDOW_VALUES`); `FieldOpener` is shared and keeps a bounded cache of
 * derived KEKs, so the opening side pays one agreement per window of the sealer.
 */
import { createCipheriv, randomBytes, randomFillSync } from 'node:crypto'
import { EcluseError } from '../errors.js'
import { CONTENT_ENCRYPTION } from './algorithms.js'
import { b64uDecode, b64uDecodedLength, b64uDecodeInto, b64uLength, b64uWrite } from './base64url.js'
import { assertUsableEpk } from './epk-check.js'
import {
  type Agreement,
  agree,
  type CompactParts,
  checkClaim,
  type Epk,
  type Expected,
  encryptToCompact,
  FIELD_PROFILE,
  headerEnd,
  headerStart,
  headerWithClaims,
  MAX_CLAIM_BYTES,
  MAX_PROTECTED_CHARS,
  parseCompact,
  rsaWrap,
  sealCompactOnce,
  TEST_SEAM,
  type TestSeam,
} from './jwe.js'
import { KeyWrapper } from './kdf.js'
import { KekCache } from './kek-cache.js'
import type { KeySet, RecipientKey } from './keys.js'

const GCM = CONTENT_ENCRYPTION.A256GCM

/** RFC 6901 JSON Pointer: `""` or a sequence of `/token`, `~` only as `~0` or `~1`. */
const JSON_POINTER = /^(?:\/(?:[^~/]|~[01])*)*$/

/** Default bound on one sealed value's compact serialization (about 3 MiB of plaintext). */
export const DEFAULT_MAX_SEALED_CHARS = 4 * 1024 * 1024
export { DEFAULT_KEK_CACHE_SIZE } from './kek-cache.js'

/**
 * CEK batches double from 8 (a window with one small message should not pay for hundreds) to 256
 * (the 24 AES calls of a batch then cost well under a microsecond per key).
 */
const FIRST_BATCH = 8
const MAX_BATCH = 256

/**
 * The sealing window (docs/sealing.md, "One agreement per window"): an ECDH-ES agreement (ephemeral
 * key, `epk`, KEK) is shared by the messages sealed to one recipient key for at most this long…
 */
export const SEAL_WINDOW_MS = 1000
/** …and for at most this many values, whichever comes first; then the next value makes a new one. */
export const SEAL_WINDOW_VALUES = 65_536
/** Recipient keys with a live window at once, process-wide; beyond, the oldest window is retired. */
export const SEAL_WINDOW_KEYS = 64

/** Where the values of one message are sealed: bound into every header as `ecl.route`. */
export interface SealContext {
  readonly route: string
  /**
   * @internal The windows to take agreements from; default the process-wide `SEAL_WINDOWS`. Tests
   * pass their own (small limits, a clock of their own).
   */
  readonly windows?: SealWindows
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
  /**
   * Contexts accepted beside `route` (`open`'s and `require-sealed`'s `alsoAccept`, while a
   * context changes). Only values that do not match `route` pay for them.
   */
  readonly alsoRoutes?: readonly string[] | undefined
}

function checkPointer(ptr: unknown): string {
  const v = checkClaim('ptr', ptr)
  if (!JSON_POINTER.test(v)) throw new EcluseError('seal_failed', 'ptr is not an RFC 6901 JSON Pointer')
  return v
}

const QUOTE = 0x22
const DOT = 0x2e
const RID_MEMBER = Buffer.from(',"ecl.rid":')
const EK_B64 = b64uLength(40)
const IV_B64 = b64uLength(GCM.ivBytes)
const TAG_B64 = b64uLength(GCM.tagBytes)
/**
 * Scratch for the varying middle of a header: the head's last 0–2 bytes, `JSON.stringify(ptr)`,
 * the rid member and up to 2 bytes of the tail. Claims are at most MAX_CLAIM_BYTES once
 * JSON-escaped (checkClaim), quotes aside.
 */
const MIDDLE = new Uint8Array(2 + 2 * (2 + MAX_CLAIM_BYTES) + RID_MEMBER.length + 2)

/**
 * Validated pointers and their JSON text as UTF-8 (`"/records/*\/holder/name"`): a message's pointers
 * repeat from one record and one message to the next, so each is checked and serialized once.
 * Bounded: emptied when full (pointers are not secret; array indices make them unbounded).
 */
const POINTERS = new Map<string, Buffer>()
const MAX_POINTERS = 4096

function pointerJson(ptr: unknown): Buffer {
  if (typeof ptr === 'string') {
    const hit = POINTERS.get(ptr)
    if (hit !== undefined) return hit
  }
  const v = checkPointer(ptr)
  const json = Buffer.from(JSON.stringify(v), 'utf8')
  if (POINTERS.size >= MAX_POINTERS) POINTERS.clear()
  POINTERS.set(v, json)
  return json
}

/**
 * A protected header with its varying part cut out, pre-encoded: `head` is the base64url of the
 * header's constant start up to a multiple of 3 bytes (so its encoding does not depend on what
 * follows), `carry` the 0–2 bytes left over, `tail` the constant end (`,"epk":{…}}`) and `ends[k]`
 * the base64url of `tail` without its first `k` bytes. A field's header is then
 * `head ‖ B64(carry ‖ middle ‖ tail[0, k)) ‖ ends[k]` with `k` chosen to make the middle group
 * whole: exactly `B64(start ‖ middle ‖ tail)`, for the cost of encoding the middle alone.
 */
class HeaderTemplate {
  readonly head: Buffer
  readonly carry: Buffer
  readonly tail: Buffer
  readonly ends: readonly [Buffer, Buffer, Buffer]

  constructor(start: string, tail: string) {
    const s = Buffer.from(start, 'utf8')
    const cut = s.length - (s.length % 3)
    // With the opening quote of the JSON string the value becomes.
    this.head = Buffer.from(`"${s.subarray(0, cut).toString('base64url')}`, 'latin1')
    this.carry = Buffer.from(s.subarray(cut))
    this.tail = Buffer.from(tail, 'utf8')
    if (this.tail.length < 2) throw new Error('unreachable: a header tail is at least 2 bytes')
    const end = (k: number) => Buffer.from(this.tail.subarray(k).toString('base64url'), 'latin1')
    this.ends = [end(0), end(1), end(2)]
  }
}

/** The two templates (without and with `ecl.rid`) of one route in one window. */
interface RouteTemplates {
  readonly plain: HeaderTemplate
  readonly rid: HeaderTemplate
}

const MAX_ROUTE_TEMPLATES = 64

/**
 * One ECDH-ES agreement and what is derived from it, shared by the messages sealed to one key
 * within one window: the KEK (inside a `KeyWrapper`), the header tail with its `epk`, the current
 * batch of pre-drawn CEKs and IVs with the CEKs already wrapped, and the header templates per route.
 * Every value still takes a CEK and an IV of its own from the batch, never used twice.
 */
export class SealWindow {
  readonly key: RecipientKey
  /** `performance.now()`-style time after which no value is sealed in this window. */
  readonly expiresAt: number
  #left: number
  #wrapper: KeyWrapper | undefined
  readonly #tail: string
  readonly #seam: TestSeam | undefined
  readonly #templates = new Map<string, RouteTemplates>()
  ceks: Buffer = Buffer.alloc(0)
  ivs: Buffer = Buffer.alloc(0)
  wrapped: Buffer = Buffer.alloc(0)
  /** The same CEKs and IVs as 32-bit words, for copying one slot without making a view of it. */
  ceks32: Int32Array = new Int32Array(0)
  ivs32: Int32Array = new Int32Array(0)
  #next = 0
  #count = 0
  #batch = FIRST_BATCH

  constructor(key: RecipientKey, expiresAt: number, maxValues: number, seam: TestSeam | undefined) {
    const a: Agreement = agree(key, seam?.ephemeral)
    this.key = key
    this.expiresAt = expiresAt
    this.#left = maxValues
    this.#wrapper = new KeyWrapper(a.kek)
    a.kek.fill(0)
    this.#tail = headerEnd(a.epk)
    this.#seam = seam
  }

  /** True while this window may seal another value at time `now`. */
  usable(now: number): boolean {
    return this.#left > 0 && now < this.expiresAt && this.#wrapper !== undefined
  }

  /** The header templates for `route` (a validated, non-empty claim). */
  templates(route: string): RouteTemplates {
    let t = this.#templates.get(route)
    if (t === undefined) {
      const r = `,"ecl.route":${JSON.stringify(route)},"ecl.ptr":`
      t = {
        plain: new HeaderTemplate(headerStart(this.key, ['ecl.route', 'ecl.ptr']) + r, this.#tail),
        rid: new HeaderTemplate(headerStart(this.key, ['ecl.route', 'ecl.ptr', 'ecl.rid']) + r, this.#tail),
      }
      // Routes come from the configuration; the bound only keeps a misuse from growing the map.
      if (this.#templates.size < MAX_ROUTE_TEMPLATES) this.#templates.set(route, t)
    }
    return t
  }

  /** Takes the next CEK/IV/wrapped-key slot of the batch (`ceks`, `ivs`, `wrapped` by index). */
  take(): number {
    // Callers check `usable()` in the same turn; this is the backstop: a retired window's unused
    // slots are zeroed, and a value sealed under one would be under an all-zero CEK (fail closed).
    if (this.#wrapper === undefined || this.#left <= 0) throw new EcluseError('seal_failed', 'sealing window retired or spent')
    if (this.#next === this.#count) this.#refill()
    this.#left--
    return this.#next++
  }

  /**
   * One compact JWE of `plaintext` in this window, with `claims` in its protected header (all of
   * them critical): the general construction, for what is not a field (a sealed stream's key JWE).
   */
  sealCompact(claims: ReadonlyArray<readonly [string, string]>, plaintext: Uint8Array): string {
    const header = headerWithClaims(this.key, claims) + this.#tail
    const i = this.take()
    const cek = this.ceks.subarray(i * 32, i * 32 + 32)
    const ek = this.wrapped.subarray(i * 40, i * 40 + 40)
    const iv = this.ivs.subarray(i * GCM.ivBytes, (i + 1) * GCM.ivBytes)
    try {
      return encryptToCompact(Buffer.from(header, 'utf8').toString('base64url'), ek, cek, iv, plaintext)
    } finally {
      cek.fill(0) // used once: erased from the batch as it is taken
    }
  }

  /** Ends the window (evicted, expired): unused CEKs are erased, and the KEK (OpenSSL's copy too). */
  retire(): void {
    this.ceks.fill(0)
    this.#wrapper?.erase()
    this.#wrapper = undefined
    this.#left = 0
  }

  /**
   * Draw the next batch of CEKs and IVs and wrap all the CEKs at once (see `KeyWrapper`). Batches
   * start small (a window with one message should not pay for a hundred keys) and grow; never
   * beyond what the window may still seal.
   */
  #refill(): void {
    const seam = this.#seam
    const n = seam === undefined ? Math.min(this.#batch, this.#left) : 1
    this.#batch = Math.min(this.#batch * 2, MAX_BATCH)
    // One draw from the CSPRNG for the whole batch: n CEKs, then n IVs.
    const random = randomFillSync(Buffer.allocUnsafeSlow(n * (32 + GCM.ivBytes)))
    this.ceks = seam?.cek !== undefined ? aligned(seam.cek()) : random.subarray(0, n * 32)
    this.ivs = seam?.iv !== undefined ? aligned(seam.iv()) : random.subarray(n * 32)
    this.ceks32 = new Int32Array(this.ceks.buffer, this.ceks.byteOffset, n * 8)
    this.ivs32 = new Int32Array(this.ivs.buffer, this.ivs.byteOffset, n * 3)
    this.wrapped = this.#wrapper!.wrap256(this.ceks, n)
    this.#next = 0
    this.#count = n
  }
}

/** A copy of `b` in a buffer of its own (offset 0, so 32-bit views of it are aligned). */
function aligned(b: Uint8Array): Buffer {
  const c = Buffer.allocUnsafeSlow(b.length)
  c.set(b)
  return c
}

/**
 * The CEK and IV of the value being sealed, copied word by word out of the batch: node:crypto
 * copies them into the cipher at once, and the CEK is erased right after (see `sealWithTemplate`).
 */
const CEK32 = new Int32Array(8)
const CEK = new Uint8Array(CEK32.buffer)
const IV32 = new Int32Array(3)
const IV_BYTES = new Uint8Array(IV32.buffer)

export interface SealWindowLimits {
  /** Longest life of one agreement, in milliseconds (default `SEAL_WINDOW_MS`). */
  readonly maxAgeMs?: number
  /** Most values sealed under one agreement (default `SEAL_WINDOW_VALUES`). */
  readonly maxValues?: number
  /** Most recipient keys with a live window (default `SEAL_WINDOW_KEYS`). */
  readonly maxKeys?: number
  /** Monotonic clock in milliseconds (default `performance.now`); for tests. */
  readonly now?: () => number
}

function limit(name: string, v: number | undefined, dflt: number): number {
  if (v === undefined) return dflt
  if (!Number.isSafeInteger(v) || v <= 0) throw new EcluseError('config_invalid', `${name} must be a positive integer`)
  return v
}

/**
 * The live sealing windows, one per recipient key (by identity: a rotated or reloaded key set has
 * new `RecipientKey` objects, so the next message after a rotation makes a new agreement at once).
 * Bounded by `maxKeys`; a window is dropped when it expires even if no message comes to replace it,
 * so an idle gateway holds no KEK for longer than a window.
 */
export class SealWindows {
  readonly #maxAge: number
  readonly #maxValues: number
  readonly #maxKeys: number
  readonly #now: () => number
  readonly #live = new Map<RecipientKey, SealWindow>()
  readonly #onExpire = (key: RecipientKey, w: SealWindow): void => this.#expire(key, w)

  constructor(limits: SealWindowLimits = {}) {
    this.#maxAge = limit('maxAgeMs', limits.maxAgeMs, SEAL_WINDOW_MS)
    this.#maxValues = limit('maxValues', limits.maxValues, SEAL_WINDOW_VALUES)
    this.#maxKeys = limit('maxKeys', limits.maxKeys, SEAL_WINDOW_KEYS)
    this.#now = limits.now ?? performance.now.bind(performance)
  }

  /** The current time on this set's clock. */
  now(): number {
    return this.#now()
  }

  /** Live windows (at most `maxKeys`). */
  get size(): number {
    return this.#live.size
  }

  /** A window for `key` usable at `now`: the live one, or a new agreement. */
  acquire(key: RecipientKey, now: number): SealWindow {
    const live = this.#live.get(key)
    if (live !== undefined) {
      if (live.usable(now)) return live
      live.retire()
      this.#live.delete(key)
    }
    const w = new SealWindow(key, now + this.#maxAge, this.#maxValues, undefined)
    if (this.#live.size >= this.#maxKeys) {
      const [oldKey, old] = this.#live.entries().next().value!
      old.retire()
      this.#live.delete(oldKey)
    }
    this.#live.set(key, w)
    // Unref'd: it only drops an idle window's KEK, and must not keep the process alive.
    setTimeout(this.#onExpire, Math.min(this.#maxAge + 1, 2 ** 31 - 1), key, w).unref()
    return w
  }

  /** Retires every window (the next value of every key makes a new agreement). */
  clear(): void {
    for (const w of this.#live.values()) w.retire()
    this.#live.clear()
  }

  #expire(key: RecipientKey, w: SealWindow): void {
    if (this.#live.get(key) !== w) return
    if (w.usable(this.#now())) {
      // A test clock may lag the real one: check again later rather than cut the window short.
      setTimeout(this.#onExpire, Math.min(this.#maxAge, 2 ** 31 - 1), key, w).unref()
      return
    }
    w.retire()
    this.#live.delete(key)
  }
}

/** The process-wide sealing windows used by every `FieldSealer` and sealed stream (docs/sealing.md). */
export const SEAL_WINDOWS = new SealWindows()

/**
 * One compact JWE of `plaintext` for `key`, with `claims` in its protected header (all critical):
 * a sealed stream's key JWE. With ECDH-ES+A256KW the agreement is that of the key's sealing window,
 * shared with the fields and streams sealed to it in the window; RSA-OAEP-256 and a test seam (a
 * fixed ephemeral key) make a JWE of its own.
 */
export function sealCompact(
  key: RecipientKey,
  claims: ReadonlyArray<readonly [string, string]>,
  plaintext: Uint8Array,
  windows: SealWindows = SEAL_WINDOWS,
  seam?: TestSeam,
): string {
  if (key.algorithm.kind === 'rsa-oaep' || seam !== undefined) return sealCompactOnce(key, claims, plaintext, seam)
  return windows.acquire(key, windows.now()).sealCompact(claims, plaintext)
}

/**
 * Seals the fields of one message to the current key of `recipients`.
 *
 * With ECDH-ES+A256KW the agreement (ephemeral key, `epk`, KEK) is taken from the sealing window
 * of that key, shared with the other messages of the window (at most `SEAL_WINDOW_MS` and
 * `SEAL_WINDOW_VALUES`); every field then gets a fresh random CEK wrapped with that KEK, a fresh
 * random IV, and its own protected header (route, pointer, record id, all in `crit`). With
 * RSA-OAEP-256 each field costs one RSA encryption (docs/sealing.md explains why that cannot be
 * avoided).
 *
 * @example
 * const sealer = new FieldSealer(recipients, { route: 'accreditations' })
 * const jwe = sealer.seal(Buffer.from('"1985-04-12"'), { ptr: '/person/birthDate' })
 */
export class FieldSealer {
  readonly #key: RecipientKey
  readonly #route: string
  readonly #windows: SealWindows
  readonly #seam: TestSeam | undefined
  #window: SealWindow | undefined
  #templates: RouteTemplates | undefined
  /** The last record id and its header member (`,"ecl.rid":"…"`): a record's fields share it. */
  #rid: string | undefined
  #ridMember: Buffer = RID_MEMBER
  // RSA-OAEP-256 only: the header around the pointer.
  readonly #rsaStart: string = ''
  readonly #rsaStartRid: string = ''

  constructor(recipients: KeySet, ctx: SealContext) {
    this.#key = recipients.current
    const route = checkClaim('route', ctx.route)
    if (route.length === 0) throw new EcluseError('seal_failed', 'route must not be empty')
    this.#route = route
    this.#seam = ctx[TEST_SEAM]
    this.#windows = ctx.windows ?? SEAL_WINDOWS
    if (this.#key.algorithm.kind === 'rsa-oaep') {
      const r = `,"ecl.route":${JSON.stringify(route)},"ecl.ptr":`
      this.#rsaStart = headerStart(this.#key, ['ecl.route', 'ecl.ptr']) + r
      this.#rsaStartRid = headerStart(this.#key, ['ecl.route', 'ecl.ptr', 'ecl.rid']) + r
    }
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
    const out = this.#seal(value, binding, true)
    // Built in the shared scratch (no buffer of its own): only the string leaves.
    return (out as unknown as Latin1Slice).latin1Slice(1, sealedLength - 1)
  }

  /**
   * As `seal`, but returns the sealed value as JSON text, the compact JWE in quotes, as bytes:
   * what the `seal` transform writes in place of the value, assembled in one buffer.
   */
  sealJson(value: Uint8Array, binding: FieldBinding): Buffer {
    return this.#seal(value, binding, false)
  }

  #seal(value: Uint8Array, binding: FieldBinding, scratch: boolean): Buffer {
    if (!(value instanceof Uint8Array)) throw new EcluseError('seal_failed', 'value must be bytes')
    const ptr = pointerJson(binding.ptr)
    const rid = binding.rid
    if (rid !== undefined && rid !== this.#rid) {
      this.#ridMember = Buffer.concat([RID_MEMBER, Buffer.from(JSON.stringify(checkClaim('rid', rid)), 'utf8')])
      this.#rid = rid
    }
    try {
      if (this.#key.algorithm.kind === 'rsa-oaep') {
        const out = this.#sealRsa(value, binding.ptr, rid)
        sealedLength = out.length
        return out
      }
      let w = this.#window
      if (w === undefined || !w.usable(this.#windows.now())) w = this.#nextWindow()
      const t = rid === undefined ? this.#templates!.plain : this.#templates!.rid
      return sealWithTemplate(w, t, ptr, rid === undefined ? undefined : this.#ridMember, value, scratch)
    } catch (err) {
      if (err instanceof EcluseError) throw err
      throw new EcluseError('seal_failed', `sealing failed: ${(err as Error).message}`, { cause: err })
    }
  }

  #nextWindow(): SealWindow {
    const now = this.#windows.now()
    // A test seam fixes the ephemeral key and the random values: its window is this sealer's own.
    const w =
      this.#seam === undefined
        ? this.#windows.acquire(this.#key, now)
        : new SealWindow(this.#key, Number.POSITIVE_INFINITY, Number.MAX_SAFE_INTEGER, this.#seam)
    this.#window = w
    this.#templates = w.templates(this.#route)
    return w
  }

  #sealRsa(value: Uint8Array, ptr: string, rid: string | undefined): Buffer {
    const header =
      rid === undefined
        ? this.#rsaStart + JSON.stringify(ptr) + headerEnd(undefined)
        : this.#rsaStartRid + JSON.stringify(ptr) + ',"ecl.rid":' + JSON.stringify(rid) + headerEnd(undefined)
    const protectedB64 = Buffer.from(header, 'utf8').toString('base64url')
    const cek = this.#seam?.cek?.() ?? randomBytes(GCM.cekBytes)
    const iv = this.#seam?.iv?.() ?? randomBytes(GCM.ivBytes)
    try {
      return Buffer.from(`"${encryptToCompact(protectedB64, rsaWrap(this.#key, cek), cek, iv, value)}"`, 'latin1')
    } finally {
      cek.fill(0)
    }
  }
}

/**
 * One ECDH-ES+A256KW field as quoted compact JWE, written straight into one buffer: the protected
 * header's base64url from its template (RFC 7516 §7.1), `encrypted_key` and IV from the window's
 * batch, then AES-256-GCM with the encoded header itself (a view of the output) as AAD
 * (RFC 7516 §5.1 step 14). Byte for byte what `encryptToCompact` and jose produce (tested).
 */
function sealWithTemplate(w: SealWindow, t: HeaderTemplate, ptr: Buffer, ridMember: Buffer | undefined, value: Uint8Array, scratch: boolean): Buffer {
  const mid = MIDDLE
  let m = t.carry.length
  mid.set(t.carry, 0)
  mid.set(ptr, m)
  m += ptr.length
  if (ridMember !== undefined) {
    mid.set(ridMember, m)
    m += ridMember.length
  }
  const k = (3 - (m % 3)) % 3
  for (let j = 0; j < k; j++) mid[m++] = t.tail[j]!
  const end = t.ends[k]
  const headerChars = t.head.length - 1 + (m / 3) * 4 + end.length
  const length = 1 + headerChars + 1 + EK_B64 + 1 + IV_B64 + 1 + b64uLength(value.length) + 1 + TAG_B64 + 1
  const out = scratch && length <= SEALED_SCRATCH.length ? SEALED_SCRATCH : carve(length)
  sealedLength = length
  out.set(t.head, 0)
  let o = b64uWrite(mid, 0, m, out, t.head.length)
  out.set(end, o)
  o += end.length

  const i = w.take()
  const c32 = w.ceks32
  const at = i * 8
  for (let k = 0; k < 8; k++) {
    CEK32[k] = c32[at + k]!
    c32[at + k] = 0 // used once: erased from the batch as it is taken
  }
  const iv32 = w.ivs32
  IV32[0] = iv32[i * 3]!
  IV32[1] = iv32[i * 3 + 1]!
  IV32[2] = iv32[i * 3 + 2]!
  const cipher = createCipheriv(GCM.cipher, CEK, IV_BYTES)
  // The cipher holds its own key schedule: the CEK is erased from the scratch at once.
  CEK32.fill(0)
  cipher.setAAD(new Uint8Array(out.buffer, out.byteOffset + 1, o - 1))
  const ct = cipher.update(value)
  cipher.final()
  const tag = cipher.getAuthTag()

  out[o++] = DOT
  o = b64uWrite(w.wrapped, i * 40, i * 40 + 40, out, o)
  out[o++] = DOT
  o = b64uWrite(w.ivs, i * GCM.ivBytes, (i + 1) * GCM.ivBytes, out, o)
  out[o++] = DOT
  o = b64uWrite(ct, 0, ct.length, out, o)
  out[o++] = DOT
  o = b64uWrite(tag, 0, tag.length, out, o)
  out[o] = QUOTE
  return out
}

/**
 * Output buffers are carved from slabs of our own, so a sealed field costs a view, not an
 * allocation (Node's own pool is 8 KiB: a new one every dozen fields). A slab holds only sealed
 * output, which is not secret, and is freed when the last view of it is.
 */
const SLAB_BYTES = 256 * 1024
/** Where `seal` (which returns a string) builds its value, and the length of the last value built. */
const SEALED_SCRATCH = Buffer.allocUnsafeSlow(16 * 1024)
let sealedLength = 0

interface Latin1Slice {
  latin1Slice(start: number, end: number): string
}
let slab = Buffer.allocUnsafeSlow(SLAB_BYTES)
let slabUsed = 0

function carve(bytes: number): Buffer {
  if (bytes > SLAB_BYTES / 8) return Buffer.allocUnsafeSlow(bytes)
  if (slabUsed + bytes > SLAB_BYTES) {
    slab = Buffer.allocUnsafeSlow(SLAB_BYTES)
    slabUsed = 0
  }
  const b = slab.subarray(slabUsed, slabUsed + bytes)
  slabUsed += bytes
  return b
}

export interface FieldOpenerOptions {
  /** Derived KEKs kept (FIFO); default 1024. Each entry is one (kid, epk, alg, apu, apv). */
  readonly kekCacheSize?: number
  /** Longest compact serialization accepted; default 4 Mi characters. */
  readonly maxSealedChars?: number
}

function expectedClaims(e: OpenExpectation): Expected {
  const also = e.alsoRoutes
  return { 'ecl.route': also === undefined ? e.route : [e.route, ...also], 'ecl.ptr': e.ptr, 'ecl.rid': e.rid }
}

/** `","crv":…` after the `x` of an `epk`: the rest of the header for OKP, up to `y` for EC. */
function epkAfterX(key: RecipientKey): Buffer {
  const c = key.curve!
  return Buffer.from(c.kty === 'EC' ? `","crv":${JSON.stringify(c.crv)},"kty":"EC","y":"` : `","crv":${JSON.stringify(c.crv)},"kty":${JSON.stringify(c.kty)}}}`)
}
const EPK_START = Buffer.from(',"epk":{"x":"')
const EPK_END_EC = Buffer.from('"}}')
/** Characters of a 32-byte coordinate in base64url. */
const COORD_CHARS = 43

/** The canonical start of a field header for one key and route (without or with `ecl.rid`), pre-encoded. */
interface CanonicalStart {
  readonly key: RecipientKey
  /** Base64url of the start up to a multiple of 3 bytes, and the 0–2 bytes left over. */
  readonly plain: { readonly b64: string; readonly carry: Buffer }
  readonly rid: { readonly b64: string; readonly carry: Buffer }
  readonly afterX: Buffer
}

function canonicalPart(start: string): { b64: string; carry: Buffer } {
  const b = Buffer.from(start, 'utf8')
  const cut = b.length - (b.length % 3)
  return { b64: b.subarray(0, cut).toString('base64url'), carry: Buffer.from(b.subarray(cut)) }
}

/** Scratch for the opening fast path: the fixed segments and a small ciphertext. */
const SEGMENTS = new Uint8Array(40 + GCM.ivBytes + GCM.tagBytes + 32)
const EK = SEGMENTS.subarray(0, 40)
const IV = SEGMENTS.subarray(40, 40 + GCM.ivBytes)
const TAG = SEGMENTS.subarray(40 + GCM.ivBytes, 40 + GCM.ivBytes + GCM.tagBytes)
const COORD = SEGMENTS.subarray(40 + GCM.ivBytes + GCM.tagBytes)
const SMALL_CT_CHARS = 4096
const CT = new Uint8Array(b64uDecodedLength(SMALL_CT_CHARS))
const MAX_CANONICAL_ROUTES = 64

function equalAt(buf: Uint8Array, at: number, end: number, part: Uint8Array): boolean {
  const n = part.length
  if (at + n > end) return false
  for (let i = 0; i < n; i++) if (buf[at + i] !== part[i]) return false
  return true
}

/**
 * The opening fast path for the headers our sealer writes. A value sealed by Écluse (or by jose from
 * the same `setProtectedHeader` call) for `(key, route, ptr, rid)` has exactly one protected
 * header, byte for byte: `headerStart(key, crit)`, the three claims as `JSON.stringify` writes them,
 * then `epk` with its members in jose's order. If a value's header is exactly that text with a
 * canonical 32-byte coordinate, `parseCompact` would accept it and return the same parts (every check
 * it makes holds of that text); so we compare bytes instead of parsing JSON. Anything else, valid or
 * not, returns `undefined` and goes through `parseCompact`, which decides and gives the reason.
 */
/** @internal Exported for the differential test against `parseCompact` only. */
export class CanonicalHeaders {
  readonly #keys: readonly RecipientKey[]
  readonly #routes = new Map<string, readonly CanonicalStart[]>()
  #rid: string | undefined
  #ridMember: Buffer = RID_MEMBER

  constructor(keys: KeySet) {
    this.#keys = keys.keys.filter((k) => k.algorithm.kind === 'ecdh-es+kw')
  }

  #starts(route: string): readonly CanonicalStart[] {
    let starts = this.#routes.get(route)
    if (starts === undefined) {
      const r = `,"ecl.route":${JSON.stringify(route)},"ecl.ptr":`
      starts = this.#keys.map((key) => ({
        key,
        plain: canonicalPart(headerStart(key, ['ecl.route', 'ecl.ptr']) + r),
        rid: canonicalPart(headerStart(key, ['ecl.route', 'ecl.ptr', 'ecl.rid']) + r),
        afterX: epkAfterX(key),
      }))
      // Routes come from the configuration; the bound only keeps a misuse from growing the map.
      if (this.#routes.size < MAX_CANONICAL_ROUTES) this.#routes.set(route, starts)
    }
    return starts
  }

  /**
   * The parts of `jwe` (five segments, dots at `d1`…`d4`) if its header is canonical for
   * `expected`, else `undefined`. With `decodeCt` false the ciphertext is only checked to be
   * canonical base64url. The fixed segments are views of module scratch: use them before the next call.
   */
  parse(jwe: string, d1: number, d2: number, d3: number, d4: number, expected: OpenExpectation, decodeCt: boolean): CompactParts | undefined {
    if (d1 > MAX_PROTECTED_CHARS || typeof expected.route !== 'string' || typeof expected.ptr !== 'string') return undefined
    const rid = expected.rid
    if (rid !== undefined && typeof rid !== 'string') return undefined
    for (const st of this.#starts(expected.route)) {
      const start = rid === undefined ? st.plain : st.rid
      if (start.b64.length > d1 || !jwe.startsWith(start.b64)) continue
      // The rest of the header, decoded natively; canonical only if it encodes back to itself.
      const rest = jwe.slice(start.b64.length, d1)
      const h = Buffer.from(rest, 'base64url')
      if (h.toString('base64url') !== rest) return undefined
      const end = h.length
      if (!equalAt(h, 0, end, start.carry)) return undefined
      let at = start.carry.length
      const ptr = jsonText(expected.ptr)
      if (!equalAt(h, at, end, ptr)) return undefined
      at += ptr.length
      if (rid !== undefined) {
        if (rid !== this.#rid) {
          this.#ridMember = Buffer.concat([RID_MEMBER, Buffer.from(JSON.stringify(rid), 'utf8')])
          this.#rid = rid
        }
        if (!equalAt(h, at, end, this.#ridMember)) return undefined
        at += this.#ridMember.length
      }
      if (!equalAt(h, at, end, EPK_START) || at + EPK_START.length + COORD_CHARS > end) return undefined
      at += EPK_START.length
      const x = h.toString('latin1', at, at + COORD_CHARS)
      if (b64uDecodeInto(x, 0, COORD_CHARS, COORD, 0) !== 32) return undefined
      at += COORD_CHARS
      if (!equalAt(h, at, end, st.afterX)) return undefined
      at += st.afterX.length
      const c = st.key.curve!
      let epk: Epk
      if (c.kty === 'EC') {
        if (at + COORD_CHARS > end) return undefined
        const y = h.toString('latin1', at, at + COORD_CHARS)
        if (b64uDecodeInto(y, 0, COORD_CHARS, COORD, 0) !== 32) return undefined
        at += COORD_CHARS
        if (!equalAt(h, at, end, EPK_END_EC)) return undefined
        at += EPK_END_EC.length
        epk = { x, crv: c.crv, kty: c.kty, y }
      } else {
        epk = { x, crv: c.crv, kty: c.kty }
      }
      if (at !== end) return undefined
      // The segments, with the lengths parseCompact requires.
      if (d2 - d1 - 1 !== EK_B64 || b64uDecodeInto(jwe, d1 + 1, d2, EK, 0) !== 40) return undefined
      if (d3 - d2 - 1 !== IV_B64 || b64uDecodeInto(jwe, d2 + 1, d3, IV, 0) !== GCM.ivBytes) return undefined
      if (jwe.length - d4 - 1 !== TAG_B64 || b64uDecodeInto(jwe, d4 + 1, jwe.length, TAG, 0) !== GCM.tagBytes) return undefined
      let ct: Uint8Array
      if (d4 - d3 - 1 <= SMALL_CT_CHARS) {
        const n = b64uDecodeInto(jwe, d3 + 1, d4, CT, 0)
        if (n < 0) return undefined
        ct = decodeCt ? CT.subarray(0, n) : EMPTY_BYTES
      } else {
        const big = b64uDecode(jwe.slice(d3 + 1, d4))
        if (big === undefined) return undefined
        ct = big
      }
      return { protectedB64: jwe.slice(0, d1), key: st.key, ek: EK, iv: IV, ct, tag: TAG, epk, apu: '', apv: '' }
    }
    return undefined
  }
}

const EMPTY_BYTES = new Uint8Array(0)

/** `JSON.stringify(s)` as UTF-8, cached for the pointers an opener sees again and again (bounded). */
const JSON_TEXTS = new Map<string, Buffer>()

function jsonText(s: string): Buffer {
  let b = JSON_TEXTS.get(s)
  if (b === undefined) {
    b = Buffer.from(JSON.stringify(s), 'utf8')
    if (JSON_TEXTS.size >= MAX_POINTERS) JSON_TEXTS.clear()
    JSON_TEXTS.set(s, b)
  }
  return b
}

/**
 * Opens sealed fields with a private key set. Shared across messages: the KEK derived for an `epk`
 * is cached (bounded, FIFO), so the fields of one sealing window (all the messages a sealing
 * gateway seals to this key within it) cost one ECDH. Any failure, whatever its cause, is
 * `EcluseError('open_failed')` with the cause in `message` (the detail, for logs only).
 *
 * @example
 * const opener = new FieldOpener(privateKeys)
 * const json = opener.open(jwe, { route: 'accreditations', ptr: '/person/birthDate' })
 */
export class FieldOpener {
  readonly #canonical: CanonicalHeaders
  /** The KEK cache, and through it the key set (`keks.keys`) values are parsed against. */
  readonly #keks: KekCache
  readonly #maxChars: number

  constructor(keys: KeySet, options: FieldOpenerOptions = {}) {
    this.#keks = new KekCache(keys, options.kekCacheSize)
    this.#canonical = new CanonicalHeaders(keys)
    this.#maxChars = options.maxSealedChars ?? DEFAULT_MAX_SEALED_CHARS
  }

  /**
   * Open one sealed value found at `expected`; returns the JSON text of the value. `mayAgree` false:
   * a value that would need an asymmetric operation (its KEK not cached) is refused before it
   * (`KekCache.open`).
   */
  open(jwe: string, expected: OpenExpectation, mayAgree = true): Buffer {
    return this.#keks.open(partsOf(jwe, this.#keks.keys, this.#canonical, expected, this.#maxChars, true), mayAgree)
  }

  /** The KEK cache (`erase` it to retire this opener: it then opens nothing). */
  get kekCache(): KekCache {
    return this.#keks
  }
}

/** `parseCompact` for the field profile, through the canonical fast path when the header is ours. */
function partsOf(jwe: unknown, keys: KeySet, canonical: CanonicalHeaders, expected: OpenExpectation, maxChars: number, decodeCt: boolean): CompactParts {
  if (typeof jwe === 'string' && jwe.length <= maxChars) {
    const d1 = jwe.indexOf('.')
    const d2 = jwe.indexOf('.', d1 + 1)
    const d3 = jwe.indexOf('.', d2 + 1)
    const d4 = jwe.indexOf('.', d3 + 1)
    if (d1 > 0 && d2 > 0 && d3 > 0 && d4 > 0 && jwe.indexOf('.', d4 + 1) < 0) {
      const p = canonical.parse(jwe, d1, d2, d3, d4, expected, decodeCt)
      if (p !== undefined) return p
      const also = expected.alsoRoutes
      if (also !== undefined) {
        for (const route of also) {
          const q = canonical.parse(jwe, d1, d2, d3, d4, { route, ptr: expected.ptr, rid: expected.rid }, decodeCt)
          if (q !== undefined) return q
        }
      }
    }
  }
  return parseCompact(jwe, keys, FIELD_PROFILE, expectedClaims(expected), maxChars)
}

/** The canonical-header recognizer of a key set, for `isSealedFor` (public keys, no opener). */
const CANONICAL = new WeakMap<KeySet, CanonicalHeaders>()

function canonicalFor(keys: KeySet): CanonicalHeaders {
  let c = CANONICAL.get(keys)
  if (c === undefined) {
    c = new CanonicalHeaders(keys)
    CANONICAL.set(keys, c)
  }
  return c
}

/**
 * The `require-sealed` check, possible with public keys only: true if `jwe` is a compact JWE of our
 * profile for a key in `keys` (allowed `alg`/`enc`, accepted `kid`, well-formed `epk` and segment
 * lengths) whose context claims match where it sits. It does not prove the ciphertext authentic;
 * only the holder of the private key can.
 */
export function isSealedFor(jwe: unknown, keys: KeySet, expected: OpenExpectation, maxSealedChars = DEFAULT_MAX_SEALED_CHARS): boolean {
  try {
    assertSealedFor(jwe, keys, expected, maxSealedChars)
    return true
  } catch {
    return false
  }
}

/** As `isSealedFor`, but throws `EcluseError('open_failed')` with the reason as detail, for the log. */
export function assertSealedFor(jwe: unknown, keys: KeySet, expected: OpenExpectation, maxSealedChars = DEFAULT_MAX_SEALED_CHARS): void {
  assertUsableEpk(partsOf(jwe, keys, canonicalFor(keys), expected, maxSealedChars, false).epk)
}
