/**
 * `strip`: each listed JSON field that is present is removed, member and separator (or array
 * element), before the message crosses. The body is validated whole like any field transform.
 */
import { z } from 'zod'
import type { JsonTarget } from './json/rewriter.js'
import {
  beginFieldStream,
  compileFieldRules,
  FieldMessage,
  type FieldRule,
  type FieldRules,
  type FieldStep,
  type FieldStream,
  fieldsOption,
  formatOption,
  PLAINTEXT_RECORD_BYTES,
  PLAINTEXT_VALUE_BYTES,
  parseOptions,
  recordBytesOption,
  recordFieldsOption,
  valueBytesOption,
} from './json-fields.js'
import type { BodyTransform, TransformContext, TransformEnv } from './types.js'

const stripOptions = z
  .object({
    fields: fieldsOption,
    format: formatOption,
    maxValueBytes: valueBytesOption(PLAINTEXT_VALUE_BYTES, 'plaintext'),
    maxRecordBytes: recordBytesOption(PLAINTEXT_RECORD_BYTES, 'plaintext'),
    maxFieldsPerRecord: recordFieldsOption,
  })
  .strict()

class StripMessage extends FieldMessage {
  protected act(_target: JsonTarget<FieldRule>): 'remove' {
    return 'remove'
  }
}

/** The `strip` step. */
export class StripTransform implements BodyTransform {
  readonly type = 'strip'
  readonly #env: TransformEnv
  readonly #step: FieldStep

  constructor(env: TransformEnv, rules: FieldRules) {
    this.#env = env
    this.#step = { type: this.type, rules, op: undefined, opMetrics: undefined }
  }

  begin(ctx: TransformContext): FieldStream | null {
    return beginFieldStream(this.#env, ctx, this.#step, () => new StripMessage())
  }
}

/**
 * Builds a `strip` step.
 *
 * @example
 * // - { type: strip, fields: [/internalNotes, /records/*\/auditTrail] }
 */
export function createStripTransform(options: Readonly<Record<string, unknown>>, env: TransformEnv): StripTransform {
  const o = parseOptions(stripOptions, options)
  return new StripTransform(env, compileFieldRules(o))
}
