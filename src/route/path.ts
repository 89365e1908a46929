/**
 * Request-target normalisation, run before routing. The gateway and the upstream must agree on which
 * resource a path names, or a route's ACL can be bypassed by a spelling the router and the upstream
 * read differently (dot segments, encoded slashes, `..;`, double encoding, overlong UTF-8; see Orange
 * Tsai, "Breaking Parser Logic", Black Hat 2018). So anything with more than one reading is refused
 * with `path_rejected`, and everything accepted is rewritten to one canonical spelling (RFC 3986
 * §6.2.2): percent-encoded unreserved characters decoded, every other escape in upper-case hex. The
 * normalised path is both what is matched and what is forwarded.
 *
 * One pass over the string, no regular expressions, and no allocation beyond the result when the
 * target is already canonical (the common case).
 */
import { EcluseError } from '../errors.js'

/** Longest accepted path (before the `?`), in characters. */
export const MAX_PATH_LENGTH = 2048
/** Longest accepted query string (after the `?`), in characters. */
export const MAX_QUERY_LENGTH = 8192

/** A request-target split into its canonical path and its query (without the `?`, possibly empty). */
export interface NormalizedTarget {
  readonly path: string
  readonly query: string
}

// Character classes of RFC 3986 §2-3, indexed by char code (0-127).
const UNRESERVED = 1 // ALPHA DIGIT - . _ ~
const PCHAR_LITERAL = 2 // unreserved, sub-delims, ":" and "@": allowed unencoded in a segment

const CLASS = new Uint8Array(128)
for (let c = 0x30; c <= 0x39; c++) CLASS[c] = UNRESERVED | PCHAR_LITERAL
for (let c = 0x41; c <= 0x5a; c++) CLASS[c] = UNRESERVED | PCHAR_LITERAL
for (let c = 0x61; c <= 0x7a; c++) CLASS[c] = UNRESERVED | PCHAR_LITERAL
for (const ch of '-._~') CLASS[ch.charCodeAt(0)] = UNRESERVED | PCHAR_LITERAL
for (const ch of "!$&'()*+,;=:@") CLASS[ch.charCodeAt(0)] = PCHAR_LITERAL

const HEX_UPPER = '0123456789ABCDEF'

/** Value of one hex digit, or -1. */
function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30
  if (c >= 0x41 && c <= 0x46) return c - 0x37
  if (c >= 0x61 && c <= 0x66) return c - 0x57
  return -1
}

function reject(reason: string, offset: number): never {
  // The detail names the reason and where, never the target itself: it may carry bytes that would
  // corrupt a log line, and the log is not the place for a client's path anyway.
  throw new EcluseError('path_rejected', `${reason} at offset ${offset}`)
}

/**
 * True when the segment `target[start, end)` is a dot segment, or one in disguise: `.` or `..`
 * followed by a path parameter (`..;x`, `..%3B`), which Tomcat and Jetty strip before resolving
 * dot segments, the classic reverse-proxy ACL bypass.
 */
function isDotSegment(target: string, start: number, end: number): boolean {
  let dots = 0
  while (start + dots < end && dots < 3 && target.charCodeAt(start + dots) === 0x2e) dots++
  if (dots === 0 || dots > 2) return false
  const next = start + dots
  if (next === end) return true
  if (target.charCodeAt(next) === 0x3b) return true // ';'
  return (
    next + 3 <= end &&
    target.charCodeAt(next) === 0x25 &&
    target.charCodeAt(next + 1) === 0x33 &&
    (target.charCodeAt(next + 2) | 0x20) === 0x62 // "%3B" / "%3b"
  )
}

/**
 * Decoded characters refused beside the ASCII controls: C1 controls (U+0085 is a line break to
 * Python and .NET), format characters (zero-width, bidirectional, U+FEFF), U+2028/U+2029 and the
 * Unicode spaces (U+00A0, U+3000…; only ever decoded from escapes of two bytes or more, so not the
 * ASCII space). An upstream that trims or drops them (.NET's `Trim`, Python's `strip`, JavaScript's
 * `trim`) reads `secret%C2%85` as the literal `secret` the gateway did not route it to, and in a log
 * they hide what was asked for.
 */
const INVISIBLE = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Zs}]/u

/**
 * Splits and normalises a raw HTTP request-target (`req.url`). Throws `EcluseError('path_rejected')`
 * for anything that is not a plain origin-form target (RFC 9112 §3.2.1) with one unambiguous reading.
 *
 * Refused: absolute-form, authority-form and `*`; empty segments (`//`); `.` and `..` segments (also
 * as `..;param`); percent-encoded `/`, `\`, `.`, `%` followed by two hex digits (double encoding), NUL
 * or any control character, a format character, a Unicode space or U+2028/U+2029 ({@link INVISIBLE});
 * invalid escapes; escapes of bytes that are not well-formed UTF-8 (overlong forms such as `%C0%AE`);
 * any character outside RFC 3986 `pchar` (so `\`, space, controls, non-ASCII, `"`, `<`, `{`, …); a
 * `#`; a path over {@link MAX_PATH_LENGTH} or a query over {@link MAX_QUERY_LENGTH}. The query is
 * returned as sent, but must be visible ASCII.
 *
 * @example
 * normalizeTarget('/v1/%7euser/a%2fb') // throws path_rejected (encoded slash)
 * normalizeTarget('/v1/%7euser/%c3%a9?x=1') // { path: '/v1/~user/%C3%A9', query: 'x=1' }
 */
export function normalizeTarget(target: string): NormalizedTarget {
  const length = target.length
  if (length === 0 || target.charCodeAt(0) !== 0x2f) reject('not an origin-form target', 0)

  const questionMark = target.indexOf('?')
  const pathEnd = questionMark === -1 ? length : questionMark
  if (pathEnd > MAX_PATH_LENGTH) reject('path too long', MAX_PATH_LENGTH)

  // `out` is only built once a byte has to change; until then the path is a slice of the input.
  let out: string | null = null
  let copyFrom = 0
  let segmentStart = 1
  // Continuation bytes still expected by the current UTF-8 sequence, and the allowed range of the
  // next one (Unicode 15, table 3-7: this rules out overlong forms, surrogates and > U+10FFFF).
  let utf8Needed = 0
  let utf8Low = 0x80
  let utf8High = 0xbf
  /** The code point the current UTF-8 sequence spells, built as its bytes come. */
  let codePoint = 0

  for (let i = 1; i < pathEnd; i++) {
    const c = target.charCodeAt(i)
    if (c === 0x25) {
      if (i + 2 >= pathEnd) reject('truncated percent-escape', i)
      const hi = hexValue(target.charCodeAt(i + 1))
      const lo = hexValue(target.charCodeAt(i + 2))
      if (hi < 0 || lo < 0) reject('invalid percent-escape', i)
      const byte = (hi << 4) | lo

      if (utf8Needed > 0) {
        if (byte < utf8Low || byte > utf8High) reject('escape is not well-formed UTF-8', i)
        utf8Needed--
        utf8Low = 0x80
        utf8High = 0xbf
        codePoint = (codePoint << 6) | (byte & 0x3f)
        if (utf8Needed === 0 && INVISIBLE.test(String.fromCodePoint(codePoint))) {
          reject('percent-encoded control, format, space or line-separator character', i)
        }
      } else if (byte >= 0x80) {
        if (byte >= 0xc2 && byte <= 0xdf) utf8Needed = 1
        else if (byte >= 0xe0 && byte <= 0xef) utf8Needed = 2
        else if (byte >= 0xf0 && byte <= 0xf4) utf8Needed = 3
        else reject('escape is not well-formed UTF-8', i)
        codePoint = byte & (0x3f >> utf8Needed)
        // The second byte's range excludes overlong forms (E0, F0), surrogates (ED) and > U+10FFFF (F4).
        if (byte === 0xe0) utf8Low = 0xa0
        else if (byte === 0xed) utf8High = 0x9f
        else if (byte === 0xf0) utf8Low = 0x90
        else if (byte === 0xf4) utf8High = 0x8f
      } else if (byte === 0x2f || byte === 0x5c || byte === 0x2e) {
        reject('percent-encoded "/", "\\" or "."', i)
      } else if (byte < 0x20 || byte === 0x7f) {
        reject('percent-encoded control character', i)
      }

      if (byte < 0x80 && ((CLASS[byte]! & UNRESERVED) !== 0 || byte === 0x3a)) {
        // RFC 3986 §6.2.2.2: an escaped unreserved character is the character itself. So is an
        // escaped ":" here: it delimits nothing in a path, upstreams decode it before they route,
        // and a route literal may hold one (`/v1/items:batch`), which `%3A` must not dodge.
        out = (out ?? '') + target.slice(copyFrom, i) + String.fromCharCode(byte)
        copyFrom = i + 3
      } else if (target.charCodeAt(i + 1) !== HEX_UPPER.charCodeAt(hi) || target.charCodeAt(i + 2) !== HEX_UPPER.charCodeAt(lo)) {
        // RFC 3986 §6.2.2.1: escapes compare case-insensitively; upper case is the canonical form.
        out = `${out ?? ''}${target.slice(copyFrom, i)}%${HEX_UPPER[hi]}${HEX_UPPER[lo]}`
        copyFrom = i + 3
      }
      i += 2
      continue
    }

    if (utf8Needed > 0) reject('escape is not well-formed UTF-8', i)
    if (c === 0x2f) {
      if (i === segmentStart) reject('empty segment', i)
      if (isDotSegment(target, segmentStart, i)) reject('dot segment', segmentStart)
      segmentStart = i + 1
      continue
    }
    if (c >= 0x80 || (CLASS[c]! & PCHAR_LITERAL) === 0) reject('character not allowed in a path', i)
  }
  if (utf8Needed > 0) reject('escape is not well-formed UTF-8', pathEnd)
  // The final segment may be empty (a trailing slash names a distinct resource), never a dot segment.
  if (isDotSegment(target, segmentStart, pathEnd)) reject('dot segment', segmentStart)

  let query = ''
  if (questionMark !== -1) {
    if (length - questionMark - 1 > MAX_QUERY_LENGTH) reject('query too long', questionMark)
    for (let i = questionMark + 1; i < length; i++) {
      const c = target.charCodeAt(i)
      // Visible ASCII only: no controls, NUL, space or non-ASCII; "#" starts a fragment, which a
      // client never sends (RFC 9110 §7.1).
      if (c <= 0x20 || c >= 0x7f || c === 0x23) reject('character not allowed in a query', i)
    }
    query = target.slice(questionMark + 1)
  }

  const path = out === null ? (pathEnd === length ? target : target.slice(0, pathEnd)) : out + target.slice(copyFrom, pathEnd)
  // "%252e" is "%2e" to anything that decodes twice. Checked on the normalised path, because the
  // two characters after "%25" may themselves have been decoded ("%25%41a" becomes "%25Aa").
  for (let at = path.indexOf('%25'); at !== -1; at = path.indexOf('%25', at + 3)) {
    if (isHexPair(path, at + 3, path.length)) reject('double percent-encoding', at)
  }
  return { path, query }
}

function isHexPair(s: string, at: number, end: number): boolean {
  return at + 1 < end && hexValue(s.charCodeAt(at)) >= 0 && hexValue(s.charCodeAt(at + 1)) >= 0
}
