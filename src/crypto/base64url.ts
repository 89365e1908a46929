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
