/**
 * What the load generator and the upstream must agree on, byte for byte: the deterministic pattern
 * bodies of the streaming scenarios (generated on the fly on one side, regenerated to check on the
 * other), the bodies of the field scenarios (bench/records.ts), and what a sealed value and a sealed
 * stream look like from outside, so a response can be checked without the private key.
 */
import { generateRecords, SENSITIVE_POINTERS } from '../records.js'

/** Chunk size of pattern bodies (and of the sealed stream's default record, 64 KiB). */
export const CHUNK = 64 * 1024

/**
 * A compact JWE of ours or jose's for ECDH-ES+A256KW / A256GCM, as it appears in a JSON body: the
 * opening quote, then the base64url of `{"alg":"ECDH-ES+A256KW","enc":"A256GCM","kid"` (45 bytes, a
 * multiple of 3, so its encoding does not depend on what follows). Both producers write `alg`,
 * `enc`, `kid` first (src/crypto/jwe.ts `headerStart`, jose's `setProtectedHeader` order).
 */
export const SEALED_VALUE_NEEDLE = `"${Buffer.from('{"alg":"ECDH-ES+A256KW","enc":"A256GCM","kid"').toString('base64url')}`

/** How many times `needle` occurs in `text` (non-overlapping). */
export function countOccurrences(text: string, needle: string): number {
  let n = 0
  for (let at = text.indexOf(needle); at !== -1; at = text.indexOf(needle, at + needle.length)) n++
  return n
}

/**
 * Counts a needle across the chunks of a stream: only the last `needle.length - 1` bytes of a chunk
 * are carried to the next, so memory stays one chunk whatever the body's size.
 */
export class NeedleCounter {
  readonly #needle: Buffer
  #carry: Buffer = Buffer.alloc(0)
  count = 0

  constructor(needle: string) {
    this.#needle = Buffer.from(needle, 'latin1')
  }

  update(chunk: Buffer): void {
    const buf = this.#carry.length === 0 ? chunk : Buffer.concat([this.#carry, chunk])
    let last = -1
    for (let at = buf.indexOf(this.#needle); at !== -1; at = buf.indexOf(this.#needle, at + this.#needle.length)) {
      this.count++
      last = at + this.#needle.length
    }
    const keep = Math.max(last, buf.length - (this.#needle.length - 1))
    this.#carry = keep >= buf.length ? Buffer.alloc(0) : Buffer.from(buf.subarray(Math.max(0, keep)))
  }
}

/** The 64 KiB pattern of body `id`: every body differs, and so does every chunk (see `patternChunk`). */
export function patternOf(id: number): Buffer {
  const pattern = Buffer.alloc(CHUNK)
  for (let i = 0; i < CHUNK; i++) pattern[i] = (i * 131 + id * 7) & 0xff
  return pattern
}

/** Chunk `index` of a pattern body: the pattern, stamped with the body id and the chunk index. */
export function patternChunk(pattern: Buffer, id: number, index: number, size: number): Buffer {
  const chunk = Buffer.from(pattern.subarray(0, size))
  if (size >= 8) {
    chunk.writeUInt32BE(id, 0)
    chunk.writeUInt32BE(index, 4)
  }
  return chunk
}

/** The whole pattern body `id` of `total` bytes, in memory (the upstream's blobs). */
export function patternBuffer(id: number, total: number): Buffer {
  const pattern = patternOf(id)
  const out = Buffer.allocUnsafe(total)
  for (let off = 0, k = 0; off < total; off += CHUNK, k++) patternChunk(pattern, id, k, Math.min(CHUNK, total - off)).copy(out, off)
  return out
}

/** Fixed part of a sealed stream's header: magic(4) version(1) flags(1) rs(4) jwe_len(2). */
const STREAM_FIXED_HEADER = 12
/** Bytes a sealed-stream record adds to its plaintext: the delimiter and the GCM tag. */
const STREAM_RECORD_OVERHEAD = 17

/**
 * Whether `head` (the first 12 bytes of a body, hex) and `bytes` (its length) are those of an ECLS v1
 * sealed stream of `plaintextBytes` (docs/sealed-stream-format.md): magic, version, and exactly one
 * record per full `rs` of plaintext plus the last one.
 */
export function isSealedStreamOf(headHex: string, bytes: number, plaintextBytes: number): boolean {
  const head = Buffer.from(headHex, 'hex')
  if (head.length < STREAM_FIXED_HEADER || head.toString('latin1', 0, 4) !== 'ECLS' || head[4] !== 1) return false
  const rs = head.readUInt32BE(6)
  const jweLength = head.readUInt16BE(10)
  if (rs === 0) return false
  const records = Math.floor(plaintextBytes / rs) + 1
  return bytes === STREAM_FIXED_HEADER + jweLength + plaintextBytes + records * STREAM_RECORD_OVERHEAD
}

const corpora = new Map<number, readonly string[]>()

/** The JSON text of the first `count` bench records (bench/records.ts), generated once per count. */
export function recordTexts(count: number): readonly string[] {
  let texts = corpora.get(count)
  if (texts === undefined) {
    texts = generateRecords(count).map((r) => JSON.stringify(r))
    corpora.set(count, texts)
  }
  return texts
}

/** `{"records":[…]}` of the first `count` records: the bulk scenario's body. */
export function bulkBody(count: number): Buffer {
  return Buffer.from(`{"records":[${recordTexts(count).join(',')}]}`)
}

/**
 * `check: sealed` of a record body: exactly `values` compact JWEs and, when there are any, each
 * sensitive member holds one (`"passportNumber":"eyJ…`), so that neither a plaintext value left
 * beside the JWEs nor a JWE in the wrong place passes for a sealed record. `values: 0` is the
 * check of the rows that do not seal: no JWE at all.
 */
export function isSealedRecordBody(body: string, values: number): boolean {
  if (countOccurrences(body, SEALED_VALUE_NEEDLE) !== values) return false
  return values === 0 || SEALED_MEMBER_NEEDLES.every((needle) => body.includes(needle))
}

/** `"<member>":` followed by a JWE, for each sensitive member of a bench record. */
const SEALED_MEMBER_NEEDLES = SENSITIVE_POINTERS.map((p) => `"${p.split('/').at(-1)}":${SEALED_VALUE_NEEDLE}`)
