/**
 * `require-sealed-body`: the whole body must already be a sealed stream (`seal-body`'s
 * `application/vnd.ecluse.sealed`) for an accepted key of `recipients`, bound to this context. It is
 * checked with public keys only and passed on unchanged: its header is held until it checks, so a
 * body that is anything else (a plaintext photo, a stream for another context or key) is refused
 * with `plaintext_refused` before a byte of it crosses; one whose records do not frame is cut at its
 * end. The whole-body counterpart of `require-sealed`, and like it, it cannot prove the ciphertext
 * genuine: only the private key's holder can.
 */
import type { Transform } from 'node:stream'
import { z } from 'zod'
import type { KeySet } from '../crypto/keys.js'
import {
  createSealedStreamCheck,
  DEFAULT_MAX_OPEN_RECORD_SIZE,
  DEFAULT_MIN_OPEN_RECORD_SIZE,
  MAX_RECORD_SIZE,
  MIN_RECORD_SIZE,
} from '../crypto/stream.js'
import type { CryptoOpMetrics } from '../observability/metrics.js'
import { meterBodyStream } from './body-stream.js'
import { checkNoContentEncoding, contextOption, keySetFor, keySetName, parseOptions, refusal, refuseAtBegin } from './json-fields.js'
import { SEALED_MEDIA_TYPE } from './seal-body.js'
import type { BodyTransform, TransformContext, TransformEnv } from './types.js'

const requireSealedBodyOptions = z
  .object({
    recipients: keySetName,
    context: contextOption,
    /** The record sizes `open-body` accepts by default: a stream that passes here opens there. */
    maxRecordSize: z.number().int().min(MIN_RECORD_SIZE).max(MAX_RECORD_SIZE).default(DEFAULT_MAX_OPEN_RECORD_SIZE),
    minRecordSize: z.number().int().min(MIN_RECORD_SIZE).max(MAX_RECORD_SIZE).optional(),
  })
  .strict()
  .refine((o) => o.minRecordSize === undefined || o.minRecordSize <= o.maxRecordSize, {
    message: 'must not exceed maxRecordSize',
    path: ['minRecordSize'],
  })

/** The `require-sealed-body` step. */
export class RequireSealedBodyTransform implements BodyTransform {
  readonly type = 'require-sealed-body'
  readonly wholeBody = true
  readonly #env: TransformEnv
  readonly #keys: KeySet
  readonly #context: string | undefined
  readonly #recordSizes: { readonly minRecordSize: number; readonly maxRecordSize: number }
  readonly #metrics: CryptoOpMetrics | undefined

  constructor(env: TransformEnv, keys: KeySet, context: string | undefined, recordSizes: { minRecordSize: number; maxRecordSize: number }) {
    this.#env = env
    this.#keys = keys
    this.#context = context
    this.#recordSizes = recordSizes
    this.#metrics = env.metrics?.op('verify', 'stream')
  }

  begin(ctx: TransformContext): Transform {
    let check: Transform
    try {
      checkNoContentEncoding(ctx.headers, ctx.direction, 'require-sealed-body')
      const type = ctx.headers['content-type']
      if (typeof type !== 'string' || type.trim().toLowerCase() !== SEALED_MEDIA_TYPE) {
        throw refusal(ctx.direction, 'plaintext_refused', `require-sealed-body: content-type is not ${SEALED_MEDIA_TYPE}`)
      }
      check = createSealedStreamCheck(this.#keys, { route: this.#context ?? ctx.routeName, ...this.#recordSizes })
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
 * Builds a `require-sealed-body` step.
 *
 * @example
 * // - { type: require-sealed-body, recipients: trusted-host, context: photos-out }
 */
export function createRequireSealedBodyTransform(options: Readonly<Record<string, unknown>>, env: TransformEnv): RequireSealedBodyTransform {
  const o = parseOptions(requireSealedBodyOptions, options)
  const minRecordSize = o.minRecordSize ?? Math.min(DEFAULT_MIN_OPEN_RECORD_SIZE, o.maxRecordSize)
  return new RequireSealedBodyTransform(env, keySetFor(env, 'recipients', o.recipients, false), o.context, {
    minRecordSize,
    maxRecordSize: o.maxRecordSize,
  })
}
