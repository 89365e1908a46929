/**
 * `open-body`: a body sealed by `seal-body` (`application/vnd.ecluse.sealed`) is opened with the
 * private key set `keys`; the original bytes go on with their original media type. Only
 * authenticated records are released, the last one only once the input has ended cleanly, so a
 * tampered or truncated body fails (`open_failed`) without a byte of it having been trusted.
 */
import type { Transform } from 'node:stream'
import { z } from 'zod'
import type { TransformStepConfig } from '../config/schema.js'
import { KekCache } from '../crypto/kek-cache.js'
import type { KeySet } from '../crypto/keys.js'
import {
  createOpenStream,
  DEFAULT_MAX_OPEN_RECORD_SIZE,
  DEFAULT_MIN_OPEN_RECORD_SIZE,
  MAX_RECORD_SIZE,
  MIN_RECORD_SIZE,
  type SealedStreamInfo,
} from '../crypto/stream.js'
import type { CryptoOpMetrics } from '../observability/metrics.js'
import { type AcceptedContexts, alsoAcceptOption, compileAcceptedContexts } from './body-context.js'
import { meterBodyStream } from './body-stream.js'
import { checkNoContentEncoding, contextOption, keySetFor, keySetName, parseOptions, refusal, refuseAtBegin } from './json-fields.js'
import { isSealedMediaType, SEALED_MEDIA_TYPE } from './seal-body.js'
import type { BodyTransform, MessageHeaders, TransformContext, TransformEnv } from './types.js'

/** The record sizes a sealed body may declare, for the steps that read one (`open-body`, `require-sealed-body`). */
export const recordSizeOptions = {
  /** Largest record size a sealed body may declare: memory per message is one record. */
  maxRecordSize: z.number().int().min(MIN_RECORD_SIZE).max(MAX_RECORD_SIZE).default(DEFAULT_MAX_OPEN_RECORD_SIZE),
  /**
   * Smallest record size a sealed body may declare: CPU per byte grows as records shrink. Default
   * 4 KiB, or `maxRecordSize` when that is smaller (a route configured for small records keeps
   * working).
   */
  minRecordSize: z.number().int().min(MIN_RECORD_SIZE).max(MAX_RECORD_SIZE).optional(),
}

/** `recordSizeOptions` checked together (`.refine(...recordSizesAgree)`): the floor does not exceed the cap. */
export const recordSizesAgree: [(o: { minRecordSize?: number | undefined; maxRecordSize: number }) => boolean, { message: string; path: string[] }] = [
  (o) => o.minRecordSize === undefined || o.minRecordSize <= o.maxRecordSize,
  { message: 'must not exceed maxRecordSize', path: ['minRecordSize'] },
]

/** The record sizes `o` gives, the floor defaulted. */
export function recordSizesOf(o: { minRecordSize?: number | undefined; maxRecordSize: number }): { minRecordSize: number; maxRecordSize: number } {
  return { minRecordSize: o.minRecordSize ?? Math.min(DEFAULT_MIN_OPEN_RECORD_SIZE, o.maxRecordSize), maxRecordSize: o.maxRecordSize }
}

const openBodyOptions = z
  .object({ keys: keySetName, context: contextOption, alsoAccept: alsoAcceptOption, ...recordSizeOptions })
  .strict()
  .refine(...recordSizesAgree)

/** What `open-body` labels a body with until its header is authenticated. */
const TYPE_UNTIL_AUTHENTICATED = 'application/octet-stream'

/**
 * Restores the sealed media type on the message once the stream header has been authenticated, if
 * the label is still the one `open-body` put there (no step may run after it: see
 * {@link stepAfterOpenBodyProblem}; were one to relabel the body, its label stands).
 */
class RestoreType {
  readonly #headers: MessageHeaders
  readonly onHeader: (info: SealedStreamInfo) => void

  constructor(headers: MessageHeaders) {
    this.#headers = headers
    this.onHeader = (info) => {
      if (this.#headers['content-type'] === TYPE_UNTIL_AUTHENTICATED) this.#headers['content-type'] = info.contentType
    }
  }
}

/**
 * A chain check: no step may run after `open-body` on the same message (after it in a request's
 * list, before it in a response's). Every step begins before the body's first byte, when `open-body`
 * does not know the media type yet (its first record is not authenticated): a step after it read a
 * placeholder, and a `seal-body` there sealed the body as `application/octet-stream` while the
 * restored plaintext type went out as the sealed message's `content-type`, which `seal-body` exists
 * to hide (found by review); a field step there refused every body.
 */
export function stepAfterOpenBodyProblem(steps: readonly TransformStepConfig[], keyPath: string, direction: 'request' | 'response'): string | undefined {
  const met = steps.map((step, i) => ({ step, i }))
  if (direction === 'response') met.reverse()
  const opened = met.findIndex(({ step }) => step.type === 'open-body')
  const next = opened === -1 ? undefined : met[opened + 1]
  if (next === undefined) return undefined
  return `${keyPath}[${next.i}] (${next.step.type}) would run after ${keyPath}[${met[opened]!.i}] (open-body), which knows the body's media type only once its first record is authenticated, after every step has begun: open the body last (first in a response's list), and seal or check it again on another hop`
}

/** The `open-body` step. */
export class OpenBodyTransform implements BodyTransform {
  readonly type = 'open-body'
  readonly wholeBody = true
  readonly #env: TransformEnv
  readonly #keys: KeySet
  readonly #contexts: AcceptedContexts
  /** Present when the context binds a path parameter (`BodyTransform.refusePath`). */
  readonly refusePath?: (path: string) => string | undefined
  readonly #recordSizes: { readonly minRecordSize: number; readonly maxRecordSize: number }
  /** Shared by the route's bodies: those sealed in one window of the sealer cost one agreement. */
  readonly #keks: KekCache
  readonly #metrics: CryptoOpMetrics | undefined

  constructor(env: TransformEnv, keys: KeySet, contexts: AcceptedContexts, recordSizes: { minRecordSize: number; maxRecordSize: number }) {
    this.#env = env
    this.#keys = keys
    this.#contexts = contexts
    if (contexts.refusal !== undefined) this.refusePath = contexts.refusal
    this.#recordSizes = recordSizes
    this.#keks = new KekCache(keys)
    this.#metrics = env.metrics?.op('open', 'stream')
  }

  begin(ctx: TransformContext): Transform {
    let stream: ReturnType<typeof createOpenStream>
    try {
      checkNoContentEncoding(ctx.headers, ctx.direction, 'open-body')
      const type = ctx.headers['content-type']
      if (!isSealedMediaType(type)) {
        throw refusal(ctx.direction, 'unsupported_media_type', `open-body: content-type is not ${SEALED_MEDIA_TYPE}`)
      }
      stream = createOpenStream(this.#keys, { route: this.#contexts.of(ctx), ...this.#recordSizes, kekCache: this.#keks })
    } catch (err) {
      throw refuseAtBegin(this.#env, ctx, err)
    }
    // Until the header is authenticated the type is unknown: never pass the sealed label on.
    ctx.headers['content-type'] = TYPE_UNTIL_AUTHENTICATED
    stream.once('header', new RestoreType(ctx.headers).onHeader)
    return meterBodyStream(stream, {
      direction: ctx.direction,
      plaintext: 'output',
      failure: 'open_failed',
      opMetrics: this.#metrics,
      routeMetrics: this.#env.metrics?.forRoute(ctx.routeName),
    })
  }

  /** The cache of derived KEKs shared by the route's bodies. */
  get kekCache(): KekCache {
    return this.#keks
  }

  retire(): void {
    this.#keks.erase()
  }
}

/**
 * Builds an `open-body` step.
 *
 * @example
 * // - { type: open-body, keys: trusted-host-private, context: documents }
 */
export function createOpenBodyTransform(options: Readonly<Record<string, unknown>>, env: TransformEnv): OpenBodyTransform {
  const o = parseOptions(openBodyOptions, options)
  return new OpenBodyTransform(env, keySetFor(env, 'keys', o.keys, true), compileAcceptedContexts(o.context, o.alsoAccept, env), recordSizesOf(o))
}
