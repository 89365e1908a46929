/**
 * The admin listener: `GET /metrics`, `/healthz`, `/readyz` on plain HTTP, on its own address
 * (loopback unless the config says otherwise; `src/config/load.ts` enforces that at boot).
 *
 * It is bounded like everything else: a small header block, header and request deadlines, an idle
 * timeout, at most 64 connections, and no request body. Nothing it answers carries a secret: the
 * readiness checks are reduced to a status code per check, their free-text details go to the log.
 *
 * At the cap, a new connection takes the slot of the oldest one that has not sent a whole request
 * yet, rather than being refused: connections that say nothing could otherwise hold every slot
 * (each until its header deadline, opened again as it closes) and lock out the kubelet's probes,
 * which then restart the container. A probe sends its request as soon as it has connected, so it
 * is the youngest silent connection for the moment it is one.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import type { Logger } from 'pino'
import { isLoopbackHost } from '../config/load.js'
import { ERROR_CODES, type ErrorCode, publicErrorBody } from '../errors.js'
import { timeoutCheckInterval } from '../listener/sponsor.js'
import type { GatewayMetrics } from '../observability/metrics.js'

/** What the readiness provider reports. `checks` values are `'ok'` or a short failure code. */
export interface Readiness {
  readonly ready: boolean
  readonly checks: Readonly<Record<string, 'ok' | string>>
}

/** Options for {@link AdminServer}. */
export interface AdminServerOptions {
  readonly listen: { readonly host: string; readonly port: number }
  readonly metrics: GatewayMetrics
  /** Called per `/readyz` (concurrent probes share one call); should cache expensive checks. */
  readonly readiness: () => Readiness | Promise<Readiness>
  readonly log: Logger
  /** A readiness call slower than this answers 503 `readiness: timeout`. Default 3000 ms. */
  readonly readinessTimeoutMs?: number
}

/** Fixed limits: the admin API has three GET routes and no body, so these are deliberately small. */
export const ADMIN_LIMITS = {
  maxConnections: 64,
  maxHeaderBytes: 8 * 1024,
  headersTimeoutMs: 5_000,
  requestTimeoutMs: 10_000,
  keepAliveTimeoutMs: 5_000,
  idleTimeoutMs: 30_000,
} as const

const JSON_TYPE = 'application/json'
const HEALTHY = JSON.stringify({ status: 'ok' })
/** A check name shown on `/readyz` (e.g. `certificates`, `upstream:accreditation`): room for `upstream:` and a 63-character name. */
const CHECK_NAME = /^[A-Za-z0-9_.:-]{1,80}$/
/** The leading code of a check value (`upstream_tls: unable to verify…` → `upstream_tls`). */
const CHECK_CODE = /^[a-z][a-z0-9_]{0,63}(?![a-z0-9_])/
const MAX_CHECKS = 64

/**
 * The admin HTTP server.
 *
 * @example
 * const admin = new AdminServer({ listen: { host: '127.0.0.1', port: 9090 }, metrics, readiness, log })
 * const { port } = await admin.listen()
 * // … later
 * await admin.close()
 */
export class AdminServer {
  /** The underlying node:http server (for tests and for `address()`). */
  readonly server: Server
  readonly #opts: AdminServerOptions
  readonly #metrics: GatewayMetrics
  readonly #log: Logger
  readonly #readinessTimeoutMs: number
  /** Bound to loopback: only a `Host` naming loopback is answered (see `#route`). */
  readonly #loopbackOnly: boolean
  #pendingReadiness: Promise<Readiness> | undefined
  /** Open connections in the order they came; `true` once one has sent a whole request. */
  readonly #connections = new Map<Socket, boolean>()

  constructor(opts: AdminServerOptions) {
    this.#opts = opts
    this.#metrics = opts.metrics
    this.#log = opts.log
    this.#readinessTimeoutMs = opts.readinessTimeoutMs ?? 3_000
    this.#loopbackOnly = isLoopbackHost(opts.listen.host)
    this.server = createServer({
      maxHeaderSize: ADMIN_LIMITS.maxHeaderBytes,
      headersTimeout: ADMIN_LIMITS.headersTimeoutMs,
      requestTimeout: ADMIN_LIMITS.requestTimeoutMs,
      // Enforced only as often as Node checks (30 s by default): see the sponsor listener.
      connectionsCheckingInterval: timeoutCheckInterval(ADMIN_LIMITS.headersTimeoutMs, ADMIN_LIMITS.requestTimeoutMs),
      keepAliveTimeout: ADMIN_LIMITS.keepAliveTimeoutMs,
      noDelay: true,
    })
    // No 'timeout' listener: Node destroys a socket idle this long.
    this.server.setTimeout(ADMIN_LIMITS.idleTimeoutMs)
    this.server.on('connection', this.#onConnection)
    this.server.on('clientError', this.#onClientError)
    this.server.on('request', this.#onRequest)
  }

  /** Start listening; resolves with the bound port (useful with port 0). */
  listen(): Promise<{ port: number }> {
    const { host, port } = this.#opts.listen
    return new Promise((resolve, reject) => {
      const onError = (err: Error) => reject(err)
      this.server.once('error', onError)
      this.server.listen(port, host, () => {
        this.server.off('error', onError)
        const addr = this.server.address()
        resolve({ port: typeof addr === 'object' && addr !== null ? addr.port : port })
      })
    })
  }

  /** Stop listening and drop every connection (a scrape in flight is cut; Prometheus retries). */
  close(): Promise<void> {
    return new Promise((resolve) => {
      if (!this.server.listening) {
        this.server.closeAllConnections()
        resolve()
        return
      }
      this.server.close(() => resolve())
      this.server.closeAllConnections()
    })
  }

  // ---- connections ---------------------------------------------------------------------------

  readonly #onConnection = (socket: Socket): void => {
    this.#metrics.connectionOpened('admin')
    socket.once('close', () => {
      this.#connections.delete(socket)
      this.#metrics.connectionClosed('admin')
    })
    if (this.#connections.size >= ADMIN_LIMITS.maxConnections) {
      // The oldest that has not asked anything yet gives its slot; if every one is being answered,
      // the newcomer goes (each answer closes its connection, so one frees soon).
      let silent: Socket | undefined
      for (const [open, asked] of this.#connections) {
        if (!asked) {
          silent = open
          break
        }
      }
      if (silent === undefined) {
        socket.destroy()
        return
      }
      this.#connections.delete(silent)
      silent.destroy()
      this.#log.debug({ connections: ADMIN_LIMITS.maxConnections }, 'admin connections at the cap; closed the oldest that had sent no request')
    }
    this.#connections.set(socket, false)
  }

  /** Parser errors and header/request timeouts: a terse status, then close. */
  readonly #onClientError = (err: NodeJS.ErrnoException, socket: Socket): void => {
    const code: ErrorCode =
      err.code === 'HPE_HEADER_OVERFLOW'
        ? 'headers_too_large'
        : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' || err.code === 'ERR_HTTP_HEADERS_TIMEOUT'
          ? 'request_timeout'
          : 'bad_request'
    this.#log.debug({ code, parserError: err.code }, 'admin request refused by the HTTP parser')
    // A socket that already carries a response (or is gone) cannot take another one.
    if (socket.writable && (socket as Socket & { _httpMessage?: unknown })._httpMessage == null) {
      const body = publicErrorBody(code)
      const status = ERROR_CODES[code].status
      socket.end(
        `HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? 'Error'}\r\n` +
          `content-type: ${JSON_TYPE}\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
      )
    }
    socket.destroy()
  }

  // ---- requests ------------------------------------------------------------------------------

  readonly #onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    if (this.#connections.has(req.socket)) this.#connections.set(req.socket, true)
    this.#route(req, res).catch(this.#onHandlerError.bind(this, res))
  }

  async #route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    // No admin request takes a body, whatever its path or method: refuse one rather than read it,
    // and do not keep the socket (its unread bytes are no next request).
    const te = req.headers['transfer-encoding']
    const cl = req.headers['content-length']
    if (te !== undefined || (cl !== undefined && cl !== '0')) {
      res.setHeader('connection', 'close')
      return sendError(res, 'body_too_large')
    }
    // DNS rebinding: a web page in a browser on this host can point its own name at 127.0.0.1 and
    // read a loopback listener as same-origin. Its requests carry that name in `Host`; local tools
    // (curl, probes, a port-forward) send a loopback address or `localhost`.
    if (this.#loopbackOnly && !hostNamesLoopback(req.headers.host)) {
      this.#log.debug('admin request refused: its Host names no loopback address')
      return sendError(res, 'misdirected_request')
    }
    const url = req.url ?? ''
    const q = url.indexOf('?')
    const path = q === -1 ? url : url.slice(0, q)
    if (path !== '/metrics' && path !== '/healthz' && path !== '/readyz') {
      return sendError(res, 'route_not_found')
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('allow', 'GET, HEAD')
      return sendError(res, 'method_not_allowed')
    }
    if (path === '/metrics') return this.#sendMetrics(res)
    if (path === '/healthz') return send(res, 200, JSON_TYPE, HEALTHY)
    return this.#sendReadiness(res)
  }

  async #sendMetrics(res: ServerResponse): Promise<void> {
    const body = await this.#metrics.render()
    send(res, 200, this.#metrics.contentType, body)
  }

  async #sendReadiness(res: ServerResponse): Promise<void> {
    const readiness = await this.#readiness()
    const checks: Record<string, string> = {}
    let ready = readiness.ready === true
    // Every check is judged; the first MAX_CHECKS are shown, and how many more there were.
    const names = Object.keys(readiness.checks)
    for (const [index, name] of names.entries()) {
      const value = readiness.checks[name]
      const status = publicCheckStatus(value)
      if (status !== 'ok') ready = false
      if (!CHECK_NAME.test(name)) {
        if (index < MAX_CHECKS) checks['invalid_check_name'] = 'failing'
        ready = false
        continue
      }
      if (index >= MAX_CHECKS) continue
      checks[name] = status
      if (status !== 'ok') this.#log.debug({ check: name, detail: value }, 'readiness check failing')
    }
    const omittedChecks = Math.max(0, names.length - MAX_CHECKS)
    const body = { status: ready ? 'ready' : 'not_ready', checks, ...(omittedChecks > 0 ? { omittedChecks } : {}) }
    send(res, ready ? 200 : 503, JSON_TYPE, JSON.stringify(body))
  }

  /** One readiness call at a time, bounded by the timeout; a throw or timeout is "not ready". */
  #readiness(): Promise<Readiness> {
    if (this.#pendingReadiness !== undefined) return this.#pendingReadiness
    const pending = this.#callReadiness().finally(() => {
      this.#pendingReadiness = undefined
    })
    this.#pendingReadiness = pending
    return pending
  }

  async #callReadiness(): Promise<Readiness> {
    let timer: NodeJS.Timeout | undefined
    try {
      const timeout = new Promise<Readiness>((resolve) => {
        timer = setTimeout(resolve, this.#readinessTimeoutMs, TIMED_OUT)
        timer.unref()
      })
      const result = await Promise.race([Promise.resolve().then(this.#opts.readiness), timeout])
      if (result === TIMED_OUT) this.#log.warn({ timeoutMs: this.#readinessTimeoutMs }, 'readiness check timed out')
      return result
    } catch (err) {
      this.#log.error({ err }, 'readiness check threw')
      return THREW
    } finally {
      clearTimeout(timer)
    }
  }

  #onHandlerError(res: ServerResponse, err: unknown): void {
    this.#log.error({ err }, 'admin request failed')
    if (res.headersSent) {
      res.destroy()
      return
    }
    sendError(res, 'internal')
  }
}

const TIMED_OUT: Readiness = Object.freeze({ ready: false, checks: Object.freeze({ readiness: 'timeout' }) })
const THREW: Readiness = Object.freeze({ ready: false, checks: Object.freeze({ readiness: 'internal' }) })

/** Whether a `Host` value (`name`, `name:port`, `[v6]`, `[v6]:port`) names a loopback address. */
function hostNamesLoopback(host: string | undefined): boolean {
  if (host === undefined) return false
  const bracketed = /^\[([0-9A-Fa-f:.]+)\](?::\d{1,5})?$/.exec(host)
  if (bracketed !== null) return isLoopbackHost(bracketed[1]!)
  const named = /^([A-Za-z0-9.-]+)(?::\d{1,5})?$/.exec(host)
  return named !== null && isLoopbackHost(named[1]!)
}

const STATUS_TEXT: Readonly<Record<number, string>> = {
  400: 'Bad Request',
  408: 'Request Timeout',
  431: 'Request Header Fields Too Large',
}

/**
 * The public form of one check value: `ok`, else its leading code (`upstream_tls: unable to …` →
 * `upstream_tls`, `draining` → `draining`), else `failing`. Free text never reaches the response.
 */
function publicCheckStatus(value: unknown): string {
  if (value === 'ok') return 'ok'
  if (typeof value !== 'string') return 'failing'
  const m = CHECK_CODE.exec(value)
  return m === null || m[0] === 'ok' ? 'failing' : m[0]
}

function send(res: ServerResponse, status: number, contentType: string, body: string): void {
  res.statusCode = status
  res.setHeader('content-type', contentType)
  res.setHeader('content-length', Buffer.byteLength(body))
  res.setHeader('cache-control', 'no-store')
  res.setHeader('x-content-type-options', 'nosniff')
  // One request per connection: kept alive, 64 clients asking every few seconds would hold every
  // slot (ADMIN_LIMITS.maxConnections) and lock the kubelet's probes and Prometheus out. A probe or
  // a scrape opens a connection anyway; over loopback or the pod network that costs little.
  res.setHeader('connection', 'close')
  // HEAD: node:http sends the headers (with the GET length) and drops the body.
  res.end(body)
}

/** The stable `{ "error": code }` body with the status `src/errors.ts` maps the code to. */
function sendError(res: ServerResponse, code: ErrorCode): void {
  send(res, ERROR_CODES[code].status, JSON_TYPE, publicErrorBody(code))
}
