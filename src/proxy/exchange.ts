/**
 * One request's journey through the gateway, in order (Envoy's filter chain):
 *
 *   verified principal → path normalisation → route match → authorisation → limits
 *   → request headers → request transforms (in order) → upstream (terminal)
 *   → response headers → response transforms (in reverse) → sponsor
 *
 * Any stage may stop the journey with an `EcluseError`; the client then gets the code's status and
 * `{"error": code}`, and nothing has been sent upstream unless the upstream stage had begun.
 * Once response headers have gone out, a failure destroys the connection: a truncated body is never
 * passed on as a complete success.
 */
import { randomUUID } from 'node:crypto'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Duplex, Readable } from 'node:stream'
import type { Logger } from 'pino'
import type { SponsorConfig } from '../config/schema.js'
import { EcluseError, type ErrorCode, foreignErrorDetail, isEcluseError, isWithheldStatus, MAX_GATEWAY_ANSWER_BYTES, publicErrorBody, readGatewayAnswer, withheldAnswerBody } from '../errors.js'
import { isAllowed } from '../identity/authorize.js'
import type { Principal } from '../identity/principal.js'
import { principalOf, type RequestHandler } from '../listener/sponsor.js'
import { writeAccessLog } from '../observability/logger.js'
import type { GatewayMetrics } from '../observability/metrics.js'
import { normalizeTarget } from '../route/path.js'
import { type CompiledRoute, type RouteTable, retireRouteTable } from '../route/table.js'
import type { BodyTransform, Direction, MessageHeaders, TransformContext } from '../transform/types.js'
import { recognizedUpstreamError } from '../upstream/classify.js'
import { UpstreamAbort, type UpstreamPool, type UpstreamResponse, upstreamBodyError } from '../upstream/pool.js'
import { BodyLimit } from './body-limit.js'
import { chain } from './chain.js'
import { buildSponsorHeaders, buildUpstreamHeaders, describesTheBody, narrowForTransformedResponses } from './headers.js'
import { HoldBack } from './hold-back.js'
import { UploadRateGuard, type WatchedUpload } from './upload-rate.js'

/** What the proxy routes with; replaced as a whole on reload so a request sees one consistent state. */
export interface ProxyState {
  readonly routes: RouteTable
  readonly upstreams: ReadonlyMap<string, UpstreamPool>
  readonly sponsor: SponsorConfig
  /** `routes[].jwks`: the public JWKS served on that route (by route name), built at boot. */
  readonly jwks?: ReadonlyMap<string, Buffer>
}

/** The request handler bound to the sponsor listener. */
export class ProxyHandler implements RequestHandler {
  #state: ProxyState
  draining = false
  inFlight = 0
  readonly metrics: GatewayMetrics
  readonly log: Logger
  #idleWaiters: Array<() => void> = []
  /**
   * Exchanges in flight per state (keyed by its route table, new at every reload), with the pools
   * that state routes to: a table a reload replaced is retired when its last exchange ends.
   */
  readonly #users = new Map<RouteTable, { count: number; upstreams: ReadonlyMap<string, UpstreamPool> }>()
  /**
   * Pools a reload replaced, until no exchange in flight can still call them. An exchange calls its
   * pool only once its request transforms hold the body (`requestHoldBytes`), which can be long
   * after a reload: closed at the swap, the pool refused it (`upstream_unavailable`).
   */
  #retiredPools: UpstreamPool[] = []
  /** Request bodies under `sponsor.limits.minBodyBytesPerSecond` (boot values, as every limit). */
  readonly uploads: UploadRateGuard

  constructor(state: ProxyState, metrics: GatewayMetrics, log: Logger) {
    this.#state = state
    this.metrics = metrics
    this.log = log
    const limits = state.sponsor.limits
    this.uploads = new UploadRateGuard(limits.minBodyBytesPerSecond, limits.bodyGraceMs)
  }

  get state(): ProxyState {
    return this.#state
  }

  /**
   * Swaps what new requests are routed with. The replaced state's routes are retired (their
   * openers' KEK caches erased) at once if no request is using them, else when the last one ends.
   */
  set state(next: ProxyState) {
    const old = this.#state
    this.#state = next
    if (old.routes !== next.routes && !this.#users.has(old.routes)) retireRouteTable(old.routes)
  }

  /**
   * Pools a reload took out of service: each finishes what it carries and closes (`close()`) once no
   * exchange in flight belongs to a state that routes to it. Call after the state swap.
   */
  retirePools(pools: readonly UpstreamPool[]): void {
    this.#retiredPools.push(...pools)
    this.#closeUnusedPools()
  }

  /** Retired pools still waiting for their last exchange, to destroy on shutdown. */
  get retiredPools(): readonly UpstreamPool[] {
    return this.#retiredPools
  }

  #closeUnusedPools(): void {
    if (this.#retiredPools.length === 0) return
    const inUse = new Set<UpstreamPool>(this.#state.upstreams.values())
    for (const { upstreams } of this.#users.values()) for (const pool of upstreams.values()) inUse.add(pool)
    const waiting: UpstreamPool[] = []
    for (const pool of this.#retiredPools) {
      if (inUse.has(pool)) waiting.push(pool)
      else void pool.close()
    }
    this.#retiredPools = waiting
  }

  handle(req: IncomingMessage, res: ServerResponse, expectContinue: boolean): void {
    new Exchange(this, this.#state, req, res).run(expectContinue)
  }

  /** Resolves when no request is in flight (used by the drain on shutdown). */
  idle(): Promise<void> {
    if (this.inFlight === 0) return Promise.resolve()
    return new Promise((resolve) => this.#idleWaiters.push(resolve))
  }

  exchangeStarted(state: ProxyState): void {
    this.inFlight++
    const users = this.#users.get(state.routes)
    if (users !== undefined) users.count++
    else this.#users.set(state.routes, { count: 1, upstreams: state.upstreams })
  }

  exchangeDone(state: ProxyState): void {
    this.inFlight--
    const users = this.#users.get(state.routes)!
    if (--users.count === 0) {
      this.#users.delete(state.routes)
      if (state.routes !== this.#state.routes) {
        retireRouteTable(state.routes)
        this.#closeUnusedPools()
      }
    }
    if (this.inFlight === 0 && this.#idleWaiters.length > 0) {
      const waiters = this.#idleWaiters
      this.#idleWaiters = []
      for (const resolve of waiters) resolve()
    }
  }
}

/**
 * Statuses that carry no content whatever their headers say (RFC 9110 §15.3.5, §15.3.6, §15.4.5).
 * 205 too: Node and llhttp frame it like any 200, where clients (Chromium) read it as body-less, so
 * a body in it would be read as the start of the next answer on the connection.
 */
const NO_BODY_STATUS = new Set([204, 205, 304])
/** A response's `transfer-encoding` the gateway relays: chunked, and no other coding (RFC 9112 §6.1). */
const CHUNKED_ONLY = /^[ \t]*chunked[ \t]*$/i
/** Refusals counted in `ecluse_rejected_requests_total` by the exchange (the parser's by the listener). */
const REJECTED_REQUEST_CODES: ReadonlySet<ErrorCode> = new Set([
  'body_too_large',
  'shutting_down',
  'request_framing',
  'bad_request',
  'http_version_not_supported',
])

/**
 * What Node's parser lets through and the gateway does not: HTTP/1.0, a request transfer coding
 * other than chunked alone (the coding would be dropped with the hop-by-hop header, and the upstream
 * would read coded bytes as the content), a repeated Host, and a request without one (RFC 9112 §3.2).
 */
function requestFramingProblem(req: IncomingMessage): { code: ErrorCode; detail: string } | undefined {
  // An HTTP/1.0 response without a length ends when the connection closes, so the close by which the
  // gateway aborts a body it cannot finish safely would read as a complete response: fail closed
  // needs a framing that tells the two apart (chunked, or a length).
  if (req.httpVersionMajor !== 1 || req.httpVersionMinor < 1) return { code: 'http_version_not_supported', detail: `HTTP/${req.httpVersion}` }
  const te = req.headers['transfer-encoding']
  if (te !== undefined && !CHUNKED_ONLY.test(te)) return { code: 'request_framing', detail: 'a transfer coding other than chunked alone' }
  let hosts = 0
  const raw = req.rawHeaders
  for (let i = 0; i < raw.length; i += 2) if (raw[i]!.length === 4 && raw[i]!.toLowerCase() === 'host') hosts++
  if (hosts > 1) return { code: 'bad_request', detail: 'more than one Host header' }
  if (hosts === 0) return { code: 'bad_request', detail: 'no Host header in an HTTP/1.1 request' }
  return undefined
}
/** Headers describing a body that response transforms rewrite (its type and length) or refuse (a coding). */
const TRANSFORMED_BODY_HEADERS = ['content-type', 'content-length', 'content-encoding'] as const
/**
 * Of a withheld body, what is read to keep the upstream connection: a body of declared length up to
 * this, within `WITHHELD_READ_MS`. A longer one, one of unknown length, or a slower one, is cut
 * (destroyed), which costs that connection but not the time to read it.
 */
const WITHHELD_DRAIN_BYTES = 64 * 1024
const WITHHELD_READ_MS = 1_000
/** Methods whose requests carry content by definition (RFC 9110 §9.3): no body is empty content. */
const CONTENT_METHODS = new Set(['POST', 'PUT', 'PATCH'])

/** Whether the request's framing puts body bytes on the wire (chunked, or a length above 0). */
function bodyOnTheWire(req: IncomingMessage): boolean {
  const length = req.headers['content-length']
  return req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0')
}

/**
 * A request without a body that still declares content: an empty body for whole-body steps, which
 * give it one (a sealed stream of nothing). Only on a method that may carry a body on the route: a
 * GET or HEAD with a `content-type` must not reach the upstream with a body the gateway made.
 */
function declaresContent(req: IncomingMessage, route: CompiledRoute): boolean {
  const method = req.method ?? ''
  if (!route.bodyMethods.has(method)) return false
  return CONTENT_METHODS.has(method) || req.headers['content-length'] !== undefined || req.headers['content-type'] !== undefined
}

function statusClass(status: number): '1xx' | '2xx' | '3xx' | '4xx' | '5xx' {
  if (status < 200) return '1xx'
  if (status < 300) return '2xx'
  if (status < 400) return '3xx'
  if (status < 500) return '4xx'
  return '5xx'
}

class Exchange implements WatchedUpload {
  readonly #proxy: ProxyHandler
  readonly #state: ProxyState
  readonly #req: IncomingMessage
  readonly #res: ServerResponse
  readonly #started = performance.now()
  readonly #requestId = randomUUID()
  readonly #abort = new UpstreamAbort()
  #route: CompiledRoute | undefined
  /** The normalised path `#route` matched (without the query). */
  #path = ''
  #principal: Principal | undefined
  #requestBody: BodyLimit | undefined
  #requestBodyError: unknown
  /** A request body stage failed with an error of its own (not undici destroying the body). */
  #requestStageFailed = false
  /** Body bytes the parser has handed over (`#countBodyBytes`); BodyLimit's count, when there is one, is the metric's. */
  #bodyBytes = 0
  #bytesOut = 0
  #upstreamMs: number | undefined
  #code: ErrorCode | undefined
  #aborted = false
  #forwarded = false
  /**
   * The response's transform stages and their hold, while they run. A client that goes away after
   * the upstream body has ended aborts nothing upstream: they are destroyed then, rather than left to
   * work on for no one with their keys live until they drain or are collected (found by review).
   */
  #responseStages: readonly Duplex[] = []

  constructor(proxy: ProxyHandler, state: ProxyState, req: IncomingMessage, res: ServerResponse) {
    this.#proxy = proxy
    this.#state = state
    this.#req = req
    this.#res = res
  }

  run(expectContinue: boolean): void {
    const req = this.#req
    const res = this.#res
    const sponsor = this.#state.sponsor
    this.#proxy.exchangeStarted(this.#state)
    res.once('close', () => this.#finish())
    res.setHeader(sponsor.requestIdHeader, this.#requestId)

    // The listener destroyed unverified connections at handshake time; a certificate can still have
    // expired since, on a keep-alive connection: such a connection carries no principal, and ends.
    const principal = principalOf(req)
    if (principal === undefined) {
      this.#aborted = true
      this.#proxy.log.info({ reqId: this.#requestId }, 'connection closed: its client certificate is no longer valid, or its CA was taken out of the sponsor bundle')
      req.socket.destroy()
      return
    }
    this.#principal = principal

    if (this.#proxy.draining) {
      this.#refuse('shutting_down', 'draining')
      return
    }

    const framing = requestFramingProblem(req)
    if (framing !== undefined) {
      this.#refuse(framing.code, framing.detail)
      return
    }

    let target: { path: string; query: string }
    try {
      target = normalizeTarget(req.url ?? '')
    } catch (err) {
      this.#proxy.metrics.authorizationDenied('unmatched', 'path_rejected')
      this.#refuse('path_rejected', (err as Error).message)
      return
    }

    const match = this.#state.routes.match(req.method ?? '', target.path)
    if ('error' in match) {
      this.#proxy.metrics.authorizationDenied('unmatched', match.error)
      this.#refuse(match.error, `${req.method} ${this.#state.routes.pathForLog(target.path)}`)
      return
    }
    const route = match.route
    const allowed = isAllowed(route, principal)
    // An upstream may read the path as another one (`;` parameters stripped, letter case ignored, a
    // trailing slash or a `.ext` suffix dropped): if that one is another route's, the upstream would
    // run that route's handler under this route's ACL and transforms. Refused. Judged only for a
    // client the ACL admits: to another, a `path_rejected` for `/docs/SECRET` beside a 403 for
    // `/docs/other` would name a route it cannot see.
    const elsewhere = allowed ? this.#state.routes.readElsewhere(req.method ?? '', target.path, route) : null
    if (elsewhere !== null) {
      this.#proxy.metrics.authorizationDenied('unmatched', 'path_rejected')
      this.#refuse('path_rejected', `the path read ${elsewhere.reading} goes to ${elsewhere.goes}, not route "${route.name}"`)
      return
    }
    this.#route = route
    this.#path = target.path
    this.#proxy.metrics.requestReceived(route.name)

    if (!allowed) {
      this.#proxy.metrics.authorizationDenied(route.name, 'principal_not_allowed')
      this.#refuse('forbidden', `principal ${principal.id} is not allowed on route ${route.name}`)
      return
    }

    // A JWKS route answers here, after the ACL, and never calls its upstream.
    const jwks = this.#state.jwks?.get(route.name)
    if (jwks !== undefined) {
      this.#serveJwks(jwks)
      return
    }

    // A step that cannot serve this path whatever the body (a whole-body context binding a path
    // parameter too long to bind): refused now, before the upstream does any work for it.
    const pathRefusal = route.pathRefusal?.(target.path)
    if (pathRefusal !== undefined) {
      this.#proxy.metrics.authorizationDenied(route.name, 'path_rejected')
      this.#refuse('path_rejected', pathRefusal)
      return
    }

    // A body on a method without content (GET, HEAD, DELETE, OPTIONS unless the route lists it): an
    // upstream that answers without reading it would read it as a request of its own (CL.0).
    if (bodyOnTheWire(req) && !route.bodyMethods.has(req.method ?? '')) {
      this.#refuse('request_framing', `a ${req.method} request with a body, which route ${route.name} does not take (routes[].requestBodyOn)`)
      return
    }

    const declaredLength = req.headers['content-length']
    if (declaredLength !== undefined && Number(declaredLength) > route.maxBodyBytes) {
      this.#refuse('body_too_large', `content-length ${declaredLength} > ${route.maxBodyBytes}`)
      return
    }

    const upstream = this.#state.upstreams.get(route.upstream)
    if (upstream === undefined) {
      this.#refuse('internal', `no pool for upstream ${route.upstream}`)
      return
    }

    const headers = buildUpstreamHeaders(req.rawHeaders, route, {
      requestId: this.#requestId,
      clientAddress: req.socket.remoteAddress ?? '',
      principal,
      principalHeader: sponsor.principalHeader,
      requestIdHeader: sponsor.requestIdHeader,
    })

    if (route.responseTransforms.length > 0 && narrowForTransformedResponses(headers) === 'refuse') {
      this.#refuse('precondition_failed', 'if-match names an entity-tag on a route with response transforms')
      return
    }

    const hasBody = bodyOnTheWire(req)
    if (hasBody) this.#proxy.uploads.watch(this)
    if (expectContinue) res.writeContinue()
    // A client that goes away aborts the upstream request (and with it the upstream body).
    res.once('close', () => {
      if (res.writableFinished) return
      this.#abort.abort()
      for (const stage of this.#responseStages) stage.destroy()
    })
    if (!hasBody && !(declaresContent(req, route) && route.requestTransforms.some((step) => step.wholeBody === true))) {
      this.#forward(upstream, route, target, headers, null)
      return
    }
    let stages: Duplex[]
    try {
      stages = this.#beginTransforms(route.requestTransforms, 'request', headers)
    } catch (err) {
      this.#refuseWith(err, 'request_transform_failed')
      return
    }
    if (stages.length === 0) {
      const body = !hasBody
        ? null
        : req.headers['transfer-encoding'] === undefined
          ? this.#declaredLengthBody()
          : this.#requestBodyPipeline(route, stages, null)
      this.#forward(upstream, route, target, headers, body)
      return
    }
    // Transforms change the length, and may refuse the body: hold it back first (HoldBack). A body
    // that ended within the window goes up whole, with its length; a larger one streams, chunked.
    delete headers['content-length']
    const hold = new HoldBack(route.requestHoldBytes, (whole) => {
      if (this.#requestBodyError !== undefined || this.#clientGone()) return
      if (whole !== undefined) headers['content-length'] = String(whole.length)
      this.#forward(upstream, route, target, headers, whole ?? hold)
    })
    this.#requestBodyPipeline(route, stages, hold)
  }

  /** `routes[].jwks`: the public key set, as `application/jwk-set+json` (RFC 7517 §8.5.1). */
  #serveJwks(body: Buffer): void {
    const res = this.#res
    res.writeHead(200, {
      'content-type': 'application/jwk-set+json',
      'content-length': body.length,
      'cache-control': 'max-age=300',
      ...(bodyOnTheWire(this.#req) && !this.#req.complete ? { connection: 'close' } : {}),
    })
    if (this.#req.method === 'HEAD') res.end()
    else {
      this.#bytesOut = body.length
      res.end(body)
    }
  }

  #forward(
    upstream: UpstreamPool,
    route: CompiledRoute,
    target: { path: string; query: string },
    headers: MessageHeaders,
    body: Readable | Buffer | null,
  ): void {
    this.#forwarded = true
    upstream
      .request({
        method: this.#req.method ?? 'GET',
        path: target.query === '' ? target.path : `${target.path}?${target.query}`,
        headers: headers as Record<string, string | string[]>,
        body,
        signal: this.#abort,
        // A record a step holds whole is released into the answer at once, and the upstream's body
        // ends: its connection would go to the next request while the record waits, in the gateway's
        // buffers, for a client that reads slowly. Kept until the answer is handed on, the records
        // held are one per pool place (`connections`), not one per sponsor connection.
        holdUntil: this.#holdUntilAnswered,
      })
      .then(
        (upstreamRes) => {
          // The upstream's own time: not the wait for a free connection, nor the sponsor's upload.
          this.#upstreamMs = performance.now() - upstreamRes.sentAt
          this.#proxy.metrics.upstreamTtfb(route.name, this.#upstreamMs / 1000)
          this.#respond(route, upstreamRes)
        },
        (err: unknown) => this.#onUpstreamError(err),
      )
  }

  /** `holdUntil` of the upstream request: its answer handed on (`close` follows `finish`), or its client gone. */
  readonly #holdUntilAnswered = (release: () => void): void => {
    const res = this.#res
    if (res.closed) release()
    else res.once('close', release)
  }

  /**
   * A body of declared length that no transform reads goes to undici as the request itself, with no
   * stage in between. The HTTP parser delivers exactly the declared bytes (RFC 9112 §6.3) and `run`
   * has checked them against the route's limit, so a BodyLimit would have nothing to stop, while
   * every stage holds chunks of its own for each upload in flight: 100–180 KiB more per upload held
   * back by a stalled upstream, ≈ 20 MiB with 500 uploads into a slower one (docs/benchmarks.md,
   * "Concurrency's memory").
   * A chunked body still goes through BodyLimit.
   *
   * Failures need no chain here: undici aborts the upstream request when the body errors or closes
   * early, and when the upstream fails it destroys an `IncomingMessage` body with its socket
   * detached (undici `util.destroy`), so the refusal still reaches the client.
   */
  #declaredLengthBody(): Readable {
    const req = this.#req
    // Paused before the counter listens, so that no byte flows before undici does: undici resumes
    // the body itself once it starts writing it (client-h1 `writeStream`), and the counter sees every
    // chunk undici sees. One listener per upload, where the stage it replaces cost a Transform.
    req.pause()
    this.#countBodyBytes()
    return req
  }

  /**
   * Counts the body's bytes as the parser hands them over (`#bodyBytes`): the upload rate's measure
   * on every path. BodyLimit's own count misses chunks waiting in its write buffer while the stages
   * after it are behind, and a client then looked slower than it was (found by review).
   */
  #countBodyBytes(): void {
    this.#req.on('data', (chunk: Buffer) => {
      this.#bodyBytes += chunk.length
    })
  }

  #requestBodyPipeline(route: CompiledRoute, stages: Duplex[], hold: HoldBack | null): Readable {
    const limit = new BodyLimit(route.maxBodyBytes)
    this.#requestBody = limit
    const streams: [Readable, ...Duplex[]] = [this.#req, limit, ...stages]
    if (hold !== null) streams.push(hold)
    // undici reads the last stream with back-pressure. Any stage's error destroys the whole chain,
    // so the upstream sees an aborted body, never a short one.
    const body = chain(streams, (err, origin) => {
      this.#requestBodyError ??= err
      this.#requestStageFailed = origin !== undefined && stages.includes(origin as Duplex)
      if (this.#forwarded) return
      if (!isEcluseError(err) && !this.#requestStageFailed) {
        // The client's own body failed under it: it went away, or the HTTP parser refused a chunk
        // and answered that itself (the listener's clientError). Nothing to refuse, no code of ours.
        this.#proxy.log.debug({ reqId: this.#requestId, route: this.#route?.name, detail: safeDetail(err) }, 'request body broken off by the client')
        this.#aborted = true
        this.#res.destroy()
        return
      }
      // Refused while held back: the upstream was never contacted, so answer here.
      this.#refuseWith(err, 'request_transform_failed')
    })
    this.#countBodyBytes()
    return body
  }

  #beginTransforms(transforms: readonly BodyTransform[], direction: Direction, headers: MessageHeaders, status?: number): Duplex[] {
    if (transforms.length === 0) return []
    const ctx: TransformContext = {
      direction,
      ...(status === undefined ? {} : { status }),
      routeName: this.#route!.name,
      path: this.#path,
      requestId: this.#requestId,
      principal: this.#principal!,
      headers,
      log: this.#proxy.log,
    }
    const stages: Duplex[] = []
    try {
      for (const transform of transforms) {
        const stage = transform.begin(ctx)
        if (stage !== null) stages.push(stage)
      }
    } catch (err) {
      // A later step refused the message: the stages already begun will never run, and a sealing
      // stage wipes its key only when destroyed.
      for (const stage of stages) stage.destroy()
      throw err
    }
    return stages
  }

  #respond(route: CompiledRoute, upstreamRes: UpstreamResponse): void {
    const res = this.#res
    const upstreamBody = upstreamRes.body
    if (upstreamRes.statusCode > 599) {
      // HTTP's parsers take any three digits, and Node would relay 600–999; RFC 9110 §15 defines none
      // of them, so what the sponsor would make of one is a guess (and it was counted as a 5xx).
      this.#refuseUpstreamResponse(upstreamBody, route, `status ${upstreamRes.statusCode} is outside RFC 9110's 100–599`)
      return
    }
    this.#proxy.metrics.upstreamResponse(route.name, statusClass(upstreamRes.statusCode))
    if (this.#clientGone()) {
      upstreamBody.destroy()
      return
    }
    const sponsor = this.#state.sponsor
    const headers = buildSponsorHeaders(upstreamRes.headers, route, this.#requestId, sponsor)
    // The upstream's tag names the representation before the transforms, a function of what they
    // seal, strip or open: it identifies nothing the sponsor receives (see narrowForTransformedResponses).
    if (route.responseTransforms.length > 0) delete headers['etag']
    const noBody =
      this.#req.method === 'HEAD' || NO_BODY_STATUS.has(upstreamRes.statusCode) || upstreamRes.statusCode < 200
    if (route.withholdErrorBodies && isWithheldStatus(upstreamRes.statusCode)) {
      this.#answerWithheld(route, upstreamRes, headers, noBody)
      return
    }
    const te = upstreamRes.headers['transfer-encoding']
    if (upstreamRes.statusCode === 206 && route.responseTransforms.length > 0) {
      // No range was asked for (narrowForTransformedResponses drops it): a part is not the document the
      // transforms' patterns describe, and its sensitive members could sit anywhere in it.
      this.#refuseUpstreamResponse(upstreamBody, route, 'a 206 partial response on a route whose responses are transformed')
      return
    }
    if (!noBody && (te === undefined ? upstreamRes.headers['content-length'] === undefined : !CHUNKED_ONLY.test(String(te)))) {
      // Delimited by the connection closing (RFC 9112 §6.3: no length, or a transfer coding other
      // than chunked alone): a cut connection would look like its end, and be relayed, or sealed, as
      // a complete body. A coding such as gzip would also be dropped unseen with the hop-by-hop
      // header. Nothing of it crosses.
      this.#refuseUpstreamResponse(upstreamBody, route, 'response delimited by closing the connection (framed by neither content-length nor chunked encoding alone)')
      return
    }
    // The request is still arriving (the upstream answered early): the rest of its body will not be
    // read as a next request, so the connection ends with this response (RFC 9112 §9.6).
    if (!this.#req.complete) headers['connection'] = 'close'
    let stages: Duplex[] = []
    if (!noBody) {
      try {
        stages = this.#beginTransforms(route.responseTransforms, 'response', headers, upstreamRes.statusCode)
      } catch (err) {
        upstreamBody.destroy()
        this.#refuseWith(isEcluseError(err) ? asResponseRefusal(err) : err, 'transform_failed')
        return
      }
      if (stages.length > 0) delete headers['content-length']
    }

    // 1xx are not relayed as final responses: undici consumes informational responses itself.
    if (noBody) {
      // The transforms never see a body-less answer (HEAD, 204, 205, 304), so nothing may describe the
      // body they would have rewritten: a HEAD on a seal-body route would carry the plaintext's media
      // type and length, which its GET carries only inside the seal.
      if (route.responseTransforms.length > 0) for (const name of TRANSFORMED_BODY_HEADERS) delete headers[name]
      // Nor its language, which a seal-body step seals away with the media type (seal-body.ts).
      if (route.responseTransforms.some((step) => step.type === 'seal-body')) delete headers['content-language']
      // RFC 9110 §8.6: no Content-Length in a 204 (a lenient client before us could read a body).
      if (upstreamRes.statusCode === 204) delete headers['content-length']
      // A 205 says it has none (§15.3.6): without a length Node would frame it chunked, and its empty
      // last chunk would be bytes a client that knows 205 reads as the next answer.
      if (upstreamRes.statusCode === 205) headers['content-length'] = '0'
      res.writeHead(upstreamRes.statusCode, headers)
      // undici reads a 205's body as any 200's (llhttp knows no other): one the upstream declares not
      // empty, or frames by closing, is not drained (a slow one would hold the upstream connection
      // long after the sponsor had its answer); the connection goes with it.
      if (upstreamRes.statusCode === 205 && upstreamRes.headers['content-length'] !== '0') upstreamBody.destroy()
      else upstreamBody.resume()
      res.end()
      return
    }
    // `res` is not a stage of the chain: the chain would destroy it with the error, and a socket
    // destroyed with an error reaches the listener as a `clientError`, i.e. counted and logged as a
    // request the sponsor got wrong. The abort below closes the connection without one.
    const fail = (err: Error) => this.#abortResponse(route, res, err)
    // pipe() re-emits a write error of `res` (write after end) and throws if nobody listens.
    res.on('error', fail)
    if (stages.length === 0) {
      // The head is written with the body's first bytes (or its end), as Node would send it: an
      // answer whose body fails before any byte (reset, body timeout, a bad first chunk) still gets a
      // clean 502 or 504 instead of an empty close (found by review). Registered before pipe's own
      // listeners, so they run first.
      const status = upstreamRes.statusCode
      const writeHead = () => {
        // Refused meanwhile (its own answer is out): none of this body may follow it.
        if (this.#code !== undefined) upstreamBody.destroy()
        else if (!res.headersSent) res.writeHead(status, headers)
      }
      upstreamBody.once('data', writeHead)
      upstreamBody.once('end', writeHead)
      upstreamBody.on('data', (chunk: Buffer) => {
        this.#bytesOut += chunk.length
      })
      upstreamBody.once('error', fail)
      upstreamBody.pipe(res)
      return
    }
    // With response transforms the head waits (HoldBack): a transform may still set a header from
    // the body (open-body restores the sealed media type), and one that refuses within the window
    // leaves a clean 502 possible. A body complete within it goes out with its length, in one write.
    const status = upstreamRes.statusCode
    const hold = new HoldBack(route.responseHoldBytes, (whole) => {
      // Gone, or answered meanwhile (the upload-rate guard's 408): nothing of this body may follow.
      if (this.#clientGone() || this.#code !== undefined || res.headersSent) {
        hold.destroy()
        return
      }
      if (whole !== undefined) {
        headers['content-length'] = String(whole.length)
        res.writeHead(status, headers)
        this.#bytesOut = whole.length
        res.end(whole)
        return
      }
      res.writeHead(status, headers)
      hold.on('data', (chunk: Buffer) => {
        this.#bytesOut += chunk.length
      })
      hold.pipe(res)
    })
    this.#responseStages = [...stages, hold]
    chain([upstreamBody, ...stages, hold], (err, origin) => {
      // A stage that failed with an error of its own (a bug, a stream misuse): the response fails
      // closed all the same, blamed on the gateway, not on the upstream.
      const ownFailure = !isEcluseError(err) && origin !== undefined && origin !== upstreamBody
      this.#abortResponse(route, res, ownFailure ? stageFailure('transform_failed', err) : err)
    })
  }

  /**
   * An upstream answer that is not a success, on a route that withholds error bodies: its status and
   * the fields that describe the answer (`retry-after`, `cache-control`, a route's additions) cross;
   * its body, and every field that describes that body, do not. An error page's stack trace, or a
   * validation message quoting a value the sidecar opened, stays on the trusted side. The gateway's
   * own body goes in its place, through no transform: it holds nothing to seal or to check. Only an
   * answer an Écluse gateway upstream wrote itself crosses, re-issued (`readGatewayAnswer`): the edge
   * in front of a sidecar passes on the sidecar's codes.
   */
  #answerWithheld(route: CompiledRoute, upstreamRes: UpstreamResponse, headers: Record<string, string | string[]>, noBody: boolean): void {
    const status = upstreamRes.statusCode
    const body = upstreamRes.body
    for (const name of Object.keys(headers)) if (describesTheBody(name)) delete headers[name]
    if (!this.#req.complete) headers['connection'] = 'close'
    const length = upstreamRes.headers['content-length']
    const declared = typeof length === 'string' ? Number(length) : Number.NaN
    // An Écluse gateway's own answer is short, JSON and of declared length: only such a body is read
    // before answering. Any other is drained after, if short and of declared length, or cut.
    const mayBeGatewayAnswer = !noBody && upstreamRes.headers['content-type'] === 'application/json' && declared <= MAX_GATEWAY_ANSWER_BYTES
    let sent = false
    const send = (answer: string | undefined): void => {
      if (sent) return
      sent = true
      // Another path may have answered meanwhile: the upload-rate guard's 408, an abort. A second
      // status line would throw out of this listener and take the process down with it.
      if (this.#code !== undefined || this.#res.headersSent || this.#clientGone()) {
        body.destroy()
        return
      }
      const bytes = Buffer.from(answer ?? withheldAnswerBody(status, this.#requestId))
      this.#proxy.log.debug(
        { reqId: this.#requestId, route: route.name, status },
        answer === undefined ? 'upstream answer body withheld (routes[].errorBodies)' : "upstream gateway's own answer re-issued (routes[].errorBodies)",
      )
      headers['content-type'] = 'application/json'
      headers['content-length'] = String(bytes.length)
      this.#res.writeHead(status, headers)
      if (noBody) {
        this.#res.end()
        return
      }
      this.#bytesOut = bytes.length
      this.#res.end(bytes)
    }
    // The upstream connection is the pool's again only once the body is over: a body that trickles
    // would hold it long after the sponsor had its answer (undici's body timeout is an idle timer).
    const deadline = setTimeout(() => {
      send(undefined)
      body.destroy()
    }, WITHHELD_READ_MS)
    deadline.unref()
    // Reset in the same read as the head: it errs and closes before anyone listens.
    if (body.destroyed) {
      clearTimeout(deadline)
      send(undefined)
      return
    }
    body.once('close', () => clearTimeout(deadline))
    if (!mayBeGatewayAnswer) {
      // A HEAD's body is empty, whatever length it declares for its GET's.
      if (noBody || declared <= WITHHELD_DRAIN_BYTES) body.resume()
      else body.destroy()
      send(undefined)
      return
    }
    const chunks: Buffer[] = []
    body.on('data', (chunk: Buffer) => chunks.push(chunk))
    body.once('end', () => send(readGatewayAnswer(Buffer.concat(chunks), status, this.#requestId)))
    // Cut short: what it was does not matter, none of it crosses.
    body.once('error', () => send(undefined))
  }

  /**
   * Fail closed. Before the status line (a transform holds the head until its first byte), nothing
   * of the response has crossed: the sponsor gets a clean 502 with the code. After it, the only safe
   * signal left is an abort.
   */
  #abortResponse(route: CompiledRoute, res: ServerResponse, err: Error): void {
    if (this.#aborted || this.#code !== undefined) return
    // The request's own body failed (over its limit, refused by a request step) after the upstream
    // had begun answering: undici ends that answer with the body's error. The refusal is the
    // request's, with its own code and count (found by review: it was reported as the response's
    // `transform_failed`, or an abort, and `body_too_large` was not counted).
    if (!this.#clientGone() && this.#refusedForRequestBody()) return
    if (this.#abort.aborted || this.#clientGone()) {
      // The client went away mid-response: its close aborted the upstream call, whose body then
      // errs with "Request aborted". No fault of the upstream's to log or to blame.
      this.#aborted = true
      res.destroy()
      return
    }
    if (!res.headersSent) {
      this.#refuseWith(isEcluseError(err) ? asResponseRefusal(err) : upstreamBodyError(route.upstream, err), 'upstream_bad_response')
      return
    }
    this.#aborted = true
    this.#code = upstreamBodyError(route.upstream, err).code
    this.#proxy.log.warn({ reqId: this.#requestId, route: route.name, code: this.#code, err: safeDetail(err) }, 'response aborted mid-stream')
    res.destroy()
  }

  /** The client closed, or the listener already answered on the socket (a late parser error). */
  #clientGone(): boolean {
    const socket = this.#res.socket
    return this.#res.destroyed || socket === null || !socket.writable
  }

  #onUpstreamError(err: unknown): void {
    // Answered already (a body too slow, refused while the upstream call was in flight).
    if (this.#res.writableEnded) return
    if (this.#clientGone() || (this.#abort.aborted && this.#requestBodyError === undefined)) {
      // The client went away first; nothing left to tell it.
      this.#aborted = true
      return
    }
    // Upstream failures are counted by the pool itself (its onError hook), not here. A stage of the
    // request body that refused it is the cause; any other body error is undici destroying the body
    // with the raw upstream error, which `err` classifies.
    if (this.#refusedForRequestBody()) return
    this.#refuseWith(err, 'upstream_bad_response')
  }

  /**
   * Refuses the request for its own body's failure, if that is what failed: a stage that refused it
   * (an EcluseError: too large, a transform), or a stage's own failure (a bug), not the upstream's.
   */
  #refusedForRequestBody(): boolean {
    const bodyError = this.#requestBodyError
    if (isEcluseError(bodyError)) {
      this.#refuseWith(bodyError, 'request_transform_failed')
      return true
    }
    if (bodyError instanceof Error && this.#requestStageFailed) {
      this.#refuseWith(stageFailure('request_transform_failed', bodyError), 'request_transform_failed')
      return true
    }
    return false
  }

  #refuseWith(err: unknown, fallback: ErrorCode): void {
    if (isEcluseError(err)) {
      this.#refuse(err.code, err.message)
      return
    }
    this.#refuse(fallback, safeDetail(err))
    return
  }

  /** An upstream answer that cannot be relayed safely: none of its body crosses, and it is counted. */
  #refuseUpstreamResponse(body: { destroy(): void }, route: CompiledRoute, detail: string): void {
    body.destroy()
    this.#proxy.metrics.upstreamError(route.upstream, 'upstream_bad_response')
    this.#refuse('upstream_bad_response', detail)
  }

  /** Terse error to the client, detail to the log; the connection closes if a body was left unread. */
  #refuse(code: ErrorCode, detail: string): void {
    const res = this.#res
    this.#code = code
    this.#proxy.log.info({ reqId: this.#requestId, route: this.#route?.name, code, detail }, 'request refused')
    // The refusals for a request's shape or the gateway's state (the HTTP parser's own are counted
    // by the listener): its framing or Host, a body over its route's limit, a request while draining.
    if (REJECTED_REQUEST_CODES.has(code)) this.#proxy.metrics.requestRejected(code)
    if (res.headersSent || this.#clientGone()) {
      this.#aborted = true
      res.destroy()
      return
    }
    const status = new EcluseError(code).status
    const body = publicErrorBody(code, this.#requestId)
    // Only a body still on the wire ends the connection (it would be read as the next request, or
    // read whole for nothing). A request without one is not `complete` yet while it is being
    // handled (Node sets that after the 'request' event), and its connection goes on.
    const bodyPending = bodyOnTheWire(this.#req) && !this.#req.complete
    res.writeHead(status, {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(body),
      ...(bodyPending || code === 'shutting_down' ? { connection: 'close' } : {}),
    })
    res.end(body)
  }

  bodyBytesReceived(): number {
    // Body bytes only (no chunk framing): those passed on, and those the parser holds.
    return this.#bodyBytes + this.#req.readableLength
  }

  bodyHeldBack(): boolean {
    const req = this.#req
    return req.isPaused() || req.readableLength >= req.readableHighWaterMark
  }

  bodyDone(): boolean {
    return this.#req.complete || this.#req.destroyed || this.#res.writableEnded
  }

  /**
   * The body came slower than `sponsor.limits.minBodyBytesPerSecond`: refused, its upstream call
   * ended. An answer the upstream began while the body was still coming is cut (the slow body held
   * the upstream connection all the same).
   */
  tooSlow(bytesPerSecond: number): void {
    this.#proxy.metrics.requestRejected('request_timeout')
    this.#refuse('request_timeout', `request body slower than ${bytesPerSecond} bytes/s (sponsor.limits.minBodyBytesPerSecond)`)
    this.#abort.abort()
  }

  #finish(): void {
    this.#proxy.uploads.release(this)
    const res = this.#res
    const route = this.#route?.name ?? 'unmatched'
    const durationMs = performance.now() - this.#started
    const aborted = this.#aborted || !res.writableFinished
    const metrics = this.#proxy.metrics
    // A routed request was counted when it matched; one refused before that (path, framing, no
    // route, draining, an expired certificate) is counted here, as its response is.
    if (this.#route === undefined) metrics.requestReceived(route)
    metrics.sponsorResponse(route, aborted ? 'aborted' : statusClass(res.statusCode))
    metrics.requestDuration(route, durationMs / 1000)
    const bytesIn = this.#requestBody?.bytes ?? this.#bodyBytes
    metrics.bodyBytes(route, 'request', bytesIn)
    metrics.bodyBytes(route, 'response', this.#bytesOut)
    if (!aborted || this.#principal !== undefined) {
      // Built from an allow-list (src/observability/logger.ts): nothing else about the request is copied.
      writeAccessLog(this.#proxy.log, {
        reqId: this.#requestId,
        route,
        principal: this.#principal,
        method: this.#req.method,
        status: aborted ? 0 : res.statusCode,
        aborted,
        bytesIn,
        bytesOut: this.#bytesOut,
        durationMs,
        upstreamMs: this.#upstreamMs,
        code: this.#code,
      })
    }
    this.#proxy.exchangeDone(this.#state)
  }
}

/**
 * What the log says of a failure: our own errors' messages and those of the upstream connection
 * (socket, TLS, undici: constant texts), but of any other error only its name and code, since its
 * message may quote the body it choked on.
 */
function safeDetail(err: unknown): string {
  if (isEcluseError(err) || (err instanceof Error && recognizedUpstreamError(err) !== undefined)) return (err as Error).message
  return foreignErrorDetail(err)
}

/** A stage that failed with an error of its own (not an `EcluseError`): the gateway's fault. */
function stageFailure(code: 'transform_failed' | 'request_transform_failed', err: Error): EcluseError {
  // No `cause`: pino's error serializer writes out the messages of the whole cause chain.
  return new EcluseError(code, `a ${code === 'transform_failed' ? 'response' : 'request'} stage failed: ${foreignErrorDetail(err)}`)
}

/**
 * A response the gateway refuses is the upstream side's failure, never the sponsor's: a refusal
 * with a 4xx code (a transform that did not say `transform_failed` itself) is reported as
 * `transform_failed`, its own code kept in the log detail.
 */
function asResponseRefusal(err: EcluseError): EcluseError {
  if (err.status >= 500) return err
  return new EcluseError('transform_failed', `${err.code}: ${err.message}`, { cause: err })
}
