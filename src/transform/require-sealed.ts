/**
 * `require-sealed`: every listed JSON field that is present must already be a compact JWE of our
 * profile for an accepted key of `recipients`, bound to this context, pointer and record. Anything
 * else (plaintext, another type, a value sealed for an unknown kid or another place) is refused with
 * `plaintext_refused` and never opened: the check needs public keys only (`isSealedFor`).
 */
import { z } from 'zod'
import { isSealedFor } from '../crypto/field.js'
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

const requireSealedOptions = z
  .object({
    recipients: keySetName,
    context: fieldContextOption,
    alsoAccept: fieldAlsoAcceptOption,
    fields: fieldsOption,
    records: recordsOption,
    format: formatOption,
    maxValueBytes: valueBytesOption(SEALED_VALUE_BYTES, 'sealed'),
    maxRecordBytes: recordBytesOption(SEALED_RECORD_BYTES, 'sealed'),
    maxFieldsPerRecord: recordFieldsOption,
  })
  .strict()

class VerifyMessage extends BindingFieldMessage {
  readonly #keys: KeySet
  readonly #route: string
  readonly #alsoRoutes: readonly string[] | undefined
  readonly #maxChars: number

  constructor(keys: KeySet, route: string, alsoRoutes: readonly string[] | undefined, recordPattern: string | undefined, maxChars: number, ndjson: boolean) {
    super(recordPattern, ndjson)
    this.#keys = keys
    this.#route = route
    this.#alsoRoutes = alsoRoutes
    this.#maxChars = maxChars
  }

  protected act(target: JsonTarget<FieldRule>): 'keep' {
    const ptr = this.pointerOf(target)
    const rid = this.recordOf(target)
    const t0 = performance.now()
    const sealed =
      target.type === 'string' && isSealedFor(target.value, this.#keys, { route: this.#route, ptr, rid, alsoRoutes: this.#alsoRoutes }, this.#maxChars)
    this.seconds += (performance.now() - t0) / 1000
    if (!sealed) {
      this.failed++
      // The pointer names a member, never its value.
      throw new EcluseError('plaintext_refused', `${pointerForLog(target)}: not a value sealed for this key set and place`)
    }
    this.ok++
    this.bytes += target.raw.length
    return 'keep'
  }
}

/** The `require-sealed` step. */
export class RequireSealedTransform implements BodyTransform {
  readonly type = 'require-sealed'
  readonly #env: TransformEnv
  readonly #keys: KeySet
  readonly #context: string | undefined
  readonly #alsoAccept: readonly string[] | undefined
  readonly #step: FieldStep

  constructor(env: TransformEnv, keys: KeySet, context: string | undefined, rules: FieldRules, alsoAccept?: readonly string[]) {
    this.#env = env
    this.#keys = keys
    this.#context = context
    this.#alsoAccept = alsoAccept
    this.#step = { type: this.type, rules, op: 'verify', opMetrics: env.metrics?.op('verify', 'field') }
  }

  begin(ctx: TransformContext): FieldStream | null {
    const route = this.#context ?? ctx.routeName
    const { recordPattern, maxValueBytes } = this.#step.rules
    return beginFieldStream(this.#env, ctx, this.#step, (ndjson) => new VerifyMessage(this.#keys, route, this.#alsoAccept, recordPattern, maxValueBytes, ndjson))
  }
}

/**
 * Builds a `require-sealed` step.
 *
 * @example
 * // - { type: require-sealed, recipients: trusted-host, fields: [/passport] }
 */
export function createRequireSealedTransform(options: Readonly<Record<string, unknown>>, env: TransformEnv): RequireSealedTransform {
  const o = parseOptions(requireSealedOptions, options)
  const keys = keySetFor(env, 'recipients', o.recipients, false)
  return new RequireSealedTransform(env, keys, o.context, compileFieldRules(o), o.alsoAccept)
}
