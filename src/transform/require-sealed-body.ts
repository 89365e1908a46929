/**
 * `require-sealed-body`: the whole body must already be a sealed stream (`seal-body`'s
 * `application/vnd.ecluse.sealed`) for an accepted key of `recipients`, bound to this context. It is
 * checked with public keys only and passed on unchanged: its header is held until it checks, so a
 * body that is anything else (a plaintext photo, a stream for another context or key) is refused
 * with `plaintext_refused` before a byte of it crosses; one whose records do not frame is cut at its
 * end. The whole-body counterpart of `require-sealed`, and like it, it cannot prove the ciphertext
 * genuine: only the private key's holder can.
 */
import { Transform, type TransformCallback } from 'node:stream'
import { z } from 'zod'
import type { KeySet } from '../crypto/keys.js'
import { createSealedStreamCheck } from '../crypto/stream.js'
import { MAX_GATEWAY_ANSWER_BYTES, readGatewayAnswer } from '../errors.js'
import type { CryptoOpMetrics } from '../observability/metrics.js'
import { type AcceptedContexts, alsoAcceptOption, compileAcceptedContexts } from './body-context.js'
import { meterBodyStream } from './body-stream.js'
import { checkNoContentEncoding, contextOption, keySetFor, keySetName, parseOptions, refusal, refuseAtBegin } from './json-fields.js'
import { recordSizeOptions, recordSizesAgree, recordSizesOf } from './open-body.js'
import { isSealedMediaType, SEALED_MEDIA_TYPE } from './seal-body.js'
import type { BodyTransform, TransformContext, TransformEnv } from './types.js'

/** The record sizes `open-body` accepts, by default: a stream that passes here opens there. */
const requireSealedBodyOptions = z
  .object({ recipients: keySetName, context: contextOption, alsoAccept: alsoAcceptOption, ...recordSizeOptions })
  .strict()
  .refine(...recordSizesAgree)

/** The `require-sealed-body` step. */
export class RequireSealedBodyTransform implements BodyTransform {
  readonly type = 'require-sealed-body'
  readonly wholeBody = true
  readonly #env: TransformEnv
  readonly #keys: KeySet
  readonly #contexts: AcceptedContexts
  /** Present when the context binds a path parameter (`BodyTransform.refusePath`). */
  readonly refusePath?: (path: string) => string | undefined
  readonly #recordSizes: { readonly minRecordSize: number; readonly maxRecordSize: number }
  readonly #metrics: CryptoOpMetrics | undefined

  constructor(env: TransformEnv, keys: KeySet, contexts: AcceptedContexts, recordSizes: { minRecordSize: number; maxRecordSize: number }) {
    this.#env = env
    this.#keys = keys
    this.#contexts = contexts
    if (contexts.refusal !== undefined) this.refusePath = contexts.refusal
    this.#recordSizes = recordSizes
    this.#metrics = env.metrics?.op('verify', 'stream')
  }

  begin(ctx: TransformContext): Transform {
    let check: Transform
    try {
      checkNoContentEncoding(ctx.headers, ctx.direction, 'require-sealed-body')
      const type = ctx.headers['content-type']
      // The answers the trusted side's own gateway writes (its upstream down, a drain, a timeout).
      if (ctx.direction === 'response' && type === 'application/json') return new GatewayErrorAnswer(this.#env, ctx)
      if (!isSealedMediaType(type)) {
        throw refusal(ctx.direction, 'plaintext_refused', `require-sealed-body: content-type is not ${SEALED_MEDIA_TYPE}`)
      }
      check = createSealedStreamCheck(this.#keys, { route: this.#contexts.of(ctx), ...this.#recordSizes })
    } catch (err) {
      throw refuseAtBegin(this.#env, ctx, err)
    }
    return meterBodyStream(check, {
      direction: ctx.direction,
      plaintext: 'input',
      failure: 'plaintext_refused',
      recode: true,
      opMetrics: this.#metrics,
      routeMetrics: this.#env.metrics?.forRoute(ctx.routeName),
    })
  }
}

/**
 * A response labelled `application/json` crosses only if it is, byte for byte, an answer an Écluse
 * gateway writes itself with its own status (`readGatewayAnswer`): the trusted side's refusals
 * (`upstream_refused` while the service is down), which reached the sponsor as `transform_failed`
 * and counted as plaintext refused, and the body it sends for a service's error answer it withholds.
 * What crosses is this gateway's answer with that code or status (its own request id): nothing of
 * the upstream's bytes but one of a fixed set. Anything else so labelled is refused like any body
 * that is not sealed.
 */
class GatewayErrorAnswer extends Transform {
  readonly #env: TransformEnv
  readonly #ctx: TransformContext
  #held: Buffer[] = []
  #bytes = 0

  constructor(env: TransformEnv, ctx: TransformContext) {
    super()
    this.#env = env
    this.#ctx = ctx
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.#bytes += chunk.length
    if (this.#bytes > MAX_GATEWAY_ANSWER_BYTES) {
      done(this.#refuse('a JSON body longer than an error answer'))
      return
    }
    this.#held.push(chunk)
    done()
  }

  override _flush(done: TransformCallback): void {
    const answer = readGatewayAnswer(Buffer.concat(this.#held, this.#bytes), this.#ctx.status, this.#ctx.requestId)
    if (answer === undefined) done(this.#refuse('a JSON body that is not an error answer'))
    else done(null, answer)
  }

  #refuse(detail: string): Error {
    return refuseAtBegin(this.#env, this.#ctx, refusal(this.#ctx.direction, 'plaintext_refused', `require-sealed-body: ${detail}`))
  }
}

/**
 * Builds a `require-sealed-body` step.
 *
 * @example
 * // - { type: require-sealed-body, recipients: trusted-host, context: photos-out }
 */
export function createRequireSealedBodyTransform(options: Readonly<Record<string, unknown>>, env: TransformEnv): RequireSealedBodyTransform {
  const o = parseOptions(requireSealedBodyOptions, options)
  return new RequireSealedBodyTransform(env, keySetFor(env, 'recipients', o.recipients, false), compileAcceptedContexts(o.context, o.alsoAccept, env), recordSizesOf(o))
}
