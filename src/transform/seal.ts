/**
 * `seal`: each listed JSON field that is present is replaced by a compact JWE of its exact JSON
 * text, for the current key of `recipients` (docs/transforms.md, docs/sealing.md). One `FieldSealer`
 * per message, its key agreement shared by the sealing window (at most one per window and
 * recipient, never one per field); every other byte passes unchanged.
 */
import { z } from 'zod'
import { FieldSealer } from '../crypto/field.js'
import type { KeySet } from '../crypto/keys.js'
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
  recordBytesOption,
  recordFieldsOption,
  recordsOption,
  valueBytesOption,
} from './json-fields.js'
import type { BodyTransform, TransformContext, TransformEnv } from './types.js'

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
  })
  .strict()

class SealMessage extends BindingFieldMessage {
  readonly #sealer: FieldSealer

  constructor(sealer: FieldSealer, recordPattern: string | undefined, ndjson: boolean) {
    super(recordPattern, ndjson)
    this.#sealer = sealer
  }

  protected act(target: JsonTarget<FieldRule>): { replace: Buffer } {
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

  constructor(env: TransformEnv, recipients: KeySet, context: string | undefined, rules: FieldRules) {
    this.#env = env
    this.#recipients = recipients
    this.#context = context
    this.#step = { type: this.type, rules, op: 'seal', opMetrics: env.metrics?.op('seal', 'field') }
  }

  begin(ctx: TransformContext): FieldStream | null {
    return beginFieldStream(this.#env, ctx, this.#step, (ndjson) => {
      const sealer = new FieldSealer(this.#recipients, { route: this.#context ?? ctx.routeName })
      return new SealMessage(sealer, this.#step.rules.recordPattern, ndjson)
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
  return new SealTransform(env, recipients, o.context, compileFieldRules(o))
}
