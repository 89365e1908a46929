/**
 * The seam for body transforms. Each route carries an ordered list of request transforms and one of
 * response transforms; request transforms run in the listed order, response transforms in reverse
 * (Envoy's filter-chain order). The core proxy ships none: sealing plugs in here without touching it.
 */
import type { Duplex } from 'node:stream'
import type { Logger } from 'pino'
import type { KeySet } from '../crypto/keys.js'
import type { Principal } from '../identity/principal.js'
import type { CryptoMetrics } from '../observability/metrics.js'

export type Direction = 'request' | 'response'

/** Mutable header map of the message being transformed (lower-case names). */
export type MessageHeaders = Record<string, string | string[] | undefined>

export interface TransformContext {
  readonly direction: Direction
  /** The upstream's status, on a response. */
  readonly status?: number
  readonly routeName: string
  /**
   * The request's path as routed, normalised (`normalizeTarget`), without its query: what a
   * whole-body step reads the route's parameters from (src/transform/body-context.ts).
   */
  readonly path: string
  readonly requestId: string
  readonly principal: Principal
  /**
   * The headers of the message being transformed, before they are sent on. A transform that changes
   * the body's length must not leave `content-length` (the proxy removes it whenever a transform is
   * active); it may rewrite `content-type`.
   */
  readonly headers: MessageHeaders
  readonly log: Logger
}

export interface BodyTransform {
  /** The `type` it was configured with, for logs and metrics. */
  readonly type: string
  /**
   * A whole-body step must see a request that declares content even when the content is empty
   * (`content-length: 0`, or a `POST`/`PUT`/`PATCH` without a body): `seal-body` seals it, so the
   * receiving side can tell "empty" from "stripped", and `open-body` refuses it, since it is not a
   * sealed stream. Field steps leave it unset: an empty body holds no field.
   */
  readonly wholeBody?: boolean
  /**
   * Decide for one message. Return a stream to pipe the body through, or `null` to leave the body
   * untouched. Throw an `EcluseError` to refuse the message before any of its bytes cross; a stream
   * that errors later aborts the message (fail closed: a truncated body is never passed as complete).
   */
  begin(ctx: TransformContext): Duplex | null
  /**
   * Why a request to `path` (normalised) must be refused whatever its body, or undefined. Asked of
   * the steps of both directions once the request is routed and admitted, before the upstream is
   * contacted: a whole-body step whose context binds a path parameter too long to bind refuses here
   * (`400 path_rejected`), rather than on the response, after the upstream has done its work.
   */
  refusePath?(path: string): string | undefined
  /**
   * Called once when the route table holding this step is retired: a reload replaced it and the
   * last request that began under it has ended. A step that keeps key material between messages
   * (an opener's cache of derived KEKs) erases it here; nothing calls `begin` afterwards.
   */
  retire?(): void
}

/** Everything a transform factory may need at boot. */
export interface TransformEnv {
  readonly log: Logger
  /**
   * The configured key sets (`keys.<name>`), loaded once at boot (or reload) by `loadKeySets`.
   * Absent means none: a step that names a key set then fails with `config_invalid`.
   */
  readonly keySets?: ReadonlyMap<string, KeySet>
  /** The sealing metrics (`GatewayMetrics.crypto`); absent in tools that only compile a config. */
  readonly metrics?: CryptoMetrics
  /**
   * The path pattern of the route the step belongs to (`/v1/accreditations/:id/photo`), whose
   * parameters a whole-body step's context may name; absent outside a route (the CLI).
   */
  readonly routePath?: string
}

/** Builds a transform from its configuration step; throws `EcluseError('config_invalid')` on bad options. */
export type TransformFactory = (options: Readonly<Record<string, unknown>>, env: TransformEnv) => BodyTransform
