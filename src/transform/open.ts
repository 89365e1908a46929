/**
 * `open`: each listed JSON field that is present must be a compact JWE sealed for a key of the
 * private key set `keys`, bound to this context, pointer and record; it is replaced by the JSON value
 * it seals. Any failure is `open_failed`, the same whatever went wrong (RFC 7516 §11.5).
 */
import { z } from 'zod'
import { FieldOpener } from '../crypto/field.js'
import { type KekCache, NO_AGREEMENT_LEFT } from '../crypto/kek-cache.js'
import { EcluseError, isEcluseError } from '../errors.js'
import { isOneStrictJsonValue, JSON_REWRITER_DEFAULTS, type JsonTarget } from './json/rewriter.js'
import {
  BindingFieldMessage,
  beginFieldStream,
  compileFieldRules,
  type FieldRule,
  type FieldRules,
  type FieldStep,
  type FieldStream,
  fieldAlsoAcceptOption,
  fieldContextOption,
  fieldsOption,
  formatOption,
  keySetFor,
  keySetName,
  parseOptions,
  pointerForLog,
  recordBytesOption,
  recordFieldsOption,
  recordsOption,
  SEALED_RECORD_BYTES,
  SEALED_VALUE_BYTES,
  valueBytesOption,
} from './json-fields.js'
import type { BodyTransform, TransformContext, TransformEnv } from './types.js'

/**
 * Key agreements one request may cost when the route does not say (`maxKeyAgreements`). Whoever
 * holds the public key can seal each value under an ephemeral key of its own, and each then costs an
 * X25519 agreement (≈ 40 µs, and ≈ 6 µs to import its key): unbounded, a 10 MiB body of such values
 * on a wildcard or NDJSON route bought a second of the trusted side's CPU. 2,000 bound that to
 * ≈ 0.1 s, as `seal`'s default bounds what sealing a request costs, and hold 2,000 records stored
 * over time (a record's values share one agreement). A response, the upstream's own answer, is not
 * bounded unless the route says so. With RSA keys each value is a decryption of milliseconds (≈ 2–30 ms, 3072 to 8192 bits): the
 * default then buys far more, and the docs ask such routes to set their own.
 */
export const DEFAULT_REQUEST_MAX_KEY_AGREEMENTS = 2_000
/** The ceiling of `maxKeyAgreements` (the CLI, opening an operator's own file, uses it). */
export const MAX_KEY_AGREEMENTS = 1_000_000_000

const openOptions = z
  .object({
    keys: keySetName,
    context: fieldContextOption,
    alsoAccept: fieldAlsoAcceptOption,
    fields: fieldsOption,
    records: recordsOption,
    format: formatOption,
    maxValueBytes: valueBytesOption(SEALED_VALUE_BYTES, 'sealed'),
    maxRecordBytes: recordBytesOption(SEALED_RECORD_BYTES, 'sealed'),
    maxFieldsPerRecord: recordFieldsOption,
    maxKeyAgreements: z.number().int().positive().max(MAX_KEY_AGREEMENTS).optional(),
  })
  .strict()

class OpenMessage extends BindingFieldMessage {
  readonly #opener: FieldOpener
  readonly #route: string
  readonly #alsoRoutes: readonly string[] | undefined
  readonly #ndjson: boolean
  readonly #maxAgreements: number
  #agreements = 0

  constructor(opener: FieldOpener, route: string, alsoRoutes: readonly string[] | undefined, recordPattern: string | undefined, ndjson: boolean, maxAgreements: number) {
    super(recordPattern, ndjson)
    this.#opener = opener
    this.#route = route
    this.#alsoRoutes = alsoRoutes
    this.#ndjson = ndjson
    this.#maxAgreements = maxAgreements
  }

  protected act(target: JsonTarget<FieldRule>): { replace: Buffer } {
    const ptr = this.pointerOf(target)
    const rid = this.recordOf(target)
    if (target.type !== 'string') {
      this.failed++
      throw new EcluseError('open_failed', `${pointerForLog(target)}: a ${target.type} where a sealed value was expected`)
    }
    const t0 = performance.now()
    // Whoever holds the public key can seal each value under a fresh ephemeral key, each then
    // costing an agreement (≈ 40 µs): a message's share is bounded when the route says so, and the
    // value that would go beyond it is refused before its agreement is made.
    const cache = this.#opener.kekCache
    const before = cache.asymmetricOperations
    let out: Buffer
    try {
      out = this.#opener.open(target.value as string, { route: this.#route, ptr, rid, alsoRoutes: this.#alsoRoutes }, this.#agreements < this.#maxAgreements)
      if (cache.asymmetricOperations !== before) this.#agreements++
    } catch (err) {
      this.failed++
      // Uniform: whatever failed, the client learns only `open_failed` (the reason is in the log).
      const reason = !isEcluseError(err)
        ? 'open failed'
        : err.message === NO_AGREEMENT_LEFT
          ? `more than ${this.#maxAgreements} key agreements in one message (maxKeyAgreements)`
          : err.message
      throw new EcluseError('open_failed', `${pointerForLog(target)}: ${reason}`)
    }
    this.seconds += (performance.now() - t0) / 1000
    // Whoever holds the public key can seal anything: what opens must be exactly one JSON value
    // (and, in NDJSON, stay on its line) before it is spliced into the body, and no deeper than the
    // depth left where it goes: the body around it must stay within the cap a recursive parser
    // upstream is protected by.
    if (!isOneStrictJsonValue(out, this.#ndjson, JSON_REWRITER_DEFAULTS.maxDepth - target.pointer.length)) {
      out.fill(0)
      this.failed++
      throw new EcluseError('open_failed', `${pointerForLog(target)}: the sealed plaintext is not one JSON value`)
    }
    this.ok++
    this.bytes += out.length
    return { replace: out }
  }
}


/** The `open` step. */
export class OpenTransform implements BodyTransform {
  readonly type = 'open'
  readonly #env: TransformEnv
  readonly #opener: FieldOpener
  readonly #context: string | undefined
  readonly #alsoAccept: readonly string[] | undefined
  readonly #maxAgreements: number | undefined
  readonly #step: FieldStep

  /** `maxAgreements` undefined: {@link DEFAULT_REQUEST_MAX_KEY_AGREEMENTS} on a request, none on a response. */
  constructor(
    env: TransformEnv,
    opener: FieldOpener,
    context: string | undefined,
    rules: FieldRules,
    maxAgreements?: number,
    alsoAccept?: readonly string[],
  ) {
    this.#env = env
    this.#opener = opener
    this.#context = context
    this.#alsoAccept = alsoAccept
    this.#maxAgreements = maxAgreements
    this.#step = { type: this.type, rules, op: 'open', opMetrics: env.metrics?.op('open', 'field') }
  }

  begin(ctx: TransformContext): FieldStream | null {
    const route = this.#context ?? ctx.routeName
    const maxAgreements = this.#maxAgreements ?? (ctx.direction === 'request' ? DEFAULT_REQUEST_MAX_KEY_AGREEMENTS : Number.POSITIVE_INFINITY)
    return beginFieldStream(
      this.#env,
      ctx,
      this.#step,
      (ndjson) => new OpenMessage(this.#opener, route, this.#alsoAccept, this.#step.rules.recordPattern, ndjson, maxAgreements),
    )
  }

  /** The opener's cache of derived KEKs (shared by the route's messages). */
  get kekCache(): KekCache {
    return this.#opener.kekCache
  }

  retire(): void {
    this.#opener.kekCache.erase()
  }
}

/**
 * Builds an `open` step. The opener (and its bounded KEK cache) is shared by every message of the
 * route, so the fields of one message cost one key agreement.
 *
 * @example
 * // - { type: open, keys: trusted-host-private, fields: [/name, /passport] }
 */
export function createOpenTransform(options: Readonly<Record<string, unknown>>, env: TransformEnv): OpenTransform {
  const o = parseOptions(openOptions, options)
  const keys = keySetFor(env, 'keys', o.keys, true)
  const opener = new FieldOpener(keys, { maxSealedChars: o.maxValueBytes })
  return new OpenTransform(env, opener, o.context, compileFieldRules(o), o.maxKeyAgreements, o.alsoAccept)
}
