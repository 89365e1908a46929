/**
 * Strict base64url (RFC 4648 §5, no padding) as JOSE requires (RFC 7515 §2). Node's own decoder is
 * lenient: it skips characters outside the alphabet and ignores non-zero trailing bits, so two
 * different strings could decode to the same bytes. We refuse anything that is not the one canonical
 * encoding, so a sealed value has exactly one spelling.
 */

const ALPHABET = /^[A-Za-z0-9_-]*$/

/** Characters whose low 4 (resp. 2) bits are zero: the only valid last characters when len % 4 is 2 (resp. 3). */
const LAST_OF_2 = new Set('AQgw'.split(''))
const LAST_OF_3 = new Set('AEIMQUYcgkosw048'.split(''))

/** Encode bytes as unpadded base64url. */
export function b64u(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64url')
}

/**
 * Decode canonical unpadded base64url, or return `undefined` if `s` is not exactly that.
 * `maxChars` bounds the work before any regex runs.
 */
export function b64uDecode(s: string, maxChars = Number.MAX_SAFE_INTEGER): Buffer | undefined {
  const len = s.length
  if (len > maxChars) return undefined
  const rem = len & 3
  if (rem === 1) return undefined
  if (!ALPHABET.test(s)) return undefined
  if (rem === 2 && !LAST_OF_2.has(s[len - 1]!)) return undefined
  if (rem === 3 && !LAST_OF_3.has(s[len - 1]!)) return undefined
  return Buffer.from(s, 'base64url')
}

/** Exact decoded length of a canonical base64url string of `chars` characters. */
export function b64uDecodedLength(chars: number): number {
  return Math.floor((chars * 3) / 4)
}

/** The base64url alphabet (RFC 4648 §5) as byte values, for the encoder below. */
const ENCODE = new Uint8Array(64)
for (let i = 0; i < 64; i++) ENCODE[i] = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'.charCodeAt(i)

/** Length of the unpadded base64url encoding of `bytes` bytes. */
export function b64uLength(bytes: number): number {
  const r = bytes % 3
  return ((bytes - r) / 3) * 4 + (r === 0 ? 0 : r + 1)
}

/**
 * Write the unpadded base64url encoding of `src[start, end)` into `out` at `at` (as ASCII bytes);
 * returns the offset after it. Why by hand: the sealer assembles a compact JWE directly in one
 * buffer, and a short segment (an IV, a tag, a wrapped key) costs less to encode here than a native
 * call that returns a string which must then be copied again. The output is exactly
 * `Buffer.toString('base64url')`'s (tested with fast-check).
 */
export function b64uWrite(src: Uint8Array, start: number, end: number, out: Uint8Array, at: number): number {
  const e = ENCODE
  let i = start
  let o = at
  const full = end - ((end - start) % 3)
  for (; i < full; i += 3) {
    const v = (src[i]! << 16) | (src[i + 1]! << 8) | src[i + 2]!
    out[o] = e[v >>> 18]!
    out[o + 1] = e[(v >>> 12) & 63]!
    out[o + 2] = e[(v >>> 6) & 63]!
    out[o + 3] = e[v & 63]!
    o += 4
  }
  if (end - i === 1) {
    const v = src[i]!
    out[o] = e[v >>> 2]!
    out[o + 1] = e[(v & 3) << 4]!
    o += 2
  } else if (end - i === 2) {
    const v = (src[i]! << 8) | src[i + 1]!
    out[o] = e[v >>> 10]!
    out[o + 1] = e[(v >>> 4) & 63]!
    out[o + 2] = e[(v & 15) << 2]!
    o += 3
  }
  return o
}

/** Values of the base64url characters, -1 for every other character code below 128. */
const DECODE = new Int8Array(128).fill(-1)
for (let i = 0; i < 64; i++) DECODE[ENCODE[i]!] = i

/**
 * Decode `s[start, end)`, which must be canonical unpadded base64url (the rules of `b64uDecode`:
 * the alphabet only, no length ≡ 1 mod 4, zero trailing bits), into `out` at `at`. Returns the
 * number of bytes written, or -1 (having written an unspecified prefix) if it is not canonical.
 * `out` must have room for `b64uDecodedLength(end - start)` bytes. For the short segments of a
 * compact JWE on the opening path: no substring, no regex, no native call.
 */
export function b64uDecodeInto(s: string, start: number, end: number, out: Uint8Array, at: number): number {
  const d = DECODE
  const rem = (end - start) & 3
  if (rem === 1 || end < start) return -1
  let o = at
  let i = start
  for (const full = end - rem; i < full; i += 4) {
    const a = s.charCodeAt(i)
    const b = s.charCodeAt(i + 1)
    const c = s.charCodeAt(i + 2)
    const e = s.charCodeAt(i + 3)
    if ((a | b | c | e) > 127) return -1
    const v = (d[a]! << 18) | (d[b]! << 12) | (d[c]! << 6) | d[e]!
    if (v < 0) return -1 // some character was -1: every bit set
    out[o] = v >>> 16
    out[o + 1] = (v >>> 8) & 255
    out[o + 2] = v & 255
    o += 3
  }
  if (rem === 2) {
    const a = s.charCodeAt(i)
    const b = s.charCodeAt(i + 1)
    if ((a | b) > 127) return -1
    const v = (d[a]! << 6) | d[b]!
    if (v < 0 || (v & 15) !== 0) return -1
    out[o++] = v >>> 4
  } else if (rem === 3) {
    const a = s.charCodeAt(i)
    const b = s.charCodeAt(i + 1)
    const c = s.charCodeAt(i + 2)
    if ((a | b | c) > 127) return -1
    const v = (d[a]! << 12) | (d[b]! << 6) | d[c]!
    if (v < 0 || (v & 3) !== 0) return -1
    out[o] = v >>> 10
    out[o + 1] = (v >>> 2) & 255
    o += 2
  }
  return o - at
}
