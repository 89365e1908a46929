/**
 * Verified peer certificate → principal. Only called for a certificate that already chained to the
 * sponsor CA; this module decides what that certificate says about its holder, and refuses any
 * certificate whose names could be read in more than one way.
 *
 * The subjectAltName string comes from Node: since Node 17.3 (CVE-2021-44532) a value containing
 * `,`, `"`, `\`, `'` or a control character is printed as a JSON string literal (with `,` itself
 * escaped as `\u002c`), so entries split unambiguously on ", " outside quotes, and a SAN value such
 * as `spiffe://a, DNS:evil` stays one URI. The subject comes from `toLegacyObject()`, which reads the
 * name entries directly instead of printing and re-parsing the DN.
 */
import { createHash, X509Certificate } from 'node:crypto'
import { EcluseError } from '../errors.js'
import type { Principal } from './principal.js'

/** How many distinct certificates' principals are kept (clients reconnect with the same one). */
export const PRINCIPAL_CACHE_SIZE = 1024

/** URI and DNS SANs are IA5String URIs and host names: visible ASCII only (RFC 5280 §4.2.1.6). */
const SAN_VALUE = /^[\x21-\x7e]+$/
/**
 * No control characters in a CN or OU (C0, DEL and C1: they would forge log lines or headers), nor
 * format characters (zero-width ones, bidirectional overrides and isolates, U+FEFF) or the line and
 * paragraph separators: they would make a log line or a name read as something else on screen, or
 * two names that differ look the same (`records-admin` and `records-admin` + U+200B). Nor any other
 * default-ignorable code point (variation selectors, U+034F, Hangul fillers: invisible too). The
 * zero-width non-joiner and joiner are not caught here: some scripts spell with them ({@link LOOSE_JOINER}).
 */
const CONTROL = /[\p{Cc}\p{Zl}\p{Zp}]|(?![\u200c\u200d])[\p{Cf}\p{Default_Ignorable_Code_Point}]/u
/** Scripts whose spelling uses U+200C and U+200D (RFC 5892 A.1/A.2: Arabic joining, and the viramas of Indic scripts). */
const JOINING = String.raw`[\p{Script=Arabic}\p{Script=Syriac}\p{Script=Nko}\p{Script=Mongolian}\p{Script=Devanagari}\p{Script=Bengali}\p{Script=Gurmukhi}\p{Script=Gujarati}\p{Script=Oriya}\p{Script=Tamil}\p{Script=Telugu}\p{Script=Kannada}\p{Script=Malayalam}\p{Script=Sinhala}\p{Script=Myanmar}\p{Script=Khmer}\p{Script=Tibetan}\p{Script=Brahmi}]`
/**
 * U+200C or U+200D anywhere but between two characters of a script that spells with them, as
 * Persian (`ی` U+200C `خ`) and Devanagari (a virama, then U+200D) do (found by re-review: refusing
 * them refused such an OU). Elsewhere, Latin, Greek or Cyrillic included, they only hide.
 */
const LOOSE_JOINER = new RegExp(String.raw`(?<!${JOINING})[\u200c\u200d]|[\u200c\u200d](?!${JOINING})`, 'u')
/**
 * A CN that OpenSSL reads as a host name, and so checks against a sub-CA's DNS name constraints
 * (x509/v3_ncons.c `cn2dnsid`): letters, digits and `_` in labels, inner `-`, and at least one dot.
 */
const HOST_NAME_CN = /^[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?)+$/
/** A URI authority as a host name (unreserved characters only) and an optional port. */
const PLAIN_AUTHORITY = /^[A-Za-z0-9._~-]+(?::[0-9]{1,5})?$/

/**
 * Why a URI SAN's host cannot be trusted to be the one a sub-CA's URI name constraints judged, or
 * `undefined`. OpenSSL (x509/v3_ncons.c `nc_uri`) takes the host to be what follows `://` up to the
 * first `:` anywhere in the rest, else up to the first `/`: it knows no userinfo, no `%`, `?` or
 * `#`. So an authority other than `host[:port]` of plain characters, a host that reading differs on
 * (`spiffe://admin.team-b.test/x:y`, `…test?x`), or one ending with a dot (no constraint matches it)
 * could be a host a constraint excluded, as an upstream reads it (found by review and re-review).
 * A URI without `://` (a URN) has no host to constrain.
 */
function uriHostProblem(uri: string): string | undefined {
  const sep = uri.indexOf('://')
  if (sep < 0) return undefined
  const rest = uri.slice(sep + 3)
  const end = rest.search(/[/?#]/)
  const authority = end < 0 ? rest : rest.slice(0, end)
  if (!PLAIN_AUTHORITY.test(authority)) return 'whose authority is not a plain host[:port]'
  const host = authority.split(':')[0]!
  const colon = rest.indexOf(':')
  const slash = rest.indexOf('/')
  const opensslHost = colon >= 0 ? rest.slice(0, colon) : slash >= 0 ? rest.slice(0, slash) : rest
  if (opensslHost !== host) return 'whose host OpenSSL reads otherwise than a URI parser'
  if (host.endsWith('.')) return 'whose host ends with a dot'
  return undefined
}
/** A high surrogate not followed by a low one, or a low one not preceded by a high one. */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/
/** A general-name type as Node prints it: `URI`, `DNS`, `IP Address`, `email`, `DirName`, … */
const SAN_TYPE = /^[A-Za-z][A-Za-z ]*$/

/**
 * The attributes of a principal, which no one can change once built: a principal is cached and
 * shared by every connection of its certificate, and handed to each request's transforms (plug-ins
 * among them), so a change made through one request would widen what the next is allowed. Not a
 * Set, whose methods called on it (`Set.prototype.add.call`) would still change it (found by review).
 */
class Attributes implements ReadonlySet<string> {
  readonly #values: Set<string>

  constructor(values: Iterable<string>) {
    this.#values = new Set(values)
    Object.freeze(this)
  }
  get size(): number {
    return this.#values.size
  }
  has(value: string): boolean {
    return this.#values.has(value)
  }
  forEach(fn: (value: string, key: string, set: ReadonlySet<string>) => void, thisArg?: unknown): void {
    for (const value of this.#values) fn.call(thisArg, value, value, this)
  }
  entries(): SetIterator<[string, string]> {
    return this.#values.entries()
  }
  keys(): SetIterator<string> {
    return this.#values.keys()
  }
  values(): SetIterator<string> {
    return this.#values.values()
  }
  [Symbol.iterator](): SetIterator<string> {
    return this.#values.values()
  }
}

/** Insertion-ordered Map as an LRU: a hit is re-inserted at the end, the oldest is evicted first. */
const cache = new Map<string, Principal>()

function refuse(detail: string): never {
  throw new EcluseError('forbidden', `client certificate: ${detail}`)
}

/**
 * Splits Node's `subjectAltName` string into `[type, value]` pairs, decoding quoted values. Throws
 * `forbidden` on anything that is not exactly Node's format (fail closed on a format change).
 */
export function parseSubjectAltName(san: string): Array<[type: string, value: string]> {
  const entries: Array<[string, string]> = []
  let i = 0
  while (i < san.length) {
    const colon = san.indexOf(':', i)
    if (colon === -1) refuse('malformed subjectAltName')
    const type = san.slice(i, colon)
    if (!SAN_TYPE.test(type)) refuse('malformed subjectAltName type')
    let value: string
    let next: number
    if (san.charCodeAt(colon + 1) === 0x22) {
      // A JSON string literal: find its closing quote, skipping escaped characters.
      let j = colon + 2
      while (j < san.length && san.charCodeAt(j) !== 0x22) j += san.charCodeAt(j) === 0x5c ? 2 : 1
      if (j >= san.length) refuse('unterminated quoted subjectAltName')
      try {
        value = JSON.parse(san.slice(colon + 1, j + 1)) as string
      } catch {
        refuse('malformed quoted subjectAltName')
      }
      next = j + 1
    } else {
      const comma = san.indexOf(', ', colon + 1)
      next = comma === -1 ? san.length : comma
      value = san.slice(colon + 1, next)
      // Node quotes any value with a quote or comma; seeing one here means the format is not Node's.
      if (value.includes('"') || value.includes(',')) refuse('unexpected character in unquoted subjectAltName')
    }
    entries.push([type, value])
    if (next === san.length) break
    if (!san.startsWith(', ', next) || next + 2 === san.length) refuse('malformed subjectAltName separator')
    i = next + 2
  }
  return entries
}

/** The values of one subject attribute as `toLegacyObject()` gives them (string or array). */
function subjectValues(subject: Record<string, unknown> | undefined, key: string, keepEmpty = false): string[] {
  const value = subject?.[key]
  if (value === undefined) return []
  const values = Array.isArray(value) ? value : [value]
  for (const v of values) {
    if (typeof v !== 'string') refuse(`unreadable subject ${key}`)
    if (CONTROL.test(v) || LOOSE_JOINER.test(v)) refuse(`control character (or an invisible format character) in subject ${key}`)
    // An unpaired surrogate (a BMPString can hold one) has no UTF-8 form: it would be sent, logged
    // and compared as U+FFFD, the same as a real U+FFFD.
    if (LONE_SURROGATE.test(v)) refuse(`unpaired surrogate in subject ${key}`)
  }
  return keepEmpty ? (values as string[]) : (values as string[]).filter((v) => v !== '')
}

function derive(cert: X509Certificate): Principal {
  const attributes = new Set<string>()
  let firstUri: string | undefined
  let firstDns: string | undefined
  const dnsNames = new Set<string>()

  const san = cert.subjectAltName
  if (san !== undefined && san !== '') {
    for (const [type, value] of parseSubjectAltName(san)) {
      if (type !== 'URI' && type !== 'DNS') continue // IP, email, othername…: not matchable identities
      if (!SAN_VALUE.test(value)) refuse(`invalid ${type} subjectAltName`)
      if (type === 'URI') {
        const problem = uriHostProblem(value)
        if (problem !== undefined) refuse(`URI subjectAltName ${problem}`)
        // A SPIFFE SVID carries exactly one. With two, a route could admit the holder as the second
        // while the principal header named the first: which names the holder would be a guess.
        if (firstUri !== undefined && firstUri !== value) refuse('more than one URI subjectAltName')
        firstUri ??= value
        attributes.add(`uri:${value}`)
      } else {
        // OpenSSL matches a DNS SAN against a sub-CA's constraints by its labels, and one ending with
        // a dot matches no constraint: it escaped an excluded `.team-b.test` (RFC 5280 has no such form).
        if (value.endsWith('.')) refuse('DNS subjectAltName ending with a dot')
        firstDns ??= value
        dnsNames.add(value.toLowerCase())
        attributes.add(`dns:${value}`)
      }
    }
  }

  const subject = cert.toLegacyObject().subject as Record<string, unknown> | undefined
  const cns = subjectValues(subject, 'CN', true)
  // Which of several CNs names the holder is a matter of convention (first? most specific?), so a
  // certificate with more than one is refused rather than guessed at; an empty one counts, since a
  // consumer that takes the first or the last CN could read it.
  if (cns.length > 1) refuse('more than one subject CN')
  const cn = cns[0] === '' ? undefined : cns[0]
  // OpenSSL checks a host-name CN against a sub-CA's DNS constraints only when the certificate has
  // no DNS SAN (RFC 6125 §6.4.4: the SANs name the host then). Beside one, a sub-CA constrained to
  // `.team-a.test` could issue `CN=admin.team-b.test` with `DNS:x.team-a.test`, and a `cn:` route
  // would take it (found by review): such a CN is no attribute unless it is one of the DNS SANs.
  // One with a trailing dot (`admin.team-b.test.`) OpenSSL never reads as a host name, so never
  // checks, and an upstream that drops the dot would read the name a constraint excluded: such a
  // certificate is refused, since the CN could name its holder (found by review: it did, as the id).
  if (cn?.endsWith('.') && HOST_NAME_CN.test(cn.slice(0, -1))) refuse('subject CN: a host name ending with a dot')
  const unchecked = cn !== undefined && dnsNames.size > 0 && HOST_NAME_CN.test(cn) && !dnsNames.has(cn.toLowerCase())
  if (cn !== undefined && !unchecked) attributes.add(`cn:${cn}`)
  for (const ou of subjectValues(subject, 'OU')) attributes.add(`ou:${ou}`)

  // In matcher form, like the attributes: a URI SAN `cn:alice` and a CN `alice` are two principals
  // to the upstream and in the logs, as they are to the ACLs.
  const id = firstUri !== undefined ? `uri:${firstUri}` : firstDns !== undefined ? `dns:${firstDns}` : cn === undefined ? undefined : `cn:${cn}`
  if (id === undefined) refuse('no URI SAN, DNS SAN or subject CN')
  return Object.freeze({ id, attributes: new Attributes(attributes) })
}

function parse(der: Buffer): X509Certificate {
  try {
    return new X509Certificate(der)
  } catch (err) {
    throw new EcluseError('forbidden', 'client certificate: unparseable', { cause: err })
  }
}

/**
 * The principal a verified client certificate names: attributes `uri:<each URI SAN>`,
 * `dns:<each DNS SAN>`, `cn:<subject CN>`, `ou:<each subject OU>`; `id` is, in the same form, the
 * URI SAN (`uri:…`; more than one is refused), else the first DNS SAN (`dns:…`), else `cn:<CN>`. Throws `EcluseError('forbidden')` for a certificate with none of
 * these, or with a name that is malformed or ambiguous. Results are cached by SHA-256 of the DER in a
 * bounded LRU ({@link PRINCIPAL_CACHE_SIZE} entries).
 *
 * @example
 * const principal = principalFromCertificate(tlsSocket.getPeerCertificate().raw)
 */
export function principalFromCertificate(cert: X509Certificate | Buffer): Principal {
  const der = cert instanceof X509Certificate ? cert.raw : cert
  const key = createHash('sha256').update(der).digest('base64')
  const hit = cache.get(key)
  if (hit !== undefined) {
    cache.delete(key)
    cache.set(key, hit)
    return hit
  }
  const principal = derive(cert instanceof X509Certificate ? cert : parse(der))
  if (cache.size >= PRINCIPAL_CACHE_SIZE) cache.delete(cache.keys().next().value!)
  cache.set(key, principal)
  return principal
}

/** How many principals are cached (for tests and diagnostics). */
export function principalCacheSize(): number {
  return cache.size
}
