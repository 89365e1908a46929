/**
 * The terminal stage: one undici `Pool` per configured upstream, over mutual TLS to the trusted side.
 *
 * - Trust: the upstream's certificate must chain to the configured trusted CA bundle only (the
 *   system roots are replaced, see tls.ts) and carry `serverName`, which is also the SNI. The name
 *   is pinned on every dispatch, so no request header (`Host`) can change what is verified.
 * - No retries: a plain `Pool` never replays a request, and this module does not wrap it in a
 *   `RetryAgent`. A POST that met a reset was sent at most once; the caller reports the failure.
 * - Streaming: request and response bodies are streams with undici's back-pressure; nothing is
 *   buffered here.
 * - Bounded queue: at most `connections` requests are handed to undici at once; the others wait
 *   here, oldest first, for at most `connectTimeoutMs` (getting a connection includes waiting for a
 *   free one), then fail `upstream_unavailable`. undici's own queue has no deadline: a request
 *   waiting in it was outside every upstream timer, and the sponsor's idle timeout cut it instead.
 * - Rotation: `reload()` swaps in a new pool atomically; the old one drains (`close()`), so no
 *   in-flight request fails and no TLS session of the old certificate is resumed.
 */
import { EventEmitter } from 'node:events'
import { IncomingMessage } from 'node:http'
import type { Readable } from 'node:stream'
import type { SecureContext } from 'node:tls'
import { Client, type Dispatcher, errors, Pool } from 'undici'
import type { UpstreamConfig } from '../config/schema.js'
import { EcluseError, isEcluseError } from '../errors.js'
import { classifyUpstreamError, isAbortError, isUpstreamParserError, recognizedUpstreamError, toUpstreamError, type UpstreamErrorCode, upstreamBodyError } from './classify.js'
import { buildClientSecureContext, type ClientTlsMaterial } from './tls.js'

export {
  classifyUpstreamError,
  isAbortError,
  toUpstreamError,
  type UpstreamErrorCode,
  upstreamBodyError,
} from './classify.js'
export type { ClientTlsMaterial } from './tls.js'

/** One request to the upstream. `path` includes the query string. */
export interface UpstreamRequest {
  method: string
  path: string
  headers: Record<string, string | string[]>
  /** Streamed with back-pressure, or a whole body sent at once with its length; `null` for no body. */
  body: Readable | Buffer | null
  /** Aborting it aborts the request or, after the headers, destroys the response body. */
  signal: AbortSignal | UpstreamAbort
  /**
   * Once the upstream has answered, keeps the request's place in the pool (`connections`) until
   * `release`, called once, as well as until its body closed: the caller calls it when its own
   * answer has been handed on (see `ProxyExchange`). Without it, the place goes with the body.
   */
  holdUntil?: (release: () => void) => void
}

/**
 * The abort handle of one proxied request: an EventEmitter, which undici accepts as a signal. An
 * `AbortController` per request costs an EventTarget listener and, when aborted, a DOMException with
 * a stack trace; the gateway only ever needs "abort now".
 */
export class UpstreamAbort extends EventEmitter {
  aborted = false
  /** What undici rejects the request with when it hears 'abort' (its `signal.reason`). */
  reason: Error | undefined

  abort(): void {
    if (this.aborted) return
    this.aborted = true
    this.emit('abort')
  }

  /**
   * Ends the request with `err`, the upstream's failure, not the caller's abort: undici rejects it
   * with `err` (`signal.reason`) and destroys its connection; `aborted` stays false.
   */
  fail(err: Error): void {
    if (this.aborted || this.reason !== undefined) return
    this.reason = err
    this.emit('abort')
  }
}

/**
 * The upstream's answer once its header block has arrived.
 *
 * `body` is undici's readable, read with back-pressure. **An `error` event on `body` always means the
 * response is incomplete** (reset mid-body, body timeout, Content-Length mismatch): the caller must
 * treat it as an abort — destroy its own response, never end it as if complete. Classify the error
 * with `upstreamBodyError()`. A caller that does not want the body must still `destroy()` or consume
 * it, or the connection stays busy until `bodyTimeoutMs`.
 */
export interface UpstreamResponse {
  statusCode: number
  headers: Record<string, string | string[] | undefined>
  body: Readable
  /**
   * When the request was in the upstream's hands (`performance.now()`): its streamed body ended, or,
   * for a body sent whole or none, when the pool let it go to undici. The upstream's own time to an
   * answer runs from here; an answer that came before the body ended runs from the latter.
   */
  sentAt: number
}

/** Readiness answer: `ok` once TLS succeeded and any HTTP status came back. */
export interface ProbeResult {
  ok: boolean
  /** `HTTP <status>` or `<code>: <reason>`; operator-facing (admin listener), never sent to a client. */
  detail: string
}

export interface UpstreamPoolOptions {
  /**
   * Called once per upstream failure with its code and the error undici raised (metrics: a TLS
   * failure's reason is in the error). Not called for aborts by the caller's signal, for errors that
   * a request body stage raised itself, nor for probes. `underBody`: the failure came after the
   * answer had begun (its body), so it is not a handshake's.
   */
  onError?: (code: UpstreamErrorCode, err: unknown, underBody: boolean) => void
  /** Called when a request is sent once more after its connection closed before any answer (`#mayRetry`). */
  onRetry?: (err: unknown) => void
  /**
   * Called once per request with its wait for a free connection (`connections`), in seconds: 0 when
   * one was free, else until one came, or until the wait was refused (`connectTimeoutMs`) or aborted.
   */
  onWait?: (seconds: number) => void
  /** Deadline of one readiness probe, connect included. Default 2000 ms. */
  probeTimeoutMs?: number
}

/**
 * The safe methods (RFC 9110 §9.2.1; routes allow no TRACE): sent again, they ask for nothing more.
 * PUT and DELETE are idempotent too, but a second one after a first that was processed answers
 * otherwise (a DELETE's 404), and every request that changes state is sent at most once.
 */
const RESENDABLE_METHODS: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS'])

/**
 * Response-body error codes that only the upstream connection produces: undici's own, and the
 * socket's or TLS layer's error, with which undici destroys the body when the socket fails before it
 * ends (client-h1 `errorRequest`; `ERR_SSL_*` too, see `#bodyFailed`). A stage downstream that fails
 * destroys the body with its own error, which carries none of these.
 */
const UPSTREAM_SIDE_BODY_CODES: ReadonlySet<string> = new Set([
  'UND_ERR_SOCKET',
  'UND_ERR_BODY_TIMEOUT',
  'UND_ERR_RES_CONTENT_LENGTH_MISMATCH',
  'UND_ERR_RES_EXCEEDED_MAX_SIZE',
  'ECONNRESET',
  'ECONNABORTED',
  'ENETRESET',
  'EPIPE',
  'ETIMEDOUT',
  'EPROTO',
])

/** undici's own refusal of a request we built (bad header, unsupported method): a gateway bug. */
const CALLER_BUG_CODES: ReadonlySet<string> = new Set(['UND_ERR_INVALID_ARG', 'UND_ERR_NOT_SUPPORTED'])

/** How long a readiness probe of an upstream may take, connection included, before it says `upstream_timeout`. */
export const DEFAULT_PROBE_TIMEOUT_MS = 2_000
/** undici's default; restated because the header block of an upstream answer must stay bounded. */
const MAX_RESPONSE_HEADER_BYTES = 16 * 1024

function ignore(): void {}

/** One request waiting for a free connection; exactly one of the two is called, once. */
interface ConnectionWait {
  admit(): void
  refuse(err: unknown): void
}

/**
 * Destroys a request body that will not be sent, as undici's `util.destroy` does: a server request
 * is detached from its socket first, so that the refusal can still be written on it.
 */
/** The body as a stream, or null for none or a whole buffer. */
function streamOf(body: Readable | Buffer | null): Readable | null {
  return body === null || Buffer.isBuffer(body) ? null : body
}

/**
 * The deadline of a request's informational answers. undici restarts its headers timer at every 1xx,
 * so an upstream that sends `102 Processing` more often than `headersTimeoutMs` would hold the
 * request, and its connection, until the sponsor's idle timeout cut it without an answer. At the
 * first 1xx, a timer is armed for `headersTimeoutMs` after the request was sent: its streamed body
 * ended, or for a whole body the call plus `connectTimeoutMs` (the most a connection may take, even
 * on a kept-alive one: undici does not say when it wrote the request; the deadline is then never
 * earlier than undici's own, and within the sponsor's idle timeout, which must exceed the two,
 * unless the request waited for a free connection first). It fails the request as undici's own
 * headers timeout does (`upstream_timeout`, the connection destroyed). `clear()` once the final
 * answer's headers came.
 */
class InformationalDeadline {
  readonly #signal: AbortSignal | UpstreamAbort
  readonly #headersTimeoutMs: number
  #sentBy: number | undefined
  /** When a streamed body ended; for a body sent whole or none, when the request went to undici. */
  #sentAt: number | undefined
  #timer: NodeJS.Timeout | undefined
  #cleared = false

  constructor(signal: AbortSignal | UpstreamAbort, body: Readable | Buffer | null, cfg: UpstreamConfig) {
    this.#signal = signal
    this.#headersTimeoutMs = cfg.headersTimeoutMs
    const stream = streamOf(body)
    if (stream === null) {
      this.#sentAt = performance.now()
      this.#sentBy = this.#sentAt + cfg.connectTimeoutMs
    } else {
      stream.once('end', () => {
        this.#sentAt = performance.now()
        this.#sentBy = this.#sentAt
      })
    }
  }

  /** See `UpstreamResponse.sentAt`; undefined while a streamed body has not ended. */
  get sentAt(): number | undefined {
    return this.#sentAt
  }

  /** undici's `onInfo`: arms the timer at the first 1xx after the request was sent, and enforces it. */
  readonly onInfo = (): void => {
    // Still uploading: the upload's own limits govern (an upstream may say 102 while it reads).
    if (this.#sentBy === undefined || this.#cleared) return
    const left = this.#sentBy + this.#headersTimeoutMs - performance.now()
    // Thrown here, undici destroys the connection and rejects the request with it.
    if (left <= 0) throw this.#error()
    this.#timer ??= setTimeout(() => {
      // An AbortSignal (not the gateway's own handle) cannot carry an error: the next 1xx throws.
      if (this.#signal instanceof UpstreamAbort) this.#signal.fail(this.#error())
    }, left)
  }

  clear(): void {
    this.#cleared = true
    clearTimeout(this.#timer)
  }

  #error(): Error {
    return new errors.HeadersTimeoutError(`informational answers (1xx) only, for more than ${this.#headersTimeoutMs} ms after the request was sent (headersTimeoutMs)`)
  }
}

function discardBody(body: Readable | Buffer | null, err: unknown): void {
  const stream = streamOf(body)
  if (stream === null || stream.destroyed) return
  if (stream instanceof IncomingMessage) (stream as { socket: unknown }).socket = null
  stream.destroy(err instanceof Error ? err : undefined)
}

function abortedWhileWaiting(): Error {
  return new DOMException('the request was aborted while waiting for an upstream connection', 'AbortError')
}

function addAbortListener(signal: AbortSignal | UpstreamAbort, listener: () => void): void {
  if (signal instanceof UpstreamAbort) signal.once('abort', listener)
  else signal.addEventListener('abort', listener, { once: true })
}

function removeAbortListener(signal: AbortSignal | UpstreamAbort, listener: () => void): void {
  if (signal instanceof UpstreamAbort) signal.off('abort', listener)
  else signal.removeEventListener('abort', listener)
}

function errorCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code
  return typeof code === 'string' ? code : undefined
}

/**
 * The client side of one trusted upstream.
 *
 * @example
 * const pool = new UpstreamPool('accreditation', cfg.upstreams.accreditation, material, {
 *   onError: (code) => metrics.upstreamError('accreditation', code),
 * })
 * const res = await pool.request({ method: 'POST', path: '/v1/x', headers, body, signal })
 * pipeline(res.body, sponsorRes, (err) => { if (err) sponsorRes.destroy() })
 */
export class UpstreamPool {
  /** The upstream's name in the configuration (for logs and metrics). */
  readonly name: string
  readonly #cfg: UpstreamConfig
  readonly #origin: string
  readonly #onError: ((code: UpstreamErrorCode, err: unknown, underBody: boolean) => void) | undefined
  readonly #onRetry: ((err: unknown) => void) | undefined
  readonly #onWait: ((seconds: number) => void) | undefined
  readonly #probeTimeoutMs: number
  #secureContext: SecureContext
  #pool: Pool
  /** Pools replaced by `reload()` that are still draining, with their `close()` promise. */
  readonly #retiring = new Map<Pool, Promise<void>>()
  #closing: Promise<void> | undefined
  #closed = false
  /** Requests handed to undici and not finished yet (their response body closed, or they failed). */
  #busy = 0
  /** Requests waiting for one of the `connections` to be free, oldest first. */
  readonly #waiting: ConnectionWait[] = []

  /**
   * @throws EcluseError `tls_material_invalid` when the PEM material does not load.
   */
  constructor(name: string, cfg: UpstreamConfig, tls: ClientTlsMaterial, options: UpstreamPoolOptions = {}) {
    this.name = name
    this.#cfg = cfg
    // The schema guarantees `https://host[:port]/` with nothing else; undici wants the bare origin.
    this.#origin = new URL(cfg.url).origin
    this.#onError = options.onError
    this.#onRetry = options.onRetry
    this.#onWait = options.onWait
    this.#probeTimeoutMs = options.probeTimeoutMs ?? DEFAULT_PROBE_TIMEOUT_MS
    this.#secureContext = buildClientSecureContext(name, tls, cfg.tls.minVersion)
    this.#pool = this.#buildPool(this.#secureContext)
  }

  /**
   * Sends one request, streaming `body`, and resolves once the response header block arrived.
   *
   * @throws EcluseError with an `upstream_*` code (original error as `cause`); an `EcluseError`
   *   raised by the request body stream itself passes through unchanged; an abort by `signal` is
   *   rethrown as is (the caller knows it aborted).
   */
  async request(opts: UpstreamRequest): Promise<UpstreamResponse> {
    const called = performance.now()
    // A closed pool goes straight to undici, which refuses it.
    if ((this.#busy < this.#cfg.connections && this.#waiting.length === 0) || this.#closed) this.#busy++
    else {
      try {
        await this.#waitForConnection(opts.signal, opts.body)
      } catch (err) {
        // A wait that ended without a connection is the longest kind: it counts too.
        this.#onWait?.((performance.now() - called) / 1000)
        // undici never got the body, so it will not destroy it as it does on its own failures: a
        // body stage (a sealer holding a key and plaintext) would wait for the garbage collector.
        discardBody(opts.body, err)
        throw err
      }
    }
    let data: Dispatcher.ResponseData
    const admitted = performance.now()
    this.#onWait?.((admitted - called) / 1000)
    let deadline = new InformationalDeadline(opts.signal, opts.body, this.#cfg)
    try {
      try {
        data = await this.#send(opts, deadline)
      } catch (err) {
        if (!this.#mayRetry(opts, err)) throw err
        // The connection closed before any answer: on a kept-alive one, most often the upstream
        // closing it as idle (or draining) just as the request went out, a race RFC 9112 §9.3.1 lets
        // a client end by sending an idempotent request again; a safe one, once, on another connection.
        this.#onRetry?.(err)
        deadline.clear()
        deadline = new InformationalDeadline(opts.signal, opts.body, this.#cfg)
        data = await this.#send(opts, deadline)
      }
    } catch (err) {
      this.#release()
      throw this.#requestFailed(err, opts.signal, opts.body)
    } finally {
      deadline.clear()
    }
    // Always one listener: a caller that discards the body with `destroy()` makes undici emit
    // RequestAbortedError, which would otherwise be an uncaught exception. Bound once, no closure.
    data.body.on('error', this.#bodyFailed)
    // The connection is undici's again once the body has ended or been destroyed (a body nobody
    // reads is destroyed by undici's body timeout), and 'close' follows either, once. The place in
    // the pool goes then, or once the caller's hold ends too, whichever is later.
    if (opts.holdUntil === undefined) data.body.once('close', this.#release)
    else {
      let holds = 2
      const releaseOne = () => {
        if (--holds === 0) this.#release()
      }
      data.body.once('close', releaseOne)
      let released = false
      opts.holdUntil(() => {
        if (released) return
        released = true
        releaseOne()
      })
    }
    return { statusCode: data.statusCode, headers: data.headers, body: data.body, sentAt: deadline.sentAt ?? admitted }
  }

  #send(opts: UpstreamRequest, deadline: InformationalDeadline): Promise<Dispatcher.ResponseData> {
    return this.#pool.request({
      path: opts.path,
      method: opts.method as Dispatcher.HttpMethod,
      // undici writes the URL's host[:port] unless a `host` header is given; the sponsor's own
      // Host never gets this far (src/proxy/headers.ts).
      headers: this.#cfg.host === undefined ? opts.headers : { ...opts.headers, host: this.#cfg.host },
      body: opts.body,
      signal: opts.signal,
      onInfo: deadline.onInfo,
      // Pinned per request: undici would otherwise derive SNI and the verified name from a `Host`
      // header when one is present (lib/core/request.js `getServerName(this.host)`).
      servername: this.#cfg.serverName,
    } as Dispatcher.RequestOptions)
  }

  /**
   * Whether a request that failed before any answer is sent once more: a safe method
   * (`RESENDABLE_METHODS`) without a body (a streamed body is spent, and a sealed one must not be
   * sealed twice), a connection closed or reset under it (not a timeout: a slow upstream would get
   * the load twice), and the gateway not closing or aborting it.
   */
  #mayRetry(opts: UpstreamRequest, err: unknown): boolean {
    if (opts.body !== null || opts.signal.aborted || this.#closed || !RESENDABLE_METHODS.has(opts.method)) return false
    if (isEcluseError(err)) return false
    return classifyUpstreamError(err) === 'upstream_reset'
  }

  /**
   * Readiness: `GET healthPath` on a fresh connection (so the TLS handshake is exercised with the
   * current material rather than a kept-alive socket), bounded by `probeTimeoutMs`. Any HTTP status
   * counts as reachable. Never throws.
   */
  async probe(): Promise<ProbeResult> {
    if (this.#closed) return { ok: false, detail: 'upstream_unavailable: pool closed' }
    const timeout = this.#probeTimeoutMs
    const client = new Client(this.#origin, {
      connect: this.#connectOptions(this.#secureContext, Math.min(timeout, this.#cfg.connectTimeoutMs)),
      headersTimeout: timeout,
      bodyTimeout: timeout,
      pipelining: 1,
      maxHeaderSize: MAX_RESPONSE_HEADER_BYTES,
    })
    const deadline = AbortSignal.timeout(timeout)
    try {
      const data = await client.request({
        path: this.#cfg.healthPath,
        method: 'GET',
        headers: this.#cfg.host === undefined ? undefined : { host: this.#cfg.host },
        signal: deadline,
        servername: this.#cfg.serverName,
      } as Dispatcher.RequestOptions)
      data.body.on('error', ignore)
      data.body.destroy()
      return { ok: true, detail: `HTTP ${data.statusCode}` }
    } catch (err) {
      const code = deadline.aborted ? 'upstream_timeout' : classifyUpstreamError(err)
      // A Node server (an Écluse sidecar among them) refuses a client certificate by closing the
      // connection after the handshake, with no alert: on a fresh connection, say so in the log.
      const hint = code === 'upstream_reset' ? ' (closed on a fresh connection: an upstream that refuses the gateway client certificate without a TLS alert closes it this way)' : ''
      return { ok: false, detail: `${code}: ${err instanceof Error ? err.message : String(err)}${hint}` }
    } finally {
      await client.destroy().catch(ignore)
    }
  }

  /**
   * Certificate rotation: a new pool with `tls` takes every request from now on; the old pool
   * finishes what it carries (`close()`), then goes away. If `tls` does not load, this throws and
   * the current pool keeps serving (fail closed, keep the old certificate).
   *
   * @throws EcluseError `tls_material_invalid`; `upstream_unavailable` after `close()`/`destroy()`.
   */
  reload(tls: ClientTlsMaterial): void {
    this.reloadWith(this.secureContextFor(tls))
  }

  /** The context `reload(tls)` would use, built without changing anything (to prepare a reload). */
  secureContextFor(tls: ClientTlsMaterial): SecureContext {
    return buildClientSecureContext(this.name, tls, this.#cfg.tls.minVersion)
  }

  /** `reload` with a context already built by `secureContextFor`. */
  reloadWith(secureContext: SecureContext): void {
    if (this.#closed) throw new EcluseError('upstream_unavailable', `upstream ${this.name}: reload after close`)
    const next = this.#buildPool(secureContext)
    const previous = this.#pool
    // One synchronous swap: every request dispatched before this line is on `previous`, every later
    // one on `next`.
    this.#pool = next
    this.#secureContext = secureContext
    const drained = previous
      .close()
      .catch(ignore)
      .then(() => {
        this.#retiring.delete(previous)
      })
    this.#retiring.set(previous, drained)
  }

  /** Graceful: refuses new requests (`upstream_unavailable`), lets in-flight ones finish. Idempotent. */
  close(): Promise<void> {
    this.#closed = true
    this.#refuseWaiting()
    this.#closing ??= Promise.all([this.#pool.close().catch(ignore), ...this.#retiring.values()]).then(ignore)
    return this.#closing
  }

  /** Immediate: aborts in-flight requests and closes every connection. */
  async destroy(): Promise<void> {
    this.#closed = true
    this.#refuseWaiting()
    await Promise.all([this.#pool, ...this.#retiring.keys()].map((pool) => pool.destroy().catch(ignore)))
  }

  /** Requests waiting for a free connection now (for tests and the log). */
  get waiting(): number {
    return this.#waiting.length
  }

  /**
   * Waits, oldest first, until a finishing request hands over its connection; resolves holding it.
   * @throws EcluseError `upstream_unavailable` after `connectTimeoutMs` or when the pool closes; an
   *   abort by `signal` rejects with an AbortError (the caller knows it aborted, nothing is counted);
   *   a streamed body that fails meanwhile rejects with its error (a refusal: nothing is counted).
   */
  #waitForConnection(signal: AbortSignal | UpstreamAbort, body: Readable | Buffer | null): Promise<void> {
    if (signal.aborted) return Promise.reject(abortedWhileWaiting())
    // A body refused while it waits (over its route's limit, a transform's refusal) ends the wait:
    // the answer is the refusal, now, not a 503 once connectTimeoutMs has passed.
    const stream = streamOf(body)
    if (stream?.errored) return Promise.reject(stream.errored)
    return new Promise<void>((resolve, reject) => {
      const wait: ConnectionWait = {
        admit: () => {
          settle()
          resolve()
        },
        refuse: (err) => {
          settle()
          reject(err)
        },
      }
      const timer = setTimeout(() => {
        this.#dequeue(wait)
        const err = new EcluseError(
          'upstream_unavailable',
          `upstream ${this.name}: all ${this.#cfg.connections} connections stayed busy for ${this.#cfg.connectTimeoutMs} ms (connectTimeoutMs)`,
        )
        this.#onError?.('upstream_unavailable', err, false)
        wait.refuse(err)
      }, this.#cfg.connectTimeoutMs)
      const onAbort = (): void => {
        this.#dequeue(wait)
        wait.refuse(abortedWhileWaiting())
      }
      const onBodyError = (err: Error): void => {
        this.#dequeue(wait)
        wait.refuse(err)
      }
      const settle = (): void => {
        clearTimeout(timer)
        removeAbortListener(signal, onAbort)
        stream?.off('error', onBodyError)
      }
      addAbortListener(signal, onAbort)
      stream?.once('error', onBodyError)
      this.#waiting.push(wait)
    })
  }

  #dequeue(wait: ConnectionWait): void {
    const at = this.#waiting.indexOf(wait)
    if (at !== -1) this.#waiting.splice(at, 1)
  }

  /** A request is done with its connection: the oldest waiting request takes it over, if any. */
  readonly #release = (): void => {
    const next = this.#waiting.shift()
    if (next === undefined) this.#busy--
    else next.admit()
  }

  #refuseWaiting(): void {
    for (const wait of this.#waiting.splice(0)) {
      wait.refuse(new EcluseError('upstream_unavailable', `upstream ${this.name}: pool closed while waiting for a connection`))
    }
  }

  #buildPool(secureContext: SecureContext): Pool {
    const cfg = this.#cfg
    return new Pool(this.#origin, {
      connect: this.#connectOptions(secureContext, cfg.connectTimeoutMs),
      connections: cfg.connections,
      // One request per connection at a time: no request waits behind another on a connection. (An
      // upstream that sends more than its answer's length can still desync a kept-alive one:
      // docs/security-model.md, "Not covered".)
      pipelining: 1,
      allowH2: false,
      headersTimeout: cfg.headersTimeoutMs,
      bodyTimeout: cfg.bodyTimeoutMs,
      keepAliveTimeout: cfg.keepAliveTimeoutMs,
      // An upstream `Keep-Alive: timeout=` hint may shorten the idle time, never stretch it past ours.
      keepAliveMaxTimeout: cfg.keepAliveTimeoutMs,
      maxHeaderSize: MAX_RESPONSE_HEADER_BYTES,
      strictContentLength: true,
    })
  }

  #connectOptions(secureContext: SecureContext, timeout: number): Pool.Options['connect'] {
    return {
      // ca, cert, key and minVersion live in the prebuilt context (tls.ts); tls.connect ignores
      // them when `secureContext` is given.
      secureContext,
      // Verify the chain against the trusted CA only and the name against `serverName`, not the URL
      // host: `https://127.0.0.1:8443` with a DNS-named certificate works, and SNI carries the name.
      servername: this.#cfg.serverName,
      rejectUnauthorized: true,
      // undici forces this itself when allowH2 is false; stated so the intent survives a refactor.
      ALPNProtocols: ['http/1.1'],
      // Covers TCP connect and the TLS handshake: undici clears it on 'secureConnect'.
      timeout,
      // No TLS session resumption: a resumed session skips verifying the upstream's chain, and a TLS
      // 1.3 upstream hands out a fresh ticket at each resumption, so an upstream certificate (or CA)
      // that expired would never be checked again. Connections are kept alive: a full handshake per
      // new connection costs little.
      maxCachedSessions: 0,
    } as Pool.Options['connect']
  }

  #requestFailed(err: unknown, signal: AbortSignal | UpstreamAbort, body: Readable | Buffer | null): unknown {
    // Our own abort (the sponsor went away): the caller knows, nothing to classify or count.
    if (signal.aborted) return err
    // A request body stage refused the body (body_too_large, request_transform_failed…), or failed
    // with an error of its own (a bug in a stage): undici rejects with the body's error, which is
    // the gateway's, not the upstream's, to report. (When the upstream fails, undici destroys the
    // body with the upstream's error, which carries its mark.)
    if (isEcluseError(err) || (streamOf(body)?.errored === err && recognizedUpstreamError(err) === undefined)) {
      return err
    }
    const code = errorCode(err)
    if (code !== undefined && CALLER_BUG_CODES.has(code)) {
      return new EcluseError('internal', `upstream ${this.name}: undici refused the request: ${(err as Error).message}`, {
        cause: err,
      })
    }
    const failure = toUpstreamError(this.name, err)
    this.#onError?.(failure.code as UpstreamErrorCode, err, false)
    return failure
  }

  /** Counts response-body failures that can only have come from the upstream connection. */
  readonly #bodyFailed = (err: unknown): void => {
    if (this.#onError === undefined || isAbortError(err)) return
    const code = errorCode(err)
    if (isUpstreamParserError(err) || (code !== undefined && (UPSTREAM_SIDE_BODY_CODES.has(code) || code.startsWith('HPE_') || code.startsWith('ERR_SSL_')))) {
      this.#onError(upstreamBodyError(this.name, err).code as UpstreamErrorCode, err, true)
    }
  }
}
