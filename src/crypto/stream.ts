/**
 * Sealed bodies: the record-based AEAD stream format of docs/sealed-stream-format.md ("ECLS" v1),
 * modelled on RFC 8188's record layer. A header carries the stream key in a standard compact JWE for
 * the recipient; the body is a sequence of AES-256-GCM records with nonce = base XOR counter and a
 * delimiter byte marking the last record. Memory per stream is bounded by a few records (the
 * staging buffer, the record just opened, the last record held until the input ends), not by the body.
 *
 * The opening side never releases a byte that has not been authenticated: a record's plaintext is
 * pushed only after its tag verified, and the last record only once the input has ended with nothing
 * after it.
 */
import { type CipherGCM, createCipheriv, createDecipheriv, createHash, hkdfSync, randomBytes } from 'node:crypto'
import { Transform, type TransformCallback } from 'node:stream'
import { EcluseError } from '../errors.js'
import { b64u, b64uDecode } from './base64url.js'
import { assertUsableEpk } from './epk-check.js'
import { SEAL_WINDOWS, type SealWindows, sealCompact } from './field.js'
import {
  ANY_VALUE,
  checkClaim,
  openFailed,
  openParsedOnce,
  parseCompact,
  STREAM_PROFILE,
  TEST_SEAM,
  type TestSeam,
} from './jwe.js'
import type { KekCache } from './kek-cache.js'
import type { KeySet } from './keys.js'

/** "ECLS": first bytes of every sealed stream. */
export const STREAM_MAGIC = Buffer.from('ECLS', 'ascii')
export const STREAM_VERSION = 1
/** Value of the `ecl.fmt` claim in the key JWE's protected header. */
export const STREAM_FORMAT_CLAIM = 'ecls/1'
/** magic(4) version(1) flags(1) rs(4) jwe_len(2). */
export const FIXED_HEADER_BYTES = 12
export const TAG_BYTES = 16
/** Bytes a record adds to its data: the delimiter and the tag. */
export const RECORD_OVERHEAD = 1 + TAG_BYTES
export const DELIMITER_MORE = 0x01
export const DELIMITER_LAST = 0x02
export const MIN_RECORD_SIZE = 16
/** Format maximum of `rs` (16 MiB). */
export const MAX_RECORD_SIZE = 16 * 1024 * 1024
export const DEFAULT_RECORD_SIZE = 64 * 1024
/** Default cap on `rs` when opening: a header may not make us buffer more than this per stream. */
export const DEFAULT_MAX_OPEN_RECORD_SIZE = 1024 * 1024
/**
 * The gateway's default floor on `rs` when opening (`open-body`'s `minRecordSize`): whoever holds the
 * public key chooses `rs`, and each record costs a cipher's setup and a tag, so the CPU per MiB grows
 * as records shrink (measured: 4 KiB as fast as 64 KiB, 1 KiB 4×, 16 bytes 200× slower).
 */
export const DEFAULT_MIN_OPEN_RECORD_SIZE = 4096
export const DEFAULT_MAX_JWE_BYTES = 8192
const MAX_CONTENT_TYPE_CHARS = 255
/**
 * The size every sealer pads the key JWE's plaintext to, with spaces after the JSON object (JSON
 * whitespace, which any reader skips): a bound on every plaintext there can be, as if each of the
 * media type's 255 characters were one JSON escapes (`\"`, `\\` or a tab; `a/b` never are, so the
 * longest is 567 bytes). AES-GCM keeps lengths and
 * the JWE's ciphertext is plain base64url on the wire, so without it the header would tell a PNG
 * (`image/png`, 9 characters) from a JPEG (10) or a PDF (15) to whoever stores the sealed body.
 */
export const KEY_PAYLOAD_BYTES = '{"k":"","cty":""}'.length + 43 + 2 * MAX_CONTENT_TYPE_CHARS
const HKDF_INFO_LABEL = Buffer.from('ecluse sealed-stream v1\0', 'ascii')
const EMPTY = Buffer.alloc(0)
const DELIMITER_MORE_BYTE = Buffer.of(DELIMITER_MORE)
/** First size of a record staging buffer: small bodies do not pay for a whole record. */
const STAGE_MIN = 16 * 1024

/**
 * `buf` if it holds `need` bytes, else a larger buffer (doubling, at most `cap`) with its first
 * `used` bytes. Staging grows with the bytes actually received, so a large declared record size
 * costs memory only once the bytes arrive. `wipe`: the buffer left behind held plaintext, and is
 * zeroed (the sealer's staging; growth is rare, a few doublings per stream).
 */
function reserve(buf: Buffer, used: number, need: number, cap: number, wipe = false): Buffer {
  if (need <= buf.length) return buf
  const grown = Buffer.allocUnsafe(Math.min(cap, Math.max(need, 2 * buf.length, STAGE_MIN)))
  buf.copy(grown, 0, 0, used)
  if (wipe) buf.fill(0, 0, used)
  return grown
}

const TOKEN = "[!#$%&'*+.^_`|~0-9A-Za-z-]+"
const QUOTED = '"(?:[\\t \\x21\\x23-\\x5b\\x5d-\\x7e]|\\\\[\\t \\x21-\\x7e])*"'
/**
 * RFC 9110 §8.3.1 media type with parameters, ASCII only: it becomes a response header later. The
 * blanks after a `;` belong to one place only (the parameter they precede, or the next `;`): where
 * both could take them, a failing match tried every split, twice the time per `"; "` (found by
 * review: one `content-type`, or a sealed stream's `cty`, held the event loop for hours).
 */
const MEDIA_TYPE = new RegExp(`^${TOKEN}/${TOKEN}(?:[ \\t]*;(?:[ \\t]*${TOKEN}=(?:${TOKEN}|${QUOTED}))?)*[ \\t]*$`)

/**
 * Refuses a record whose plaintext is never released (unauthenticated, or in the wrong place): it is
 * zeroed now, not left for the garbage collector. Throws `open_failed`.
 */
function refuseRecord(plaintext: Buffer, detail: string): never {
  plaintext.fill(0)
  return openFailed(detail)
}

/** True if `v` is a media type we are willing to carry and later emit as `content-type`. */
export function isMediaType(v: unknown): v is string {
  return typeof v === 'string' && v.length <= MAX_CONTENT_TYPE_CHARS && MEDIA_TYPE.test(v)
}

/**
 * The record key and nonce base: HKDF-SHA-256 (RFC 5869) with the stream key as IKM, an empty salt
 * and `info = "ecluse sealed-stream v1" 0x00 SHA-256(header)`. Binding the whole header (magic,
 * version, flags, rs and the key JWE) here means a header bit flip changes every record key.
 */
export function deriveRecordKeys(streamKey: Uint8Array, header: Uint8Array): { key: Buffer; nonceBase: Buffer } {
  const h = createHash('sha256').update(header).digest()
  const okm = Buffer.from(hkdfSync('sha256', streamKey, Buffer.alloc(0), Buffer.concat([HKDF_INFO_LABEL, h]), 44))
  return { key: okm.subarray(0, 32), nonceBase: okm.subarray(32, 44) }
}

/** nonce_i = nonce_base XOR i, with i a 96-bit big-endian integer (RFC 8188 §2.3). */
export function recordNonce(nonceBase: Uint8Array, index: number): Buffer {
  return new RecordNonces(nonceBase).at(index)
}

/**
 * The record nonces of one stream, written into one buffer: `createCipheriv` copies its IV, so a
 * record needs no allocation for its nonce.
 */
class RecordNonces {
  readonly #nonce: Buffer
  readonly #hi: number
  readonly #lo: number

  constructor(nonceBase: Uint8Array) {
    this.#nonce = Buffer.from(nonceBase)
    this.#hi = this.#nonce.readUInt32BE(4)
    this.#lo = this.#nonce.readUInt32BE(8)
  }

  /** nonce_index; the buffer is rewritten by the next call. */
  at(index: number): Buffer {
    this.#nonce.writeUInt32BE((this.#hi ^ Math.floor(index / 0x1_0000_0000)) >>> 0, 4)
    this.#nonce.writeUInt32BE((this.#lo ^ index) >>> 0, 8)
    return this.#nonce
  }
}

export interface SealStreamOptions {
  /** Media type of the body, kept encrypted inside the key JWE and restored on opening. */
  readonly contentType: string
  /** Plaintext bytes per record; default 64 KiB, from 16 bytes to 16 MiB. */
  readonly recordSize?: number
  /** If set, bound as `ecl.route` (critical) so the body opens only where that route is expected. */
  readonly route?: string
  /**
   * @internal The sealing windows to take the agreement from; default the process-wide
   * `SEAL_WINDOWS`, shared with field sealing. Tests pass their own.
   */
  readonly windows?: SealWindows
  /** @internal test-only, see `TEST_SEAM`. */
  readonly [TEST_SEAM]?: TestSeam
}

/**
 * A transform that seals whatever is written to it into one sealed stream for the current key of
 * `recipients`. The key JWE takes its ECDH-ES agreement from the key's sealing window, as field
 * values do (docs/sealing.md), so a stream costs no asymmetric operation of its own within a window;
 * each record is released as soon as it is full (and the last one at the end of input), which
 * delays no plaintext for an opener, since an opener releases a record only once its tag has verified.
 *
 * @example
 * await pipeline(fs.createReadStream('scan.pdf'), createSealStream(recipients, { contentType: 'application/pdf' }), out)
 */
export function createSealStream(recipients: KeySet, options: SealStreamOptions): Transform {
  return new SealStream(recipients, options)
}

class SealStream extends Transform {
  readonly #header: Buffer
  readonly #key: Buffer
  readonly #nonces: RecordNonces
  readonly #rs: number
  #headerSent = false
  #index = 0
  /** The current record's plaintext, staged (see `_transform`); grows up to `rs + 1` bytes. */
  #plain: Buffer = EMPTY
  #fill = 0

  constructor(recipients: KeySet, options: SealStreamOptions) {
    super()
    const rs = options.recordSize ?? DEFAULT_RECORD_SIZE
    if (!Number.isInteger(rs) || rs < MIN_RECORD_SIZE || rs > MAX_RECORD_SIZE) {
      throw new EcluseError('seal_failed', `recordSize must be an integer from ${MIN_RECORD_SIZE} to ${MAX_RECORD_SIZE}`)
    }
    if (!isMediaType(options.contentType)) throw new EcluseError('seal_failed', 'contentType is not a valid media type')
    const claims: [string, string][] = [['ecl.fmt', STREAM_FORMAT_CLAIM]]
    if (options.route !== undefined) {
      const route = checkClaim('route', options.route)
      if (route.length === 0) throw new EcluseError('seal_failed', 'route must not be empty')
      claims.push(['ecl.route', route])
    }
    const seam = options[TEST_SEAM]
    const streamKey = seam?.streamKey?.() ?? randomBytes(32)
    let jwe: string
    const plaintext = Buffer.alloc(KEY_PAYLOAD_BYTES, 0x20)
    try {
      const json = JSON.stringify({ k: b64u(streamKey), cty: options.contentType })
      // Cannot happen for a media type `isMediaType` passed (ASCII, at most 255 characters).
      if (Buffer.byteLength(json) > KEY_PAYLOAD_BYTES) throw new Error('key payload over its padded size')
      plaintext.write(json, 0, 'utf8')
      jwe = sealCompact(recipients.current, claims, plaintext, options.windows ?? SEAL_WINDOWS, seam)
    } catch (err) {
      streamKey.fill(0)
      throw new EcluseError('seal_failed', `stream key could not be sealed: ${(err as Error).message}`, { cause: err })
    } finally {
      plaintext.fill(0)
    }
    if (jwe.length > DEFAULT_MAX_JWE_BYTES) {
      streamKey.fill(0)
      throw new EcluseError('seal_failed', 'stream key JWE too long')
    }
    const header = Buffer.alloc(FIXED_HEADER_BYTES + jwe.length)
    STREAM_MAGIC.copy(header, 0)
    header[4] = STREAM_VERSION
    header[5] = 0 // flags: all reserved
    header.writeUInt32BE(rs, 6)
    header.writeUInt16BE(jwe.length, 10)
    header.write(jwe, FIXED_HEADER_BYTES, 'latin1')
    const { key, nonceBase } = deriveRecordKeys(streamKey, header)
    streamKey.fill(0)
    this.#header = header
    this.#key = key
    this.#nonces = new RecordNonces(nonceBase)
    this.#rs = rs
  }

  /**
   * Input is staged into one buffer per stream until a record is full, then the record is encrypted
   * with one `update` and released as two pushes (data and delimiter, tag). Per-call costs dominate
   * at socket-sized chunks (an `update` allocates its output, a `push` runs the consumer's write), so
   * copying a 16 KiB chunk is cheaper than encrypting it on its own. The opener releases nothing
   * before a record's tag anyway, so holding a record here delays no plaintext. A chunk holding a
   * whole record from a record boundary is encrypted in place, without the copy.
   */
  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    try {
      if (!this.#headerSent) this.#sendHeader()
      const rs = this.#rs
      let off = 0
      while (off < chunk.length) {
        if (this.#fill === 0 && chunk.length - off >= rs) {
          this.#sealDirect(chunk.subarray(off, off + rs))
          off += rs
          continue
        }
        const take = Math.min(rs - this.#fill, chunk.length - off)
        this.#stage(chunk, off, take)
        off += take
        if (this.#fill === rs) this.#sealStaged(DELIMITER_MORE)
      }
      done()
    } catch (err) {
      done(err instanceof EcluseError ? err : new EcluseError('seal_failed', (err as Error).message, { cause: err }))
    }
  }

  override _flush(done: TransformCallback): void {
    try {
      if (!this.#headerSent) this.#sendHeader()
      this.#sealStaged(DELIMITER_LAST)
      this.#wipe()
      done()
    } catch (err) {
      done(err instanceof EcluseError ? err : new EcluseError('seal_failed', (err as Error).message, { cause: err }))
    }
  }

  override _destroy(err: Error | null, done: (err?: Error | null) => void): void {
    this.#wipe()
    done(err)
  }

  /** The staging buffer is our own copy of plaintext: zeroed with the key once the stream is over. */
  #wipe(): void {
    this.#key.fill(0)
    this.#plain.fill(0)
    this.#plain = EMPTY
    this.#fill = 0
  }

  #sendHeader(): void {
    this.#headerSent = true
    this.push(this.#header)
  }

  /** Copies `take` bytes of `chunk` from `off` into the record being staged (room for the delimiter). */
  #stage(chunk: Buffer, off: number, take: number): void {
    const fill = this.#fill
    if (fill + take >= this.#plain.length) this.#plain = reserve(this.#plain, fill, fill + take + 1, this.#rs + 1, true)
    this.#plain.set(take === chunk.length ? chunk : chunk.subarray(off, off + take), fill)
    this.#fill = fill + take
  }

  #cipher(): CipherGCM {
    return createCipheriv('aes-256-gcm', this.#key, this.#nonces.at(this.#index++))
  }

  /** Encrypts the staged data and `delimiter` as one record. */
  #sealStaged(delimiter: number): void {
    this.#plain = reserve(this.#plain, this.#fill, this.#fill + 1, this.#rs + 1, true)
    this.#plain[this.#fill] = delimiter
    const cipher = this.#cipher()
    this.push(cipher.update(this.#plain.subarray(0, this.#fill + 1)))
    cipher.final()
    this.push(cipher.getAuthTag())
    this.#fill = 0
  }

  /** Encrypts a whole record's data straight from the input. */
  #sealDirect(data: Buffer): void {
    const cipher = this.#cipher()
    this.push(cipher.update(data))
    const delimiter = cipher.update(DELIMITER_MORE_BYTE)
    cipher.final()
    const tail = Buffer.allocUnsafe(RECORD_OVERHEAD)
    tail[0] = delimiter[0]!
    cipher.getAuthTag().copy(tail, 1)
    this.push(tail)
  }
}

export interface OpenStreamOptions {
  /** If set, the stream must have been sealed for exactly this route (or one of these). */
  readonly route?: string | readonly string[]
  /** Largest `rs` accepted (default 1 MiB): memory per stream is bounded by one record. */
  readonly maxRecordSize?: number
  /** Smallest `rs` accepted (default 16, the format's): CPU per byte is bounded by it. */
  readonly minRecordSize?: number
  /** Largest key JWE accepted (default 8 KiB). */
  readonly maxJweBytes?: number
  /**
   * Derived KEKs shared with the other streams opened with these keys (a `KekCache` of the same
   * `KeySet`): streams sealed in one window of the sealer then cost one agreement between them.
   * Without it every stream derives its own.
   */
  readonly kekCache?: KekCache
}

/** What the header of a sealed stream declared, available once it has been authenticated. */
export interface SealedStreamInfo {
  readonly kid: string
  readonly contentType: string
  readonly recordSize: number
  readonly route: string | undefined
}

/**
 * The opening transform; emits `'header'` with `SealedStreamInfo` once the whole header is
 * authenticated (after the first record verified) and before any plaintext.
 */
export interface OpenStream extends Transform {
  /** Set once the header is authenticated (the `'header'` event). */
  readonly info: SealedStreamInfo | undefined
  on(event: 'header', listener: (info: SealedStreamInfo) => void): this
  // biome-ignore lint/suspicious/noExplicitAny: mirrors the EventEmitter signature it overloads
  on(event: string | symbol, listener: (...args: any[]) => void): this
  once(event: 'header', listener: (info: SealedStreamInfo) => void): this
  // biome-ignore lint/suspicious/noExplicitAny: mirrors the EventEmitter signature it overloads
  once(event: string | symbol, listener: (...args: any[]) => void): this
}

/**
 * A transform that opens a sealed stream with a private key set. Any failure (bad header, unknown
 * key, wrong route, a bit flip anywhere, truncation, reordering, trailing bytes, an oversized record
 * size) errors the stream with `EcluseError('open_failed')`; only whole authenticated records are
 * ever pushed.
 *
 * @example
 * const open = createOpenStream(privateKeys, { route: 'documents' })
 * open.once('header', (info) => res.setHeader('content-type', info.contentType))
 */
export function createOpenStream(keys: KeySet, options: OpenStreamOptions = {}): OpenStream {
  return new OpenStreamImpl(keys, options)
}

/** Phases of the opening transform. */
const Phase = { Header: 0, Records: 1, Done: 2 } as const
type Phase = (typeof Phase)[keyof typeof Phase]

class OpenStreamImpl extends Transform implements OpenStream {
  readonly #keys: KeySet
  readonly #route: string | readonly string[] | undefined
  readonly #maxRs: number
  readonly #minRs: number
  readonly #maxJwe: number
  readonly #keks: KekCache | undefined
  #phase: Phase = Phase.Header
  #info: SealedStreamInfo | undefined
  #pendingInfo: SealedStreamInfo | undefined
  // header phase
  readonly #header: StreamHeaderReader
  // record phase
  #key: Buffer = Buffer.alloc(0)
  #nonces: RecordNonces | undefined
  #wire = 0
  #index = 0
  /** The current record's bytes, staged when it straddles chunks; grows up to `rs + 17` bytes. */
  #record: Buffer = EMPTY
  #fill = 0
  /** The last record's data, verified, released once the input has ended with nothing after it. */
  #held: Buffer | undefined

  constructor(keys: KeySet, options: OpenStreamOptions) {
    super()
    if (!keys.hasPrivateKeys) throw new EcluseError('key_material_invalid', 'opening needs a private key set')
    this.#keys = keys
    this.#route = options.route
    this.#maxRs = options.maxRecordSize ?? DEFAULT_MAX_OPEN_RECORD_SIZE
    this.#minRs = options.minRecordSize ?? MIN_RECORD_SIZE
    this.#maxJwe = options.maxJweBytes ?? DEFAULT_MAX_JWE_BYTES
    this.#keks = options.kekCache
    if (this.#keks !== undefined && this.#keks.keys !== keys) {
      throw new EcluseError('config_invalid', 'kekCache belongs to another key set')
    }
    if (!Number.isInteger(this.#maxRs) || this.#maxRs < MIN_RECORD_SIZE || this.#maxRs > MAX_RECORD_SIZE) {
      throw new EcluseError('config_invalid', `maxRecordSize must be an integer from ${MIN_RECORD_SIZE} to ${MAX_RECORD_SIZE}`)
    }
    if (!Number.isInteger(this.#minRs) || this.#minRs < MIN_RECORD_SIZE || this.#minRs > this.#maxRs) {
      throw new EcluseError('config_invalid', `minRecordSize must be an integer from ${MIN_RECORD_SIZE} to maxRecordSize (${this.#maxRs})`)
    }
    if (!Number.isInteger(this.#maxJwe) || this.#maxJwe < 1 || this.#maxJwe > 0xffff) {
      throw new EcluseError('config_invalid', 'maxJweBytes must be an integer from 1 to 65535')
    }
    this.#header = new StreamHeaderReader(this.#minRs, this.#maxRs, this.#maxJwe)
  }

  get info(): SealedStreamInfo | undefined {
    return this.#info
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    try {
      let off = 0
      if (this.#phase === Phase.Header) {
        off = this.#header.read(chunk)
        const header = this.#header.header
        if (header !== undefined) this.#openHeader(header)
      }
      if (this.#phase === Phase.Records && off < chunk.length) this.#readRecords(off === 0 ? chunk : chunk.subarray(off))
      done()
    } catch (err) {
      this.#fail(err, done)
    }
  }

  override _flush(done: TransformCallback): void {
    try {
      if (this.#phase === Phase.Header) openFailed('truncated: the stream ended inside its header')
      if (this.#held === undefined) {
        if (this.#fill === 0) openFailed('truncated: the stream ended without its last record')
        this.#openRecord(this.#record.subarray(0, this.#fill), false)
      }
      this.push(this.#held!)
      this.#held = undefined
      this.#record = EMPTY
      this.#phase = Phase.Done
      this.#key.fill(0)
      done()
    } catch (err) {
      this.#fail(err, done)
    }
  }

  /**
   * Destroyed before its end (the other side went away, a later stage failed): the record key and a
   * verified last record that was never released are zeroed now, not left to the garbage collector.
   */
  override _destroy(err: Error | null, done: (err?: Error | null) => void): void {
    this.#key.fill(0)
    this.#held?.fill(0)
    this.#held = undefined
    this.#record = EMPTY
    done(err)
  }

  #fail(err: unknown, done: TransformCallback): void {
    this.#phase = Phase.Done
    this.#record = EMPTY
    // A verified last record is held until the input ends; trailing bytes fail the stream with it.
    this.#held?.fill(0)
    this.#held = undefined
    this.#key.fill(0)
    done(err instanceof EcluseError ? err : new EcluseError('open_failed', (err as Error).message, { cause: err }))
  }

  #openHeader(header: Buffer): void {
    const rs = header.readUInt32BE(6)
    const p = parseKeyJwe(header, this.#keys, this.#route, this.#maxJwe)
    const plaintext = this.#keks === undefined ? openParsedOnce(p) : this.#keks.open(p)
    let doc: unknown
    try {
      doc = JSON.parse(plaintext.toString('utf8'))
    } catch {
      openFailed('stream key payload is not JSON')
    } finally {
      plaintext.fill(0)
    }
    if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) openFailed('stream key payload is not an object')
    const { k, cty, ...rest } = doc as Record<string, unknown>
    if (Object.keys(rest).length !== 0) openFailed('stream key payload has unknown members')
    const streamKey = typeof k === 'string' ? b64uDecode(k, 43) : undefined
    let derived: ReturnType<typeof deriveRecordKeys>
    try {
      if (streamKey === undefined || streamKey.length !== 32) openFailed('stream key is not 32 bytes')
      if (!isMediaType(cty)) openFailed('content type is not a valid media type')
      derived = deriveRecordKeys(streamKey, header)
    } finally {
      // Refused or not, the decoded key goes now, not with the garbage collector.
      streamKey?.fill(0)
    }
    const { key, nonceBase } = derived
    this.#key = key
    this.#nonces = new RecordNonces(nonceBase)
    this.#wire = rs + RECORD_OVERHEAD
    this.#phase = Phase.Records
    const route = p.header['ecl.route']
    // Announced only once the first record verifies: the JWE authenticates kid and content type,
    // but the fixed header (rs, flags) is authenticated through the record key derivation.
    this.#pendingInfo = Object.freeze({
      kid: p.key.kid,
      contentType: cty,
      recordSize: rs,
      route: typeof route === 'string' ? route : undefined,
    })
  }

  /**
   * Cuts the input into records of `rs + 17` bytes. A record that lies whole in `chunk` is opened
   * where it is; otherwise its bytes are staged into one buffer per stream (bounded by a record) and
   * the record is opened once complete. Either way a record costs one decryption call and one push:
   * at socket-sized chunks, copying 16 KiB is cheaper than a decryption call of its own, and since
   * the tag is always the record's last 16 bytes, nothing has to be held back speculatively.
   */
  #readRecords(chunk: Buffer): void {
    const wire = this.#wire
    let off = 0
    while (off < chunk.length) {
      if (this.#held !== undefined) openFailed('trailing data after the last record')
      if (this.#fill === 0 && chunk.length - off >= wire) {
        this.#openRecord(chunk.subarray(off, off + wire), true)
        off += wire
        continue
      }
      const fill = this.#fill
      const take = Math.min(wire - fill, chunk.length - off)
      if (fill + take > this.#record.length) this.#record = reserve(this.#record, fill, fill + take, wire)
      this.#record.set(take === chunk.length ? chunk : chunk.subarray(off, off + take), fill)
      this.#fill = fill + take
      off += take
      if (this.#fill === wire) {
        this.#fill = 0
        this.#openRecord(this.#record.subarray(0, wire), true)
      }
    }
  }

  /**
   * Opens one record (`full`: of `rs + 17` bytes; else the final piece of the input): its plaintext
   * is released only once the tag verified, and the last record's is held until the input ends.
   */
  #openRecord(record: Buffer, full: boolean): void {
    if (record.length < RECORD_OVERHEAD) openFailed('truncated: a record is shorter than its tag and delimiter')
    const index = this.#index++
    const end = record.length - TAG_BYTES
    const decipher = createDecipheriv('aes-256-gcm', this.#key, this.#nonces!.at(index))
    decipher.setAuthTag(record.subarray(end))
    const plaintext = decipher.update(record.subarray(0, end))
    try {
      decipher.final()
    } catch {
      refuseRecord(plaintext, `record ${index} failed authentication`)
    }
    if (this.#info === undefined) {
      this.#info = this.#pendingInfo
      this.emit('header', this.#info)
    }
    // The delimiter is the last plaintext byte (RFC 8188 §2 uses the same trick for padding).
    const delimiter = plaintext[end - 1]
    const data = plaintext.subarray(0, end - 1)
    if (delimiter === DELIMITER_MORE) {
      if (!full) refuseRecord(plaintext, 'truncated: the stream ended after a non-last record')
      this.push(data)
    } else if (delimiter === DELIMITER_LAST) {
      // Held back until the input ends, so trailing bytes fail the stream before this is released.
      this.#held = data
      this.#record = EMPTY
    } else {
      refuseRecord(plaintext, `record ${index} has an invalid delimiter`)
    }
  }
}

/**
 * Gathers a sealed stream's header from the first chunks of its input, checking the fixed part as
 * soon as it is whole (§5 step 1: before `jwe_len` bytes are held, and before any key agreement).
 */
class StreamHeaderReader {
  readonly #minRs: number
  readonly #maxRs: number
  readonly #maxJwe: number
  #parts: Buffer[] = []
  #have = 0
  #need = FIXED_HEADER_BYTES
  /** The whole header (fixed part and key JWE), once read. */
  header: Buffer | undefined

  constructor(minRs: number, maxRs: number, maxJwe: number) {
    this.#minRs = minRs
    this.#maxRs = maxRs
    this.#maxJwe = maxJwe
  }

  /** Takes what the header still needs from `chunk`; returns how much of it that was. */
  read(chunk: Buffer): number {
    let off = 0
    while (this.header === undefined && off < chunk.length) {
      const take = Math.min(this.#need - this.#have, chunk.length - off)
      this.#parts.push(chunk.subarray(off, off + take))
      this.#have += take
      off += take
      if (this.#have < this.#need) break
      const header = Buffer.concat(this.#parts, this.#have)
      if (this.#need === FIXED_HEADER_BYTES) {
        this.#checkFixed(header)
        this.#need = FIXED_HEADER_BYTES + header.readUInt16BE(10)
        this.#parts = [header]
      } else {
        this.header = header
        this.#parts = []
      }
    }
    return off
  }

  #checkFixed(h: Buffer): void {
    if (!h.subarray(0, 4).equals(STREAM_MAGIC)) openFailed('not a sealed stream (bad magic)')
    if (h[4] !== STREAM_VERSION) openFailed(`unsupported sealed stream version ${h[4]}`)
    if (h[5] !== 0) openFailed('reserved header flags set')
    const rs = h.readUInt32BE(6)
    if (rs < this.#minRs || rs > this.#maxRs) openFailed(`record size ${rs} outside ${this.#minRs}..${this.#maxRs}`)
    const jweLen = h.readUInt16BE(10)
    if (jweLen === 0 || jweLen > this.#maxJwe) openFailed(`key JWE length ${jweLen} outside 1..${this.#maxJwe}`)
  }
}

/** The header's key JWE, parsed against the stream profile (§5 step 2, up to its decryption). */
function parseKeyJwe(header: Buffer, keys: KeySet, route: string | readonly string[] | undefined, maxJwe: number): ReturnType<typeof parseCompact> {
  const jwe = header.toString('latin1', FIXED_HEADER_BYTES)
  return parseCompact(jwe, keys, STREAM_PROFILE, { 'ecl.fmt': STREAM_FORMAT_CLAIM, 'ecl.route': route ?? ANY_VALUE }, maxJwe)
}

/**
 * The shortest key JWE plaintext there is: `{"k":"<43 chars>","cty":"a/b"}` (escapes and blanks only
 * lengthen it, and a media type has at least three characters). No upper bound but `maxJweBytes`:
 * `JSON.parse`, which the opener uses, takes any escaping and spacing (Go's encoding/json writes `<`
 * as `\u003c`), and streams sealed before the padding (`KEY_PAYLOAD_BYTES`) carry none.
 */
const MIN_KEY_PAYLOAD_BYTES = '{"k":"","cty":"a/b"}'.length + 43

export interface SealedStreamCheckOptions {
  /** The route (context) the stream must be bound to (`ecl.route`), or those it may be; required, as a gateway knows it. */
  readonly route: string | readonly string[]
  readonly maxRecordSize?: number
  readonly minRecordSize?: number
  readonly maxJweBytes?: number
}

/**
 * A transform that checks, with **public** keys only, that its input is a sealed stream for `keys`
 * bound to `route`, and passes it on unchanged: the header (fixed part and key JWE: allowed
 * algorithms, an accepted `kid`, a well-formed `epk`, the claims, a key payload long enough to hold a
 * key) is held until it checks, then released with everything after it; at the end, the records
 * must frame (each full one `rs + 17` bytes, the last 17 to `rs + 17`). A body that is not such a
 * stream (plaintext, another context, an unknown key) fails with `open_failed` before a byte of it
 * is passed on; one whose records do not frame fails at its end. Like `isSealedFor`, it cannot tell
 * a genuine ciphertext from random bytes after a valid header: only the private key's holder can.
 *
 * @example
 * const check = createSealedStreamCheck(publicKeys, { route: 'photos-out' })
 */
export function createSealedStreamCheck(keys: KeySet, options: SealedStreamCheckOptions): Transform {
  return new SealedStreamCheck(keys, options)
}

class SealedStreamCheck extends Transform {
  readonly #keys: KeySet
  readonly #route: string | readonly string[]
  readonly #maxJwe: number
  readonly #header: StreamHeaderReader
  #wire = 0
  /** Bytes after the header. */
  #records = 0

  constructor(keys: KeySet, options: SealedStreamCheckOptions) {
    super()
    this.#keys = keys
    this.#route = options.route
    this.#maxJwe = options.maxJweBytes ?? DEFAULT_MAX_JWE_BYTES
    this.#header = new StreamHeaderReader(
      options.minRecordSize ?? MIN_RECORD_SIZE,
      options.maxRecordSize ?? DEFAULT_MAX_OPEN_RECORD_SIZE,
      this.#maxJwe,
    )
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    try {
      if (this.#wire === 0) {
        const off = this.#header.read(chunk)
        const header = this.#header.header
        if (header === undefined) {
          done()
          return
        }
        const p = parseKeyJwe(header, this.#keys, this.#route, this.#maxJwe)
        if (p.ct.length < MIN_KEY_PAYLOAD_BYTES) openFailed('the key JWE is too short to hold a stream key and media type')
        // As `isSealedFor` (found by re-review: a stream with a small-order epk passed, and opened nowhere).
        assertUsableEpk(p.epk)
        this.#wire = header.readUInt32BE(6) + RECORD_OVERHEAD
        this.push(header)
        chunk = chunk.subarray(off)
      }
      this.#records += chunk.length
      if (chunk.length > 0) this.push(chunk)
      done()
    } catch (err) {
      done(err as Error)
    }
  }

  override _flush(done: TransformCallback): void {
    const last = this.#records % this.#wire
    if (this.#wire === 0) done(failure('truncated: the stream ended inside its header'))
    else if (this.#records < RECORD_OVERHEAD || (last !== 0 && last < RECORD_OVERHEAD)) {
      done(failure('the records do not frame: the last one is shorter than its tag and delimiter'))
    } else done()
  }
}

function failure(detail: string): EcluseError {
  return new EcluseError('open_failed', detail)
}
