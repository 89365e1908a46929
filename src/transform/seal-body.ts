/**
 * `seal-body`: the whole body becomes one sealed stream (docs/sealed-stream-format.md) for the
 * current key of `recipients`, its media type kept inside the seal and the message relabelled
 * `application/vnd.ecluse.sealed`. Memory is one record per message, whatever the body's size.
 *
 * A `content-encoding` other than `identity` is refused rather than carried: the seal keeps the
 * media type only, and an encoding left outside it would describe bytes it no longer applies to.
 */
import type { Transform } from 'node:stream'
import { z } from 'zod'
import type { KeySet } from '../crypto/keys.js'
import { createSealStream, DEFAULT_RECORD_SIZE, isMediaType, MAX_RECORD_SIZE } from '../crypto/stream.js'
import type { CryptoOpMetrics } from '../observability/metrics.js'
import { type BodyContext, compileBodyContext } from './body-context.js'
import { meterBodyStream } from './body-stream.js'
import { checkNoContentEncoding, contextOption, keySetFor, keySetName, parseOptions, refusal, refuseAtBegin } from './json-fields.js'
import type { BodyTransform, TransformContext, TransformEnv } from './types.js'

/** The media type of a sealed body on the wire. */
export const SEALED_MEDIA_TYPE = 'application/vnd.ecluse.sealed'

/** Whether a message's `content-type` labels it a sealed body (the steps that read one). */
export function isSealedMediaType(type: string | string[] | undefined): boolean {
  return typeof type === 'string' && type.trim().toLowerCase() === SEALED_MEDIA_TYPE
}
/** What a body without a `content-type` is sealed as (RFC 9110 §8.3: the recipient may assume it). */
const UNTYPED = 'application/octet-stream'

const sealBodyOptions = z
  .object({
    recipients: keySetName,
    context: contextOption,
    recordSize: z.number().int().min(16).max(MAX_RECORD_SIZE).default(DEFAULT_RECORD_SIZE),
  })
  .strict()

/** The `seal-body` step. */
export class SealBodyTransform implements BodyTransform {
  readonly type = 'seal-body'
  readonly wholeBody = true
  readonly #env: TransformEnv
  readonly #recipients: KeySet
  readonly #context: BodyContext
  /** Present when the context binds a path parameter (`BodyTransform.refusePath`). */
  readonly refusePath?: (path: string) => string | undefined
  readonly #recordSize: number
  readonly #metrics: CryptoOpMetrics | undefined

  constructor(env: TransformEnv, recipients: KeySet, context: BodyContext, recordSize: number) {
    this.#env = env
    this.#recipients = recipients
    this.#context = context
    if (context.refusal !== undefined) this.refusePath = context.refusal
    this.#recordSize = recordSize
    this.#metrics = env.metrics?.op('seal', 'stream')
  }

  begin(ctx: TransformContext): Transform {
    let stream: Transform
    try {
      checkNoContentEncoding(ctx.headers, ctx.direction, 'seal-body')
      const type = ctx.headers['content-type'] ?? UNTYPED
      if (!isMediaType(type)) throw refusal(ctx.direction, 'unsupported_media_type', 'seal-body: content-type is not one media type')
      stream = createSealStream(this.#recipients, {
        contentType: type,
        recordSize: this.#recordSize,
        route: this.#context.of(ctx),
      })
    } catch (err) {
      throw refuseAtBegin(this.#env, ctx, err)
    }
    ctx.headers['content-type'] = SEALED_MEDIA_TYPE
    // What the body is, not how to carry it: its language goes with its media type, out of sight.
    delete ctx.headers['content-language']
    return meterBodyStream(stream, {
      direction: ctx.direction,
      plaintext: 'input',
      failure: 'seal_failed',
      opMetrics: this.#metrics,
      routeMetrics: this.#env.metrics?.forRoute(ctx.routeName),
    })
  }
}

/**
 * Builds a `seal-body` step. Even an empty body is sealed (a sealed stream with one empty record),
 * so the receiving side can tell "nothing" from "stripped".
 *
 * @example
 * // - { type: seal-body, recipients: trusted-host, context: documents, recordSize: 65536 }
 */
export function createSealBodyTransform(options: Readonly<Record<string, unknown>>, env: TransformEnv): SealBodyTransform {
  const o = parseOptions(sealBodyOptions, options)
  return new SealBodyTransform(env, keySetFor(env, 'recipients', o.recipients, false), compileBodyContext(o.context, env), o.recordSize)
}
