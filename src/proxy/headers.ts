/**
 * Header policy, both directions. Allow-list only: a header crosses when its name is in the route's
 * set (the default safe set plus the route's additions, compiled at boot), never because it was not
 * refused. The gateway then sets the headers it owns (`x-forwarded-for`, `x-forwarded-proto`, the
 * request id, the principal), overwriting whatever a client sent under those names.
 *
 * Repeated fields are folded to one value the way Node's `IncomingMessage.headers` does, so the
 * gateway, its transforms and the upstream all read the same value: fields that are singletons
 * keep their first value, list fields are joined with ", " (RFC 9110 §5.3), `set-cookie` stays an
 * array (RFC 6265 §3).
 */
import type { Principal } from '../identity/principal.js'
import type { CompiledRoute } from '../route/table.js'

/**
 * Hop-by-hop fields (RFC 9110 §7.6.1, RFC 9112 §9.6, RFC 7540 §3.2.1 for `http2-settings`, and the
 * non-standard `proxy-connection`/`keep-alive`), and every `proxy-*` field (see {@link isHopByHop}).
 * Removed in both directions, together with every field the message's own `Connection` header names.
 */
export const HOP_BY_HOP: ReadonlySet<string> = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'te',
  'trailer',
  'upgrade',
  'proxy-authenticate',
  'proxy-authorization',
  'http2-settings',
])

/**
 * True for a hop-by-hop field (lower-case name): one of {@link HOP_BY_HOP}, or any `proxy-*` field.
 * Those speak to or about the proxies a message passed (`Proxy-Status`, RFC 9209, names the trusted
 * side's intermediaries and their errors; `Proxy-Authorization` is a credential for a proxy), never
 * to the other side.
 */
export function isHopByHop(name: string): boolean {
  return HOP_BY_HOP.has(name) || name.startsWith('proxy-')
}

/**
 * Request fields forwarded on every route. Each one is end-to-end, carries no identity or routing
 * authority, and is needed for ordinary API traffic:
 * - `accept`, `accept-language`: content negotiation; the upstream chooses, nothing is trusted
 *   (`accept` not on routes with response transforms: `narrowForTransformedResponses`).
 * - `content-type`: how the upstream (and the body transforms) must read the body.
 * - `content-length`: the body's framing; undici checks the streamed body against it.
 * - `content-encoding`: a compressed request body must say so (transforms refuse what they cannot read).
 * - `if-match`, `if-none-match`, `if-modified-since`, `if-unmodified-since`: conditional requests
 *   (RFC 9110 §13), including optimistic concurrency on updates (entity-tags on routes with response
 *   transforms: `narrowForTransformedResponses`).
 * - `cache-control`: a client's freshness requirements (RFC 9111 §5.2.1).
 * - `user-agent`: diagnostics on the upstream side; it has no authority.
 * - `idempotency-key`: safe retries of POST/PATCH (draft-ietf-httpapi-idempotency-key-header).
 *
 * Deliberately absent: `authorization` and `cookie` (the client's identity is its certificate, and
 * credentials meant for the gateway must not reach the upstream unless a route says so),
 * `accept-encoding` (responses must arrive in identity coding for response transforms to read them),
 * `expect` (the gateway answers 100-continue itself), `host` (the upstream pool sets it: the
 * upstream's `host` option, or undici's from the URL) and every proxy or forwarding field (the
 * gateway sets its own).
 */
export const DEFAULT_REQUEST_HEADERS: ReadonlySet<string> = new Set([
  'accept',
  'accept-language',
  'content-type',
  'content-length',
  'content-encoding',
  'if-match',
  'if-none-match',
  'if-modified-since',
  'if-unmodified-since',
  'cache-control',
  'user-agent',
  'idempotency-key',
])

/**
 * Response fields relayed on every route: representation metadata and caching (RFC 9110 §8,
 * RFC 9111 §5) and `retry-after` for 429/503. Absent on purpose: `location` and `content-location`
 * (they reveal the upstream's internal URLs), `server` and `x-powered-by` (fingerprinting),
 * `set-cookie` (the upstream's session is not the sponsor's business), internal `x-*` fields.
 */
export const DEFAULT_RESPONSE_HEADERS: ReadonlySet<string> = new Set([
  'content-type',
  'content-length',
  'content-encoding',
  'cache-control',
  'etag',
  'last-modified',
  'expires',
  'vary',
  'content-language',
  'retry-after',
])

/**
 * Request fields a route may never add to its allow-list: the gateway owns them, or they let a
 * client override what the gateway routed and authorised (the method, the path, the client's
 * address or certificate). Any name starting with one of {@link RESERVED_REQUEST_PREFIXES} is
 * reserved as well.
 */
export const RESERVED_REQUEST_HEADERS: ReadonlySet<string> = new Set([
  'host',
  'forwarded',
  // Proxies a message passed through: a client's own would forge the path it took (RFC 9110 §7.6.3).
  'via',
  'x-real-ip',
  'x-client-ip',
  'true-client-ip',
  // The client certificate as a TLS-terminating proxy passes it on: an upstream that trusts these
  // from its proxy would take a client's own for the verified caller. RFC 9440; IIS ARR.
  'client-cert',
  'client-cert-chain',
  'x-client-cert',
  'x-arr-clientcert',
  'x-http-method-override',
  'x-http-method',
  'x-method-override',
  'x-rewrite-url',
  'x-host',
  // The user an authenticating proxy before the upstream vouched for (Apache, nginx auth_request).
  'remote-user',
  'expect',
])

/**
 * Prefixes of reserved request fields: forwarding fields (`x-forwarded-for`, Envoy's
 * `x-forwarded-client-cert`), and the client-certificate families of common proxies (nginx and
 * HAProxy `x-ssl-client-cert`/`-s-dn`/`-verify`, Apache `ssl-client-*`, `x-client-cert-*`, AWS ALB
 * `x-amzn-mtls-clientcert-*`).
 */
export const RESERVED_REQUEST_PREFIXES: readonly string[] = [
  'x-forwarded',
  'x-ssl-client-',
  'ssl-client-',
  'x-client-cert-',
  'x-amzn-mtls-clientcert',
  // x-original-url, -uri, -host, -forwarded-for, -method: what a proxy before the upstream saw.
  'x-original-',
  // Envoy's routing and trust fields (x-envoy-original-path, x-envoy-internal), to an Envoy upstream.
  'x-envoy-',
  // The user or identity an authenticating proxy vouches for: x-remote-user, oauth2-proxy's
  // x-auth-request-*, x-webauth-*, Kong's x-authenticated-*, Azure's x-ms-client-principal*, Google
  // IAP's x-goog-authenticated-user-*, AWS ALB's x-amzn-oidc-*, Cloudflare Access's cf-access-*.
  'x-remote-',
  'x-auth-request-',
  'x-webauth-',
  'x-authenticated-',
  'x-ms-client-principal',
  'x-goog-authenticated-user-',
  'x-amzn-oidc-',
  'cf-access-',
  // Pomerium's identity headers, and Google IAP's signed assertion.
  'x-pomerium-',
  'x-goog-iap-',
]

/**
 * Response fields that describe the representation before a transform (a hash of the plaintext,
 * the part of it a range was), which a route with response transforms may not add: the sponsor
 * could test guesses against them, as against the `etag` such a route drops. `content-disposition`
 * too where a `seal-body` step seals the media type: a file name says what the body is.
 */
const PLAINTEXT_DESCRIBING_RESPONSE_HEADERS: ReadonlySet<string> = new Set([
  'content-md5',
  'digest',
  'repr-digest',
  'content-digest',
  'content-range',
  'x-goog-hash',
  'x-content-sha256',
  'x-amz-content-sha256',
  'x-ms-blob-content-md5',
  'x-ms-content-crc64',
])
/** Prefixes of such fields: S3's per-algorithm checksums (`x-amz-checksum-sha256`, `-crc32`, …), Artifactory's `x-checksum-*`. */
const PLAINTEXT_DESCRIBING_RESPONSE_PREFIXES: readonly string[] = ['x-amz-checksum-', 'x-checksum-']
/** Beside a `seal-body`: a file name (`content-disposition`) or the URL of the representation (`content-location`, found by review). */
const SEALED_BODY_DESCRIBING_RESPONSE_HEADERS: ReadonlySet<string> = new Set(['content-disposition', 'content-location'])

/**
 * Why a route whose `direction` goes through transforms may not add the field `name` to that
 * direction's list, or `null` if it may (`sealsBody`: one of them is a `seal-body`). A digest of the
 * body before its transforms lets whoever sees it after them (the sponsor, for a response; anything
 * between a sealing edge and the trusted host, for a request) test guesses of the plaintext.
 */
export function transformedBodyHeaderRefusal(direction: 'request' | 'response', name: string, sealsBody: boolean): string | null {
  if (PLAINTEXT_DESCRIBING_RESPONSE_HEADERS.has(name) || PLAINTEXT_DESCRIBING_RESPONSE_PREFIXES.some((p) => name.startsWith(p))) {
    return `"${name}" describes the ${direction} before its transforms (whoever sees it after them could test guesses of the plaintext against it)`
  }
  if (sealsBody && SEALED_BODY_DESCRIBING_RESPONSE_HEADERS.has(name)) return `"${name}" says what a body sealed by seal-body is`
  return null
}

/**
 * Whether the response field `name` describes the body rather than the answer: its type, length,
 * coding, language, location, file name or part, its version (`etag`, `last-modified`) or a digest
 * of it. Dropped with a withheld body (`errorBodies: withhold`), which they would describe to the
 * sponsor.
 */
export function describesTheBody(name: string): boolean {
  return BODY_DESCRIBING_RESPONSE_HEADERS.has(name) || PLAINTEXT_DESCRIBING_RESPONSE_HEADERS.has(name) || PLAINTEXT_DESCRIBING_RESPONSE_PREFIXES.some((p) => name.startsWith(p))
}
/** The representation's own metadata (RFC 9110 §8), beside the digests above. */
const BODY_DESCRIBING_RESPONSE_HEADERS: ReadonlySet<string> = new Set([
  'content-type',
  'content-length',
  'content-encoding',
  'content-language',
  'content-location',
  'content-disposition',
  'etag',
  'last-modified',
])

/** Fields that keep their first value when repeated (Node's `IncomingMessage` discard list, plus ours). */
const SINGLETON: ReadonlySet<string> = new Set([
  'age',
  'authorization',
  'content-length',
  'content-type',
  'etag',
  'expires',
  'from',
  'host',
  'if-modified-since',
  'if-unmodified-since',
  'last-modified',
  'location',
  'max-forwards',
  'proxy-authorization',
  'referer',
  'retry-after',
  'server',
  'user-agent',
  'idempotency-key',
])

/**
 * A field value Node and undici would refuse to send (`checkInvalidHeaderChar`): CR, LF, NUL and the
 * other controls, or a code unit above 0xFF. Such a value is dropped, never sent or thrown over.
 */
const INVALID_VALUE = /[^\t\x20-\x7e\x80-\xff]/

/**
 * Characters sent as-is in the principal header: printable ASCII but `%`, `,` and `"`. Anything
 * else is percent-encoded as UTF-8, so that the encoding is one-to-one as the upstream reads it: a
 * CN `%C3%89` and a CN `É` are two headers (`%`), and a CN `alice, cn:admin` is not read as a list
 * holding `cn:admin` (`,` separates list members and `"` quotes them, RFC 9110 §5.6). A space at
 * either end is encoded too, since parsers strip it (§5.5): `cn:admin ` is not `cn:admin`.
 */
const PLAIN_ID_CHARS = '\\x20\\x21\\x23\\x24\\x26-\\x2b\\x2d-\\x7e'
const PLAIN_ID = new RegExp(`^(?! )[${PLAIN_ID_CHARS}]*(?<! )$`)
const NON_PLAIN_ID_CHAR = new RegExp(`[^${PLAIN_ID_CHARS}]|^ | $`, 'gu')

const IPV4_MAPPED = '::ffff:'

/** What the gateway itself asserts upstream, per request. */
export interface UpstreamHeaderContext {
  readonly requestId: string
  /** The address of the verified TLS connection (`socket.remoteAddress`). */
  readonly clientAddress: string
  readonly principal: Principal
  /** Header that carries `principal.id` upstream; absent means it is not sent. */
  readonly principalHeader?: string | undefined
  readonly requestIdHeader: string
}

/**
 * Why a route may not add `name` to its allow-list for `direction`, or `null` if it may. Used by the
 * route table at boot, so a configuration that asks for a reserved field fails instead of being
 * silently narrowed.
 */
export function headerAdditionRefusal(
  direction: 'request' | 'response',
  name: string,
  sponsor: { readonly principalHeader?: string | undefined; readonly requestIdHeader: string },
): string | null {
  // CGI-style stacks (older gunicorn, Rack, PHP) read `-` and `_` alike (HTTP_X_ECLUSE_PRINCIPAL):
  // a client's `x_ecluse_principal` would compete with the gateway's own `x-ecluse-principal`.
  const dashed = name.replaceAll('_', '-')
  if (isHopByHop(dashed)) return `"${name}" is a hop-by-hop field`
  if (dashed === sponsor.requestIdHeader.replaceAll('_', '-')) return `"${name}" is the request id header, set by the gateway`
  if (direction === 'request') {
    if (RESERVED_REQUEST_HEADERS.has(dashed) || RESERVED_REQUEST_PREFIXES.some((prefix) => dashed.startsWith(prefix))) {
      return `"${name}" is reserved: the gateway sets it or it would override routing`
    }
    if (dashed === sponsor.principalHeader?.replaceAll('_', '-')) return `"${name}" is the principal header, set by the gateway`
  }
  return null
}

/**
 * The request headers sent upstream: allow-listed fields only (minus hop-by-hop and `Connection`-named
 * ones, minus invalid values), then the gateway's own `x-forwarded-for`, `x-forwarded-proto`, request
 * id and, if configured, principal header. Returns lower-case names on a null-prototype object.
 *
 * @example
 * const headers = buildUpstreamHeaders(req.rawHeaders, route, {
 *   requestId, clientAddress: req.socket.remoteAddress ?? '', principal,
 *   principalHeader: 'x-ecluse-principal', requestIdHeader: 'x-request-id',
 * })
 */
export function buildUpstreamHeaders(
  rawHeaders: readonly string[],
  route: CompiledRoute,
  ctx: UpstreamHeaderContext,
): Record<string, string | string[]> {
  const allow = route.requestHeaderAllow
  const out: Record<string, string | string[]> = Object.create(null)
  const named = connectionNamedInRaw(rawHeaders)
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!.toLowerCase()
    if (!allow.has(name) || isHopByHop(name) || named?.has(name)) continue
    addValue(out, name, rawHeaders[i + 1]!)
  }

  const address = ctx.clientAddress.startsWith(IPV4_MAPPED) ? ctx.clientAddress.slice(IPV4_MAPPED.length) : ctx.clientAddress
  // Overwrite, never append: a client's own x-forwarded-for chain is not evidence of anything.
  if (address !== '' && !INVALID_VALUE.test(address)) out['x-forwarded-for'] = address
  else delete out['x-forwarded-for']
  out['x-forwarded-proto'] = 'https'
  out[ctx.requestIdHeader] = ctx.requestId
  if (ctx.principalHeader !== undefined) out[ctx.principalHeader] = principalHeaderValue(ctx.principal.id)
  return out
}

/**
 * What a request may ask of a route whose responses go through transforms: entity-tags, ranges and
 * content negotiation are narrowed. Such a route sends the sponsor no `etag` (see
 * `buildSponsorHeaders`' caller): the upstream's tag names the representation before
 * the transform, often a hash of it, i.e. a function of the plaintext against which the sponsor
 * could test guesses offline, or online through a 304. So any tag a request names there is a
 * guess: `if-none-match` with tags is dropped (a full answer is always correct), and `if-match`
 * with tags is refused by the caller with 412 (a conditional write must not become an
 * unconditional one). `*` names no content and passes. `if-range` and `range` are not on the
 * default list; if a route allows them, they are dropped too: a transform reads a whole document,
 * and a slice of one (an inner record, say) is a document of another shape whose sensitive members
 * no field pattern names. Ignoring a range is always correct (RFC 9110 §14.2); the caller refuses a
 * 206 the upstream sends anyway. `accept` is dropped for the same reason: an upstream that negotiates
 * would let the sponsor pick a representation (NDJSON for a JSON list, HAL for plain JSON) in which
 * the same fields sit at other paths; without it the upstream sends its default, the shape the
 * route's patterns were written for.
 *
 * @returns `'refuse'` when the request must be answered 412 `precondition_failed`.
 */
export function narrowForTransformedResponses(headers: Record<string, string | string[] | undefined>): 'refuse' | undefined {
  const names = (value: string | string[] | undefined) => value !== undefined && [value].flat().join(',').trim() !== '*'
  if (names(headers['if-none-match'])) delete headers['if-none-match']
  if (headers['if-range'] !== undefined) delete headers['if-range']
  if (headers['range'] !== undefined) delete headers['range']
  if (headers['accept'] !== undefined) delete headers['accept']
  return names(headers['if-match']) ? 'refuse' : undefined
}

/**
 * The response headers relayed to the sponsor: allow-listed fields only (minus hop-by-hop and
 * `Connection`-named ones, minus invalid values), plus the request id. `vary` keeps the request
 * fields the gateway forwards on this route and drops standard ones it does not (every request
 * through it lacks them). A `vary` naming a field the gateway itself sets from the connection (the
 * principal, the client's address, the request id), a credential or `forwarded`/`via` it does not
 * forward, or a field of no standard that it does not forward (`X-Internal-Tenant`: something
 * between the gateway and the upstream set it, perhaps from the principal), becomes `*`: the answer may depend on who asked, which nothing in the sponsor's
 * request shows, so a cache on the sponsor's side must not hand it to another client (RFC 9110
 * §12.5.5), and the trusted side's own field names do not cross.
 */
export function buildSponsorHeaders(
  upstreamHeaders: Readonly<Record<string, string | string[] | undefined>>,
  route: CompiledRoute,
  requestId: string,
  sponsor: { readonly principalHeader?: string | undefined; readonly requestIdHeader: string },
): Record<string, string | string[]> {
  const allow = route.responseHeaderAllow
  const out: Record<string, string | string[]> = Object.create(null)
  const named = connectionNamedInValue(upstreamHeaders['connection'])
  for (const key of Object.keys(upstreamHeaders)) {
    const name = key.toLowerCase()
    if (!allow.has(name) || isHopByHop(name) || named?.has(name)) continue
    const value = upstreamHeaders[key]
    if (typeof value === 'string') addValue(out, name, value)
    else if (Array.isArray(value)) for (const v of value) addValue(out, name, v)
  }
  const vary = out['vary']
  if (typeof vary === 'string') {
    const members = vary
      .split(',')
      .map((v) => v.trim().toLowerCase())
      .filter((v) => v !== '')
    const forwarded = (v: string) => route.requestHeaderAllow.has(v) && !(v === 'accept' && route.responseTransforms.length > 0)
    // Set by the gateway from the connection, or (credentials, `from`) by whatever authenticates on
    // the trusted side when the route does not forward the client's own: the answer is per client.
    const perClient = members.some(
      (v) => v === 'x-forwarded-for' || v === sponsor.requestIdHeader || v === sponsor.principalHeader || (PER_CLIENT_REQUEST_FIELDS.has(v) && !forwarded(v)),
    )
    // A field of no standard, which the gateway does not forward, was set between the gateway and the
    // upstream (an internal proxy's `X-Tenant-Id`), perhaps from the principal: per client, as far
    // as the sponsor can tell. What the gateway sets to one value for everyone varies nothing.
    const unknown = members.some((v) => v !== '*' && !forwarded(v) && !isStandardRequestField(v) && !GATEWAY_CONSTANT_FIELDS.has(v))
    const kept = members.filter(forwarded)
    if (perClient || unknown || members.includes('*')) out['vary'] = '*'
    else if (kept.length > 0) out['vary'] = [...new Set(kept)].join(', ')
    else delete out['vary']
  }
  const cacheControl = out['cache-control']
  if (typeof cacheControl === 'string') out['cache-control'] = narrowCacheControl(cacheControl)
  narrowFreeText(out, route.responseTransforms.length > 0)
  out[sponsor.requestIdHeader] = requestId
  return out
}

/** A delay in seconds (`retry-after`, RFC 9110 §10.2.3). */
const DELAY_SECONDS = /^\d{1,10}$/
/** One or more language tags (RFC 9110 §8.5, RFC 5646's shape). */
const LANGUAGE_TAGS = /^[A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*(?:[ \t]*,[ \t]*[A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*)*$/
const TOKEN = "[!#$%&'*+.^_`|~0-9A-Za-z-]+"
const MEDIA_TYPE = new RegExp(`^[ \\t]*(${TOKEN}/${TOKEN})[ \\t]*`, 'y')
const MEDIA_PARAMETER = new RegExp(`[ \\t]*;[ \\t]*(?:(${TOKEN})=(${TOKEN}|"(?:[^"\\\\]|\\\\.)*"))?[ \\t]*`, 'y')
/**
 * The parameters of a media type that say how to read the body, each with what its value must be (a
 * charset in use; RFC 2046's boundary characters; a media type) and the types it belongs to
 * (`boundary` on `multipart/*`, `type` on `multipart/related`, RFC 2387); any other parameter, a
 * value outside its grammar or a second one of a name is dropped.
 */
const KEPT_MEDIA_PARAMETERS: ReadonlyMap<string, { readonly value: RegExp; readonly on?: RegExp }> = new Map([
  // The charsets in use (the WHATWG encoding standard's common labels), not any name-shaped text.
  ['charset', { value: /^(?:utf-?8|utf-16(?:le|be)?|utf-32(?:le|be)?|us-ascii|ascii|iso-8859-(?:[1-9]|1[0-6])|latin1|windows-125[0-8]|cp125[0-8]|shift_jis|sjis|euc-jp|euc-kr|iso-2022-jp|gb2312|gbk|gb18030|big5|koi8-[ru])$/i }],
  ['boundary', { value: /^[0-9A-Za-z'()+_,./:=? -]{0,69}[0-9A-Za-z'()+_,./:=?-]$/, on: /^multipart\//i }],
  ['type', { value: new RegExp(`^${TOKEN}/${TOKEN}$`), on: /^multipart\/related$/i }],
])

/**
 * The response fields the default list relays whose values an upstream could fill with free text
 * (`retry-after: db-primary pg-7.internal down`, a `content-type` parameter naming a build host),
 * which error bodies are withheld to keep behind: each is reduced to its grammar. A date is
 * re-written from the instant it names (RFC 9110 §5.6.7: recipients read all three date formats);
 * `expires` that names none is `0`, already expired, as a cache must read it (RFC 9111 §5.3); the
 * others are dropped when they do not parse; `content-type` keeps its type and the parameters of
 * {@link KEPT_MEDIA_PARAMETERS}.
 */
function narrowFreeText(out: Record<string, string | string[]>, transformed: boolean): void {
  const retryAfter = out['retry-after']
  if (typeof retryAfter === 'string' && !DELAY_SECONDS.test(retryAfter.trim())) setOrDelete(out, 'retry-after', httpDate(retryAfter))
  else if (typeof retryAfter === 'string') out['retry-after'] = retryAfter.trim()
  const expires = out['expires']
  if (typeof expires === 'string') out['expires'] = httpDate(expires) ?? '0'
  const lastModified = out['last-modified']
  if (typeof lastModified === 'string') setOrDelete(out, 'last-modified', httpDate(lastModified))
  const language = out['content-language']
  if (typeof language === 'string' && !LANGUAGE_TAGS.test(language.trim())) delete out['content-language']
  const type = out['content-type']
  if (typeof type === 'string') setOrDelete(out, 'content-type', narrowMediaType(type, transformed))
}

function setOrDelete(out: Record<string, string | string[]>, name: string, value: string | undefined): void {
  if (value === undefined) delete out[name]
  else out[name] = value
}

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec']
const MONTH = `(${MONTHS.join('|')})`
const TIME = '(\\d{2}):(\\d{2}):(\\d{2})'
/** RFC 9110 §5.6.7's three formats: IMF-fixdate, then the obsolete RFC 850 and asctime ones. */
const IMF_FIXDATE = new RegExp(`^(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), (\\d{2}) ${MONTH} (\\d{4}) ${TIME} GMT$`)
const RFC850_DATE = new RegExp(`^(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday), (\\d{2})-${MONTH}-(\\d{2}) ${TIME} GMT$`)
const ASCTIME_DATE = new RegExp(`^(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) ${MONTH} ([ \\d]\\d) ${TIME} (\\d{4})$`)

/**
 * The IMF-fixdate of the instant an HTTP-date names, or undefined for anything else. Strict on
 * purpose: `Date.parse` reads `3600` as the year 3600 and `node 42` as 2042, which would turn an
 * upstream's mistake into an answer fresh for centuries.
 */
function httpDate(value: string): string | undefined {
  const parts = dateParts(value.trim())
  if (parts === undefined) return undefined
  const { month, day, h, min, sec, twoDigitYear } = parts
  if (parts.year < 1000 || h > 23 || min > 59 || sec > 60) return undefined
  // A leap second (60) is read as the second before it, which every clock can show.
  const at = (year: number) => new Date(Date.UTC(year, month, day, h, min, Math.min(sec, 59)))
  let date = at(parts.year)
  // A two-digit year more than 50 years ahead is the last such year past (RFC 9110 §5.6.7).
  if (twoDigitYear && date.getTime() > Date.now() + FIFTY_YEARS_MS) date = at(parts.year - 100)
  // 31 Feb and the like roll over into the next month: not a date.
  if (date.getUTCDate() !== day || date.getUTCMonth() !== month) return undefined
  return date.toUTCString()
}

const FIFTY_YEARS_MS = 50 * 365.2425 * 24 * 3600 * 1000

/** The fields of an HTTP-date in one of its three formats (month from 0), or undefined. */
function dateParts(
  text: string,
): { year: number; month: number; day: number; h: number; min: number; sec: number; twoDigitYear: boolean } | undefined {
  const fields = (day: string, month: string, year: number, [h, min, sec]: string[], twoDigitYear = false) => ({
    year,
    month: MONTHS.indexOf(month),
    day: Number(day),
    h: Number(h),
    min: Number(min),
    sec: Number(sec),
    twoDigitYear,
  })
  const imf = IMF_FIXDATE.exec(text)
  if (imf !== null) return fields(imf[1]!, imf[2]!, Number(imf[3]), imf.slice(4))
  const rfc850 = RFC850_DATE.exec(text)
  if (rfc850 !== null) return fields(rfc850[1]!, rfc850[2]!, 2000 + Number(rfc850[3]), rfc850.slice(4), true)
  const asctime = ASCTIME_DATE.exec(text)
  if (asctime !== null) return fields(asctime[2]!.trim(), asctime[1]!, Number(asctime[6]), asctime.slice(3, 6))
  return undefined
}

/**
 * `type/subtype` and its `charset`, `boundary` and `type` parameters, or undefined when it does not
 * parse. On a route with response transforms (`transformed`) a charset outside the known ones is kept
 * as written: the steps read the type and refuse a charset they cannot read (dropped, they would read
 * UTF-7 as UTF-8), and what they refuse never crosses.
 */
function narrowMediaType(value: string, transformed: boolean): string | undefined {
  MEDIA_TYPE.lastIndex = 0
  const head = MEDIA_TYPE.exec(value)
  if (head === null) return undefined
  let kept = head[1]!
  const seen = new Set<string>()
  for (let at = MEDIA_TYPE.lastIndex; at < value.length; at = MEDIA_PARAMETER.lastIndex) {
    MEDIA_PARAMETER.lastIndex = at
    const m = MEDIA_PARAMETER.exec(value)
    // A parameter list that does not parse: the type alone, which says less.
    if (m === null) return head[1]!
    // An empty parameter (`text/html; charset=utf-8;`, common) is nothing.
    if (m[1] === undefined) continue
    const name = m[1].toLowerCase()
    const raw = m[2]!
    const unquoted = raw.startsWith('"') ? raw.slice(1, -1) : raw
    const rule = KEPT_MEDIA_PARAMETERS.get(name)
    const valid = rule !== undefined && (rule.value.test(unquoted) || (transformed && name === 'charset'))
    // Once each: a second `charset` would leave the reader to choose.
    if (!valid || seen.has(name) || !(rule.on?.test(head[1]!) ?? true)) continue
    seen.add(name)
    kept += `; ${name}=${raw}`
  }
  return kept
}

/**
 * Request fields of HTTP and the web platform: an upstream's `vary` naming one the gateway does not
 * forward on the route is dropped (every request through the gateway lacks it, so the answer cannot
 * vary with it) unless it says who the client is ({@link PER_CLIENT_REQUEST_FIELDS}), where a field
 * of no standard becomes `*` (see `buildSponsorHeaders`).
 */
const STANDARD_REQUEST_FIELDS: ReadonlySet<string> = new Set([
  'a-im',
  'accept',
  'accept-charset',
  'accept-encoding',
  'accept-language',
  'authorization',
  'cache-control',
  'content-encoding',
  'content-length',
  'content-type',
  'cookie',
  'device-memory',
  'dnt',
  'downlink',
  'dpr',
  'ect',
  'expect',
  'forwarded',
  'from',
  'host',
  'if-match',
  'if-modified-since',
  'if-none-match',
  'if-range',
  'if-unmodified-since',
  'max-forwards',
  'origin',
  'pragma',
  'prefer',
  'range',
  'referer',
  'rtt',
  'save-data',
  'te',
  'upgrade-insecure-requests',
  'user-agent',
  'via',
  'viewport-width',
  'width',
  'x-requested-with',
])
/**
 * Standard request fields that say who the client is, or which way it came (`forwarded`, `via`: the
 * gateway never forwards a client's, so one the upstream saw was made on the trusted side, from the
 * gateway's `x-forwarded-for`): a `vary` on one the route does not forward is `*`.
 */
const PER_CLIENT_REQUEST_FIELDS: ReadonlySet<string> = new Set(['authorization', 'cookie', 'from', 'forwarded', 'via'])
/** Fields the gateway sends upstream with one value for every request (`host` from the upstream's configuration). */
const GATEWAY_CONSTANT_FIELDS: ReadonlySet<string> = new Set(['x-forwarded-proto', 'host'])
const STANDARD_REQUEST_FIELD_PREFIXES: readonly string[] = ['sec-fetch-', 'sec-ch-', 'access-control-request-']

/** Whether `name` (lower case) is a request field of HTTP or the web platform, not one of a deployment's own. */
export function isStandardRequestField(name: string): boolean {
  return STANDARD_REQUEST_FIELDS.has(name) || STANDARD_REQUEST_FIELD_PREFIXES.some((p) => name.startsWith(p))
}

/** Response directives that take a number of seconds (RFC 9111 §5.2.2, RFC 5861). */
const CACHE_SECONDS = new Set(['max-age', 's-maxage', 'stale-while-revalidate', 'stale-if-error'])
/** Response directives without an argument (RFC 9111 §5.2.2, RFC 8246); `no-cache` and `private` lose theirs. */
const CACHE_FLAGS = new Set(['no-store', 'no-cache', 'private', 'public', 'must-revalidate', 'proxy-revalidate', 'must-understand', 'no-transform', 'immutable'])
/** One directive: a token, then `=` and a token or a quoted string, then a comma or the end. */
const CACHE_DIRECTIVE = /[ \t]*([!#$%&'*+.^_`|~0-9A-Za-z-]+)[ \t]*(?:=[ \t]*("(?:[^"\\]|\\.)*"|[!#$%&'*+.^_`|~0-9A-Za-z-]*))?[ \t]*(?:,|$)/y

/**
 * `cache-control` as the sponsor may see it: the standard response directives only. `no-cache` and
 * `private` lose the field names they may list (RFC 9111 §5.2.2.4, §5.2.2.7), which would name the
 * trusted side's own headers as an unfiltered `vary` would (`private="X-Internal-Tenant"`), for the
 * bare directive, which is stricter; extensions (`x-cluster="paris-2"`) are dropped. A value that
 * does not parse becomes `no-store`: a cache on the sponsor's side must never keep more than the
 * upstream allowed.
 */
export function narrowCacheControl(value: string): string {
  const kept: string[] = []
  for (let at = 0; at < value.length; ) {
    CACHE_DIRECTIVE.lastIndex = at
    const m = CACHE_DIRECTIVE.exec(value)
    if (m === null || CACHE_DIRECTIVE.lastIndex === at) return 'no-store'
    at = CACHE_DIRECTIVE.lastIndex
    const name = m[1]!.toLowerCase()
    const argument = m[2]?.replace(/^"(.*)"$/s, '$1')
    if (CACHE_SECONDS.has(name)) {
      if (argument === undefined || !/^\d{1,10}$/.test(argument)) return 'no-store'
      kept.push(`${name}=${argument}`)
    } else if (CACHE_FLAGS.has(name)) {
      kept.push(name)
    }
  }
  return kept.length === 0 ? 'no-store' : [...new Set(kept)].join(', ')
}

/** Folds one field line into `out` (see the module comment for the rules). */
function addValue(out: Record<string, string | string[]>, name: string, value: string): void {
  if (typeof value !== 'string' || INVALID_VALUE.test(value)) return
  const existing = out[name]
  if (existing === undefined) {
    out[name] = name === 'set-cookie' ? [value] : value
  } else if (Array.isArray(existing)) {
    existing.push(value)
  } else if (!SINGLETON.has(name)) {
    // RFC 6265 §5.4: cookie pairs are joined with "; ", every other list field with ", ".
    out[name] = existing + (name === 'cookie' ? '; ' : ', ') + value
  }
}

/** Field names listed in any `Connection` line of raw headers, or null when there are none to remove. */
function connectionNamedInRaw(rawHeaders: readonly string[]): Set<string> | null {
  let named: Set<string> | null = null
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!
    if (name.length === 10 && name.toLowerCase() === 'connection') named = addConnectionTokens(named, rawHeaders[i + 1]!)
  }
  return named
}

function connectionNamedInValue(value: string | string[] | undefined): Set<string> | null {
  if (typeof value === 'string') return addConnectionTokens(null, value)
  let named: Set<string> | null = null
  if (Array.isArray(value)) for (const v of value) named = addConnectionTokens(named, v)
  return named
}

function addConnectionTokens(named: Set<string> | null, value: string): Set<string> | null {
  if (typeof value !== 'string') return named
  // The usual values name nothing beyond the hop-by-hop set: no allocation for them.
  const lower = value.toLowerCase()
  if (lower === 'keep-alive' || lower === 'close' || lower === '') return named
  for (const part of lower.split(',')) {
    const token = part.trim()
    if (token === '' || token === 'close' || isHopByHop(token)) continue
    named ??= new Set()
    named.add(token)
  }
  return named
}

/**
 * The principal id as a field value. Ids are ASCII in practice (URI and DNS SANs are); a CN may not
 * be, and a raw non-Latin-1 value would be refused by undici, so those characters are sent
 * percent-encoded as UTF-8, and so is `%` itself (decoding gives the id back, exactly).
 */
function principalHeaderValue(id: string): string {
  if (PLAIN_ID.test(id)) return id
  return id.replace(NON_PLAIN_ID_CHAR, percentEncodeUtf8)
}

function percentEncodeUtf8(ch: string): string {
  // Buffer.from never throws on a lone surrogate (it becomes U+FFFD), unlike encodeURIComponent.
  let encoded = ''
  for (const byte of Buffer.from(ch, 'utf8')) encoded += `%${byte.toString(16).toUpperCase().padStart(2, '0')}`
  return encoded
}
