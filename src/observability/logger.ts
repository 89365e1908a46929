/**
 * The gateway's logger: pino, one JSON object per line, ISO timestamps, string levels, and
 * redaction of credentials and key material wherever they appear.
 *
 * Redaction is two layers, both cheap on the hot path:
 *  1. pino `redact` with explicit paths (`authorization`, `req.headers.authorization`, `jwk.d`, …).
 *     Paths that *start* with a wildcard (`*.authorization`) are deliberately absent: pino applies
 *     them by walking every logged object, which measured at 20–100 µs per line (vs ≈1.5 µs) with
 *     this field list — an access log line per request cannot afford that.
 *  2. A copy-on-write scrub (`formatters.log` and `formatters.bindings`, and the `err` serializer's
 *     output) that walks plain objects and arrays up to {@link SCRUB_MAX_DEPTH} levels and censors
 *     the same field names at any depth, header and credential names in any case, and the value
 *     after such a name in `rawHeaders` and `rawTrailers` (flat name/value lists). A clean object
 *     is returned as is, so the common case allocates nothing.
 * Neither layer can see a secret inside a message string or under an unrelated key name: never log
 * bodies, raw headers or key objects in the first place.
 */
import { hostname } from 'node:os'
import pino, { type DestinationStream, type Logger } from 'pino'
import type { ErrorCode } from '../errors.js'
import type { Principal } from '../identity/principal.js'
import { LOG_CLOSE_DEADLINE_MS, openStdoutLog, type StdoutLog } from './stdout-log.js'

export type { Logger } from 'pino'

/** What a redacted value is replaced with. */
export const REDACTED = '[redacted]'

/** Credential-bearing HTTP headers, by their lower-case wire name (Node lower-cases incoming ones). */
const SECRET_HEADERS = ['authorization', 'proxy-authorization', 'cookie', 'set-cookie'] as const
/** Private-key fields: PEM/KeyObject holders and the private JWK members (RFC 7518 §6.3.2, §6.4.1). */
const KEY_FIELDS = ['key', 'privateKey', 'd', 'p', 'q', 'dp', 'dq', 'qi', 'k'] as const

/** Where headers usually sit in a logged object. */
const HEADER_PARENTS = ['', 'headers', 'req.headers', 'res.headers', 'request.headers', 'response.headers']
/** Where key material might sit in a logged object. */
const KEY_PARENTS = ['', 'err', 'error', 'tls', 'jwk', 'upstream.tls', 'sponsor.tls']

function pathOf(parent: string, field: string): string {
  // Names with '-' need pino's bracket notation.
  const seg = /^[A-Za-z_$][\w$]*$/.test(field) ? field : `["${field}"]`
  if (parent === '') return seg
  return seg.startsWith('[') ? `${parent}${seg}` : `${parent}.${seg}`
}

/** The explicit pino redact paths (exported for docs and tests). */
export const REDACT_PATHS: readonly string[] = [
  ...HEADER_PARENTS.flatMap((parent) => SECRET_HEADERS.map((h) => pathOf(parent, h))),
  ...KEY_PARENTS.flatMap((parent) => KEY_FIELDS.map((k) => pathOf(parent, k))),
]

/** Field names censored at any depth by the scrub, exactly as spelt (the private JWK members are case-sensitive). */
const SENSITIVE_KEYS: ReadonlySet<string> = new Set<string>([...SECRET_HEADERS, ...KEY_FIELDS])
/**
 * Field names censored at any depth in any case (`AUTHORIZATION`, `PrivateKey`): header names are
 * case-insensitive, and these are credentials by convention wherever they appear. Compared by
 * folding the case of ASCII letters (`equalsFoldingAscii`), so every name here is lower-case ASCII.
 */
const SENSITIVE_FOLDED: ReadonlySet<string> = new Set<string>([
  ...SECRET_HEADERS,
  'key',
  'privatekey',
  'private_key',
  'passphrase',
  'password',
  'secret',
  'client_secret',
  'token',
  'access_token',
  'refresh_token',
  'x-api-key',
  'api-key',
  'api_key',
  'apikey',
  'x-auth-token',
])

/** SENSITIVE_FOLDED by length: a name is compared only with those of its own length. */
const FOLDED_BY_LENGTH: ReadonlyMap<number, readonly string[]> = (() => {
  const byLength = new Map<number, string[]>()
  for (const name of SENSITIVE_FOLDED) byLength.set(name.length, [...(byLength.get(name.length) ?? []), name])
  return byLength
})()

function isSensitiveName(name: string): boolean {
  if (SENSITIVE_KEYS.has(name)) return true
  // Names of one or two letters are the JWK members: exact only (a `D` is no private member).
  const candidates = name.length > 2 ? FOLDED_BY_LENGTH.get(name.length) : undefined
  if (candidates === undefined) return false
  for (const lower of candidates) if (equalsFoldingAscii(name, lower)) return true
  return false
}

/**
 * `name` is the lower-case ASCII `lower` but for the case of its letters. Compared in place, without
 * a lower-cased copy: this runs for every key of every log line (the access line per request).
 */
function equalsFoldingAscii(name: string, lower: string): boolean {
  for (let i = 0; i < lower.length; i++) {
    const c = name.charCodeAt(i)
    if (c !== lower.charCodeAt(i) && !(c >= 0x41 && c <= 0x5a && c + 0x20 === lower.charCodeAt(i))) return false
  }
  return true
}

/** The prototype of what pino's `err` serializer returns: walked by the scrub like a plain object. */
const SERIALIZED_ERROR_PROTO: object | null = Object.getPrototypeOf(pino.stdSerializers.err(new Error('probe')))

/** How deep the scrub looks; deeper values are logged as they are (keep log objects shallow). */
export const SCRUB_MAX_DEPTH = 8

function isPlainObject(v: object): v is Record<string, unknown> {
  const proto = Object.getPrototypeOf(v)
  return proto === Object.prototype || proto === null || proto === SERIALIZED_ERROR_PROTO
}

/**
 * Censor sensitive keys at any depth, copying only the objects on the way to a censored value.
 * Only plain objects and arrays are walked, and Errors through pino's `err` serializer wherever they
 * are; other class instances (Buffer, KeyObject, Map) are left to their serializers (a KeyObject
 * serialises as `{}`).
 */
function scrub(obj: Record<string, unknown>, depth: number): Record<string, unknown> {
  let out = obj
  for (const k in obj) {
    if (!Object.hasOwn(obj, k)) continue
    if (isSensitiveName(k)) {
      if (out === obj) out = { ...obj }
      out[k] = REDACTED
      continue
    }
    const v = obj[k]
    // Under the top-level `err`, pino's own serializer (then this scrub) takes the Error, as it always
    // did. pino serializes no deeper `err`: one there is serialised below like an Error under any key.
    if (depth === 0 && k === 'err' && v instanceof Error) continue
    if (depth < SCRUB_MAX_DEPTH && typeof v === 'object' && v !== null) {
      const s = scrubValue(v, depth + 1, k === 'rawHeaders' || k === 'rawTrailers' || k === 'headers')
      if (s !== v) {
        if (out === obj) out = { ...obj }
        out[k] = s
      }
    }
  }
  return out
}

function scrubValue(v: object, depth: number, namesAndValues = false): unknown {
  // The bound also ends a cycle (an error whose context points back at it, a list holding itself).
  if (depth > SCRUB_MAX_DEPTH) return v
  if (Array.isArray(v)) {
    let out: unknown[] = v
    for (let i = 0; i < v.length; i++) {
      const item: unknown = v[i]
      // Node's `rawHeaders` (and `rawTrailers`, and undici's `headers` as a list): a flat list of
      // names and values, where the value after a sensitive name is censored. Other lists (kids,
      // names) are values, kept.
      if (namesAndValues && typeof item === 'string' && i % 2 === 0 && i + 1 < v.length && typeof v[i + 1] === 'string' && isSensitiveName(item)) {
        if (out === v) out = v.slice()
        out[i + 1] = REDACTED
        i++
        continue
      }
      // The same list as name/value pairs (fetch's `HeadersInit`, `Object.entries(headers)`).
      if (namesAndValues && Array.isArray(item) && item.length === 2 && typeof item[0] === 'string' && isSensitiveName(item[0])) {
        if (out === v) out = v.slice()
        out[i] = [item[0], REDACTED]
        continue
      }
      if (typeof item === 'object' && item !== null) {
        const s = scrubValue(item, depth + 1)
        if (s !== item) {
          if (out === v) out = v.slice()
          out[i] = s
        }
      }
    }
    return out
  }
  // An Error under another key than `err` (`{ error: e }`, `{ errors: [e] }`): serialised and
  // scrubbed as `err` is, not left to JSON.stringify with its own properties in clear.
  if (v instanceof Error) return serializeError(v, depth)
  return isPlainObject(v) ? scrub(v, depth) : v
}

function scrubLogObject(obj: Record<string, unknown>): Record<string, unknown> {
  return scrub(obj, 0)
}

/**
 * pino's `err` serializer, then the scrub: the formatters see an Error before it is serialised
 * and do not walk it, while the serializer copies its own properties (`err.tls`, `err.headers`).
 */
function serializeError(err: unknown, depth = 0): unknown {
  const out: unknown = pino.stdSerializers.err(err as Error)
  return typeof out === 'object' && out !== null ? scrubValue(out, depth) : out
}

function levelLabel(label: string): { level: string } {
  return { level: label }
}

/** Options for {@link createLogger}. */
export interface LoggerOptions {
  /** pino level: `fatal`, `error`, `warn`, `info`, `debug`, `trace` or `silent`. */
  readonly level: string
  /** Where lines go; default the process's stdout log (`stdout-log.ts`), which {@link exitAfterLog} closes. */
  readonly destination?: DestinationStream
}

/** The process's stdout log, made by the first logger that writes there. */
let stdoutLog: StdoutLog | undefined
/** The exit code asked for so far: the highest wins (a fatal error while closing is no exit 0). */
let exitCode: number | undefined

/** Log lines this process dropped because stdout's reader did not keep up or had gone (`ecluse_log_lines_dropped_total`). */
export function droppedLogLines(): number {
  return stdoutLog?.dropped ?? 0
}

/**
 * Writes stdout's last log lines, or drops them once their reader proves gone or has not taken
 * them within {@link LOG_CLOSE_DEADLINE_MS}; later lines go nowhere. Never rejects.
 */
export function closeStdoutLog(): Promise<void> {
  return stdoutLog?.close(LOG_CLOSE_DEADLINE_MS) ?? Promise.resolve()
}

/**
 * Ends the process once the stdout log is closed ({@link closeStdoutLog}): the way every serving
 * process exits, so that a log reader does not keep a stopped gateway alive. Called again before
 * the exit (a fatal error while draining), the highest code wins.
 */
export function exitAfterLog(code: number): void {
  exitCode = Math.max(exitCode ?? code, code)
  void closeStdoutLog().then(() => process.exit(exitCode))
}

/**
 * pino runs `formatters.bindings` on the root logger's bindings only: a child's are written as they
 * are (found by review). Every child of `log`, and theirs (they inherit this `child`), has its
 * bindings scrubbed as a log object is.
 */
function scrubbingChildren(log: Logger): Logger {
  type Child = (this: Logger, bindings: pino.Bindings, options?: pino.ChildLoggerOptions) => Logger
  const child = log.child as unknown as Child
  const scrubbed: Child = function (bindings, options) {
    return child.call(this, scrubLogObject(bindings), options)
  }
  log.child = scrubbed as unknown as Logger['child']
  return log
}

/**
 * The gateway logger.
 *
 * @example
 * const log = createLogger({ level: 'info' })
 * log.info({ req: { headers: { authorization: 'Bearer …' } } }, 'x') // → "authorization":"[redacted]"
 */
export function createLogger(opts: LoggerOptions): Logger {
  const options: pino.LoggerOptions = {
    level: opts.level,
    base: { service: 'ecluse', pid: process.pid, hostname: hostname() },
    timestamp: pino.stdTimeFunctions.isoTime,
    redact: { paths: [...REDACT_PATHS], censor: REDACTED },
    serializers: { err: serializeError },
    formatters: {
      level: levelLabel,
      bindings: scrubLogObject,
      log: scrubLogObject,
    },
  }
  if (opts.destination !== undefined) return scrubbingChildren(pino(options, opts.destination))
  if (stdoutLog !== undefined) return scrubbingChildren(pino(options, stdoutLog))
  stdoutLog = openStdoutLog()
  const log = scrubbingChildren(pino(options, stdoutLog))
  if (stdoutLog.fallback !== undefined) {
    log.warn(
      { error: stdoutLog.fallback },
      'stdout is a pipe this process cannot write as a non-blocking stream of its own; a log reader that stops reading can keep it from exiting',
    )
  }
  return log
}

// ---------------------------------------------------------------------------------------------
// Access log

/**
 * The one line logged per sponsor request. Only these fields, ever: no path (its segments and query
 * may carry identifiers), no body, no header value except the request id.
 */
export interface AccessLogLine {
  /** Request id (generated, or the client's if it passed the listener's checks). */
  readonly reqId: string
  /** Route name from the config, or `unmatched`. */
  readonly route: string
  /** The verified principal id (log-safe by construction), or null before/without a client certificate. */
  readonly principal: string | null
  /** HTTP method; anything outside the standard set is logged as `OTHER`. */
  readonly method: string
  /** Status sent to the client; 0 when the response was aborted. */
  readonly status: number
  /** True when no complete response was delivered (client gone, upstream or transform failure mid-body). */
  readonly aborted: boolean
  /** Request body bytes received from the client. */
  readonly bytesIn: number
  /** Response body bytes sent to the client. */
  readonly bytesOut: number
  /** Request start → response finished, in milliseconds (µs precision). */
  readonly durationMs: number
  /** Upstream request sent → response headers, in milliseconds, when the upstream was reached. */
  readonly upstreamMs?: number | undefined
  /** The error code, when the gateway refused or failed the request. */
  readonly code?: ErrorCode | undefined
}

/** What {@link accessLogFields} needs; extra properties are ignored, never copied. */
export interface AccessLogInput {
  readonly reqId: string
  readonly route?: string | undefined
  readonly principal?: Principal | string | null | undefined
  readonly method?: string | undefined
  readonly status: number
  readonly aborted?: boolean | undefined
  readonly bytesIn: number
  readonly bytesOut: number
  readonly durationMs: number
  readonly upstreamMs?: number | undefined
  readonly code?: ErrorCode | undefined
}

/** The log message of access lines, so they can be filtered on. */
export const ACCESS_LOG_MSG = 'access'

const METHODS: ReadonlySet<string> = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'CONNECT', 'TRACE'])
/** Visible ASCII, bounded: anything else in a request id is not echoed into the log. */
const SAFE_REQUEST_ID = /^[\x21-\x7e]{1,128}$/

function roundMs(ms: number): number {
  return Math.round(ms * 1000) / 1000
}

/**
 * Build the access-log record from an allow-list of fields: whatever else the input object carries
 * (a path, headers, a body) is not copied. The result has a fixed shape.
 *
 * @example
 * log.info(accessLogFields({ reqId, route: route.name, principal, method: req.method, status: res.statusCode,
 *   bytesIn, bytesOut, durationMs: performance.now() - started }), ACCESS_LOG_MSG)
 */
export function accessLogFields(input: AccessLogInput): AccessLogLine {
  const p = input.principal
  const method = input.method
  return {
    reqId: SAFE_REQUEST_ID.test(input.reqId) ? input.reqId : '-',
    route: input.route ?? 'unmatched',
    principal: p === undefined || p === null ? null : typeof p === 'string' ? p : p.id,
    method: method !== undefined && METHODS.has(method) ? method : 'OTHER',
    status: input.status,
    aborted: input.aborted === true,
    bytesIn: input.bytesIn,
    bytesOut: input.bytesOut,
    durationMs: roundMs(input.durationMs),
    upstreamMs: input.upstreamMs === undefined ? undefined : roundMs(input.upstreamMs),
    code: input.code,
  }
}

/** Log one access line at `info`; costs nothing beyond a level check when `info` is disabled. */
export function writeAccessLog(log: Logger, input: AccessLogInput): void {
  if (log.isLevelEnabled('info')) log.info(accessLogFields(input), ACCESS_LOG_MSG)
}
