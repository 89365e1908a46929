/**
 * The plumbing shared by the field transforms (`seal`, `open`, `require-sealed`, `strip`): option
 * parsing, the content-type and content-encoding policy, the JSON Pointer claim of a value, and the
 * rewriter stream that maps its failures by direction and reports metrics once per message.
 *
 * The policy is deny by default (docs/transforms.md): a body is inspected only if it is certainly
 * UTF-8 JSON (or NDJSON) with no content coding; anything else is refused before a byte crosses,
 * because a value the rewriter cannot see is a value that could cross in plaintext.
 */
import type { TransformCallback } from 'node:stream'
import { z } from 'zod'
import { claimFits, MAX_CLAIM_BYTES } from '../crypto/jwe.js'
import type { KeySet } from '../crypto/keys.js'
import { EcluseError, type ErrorCode, isEcluseError } from '../errors.js'
import type { CryptoOp, CryptoOpMetrics, CryptoRouteMetrics } from '../observability/metrics.js'
import { ANY_SEGMENT, type CompiledRules, compileRules, formatPointer, isDeepPattern, parsePattern, patternsCanOverlap } from './json/pointer.js'
import { JSON_REWRITER_DEFAULTS, JsonRewriter, type JsonTarget, type JsonValueHandler } from './json/rewriter.js'
import type { Direction, MessageHeaders, TransformContext, TransformEnv } from './types.js'

// ---------------------------------------------------------------------------------------------
// Options

/** A key set name, as in the `keys` section. */
export const keySetName = z.string().min(1)
/** A context as configured: 1–256 visible ASCII characters. */
export const contextText = z
  .string()
  .min(1)
  .max(256)
  .regex(/^[\x21-\x7e]+$/, 'must be visible ASCII without spaces')
/** `context`: bound into every sealed value as `ecl.route`; default the route name. */
export const contextOption = contextText.optional()
/**
 * A field step's `context`: `{…}` reads a path parameter in the whole-body steps' context
 * (body-context.ts) and is refused here rather than bound as text; a field is bound to its record
 * through `records` instead.
 */
const NO_PATH_PARAMETER = {
  message: 'a "{name}" path parameter binds whole bodies only (seal-body, open-body, require-sealed-body); a field is bound to its record through records',
}
export const fieldContextOption = contextOption.refine((v) => v === undefined || !/[{}]/.test(v), NO_PATH_PARAMETER)
/**
 * An `alsoAccept` option: up to 8 contexts accepted beside `context` while the sealing side moves
 * from one to the other (docs/transforms.md, "Changing a context"), each checked by `context`.
 */
export function alsoAcceptList<T extends z.ZodTypeAny>(context: T) {
  return z.array(context).min(1).max(8).optional()
}
/** `alsoAccept` of `open` and `require-sealed`: field contexts, which name no path parameter. */
export const fieldAlsoAcceptOption = alsoAcceptList(contextText.refine((v) => !/[{}]/.test(v), NO_PATH_PARAMETER))
export const fieldsOption = z.array(z.string()).min(1)
export const recordsOption = z.object({ pattern: z.string(), id: z.string().min(1).max(1024) }).strict().optional()
export const formatOption = z.enum(['auto', 'json', 'ndjson']).default('auto')
const size = (max: number) => z.number().int().positive().max(max)
/**
 * Byte caps: a plaintext value up to 16 MiB, a record up to 64 MiB (both held whole while they are
 * decided); on the sealed side (`open`, `require-sealed`) up to 24 and 96 MiB. 24 MiB holds the
 * largest value a `seal` may make (base64url is 4/3, plus a header of at most 8 KiB): whatever value
 * one step seals, another opens. A record has no such bound: each of its values adds a header that
 * repeats its pointer and record id, so a record of very many values can seal to more than 96 MiB.
 */
export const MAX_VALUE_BYTES = { plaintext: 16 * 1024 * 1024, sealed: 24 * 1024 * 1024 } as const
export const MAX_RECORD_BYTES = { plaintext: 64 * 1024 * 1024, sealed: 96 * 1024 * 1024 } as const
export const valueBytesOption = (dflt: number, side: 'plaintext' | 'sealed') => size(MAX_VALUE_BYTES[side]).default(dflt)
export const recordBytesOption = (dflt: number, side: 'plaintext' | 'sealed') => size(MAX_RECORD_BYTES[side]).default(dflt)
/**
 * Values the fields may match in one record: a record's values are held until it ends, with their
 * results (a sealed value is a few hundred bytes more than its plaintext), so their number is
 * bounded as well as the record's bytes.
 */
export const recordFieldsOption = size(100_000).default(JSON_REWRITER_DEFAULTS.maxRecordTargets)

/** Default caps on the plaintext side (`seal`, `strip`). */
export const PLAINTEXT_VALUE_BYTES = 64 * 1024
export const PLAINTEXT_RECORD_BYTES = 1024 * 1024
/**
 * Default caps on the sealed side (`open`, `require-sealed`): a 64 KiB value seals to about 88 KiB of
 * compact JWE (base64url is 4/3, plus the header), and a record grows the same way.
 */
export const SEALED_VALUE_BYTES = 96 * 1024
export const SEALED_RECORD_BYTES = 2 * 1024 * 1024

/**
 * Validates a step's options with `schema`; every problem becomes one `config_invalid` line
 * `<key>: <message>` (the registry prefixes the step's key path). Values are never echoed.
 */
export function parseOptions<S extends z.ZodType>(schema: S, options: Readonly<Record<string, unknown>>): z.infer<S> {
  const result = schema.safeParse(options)
  if (result.success) return result.data
  const lines = result.error.issues.map((issue) => {
    const key = issue.path.length === 0 ? '(options)' : issue.path.map((p) => (typeof p === 'number' ? `[${p}]` : `.${String(p)}`)).join('').replace(/^\./, '')
    if (issue.code === 'unrecognized_keys') return issue.keys.map((k) => `${k}: unknown option`).join('\n')
    if (issue.code === 'invalid_type' && issue.input === undefined) return `${key}: required`
    return `${key}: ${issue.message}`
  })
  throw new EcluseError('config_invalid', lines.join('\n'))
}

/**
 * The key set `name` from the environment. A set used to open must be private; a set used to seal
 * or verify may be either (a private set holds the public halves too).
 *
 * @throws EcluseError `config_invalid` naming the option (`recipients` or `keys`).
 */
export function keySetFor(env: TransformEnv, option: string, name: string, needPrivate: boolean): KeySet {
  const set = env.keySets?.get(name)
  if (set === undefined) {
    const known = [...(env.keySets?.keys() ?? [])].sort()
    throw new EcluseError('config_invalid', `${option}: unknown key set "${name}" (known: ${known.length === 0 ? 'none' : known.join(', ')})`)
  }
  if (needPrivate && !set.hasPrivateKeys) {
    throw new EcluseError('config_invalid', `${option}: key set "${name}" holds public keys only (private: false); opening needs private keys`)
  }
  return set
}

/**
 * What a field pattern carries into the rewriter: its `ecl.ptr` claim when that is the same for
 * every value it matches (no `*` where the value's own location shows), computed once at boot
 * instead of formatted per value.
 */
export interface FieldRule {
  /** The claim outside a record: the pattern itself, when it has no wildcard. */
  readonly claim: string | undefined
  /** The claim inside a record: the record pattern + the rest of the pattern, when that rest has no wildcard. */
  readonly recordClaim: string | undefined
}

/** Field patterns and record binding compiled once, with their limits. */
export interface FieldRules {
  readonly rules: CompiledRules<FieldRule>
  /** The record pattern as configured (the prefix of `ecl.ptr` inside a record), or undefined. */
  readonly recordPattern: string | undefined
  readonly format: 'auto' | 'json' | 'ndjson'
  readonly maxValueBytes: number
  readonly maxRecordBytes: number
  readonly maxFieldsPerRecord: number
}

/**
 * Compiles `fields` (RFC 6901 pointers, `*` segments) and `records` into the rewriter's matcher.
 *
 * @throws EcluseError `config_invalid` for a bad pointer or an ambiguous set (two patterns that can
 *   match the same value, a field inside another field, a record pattern that can match a field).
 */
export function compileFieldRules(opts: {
  fields: readonly string[]
  records?: { pattern: string; id: string } | undefined
  format: 'auto' | 'json' | 'ndjson'
  maxValueBytes: number
  maxRecordBytes: number
  maxFieldsPerRecord: number
}): FieldRules {
  let rules: CompiledRules<FieldRule>
  try {
    const recordDepth = opts.records === undefined ? -1 : parsePattern(opts.records.pattern).length
    rules = compileRules<FieldRule>({
      targets: opts.fields.map((pattern) => ({ pattern, rule: fieldRule(pattern, opts.records?.pattern, recordDepth) })),
      ...(opts.records === undefined ? {} : { record: { pattern: opts.records.pattern, idMember: opts.records.id } }),
    })
  } catch (err) {
    if (isEcluseError(err) && err.code === 'config_invalid') throw new EcluseError('config_invalid', `fields: ${err.message}`)
    throw err
  }
  if (opts.records !== undefined) {
    const idField = opts.fields.find((pattern) => canMatchIdMember(pattern, opts.records!))
    if (idField !== undefined) {
      // Every value of a record is bound to its id in plaintext (`ecl.rid`): a sealed id would be
      // copied, in clear, into the header of every sealed value of its record.
      throw new EcluseError('config_invalid', `fields: ${idField} can match the records' id member "${opts.records.id}", which is bound in plaintext`)
    }
  }
  return {
    rules,
    recordPattern: opts.records?.pattern,
    format: opts.format,
    maxValueBytes: opts.maxValueBytes,
    maxRecordBytes: opts.maxRecordBytes,
    maxFieldsPerRecord: opts.maxFieldsPerRecord,
  }
}

/** Field steps that hide what they match from whoever receives the message. */
const HIDING_STEPS: ReadonlySet<string> = new Set(['seal', 'strip'])

/**
 * Why a chain of steps (one direction of one route, its options as configured) would bind in
 * plaintext a record id that another of its steps hides, or `undefined`. A `seal` step with
 * `records` copies each record's id into the clear header of every value it seals (`ecl.rid`); its
 * own fields may not match that id (`compileFieldRules`), and no other `seal` or `strip` step of the
 * same message may either, whatever their order (found by review: with response steps
 * a `seal` of each record's passport and, after it in the list (they run in reverse), a `seal` of
 * its name bound to the passport, the name's header carried the passport the other step sealed).
 */
export function hiddenRecordIdProblem(steps: readonly { readonly type: string; readonly [option: string]: unknown }[], keyPath: string): string | undefined {
  for (const [i, binder] of steps.entries()) {
    const records = binder['records'] as { pattern: string; id: string } | undefined
    if (binder.type !== 'seal' || records === undefined) continue
    for (const [j, hider] of steps.entries()) {
      const fields = hider['fields']
      if (j === i || !HIDING_STEPS.has(hider.type) || !Array.isArray(fields)) continue
      const field = (fields as string[]).find((pattern) => canMatchIdMember(pattern, records))
      if (field !== undefined) {
        return `${keyPath}[${i}].records.id: "${records.id}" is bound in plaintext to every value this step seals, and ${keyPath}[${j}] (${hider.type}) hides it (${field}): bind the records to a member no step hides`
      }
    }
  }
  return undefined
}

/** Whether field `pattern` can match the id member of a record of `records` (`*` and `**` match anything). */
function canMatchIdMember(pattern: string, records: { pattern: string; id: string }): boolean {
  return patternsCanOverlap(parsePattern(pattern), [...parsePattern(records.pattern), records.id])
}

/**
 * The constant claims of a field pattern (see `FieldRule`). A literal segment stands for exactly one
 * name or index, and `formatPointer` of a concrete location spells it as the pattern does (RFC 6901
 * has one spelling per token), so without a wildcard (in the part it claims; none at all for `**`)
 * the claim is known before any value is seen.
 * A pattern that is not valid is left to `compileRules` to refuse.
 */
function fieldRule(pattern: string, recordPattern: string | undefined, recordDepth: number): FieldRule {
  let segments: ReturnType<typeof parsePattern>
  try {
    segments = parsePattern(pattern)
  } catch {
    return { claim: undefined, recordClaim: undefined }
  }
  // After a `**` a segment's depth varies: a deep pattern's claims always come from the location.
  const literal = (from: number) => !isDeepPattern(segments) && segments.slice(from).every((seg) => typeof seg === 'string')
  const claim = literal(0) ? formatPointer(segments as string[]) : undefined
  const recordClaim =
    recordPattern !== undefined && segments.length > recordDepth && literal(recordDepth)
      ? recordPattern + formatPointer(segments.slice(recordDepth) as string[])
      : undefined
  // A place the configuration spells out in full cannot be bound if it is too long: that is the
  // configuration's fault, found at boot, not a body's at the first request.
  for (const c of [claim, recordClaim]) {
    if (c !== undefined && !claimFits(c)) throw new EcluseError('config_invalid', `"${pattern.slice(0, 64)}…" is too long to bind (over ${MAX_CLAIM_BYTES} bytes)`)
  }
  return { claim, recordClaim }
}

// ---------------------------------------------------------------------------------------------
// Content type and encoding policy

const JSON_TYPE = /^application\/(?:json|[a-z0-9!#$&^_.-]+\+json)$/
const JSON_PATCH = 'application/json-patch+json'
const NDJSON_TYPES: ReadonlySet<string> = new Set(['application/x-ndjson', 'application/ndjson'])
const TOKEN = /^[!#$%&'*+.^_`|~0-9a-z-]+$/

/** The code a refusal gets in `direction`: a response can only ever fail as `transform_failed`. */
export function refusal(direction: Direction, code: ErrorCode, detail: string): EcluseError {
  const err = new EcluseError(code, detail)
  return direction === 'request' ? err : forResponse(err)
}

/** A response failure: `transform_failed`, with the underlying error (and its code) as `cause`. */
export function forResponse(err: EcluseError): EcluseError {
  return new EcluseError('transform_failed', `${err.code}: ${err.message}`, { cause: err })
}

/** The underlying code of a refusal (the cause's, for a response's `transform_failed`). */
export function underlyingCode(err: EcluseError): ErrorCode {
  return err.code === 'transform_failed' && isEcluseError(err.cause) ? err.cause.code : err.code
}

/** A single header value, or undefined; a repeated header is refused by the callers. */
function single(headers: MessageHeaders, name: string): string | undefined | string[] {
  return headers[name]
}

/**
 * Refuses any content coding but `identity`: a compressed body hides its fields from the rewriter,
 * and decompressing here would be an unbounded-memory and parser-differential risk of its own.
 */
export function checkNoContentEncoding(headers: MessageHeaders, direction: Direction, type: string): void {
  const enc = single(headers, 'content-encoding')
  if (enc === undefined) return
  if (typeof enc === 'string' && enc.trim().toLowerCase() === 'identity') return
  throw refusal(direction, 'unsupported_media_type', `${type}: content-encoding is not identity`)
}

/**
 * The rewriter mode for a message, from its `content-type` and the step's `format`. Accepted:
 * `application/json` and `application/*+json` (document), `application/x-ndjson` and
 * `application/ndjson` (NDJSON), with no parameter other than one `charset=utf-8` (RFC 8259 §8.1:
 * JSON exchanged between systems is UTF-8; any other charset would be decoded differently
 * upstream). A missing type on a body is refused: nothing may guess.
 */
export function jsonMode(headers: MessageHeaders, format: FieldRules['format'], direction: Direction, type: string): 'document' | 'ndjson' {
  checkNoContentEncoding(headers, direction, type)
  const raw = single(headers, 'content-type')
  if (typeof raw !== 'string') {
    throw refusal(direction, 'unsupported_media_type', `${type}: ${raw === undefined ? 'no' : 'more than one'} content-type`)
  }
  // Clients send the same few content types: an accepted one is parsed once (bounded cache;
  // refusals are always parsed, for their detail).
  const known = ACCEPTED_TYPES[format].get(raw)
  if (known !== undefined) return known
  const mode = parseJsonMode(raw, format, direction, type)
  const cache = ACCEPTED_TYPES[format]
  if (cache.size >= MAX_ACCEPTED_TYPES) cache.clear()
  cache.set(raw, mode)
  return mode
}

const MAX_ACCEPTED_TYPES = 256
const ACCEPTED_TYPES: Readonly<Record<FieldRules['format'], Map<string, 'document' | 'ndjson'>>> = {
  auto: new Map(),
  json: new Map(),
  ndjson: new Map(),
}

function parseJsonMode(raw: string, format: FieldRules['format'], direction: Direction, type: string): 'document' | 'ndjson' {
  const parts = raw.split(';')
  const mediaType = parts[0]!.trim().toLowerCase()
  let charset = false
  for (let i = 1; i < parts.length; i++) {
    const param = parts[i]!.trim()
    const eq = param.indexOf('=')
    const name = (eq === -1 ? param : param.slice(0, eq)).trim().toLowerCase()
    let value = eq === -1 ? '' : param.slice(eq + 1).trim()
    if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) value = value.slice(1, -1)
    if (name !== 'charset' || charset || value.toLowerCase() !== 'utf-8') {
      throw refusal(direction, 'unsupported_media_type', `${type}: content-type parameters other than one charset=utf-8 are refused`)
    }
    charset = true
  }
  const slash = mediaType.indexOf('/')
  if (slash === -1 || !TOKEN.test(mediaType.slice(0, slash)) || !TOKEN.test(mediaType.slice(slash + 1))) {
    throw refusal(direction, 'unsupported_media_type', `${type}: content-type is not a media type`)
  }
  // A JSON Patch (RFC 6902) names its fields in strings (`{"path":"/passportNumber","value":…}`):
  // no pattern can reach them, and a step would act on nothing while every value crossed as it came.
  if (mediaType === JSON_PATCH) {
    throw refusal(direction, 'unsupported_media_type', `${type}: a JSON Patch names its fields in strings, which field steps cannot act on`)
  }
  const isJson = JSON_TYPE.test(mediaType)
  const isNdjson = NDJSON_TYPES.has(mediaType)
  if ((format === 'json' || format === 'auto') && isJson) return 'document'
  if ((format === 'ndjson' || format === 'auto') && isNdjson) return 'ndjson'
  // Not the value itself: header values are never logged (a response's is the other side's).
  throw refusal(direction, 'unsupported_media_type', `${type}: content-type is not ${format === 'auto' ? 'JSON or NDJSON' : format.toUpperCase()}`)
}

/** True when the message certainly has an empty body (nothing to inspect). */
export function emptyBody(headers: MessageHeaders): boolean {
  return headers['content-length'] === '0'
}

// ---------------------------------------------------------------------------------------------
// Binding claims

/**
 * The `ecl.ptr` claim of a targeted value. Outside a record it is the value's concrete location
 * (`/person/birthDate`, `/people/2/name`); in NDJSON, the line's index comes first (`/2/name` for
 * the third line's `/name`): an NDJSON body is read as the array of its lines, so a value swapped
 * with the same member of another line does not open, as in an array. Inside a record it is the
 * record pattern as configured followed by the location within the record (`/records/*` +
 * `/passport`), with the record id in `ecl.rid`: records may be reordered, filtered or paginated
 * between sealing and opening, and a value still opens only in its own record and member.
 */
export function pointerClaim(target: JsonTarget<FieldRule>, recordPattern: string | undefined, ndjson: boolean): string {
  const record = target.record
  let claim: string
  if (record === undefined || recordPattern === undefined) {
    const inDocument = target.rule.claim ?? formatPointer(target.pointer)
    claim = ndjson ? `/${target.documentIndex}${inDocument}` : inDocument
  } else {
    claim = target.rule.recordClaim ?? recordPattern + formatPointer(target.pointer.slice(record.pointer.length))
  }
  // The body chooses the names a `*` or `**` matches: a place too long to bind is the body's fault.
  if (!claimFits(claim)) throw new EcluseError('json_invalid', `${pointerForLog(target)}: the value's place is too long to bind (over ${MAX_CLAIM_BYTES} bytes)`)
  return claim
}

/**
 * Where a targeted value sits, for a log detail: its location with every member name a `*` of its
 * pattern matched replaced by `*` (array indices stay). A member name is body content: keyed by an
 * identifier (`/people/<passport>/name`), it is the very value the step protects, and it could carry
 * characters that forge a log line. `depth` cuts it to a prefix (the enclosing record).
 */
export function pointerForLog(target: JsonTarget<FieldRule>, depth = target.pointer.length): string {
  const pattern = parsePattern(target.pattern)
  if (isDeepPattern(pattern)) {
    // Which names a `**` matched is not worth a search: a name is shown only if the pattern spells it.
    const spelled = new Set(pattern.filter((seg) => typeof seg === 'string'))
    return formatPointer(target.pointer.slice(0, depth).map((seg) => (typeof seg === 'number' || spelled.has(seg) ? seg : '*')))
  }
  if (pattern.length !== target.pointer.length) return target.pattern
  const shown = target.pointer.slice(0, depth).map((seg, i) => (pattern[i] === ANY_SEGMENT && typeof seg !== 'number' ? '*' : seg))
  return formatPointer(shown)
}

/**
 * The `ecl.rid` claim: the record id as a string, `undefined` outside records. A record that holds a
 * targeted value but has no id cannot be bound, and is refused (`record_id_missing`).
 */
export function recordClaim(target: JsonTarget<FieldRule>, recordPattern: string | undefined): string | undefined {
  if (recordPattern === undefined || target.record === undefined) return undefined
  const id = target.recordId
  if (id === undefined) throw new EcluseError('record_id_missing', `record at ${pointerForLog(target, target.record.pointer.length)} has no id member`)
  if (typeof id === 'number') return String(id)
  if (!claimFits(id)) {
    throw new EcluseError('json_invalid', `record at ${pointerForLog(target, target.record.pointer.length)}: its id is too long to bind (over ${MAX_CLAIM_BYTES} bytes)`)
  }
  return id
}

// ---------------------------------------------------------------------------------------------
// The per-message stream

/**
 * Values of one chunk acted on in a row before a message lets the event loop run: the rewriter
 * handles a whole chunk at once, and a chunk of small values (`[1,1,1,…]` under a `/*` pattern, tens
 * of thousands in 64 KiB) would otherwise hold every other connection for as long as their
 * cryptography takes. Counted per chunk: an ordinary chunk (16 KiB of records, about a hundred
 * values) never waits; counted per message, every 256th value of a bulk body waited, which cost
 * about a sixth of bulk-seal's fields per CPU-second (docs/benchmarks.md).
 */
export const VALUES_BETWEEN_YIELDS = 256
/**
 * Seconds of a step's cryptography after which it lets the event loop run, however few values that
 * took: with RSA keys a value costs milliseconds to open (≈ 2–30 ms, 3072- to 8192-bit keys), and
 * 256 of them held every other connection for seconds (found by review). Counted per chunk, as the
 * values are: a chunk of X25519 values (≈ 10 µs each) reaches 256 values first.
 */
export const CRYPTO_SECONDS_BETWEEN_YIELDS = 0.01

/**
 * One message's field work: the action the rewriter calls, and plain-number tallies that the
 * stream reports once, when the message ends (metrics cost nothing per field).
 */
export abstract class FieldMessage {
  /** Operations that succeeded / failed, plaintext bytes, and seconds spent in the cryptography. */
  ok = 0
  failed = 0
  bytes = 0
  seconds = 0
  #sinceYield = 0
  #secondsAtYield = 0
  /**
   * Bound once per message: the rewriter's only per-message closure. Every
   * {@link VALUES_BETWEEN_YIELDS}th action of a chunk, or the first after
   * {@link CRYPTO_SECONDS_BETWEEN_YIELDS} of its cryptography, is handed back after the event loop
   * has run (the rewriter awaits it and goes on where it was).
   */
  readonly onValue: JsonValueHandler<FieldRule> = (target) => {
    const action = this.act(target)
    if (++this.#sinceYield < VALUES_BETWEEN_YIELDS && this.seconds - this.#secondsAtYield < CRYPTO_SECONDS_BETWEEN_YIELDS) return action
    this.#sinceYield = 0
    this.#secondsAtYield = this.seconds
    return new Promise((resolve) => setImmediate(resolve, action))
  }

  /**
   * A new chunk begins: its values and seconds are counted from 0 (see {@link VALUES_BETWEEN_YIELDS}
   * and {@link CRYPTO_SECONDS_BETWEEN_YIELDS}; counted per message, they made bulk bodies wait).
   */
  chunkBegins(): void {
    this.#sinceYield = 0
    this.#secondsAtYield = this.seconds
  }
  protected abstract act(target: JsonTarget<FieldRule>): 'keep' | 'remove' | { replace: string | Uint8Array }
}

/**
 * The message of a step that binds each value to its place (seal, open, require-sealed): the value's
 * claims come from the step's record pattern and the message's format (NDJSON or a document).
 */
export abstract class BindingFieldMessage extends FieldMessage {
  readonly #recordPattern: string | undefined
  readonly #ndjson: boolean

  constructor(recordPattern: string | undefined, ndjson: boolean) {
    super()
    this.#recordPattern = recordPattern
    this.#ndjson = ndjson
  }

  /** The value's `ecl.ptr` claim (`pointerClaim`). */
  protected pointerOf(target: JsonTarget<FieldRule>): string {
    return pointerClaim(target, this.#recordPattern, this.#ndjson)
  }

  /** The value's `ecl.rid` claim (`recordClaim`). */
  protected recordOf(target: JsonTarget<FieldRule>): string | undefined {
    return recordClaim(target, this.#recordPattern)
  }
}

export interface FieldStreamOptions {
  readonly rules: FieldRules
  readonly mode: 'document' | 'ndjson'
  readonly message: FieldMessage
  readonly direction: Direction
  /** The metrics of this operation and route; absent when the gateway has none (tools, unit tests). */
  readonly op: CryptoOp | undefined
  readonly opMetrics: CryptoOpMetrics | undefined
  readonly routeMetrics: CryptoRouteMetrics | undefined
}

/**
 * The rewriter for one message, with the failure mapped by direction: on a request the refusal
 * keeps its own code (`json_invalid` 400, `plaintext_refused` 422, …); on a response every failure
 * is `transform_failed` (the proxy answers 502 before the headers, and aborts after them). The
 * refusal is counted under its underlying code, and the message's crypto work once, either way.
 */
export class FieldStream extends JsonRewriter<FieldRule> {
  readonly #o: FieldStreamOptions
  #pending: TransformCallback | null = null
  #reported = false
  #sawBytes = false
  readonly #done: TransformCallback
  /** What the metrics have of this message so far (see `#progress`). */
  #countedOk = 0
  #countedFailed = 0
  #countedBytes = 0

  constructor(o: FieldStreamOptions) {
    super({
      rules: o.rules.rules,
      mode: o.mode,
      maxValueBytes: o.rules.maxValueBytes,
      maxRecordBytes: o.rules.maxRecordBytes,
      maxRecordTargets: o.rules.maxFieldsPerRecord,
      onValue: o.message.onValue,
    })
    this.#o = o
    // Transform calls _transform/_flush one at a time, so one pending callback is enough and the
    // wrapper is bound once per stream, not per chunk.
    this.#done = (err, data) => this.#settle(err, data)
  }

  override _transform(chunk: Buffer, enc: BufferEncoding, cb: TransformCallback): void {
    this.#pending = cb
    if (chunk.length > 0) this.#sawBytes = true
    this.#o.message.chunkBegins()
    super._transform(chunk, enc, this.#done)
  }

  override _flush(cb: TransformCallback): void {
    this.#pending = cb
    // A body that turns out empty (chunked, no bytes) holds no field: it goes on empty, as one that
    // declares `content-length: 0` does (`emptyBody`), where the rewriter would refuse it as no JSON.
    if (!this.#sawBytes) {
      this.#report(undefined)
      this.#settle(null)
      return
    }
    super._flush((err, data) => {
      if (err == null) this.#report(undefined)
      this.#settle(err, data)
    })
  }

  #settle(err: Error | null | undefined, data?: unknown): void {
    const cb = this.#pending!
    this.#pending = null
    if (err == null) {
      this.#progress()
      cb(null, data as Buffer | undefined)
      return
    }
    cb(this.#fail(err))
  }

  /**
   * Each value is an operation of its own: counted once its chunk is done, so a long body shows in
   * `rate()` while it streams, and what a message cut short (a client gone mid-body) had sealed or
   * opened, and sent on, is counted all the same.
   */
  #progress(): void {
    const { message: m, opMetrics, routeMetrics, op } = this.#o
    opMetrics?.progress(m.ok - this.#countedOk, m.failed - this.#countedFailed, m.bytes - this.#countedBytes)
    if (op !== undefined) routeMetrics?.sealedFields(op, m.ok - this.#countedOk)
    this.#countedOk = m.ok
    this.#countedFailed = m.failed
    this.#countedBytes = m.bytes
  }

  override _destroy(err: Error | null, cb: (error?: Error | null) => void): void {
    // Cut short (or ended, reported already): the work done so far, and its time.
    if (!this.#reported) this.#report(undefined)
    super._destroy(err, cb)
  }

  #fail(err: Error): EcluseError {
    const e = isEcluseError(err) ? err : new EcluseError('internal', 'field transform failed', { cause: err })
    this.#report(e.code)
    return this.#o.direction === 'request' ? e : forResponse(e)
  }

  #report(code: ErrorCode | undefined): void {
    if (this.#reported) return
    this.#reported = true
    this.#progress()
    const { message: m, opMetrics, routeMetrics } = this.#o
    if (m.ok + m.failed > 0) opMetrics?.duration(m.seconds)
    if (code !== undefined) routeMetrics?.refused(code)
  }
}

/** What a field step's `begin` needs of the step: its type (for messages), rules and metrics. */
export interface FieldStep {
  readonly type: string
  readonly rules: FieldRules
  /** The operation counted, and its metrics; `strip` counts none. */
  readonly op: CryptoOp | undefined
  readonly opMetrics: CryptoOpMetrics | undefined
}

/**
 * A field step's `begin`: nothing to do for a body-less message; else the body's mode from its
 * headers, the message's work (`messageFor`, told whether the body is NDJSON) and the rewriter
 * around it. A refusal of either is counted and thrown as the step's (`refuseAtBegin`).
 */
export function beginFieldStream(
  env: TransformEnv,
  ctx: TransformContext,
  step: FieldStep,
  messageFor: (ndjson: boolean) => FieldMessage,
): FieldStream | null {
  if (emptyBody(ctx.headers)) return null
  let mode: 'document' | 'ndjson'
  let message: FieldMessage
  try {
    mode = jsonMode(ctx.headers, step.rules.format, ctx.direction, step.type)
    message = messageFor(mode === 'ndjson')
  } catch (err) {
    throw refuseAtBegin(env, ctx, err)
  }
  return new FieldStream({
    rules: step.rules,
    mode,
    message,
    direction: ctx.direction,
    op: step.op,
    opMetrics: step.opMetrics,
    routeMetrics: env.metrics?.forRoute(ctx.routeName),
  })
}

/** Counts a refusal decided at `begin` (before any stream exists) and returns it to throw. */
export function refuseAtBegin(env: TransformEnv, ctx: TransformContext, err: unknown): EcluseError {
  let e = isEcluseError(err) ? err : new EcluseError('internal', 'transform failed to start', { cause: err })
  if (ctx.direction === 'response' && e.code !== 'transform_failed') e = forResponse(e)
  env.metrics?.forRoute(ctx.routeName).refused(underlyingCode(e))
  return e
}
