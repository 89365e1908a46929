/**
 * `seal`: each listed JSON field that is present is replaced by a compact JWE of its exact JSON
 * text, for the current key of `recipients` (docs/transforms.md, docs/sealing.md). One `FieldSealer`
 * per message, its key agreement shared by the sealing window (at most one per window and
 * recipient, never one per field); every other byte passes unchanged.
 */
import { z } from 'zod'
import { FieldSealer } from '../crypto/field.js'
import type { KeySet } from '../crypto/keys.js'
import { EcluseError } from '../errors.js'
import type { JsonTarget } from './json/rewriter.js'
import {
  BindingFieldMessage,
  beginFieldStream,
  compileFieldRules,
  type FieldRule,
  type FieldRules,
  type FieldStep,
  type FieldStream,
  fieldContextOption,
  fieldsOption,
  formatOption,
  keySetFor,
  keySetName,
  PLAINTEXT_RECORD_BYTES,
  PLAINTEXT_VALUE_BYTES,
  parseOptions,
  pointerForLog,
  recordBytesOption,
  recordFieldsOption,
  recordsOption,
  valueBytesOption,
} from './json-fields.js'
import type { BodyTransform, TransformContext, TransformEnv } from './types.js'

/**
 * Values one request may have sealed when the route does not say (`maxValues`). Sealing amplifies:
 * each value becomes a compact JWE of a few hundred bytes and costs ≈ 10 µs, so a body of tiny values
 * (`[1,1,1,…]` under `/*`, or NDJSON, whose every line repeats the pointers) would turn 1 MiB from the
 * sponsor into ≈ 200 MB for the upstream and seconds of CPU. 10,000 values bound that to a few MB and
 * ≈ 0.1 s, and hold a 1 MiB body of accreditation records (≈ 6,000 values). A response, the
 * upstream's own answer, is not bounded unless the route says so.
 */
export const DEFAULT_REQUEST_MAX_VALUES = 10_000
/** The ceiling of `maxValues` (the CLI, sealing an operator's own file, uses it). */
export const MAX_SEALED_VALUES = 1_000_000_000

const sealOptions = z
  .object({
    recipients: keySetName,
    context: fieldContextOption,
    fields: fieldsOption,
    records: recordsOption,
    format: formatOption,
    maxValueBytes: valueBytesOption(PLAINTEXT_VALUE_BYTES, 'plaintext'),
    maxRecordBytes: recordBytesOption(PLAINTEXT_RECORD_BYTES, 'plaintext'),
    maxFieldsPerRecord: recordFieldsOption,
    maxValues: z.number().int().positive().max(MAX_SEALED_VALUES).optional(),
  })
  .strict()

class SealMessage extends BindingFieldMessage {
  readonly #sealer: FieldSealer
  readonly #maxValues: number
  #values = 0

  constructor(sealer: FieldSealer, recordPattern: string | undefined, ndjson: boolean, maxValues: number) {
    super(recordPattern, ndjson)
    this.#sealer = sealer
    this.#maxValues = maxValues
  }

  protected act(target: JsonTarget<FieldRule>): { replace: Buffer } {
    // Refused before it is sealed: the message's cost stops at the cap, not after it.
    if (++this.#values > this.#maxValues) {
      throw new EcluseError('value_too_large', `${pointerForLog(target)}: more than ${this.#maxValues} values to seal in one message (maxValues)`)
    }
    const ptr = this.pointerOf(target)
    const rid = this.recordOf(target)
    const t0 = performance.now()
    let json: Buffer
    try {
      // The compact JWE in quotes (base64url and dots: its JSON string form), assembled as bytes.
      json = this.#sealer.sealJson(target.raw, { ptr, rid })
    } catch (err) {
      this.failed++
      throw err
    }
    this.seconds += (performance.now() - t0) / 1000
    this.ok++
    this.bytes += target.raw.length
    return { replace: json }
  }
}

/** The `seal` step. */
export class SealTransform implements BodyTransform {
  readonly type = 'seal'
  readonly #env: TransformEnv
  readonly #recipients: KeySet
  readonly #context: string | undefined
  readonly #step: FieldStep
  readonly #maxValues: number | undefined

  /** `maxValues` undefined: {@link DEFAULT_REQUEST_MAX_VALUES} on a request, none on a response. */
  constructor(env: TransformEnv, recipients: KeySet, context: string | undefined, rules: FieldRules, maxValues?: number) {
    this.#env = env
    this.#recipients = recipients
    this.#context = context
    this.#step = { type: this.type, rules, op: 'seal', opMetrics: env.metrics?.op('seal', 'field') }
    this.#maxValues = maxValues
  }

  begin(ctx: TransformContext): FieldStream | null {
    const maxValues = this.#maxValues ?? (ctx.direction === 'request' ? DEFAULT_REQUEST_MAX_VALUES : Number.POSITIVE_INFINITY)
    return beginFieldStream(this.#env, ctx, this.#step, (ndjson) => {
      const sealer = new FieldSealer(this.#recipients, { route: this.#context ?? ctx.routeName })
      return new SealMessage(sealer, this.#step.rules.recordPattern, ndjson, maxValues)
    })
  }
}

/**
 * Builds a `seal` step from its options.
 *
 * @example
 * // routes[].transforms.request:
 * // - { type: seal, recipients: trusted-host, fields: [/name, /passport], records: { pattern: /records/*, id: id } }
 */
export function createSealTransform(options: Readonly<Record<string, unknown>>, env: TransformEnv): SealTransform {
  const o = parseOptions(sealOptions, options)
  const recipients = keySetFor(env, 'recipients', o.recipients, false)
  return new SealTransform(env, recipients, o.context, compileFieldRules(o), o.maxValues)
}
