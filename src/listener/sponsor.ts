/**
 * The sponsor-side listener: HTTPS/1.1 with a client certificate required and verified against the
 * sponsor CA bundle only. A connection whose certificate did not verify is destroyed before a single
 * HTTP byte is parsed; the reason is counted, never sent.
 */
import { randomBytes, X509Certificate } from 'node:crypto'
import { type IncomingMessage, ServerResponse } from 'node:http'
import https from 'node:https'
import type { Socket } from 'node:net'
import type { DetailedPeerCertificate, TLSSocket } from 'node:tls'
import type { Logger } from 'pino'
import type { SponsorConfig } from '../config/schema.js'
import type { ServerTlsMaterial } from '../config/tls-material.js'
import { TLS_CIPHERS, TLS_SECURE_OPTIONS } from '../config/tls-policy.js'
import { ERROR_CODES, type ErrorCode, publicErrorBody } from '../errors.js'
import { principalFromCertificate } from '../identity/from-certificate.js'
import type { Principal } from '../identity/principal.js'
import { LogQuota } from '../observability/log-quota.js'
import { classifyTlsFailure, type GatewayMetrics, type TlsFailureReason } from '../observability/metrics.js'
import { anchored } from './anchored.js'

/** The verified principal, attached to the TLS socket once, at handshake time. */
const PRINCIPAL = Symbol('ecluse.principal')
/** The exchange a connection is in, and the pipelined requests waiting for it (`#inTurn`). */
const TURN = Symbol('ecluse.turn')
/** Set on a socket whose HTTP parser failed and was answered (`#refuseOnSocket`). */
const REFUSED = Symbol('ecluse.refused')
type PipelinedSocket = Socket & {
  [TURN]?: { busy: boolean; waiting: Array<[IncomingMessage, ServerResponse, boolean]>; requests: number }
}
/** Pipelined requests one connection may have waiting behind the one in progress. */
export const MAX_PIPELINED_REQUESTS = 16
/**
 * Until when the connection may carry requests (ms since the epoch): its client certificate's
 * notAfter, or 0 once a reload took its CA out of the sponsor bundle.
 */
const NOT_AFTER = Symbol('ecluse.notAfter')
/** When the connection is retired: its next response says `Connection: close` (ms since the epoch). */
const RETIRE_AT = Symbol('ecluse.retireAt')
/** The client's chain, leaf first, once read (`chainOf`). */
const CHAIN = Symbol('ecluse.chain')
/**
 * On the accepted (TCP) socket: how many reloads had taken a CA out of the sponsor bundle when it
 * was accepted, which is when Node binds the TLS context that verifies its handshake.
 */
const ACCEPTED_UNDER = Symbol('ecluse.acceptedUnder')
/** On the accepted socket: the sponsor bundle of the context Node bound to it. */
const ACCEPTED_BUNDLE = Symbol('ecluse.acceptedBundle')
type AcceptedSocket = Socket & { [ACCEPTED_UNDER]?: number; [ACCEPTED_BUNDLE]?: readonly X509Certificate[] }
/** Connections `#closeUntrusted` looks at per turn of the event loop. */
const UNTRUSTED_BATCH = 64
type VerifiedSocket = TLSSocket & {
  [PRINCIPAL]?: Principal
  [NOT_AFTER]?: number
  [RETIRE_AT]?: number
  [CHAIN]?: readonly X509Certificate[]
}

/**
 * The principal of a request's connection, or undefined if the connection was not verified, its
 * client certificate has expired since, or a reload took its CA out of the sponsor bundle: a
 * keep-alive connection carries no identity past either (the caller closes it).
 */
export function principalOf(req: IncomingMessage): Principal | undefined {
  const socket = req.socket as VerifiedSocket
  const notAfter = socket[NOT_AFTER]
  return notAfter !== undefined && Date.now() < notAfter ? socket[PRINCIPAL] : undefined
}

export interface RequestHandler {
  handle(req: IncomingMessage, res: ServerResponse, expectContinue: boolean): void
}

export interface SponsorListenerOptions {
  readonly config: SponsorConfig
  readonly tls: ServerTlsMaterial
  readonly handler: RequestHandler
  readonly metrics: GatewayMetrics
  readonly log: Logger
  /** How long a session ticket key serves (see `TICKET_KEY_LIFETIME_MS`); tests shorten it. */
  readonly ticketKeyLifetimeMs?: number
}

/**
 * How long a TLS session may be resumed after the full handshake that verified its chain: sessions
 * time out after it (`sessionTimeout`), and the ticket keys are replaced as often. A resumed session
 * skips verification, and TLS 1.3 issues a fresh ticket at each resumption, so without new keys a
 * client resuming within every 300 s would never be verified again: its CA could expire and it
 * would still come in. For the same reason a connection is retired after as long (see
 * `CONNECTION_LIFETIME_SPREAD`), so that a client keeping one busy goes through a handshake too.
 */
export const TICKET_KEY_LIFETIME_MS = 300_000
/**
 * A connection's lifetime is the ticket keys' lifetime plus up to this fraction more, at random:
 * clients that connected together (at a gateway's start) do not all reconnect at once.
 */
const CONNECTION_LIFETIME_SPREAD = 0.2
/**
 * Info lines a second for refusals anyone who can connect can cause (a handshake without a sponsor
 * certificate, bytes that are not HTTP): past it they are summarised once a second (`LogQuota`);
 * the metrics count every one. Per listener, so per worker with `--workers`.
 */
export const REFUSAL_LINES_PER_SECOND = 20

/** Beyond the handshake timeout, how long a reload keeps the intermediates it took out (a handshake in flight). */
export const HANDSHAKE_GRACE_MS = 1000

/** Socket errors that say the client went away: a reset, or a write to a connection it closed. */
const CLIENT_WENT_AWAY: ReadonlySet<string> = new Set(['ECONNRESET', 'EPIPE', 'ECONNABORTED'])

/** Maps the HTTP parser's refusals to our stable codes. */
function clientErrorCode(err: NodeJS.ErrnoException): ErrorCode {
  switch (err.code) {
    case 'HPE_HEADER_OVERFLOW':
      return 'headers_too_large'
    case 'HPE_UNEXPECTED_CONTENT_LENGTH':
    case 'HPE_INVALID_CONTENT_LENGTH':
    case 'HPE_INVALID_TRANSFER_ENCODING':
    case 'HPE_INVALID_HEADER_TOKEN':
    case 'HPE_INVALID_CHUNK_SIZE':
    case 'HPE_LF_EXPECTED':
    case 'HPE_CR_EXPECTED':
      return 'request_framing'
    case 'ERR_HTTP_REQUEST_TIMEOUT':
    case 'HPE_HEADERS_TIMEOUT':
      return 'request_timeout'
    default:
      return 'bad_request'
  }
}

export class SponsorListener {
  readonly server: https.Server
  readonly #config: SponsorConfig
  readonly #metrics: GatewayMetrics
  readonly #log: Logger
  readonly #sockets = new Set<Socket>()
  /** `sponsor.limits.maxConnections`: a connection beyond it is closed before TLS, counted `overloaded`. */
  readonly #maxConnections: number
  /**
   * Verified connections: through them a drain finds the responses in flight (`_httpMessage`), to make
   * those whose head is not out say `Connection: close`. Kept per connection, not per response: a
   * `Set` of every response in flight measured ≈ 12 % more CPU per request and ≈ 55 MiB more RSS
   * under the passthrough load (alternating runs), for what only a drain reads.
   */
  readonly #verified = new Set<TLSSocket>()
  #draining = false
  /** `sponsor.limits.maxRequestsPerSocket`; 0: no limit. */
  readonly #maxRequestsPerSocket: number
  readonly #ticketKeyRotation: NodeJS.Timeout
  readonly #ticketKeyLifetimeMs: number
  /** The sponsor CA bundle new handshakes are verified against (see `reloadTls`). */
  #clientCaCerts: readonly X509Certificate[]
  /** The CAs of that bundle OpenSSL anchors a chain in (`trustAnchors`). */
  #clientAnchors: readonly X509Certificate[]
  /** How many reloads have taken a CA out of the sponsor bundle (see `ACCEPTED_UNDER`). */
  #caRemovals = 0
  /**
   * At the last reload that took a CA out, the intermediates each leaf's full-handshake connections
   * had sent: they complete the chains of resumed sessions (`#anchoredNow`).
   */
  #intermediatesAtRemoval = new Map<string, X509Certificate[]>()
  /** Runs of `#closeUntrusted`: a run stops when a newer one has begun (which judges every connection). */
  #untrustRuns = 0
  /** The log's share of certificate and parser refusals (see {@link REFUSAL_LINES_PER_SECOND}). */
  readonly #certificateRefusalLines: LogQuota
  readonly #parserRefusalLines: LogQuota

  constructor(opts: SponsorListenerOptions) {
    const { config, tls, handler } = opts
    this.#config = config
    this.#metrics = opts.metrics
    this.#log = opts.log
    this.#certificateRefusalLines = new LogQuota(opts.log, 'sponsor client certificate refused', REFUSAL_LINES_PER_SECOND)
    this.#parserRefusalLines = new LogQuota(opts.log, 'sponsor request refused by the HTTP parser', REFUSAL_LINES_PER_SECOND)
    this.#clientCaCerts = tls.caCerts
    this.#clientAnchors = trustAnchors(tls.caCerts)
    this.#ticketKeyLifetimeMs = opts.ticketKeyLifetimeMs ?? TICKET_KEY_LIFETIME_MS
    const limits = config.limits
    this.server = https.createServer({
      cert: tls.cert,
      key: tls.key,
      // The sponsor CA only: passing `ca` replaces Node's system roots for client verification.
      ca: tls.ca,
      requestCert: true,
      // Verification still happens; we destroy unverified sockets ourselves (onSecureConnection)
      // so that the precise reason can be counted, before any HTTP byte is read.
      rejectUnauthorized: false,
      minVersion: config.tls.minVersion,
      // Forward secrecy, security level 2 for the client's chain too, and no renegotiation: Node
      // verifies the client once, so a certificate presented in a renegotiation would go unchecked,
      // and a reload taking a CA out would judge the connection by it (config/tls-policy.ts).
      ciphers: TLS_CIPHERS,
      secureOptions: TLS_SECURE_OPTIONS,
      handshakeTimeout: config.tls.handshakeTimeoutMs,
      ALPNProtocols: ['http/1.1'],
      sessionTimeout: Math.ceil(this.#ticketKeyLifetimeMs / 1000),
      maxHeaderSize: limits.maxHeaderBytes,
      headersTimeout: limits.headersTimeoutMs,
      requestTimeout: limits.requestTimeoutMs,
      // Node checks the two timeouts above only this often (30 s by default), so without it a
      // slowloris client gets up to 30 s more than configured.
      connectionsCheckingInterval: timeoutCheckInterval(limits.headersTimeoutMs, limits.requestTimeoutMs),
      keepAliveTimeout: limits.keepAliveTimeoutMs,
      insecureHTTPParser: false,
      joinDuplicateHeaders: false,
      // Host is checked by the exchange, which answers with a stable code (Node's own 400 has none).
      requireHostHeader: false,
      noDelay: true,
    })
    // Every header the parser framed the message with must reach the exchange: past Node's default
    // of 2000 it drops the rest from `req.headers`, a Content-Length or Transfer-Encoding among them.
    // The header block stays bounded by maxHeaderBytes.
    this.server.maxHeadersCount = 0
    this.#maxConnections = limits.maxConnections
    // Counted in `#inTurn`, not by Node: past its limit Node answers a pipelined request with a bare
    // 503 of its own (no error code, not logged) after a response that said `Connection: close`.
    this.server.maxRequestsPerSocket = 0
    this.#maxRequestsPerSocket = limits.maxRequestsPerSocket
    // A socket with no bytes either way for idleTimeoutMs is closed, a request in flight or not (a
    // client that stopped sending or reading). It must outlast the upstreams' timeouts, which the
    // schema checks: the socket is quiet too while the gateway awaits its upstream.
    this.server.setTimeout(limits.idleTimeoutMs)
    this.#ticketKeyRotation = setInterval(() => this.rotateTicketKeys(), this.#ticketKeyLifetimeMs)
    this.#ticketKeyRotation.unref()
    this.server.once('close', () => {
      clearInterval(this.#ticketKeyRotation)
      this.#certificateRefusalLines.flush()
      this.#parserRefusalLines.flush()
    })

    this.server.prependListener('secureConnection', (socket: TLSSocket) => this.#onSecureConnection(socket))
    // The cap is ours, not Node's `server.maxConnections`: in a cluster worker Node does not close a
    // connection past it but hands it back to the primary, which offers it to the next worker, and
    // so on while all are full: never refused nor counted, no handshake timeout, the primary and
    // every worker spinning on it (found by review; nodejs/node#54882). So the TLS server's own
    // 'connection' listener is called only for a connection under the cap, and one past it is
    // closed before any TLS work, in a worker as in a single process.
    const connectionListeners = this.server.listeners('connection')
    if (connectionListeners.length !== 1) throw new Error(`the TLS server has ${connectionListeners.length} 'connection' listeners, expected its own one`)
    const acceptTls = connectionListeners[0] as (socket: Socket) => void
    this.server.removeAllListeners('connection')
    this.server.on('connection', (socket: Socket) => {
      if (this.#atConnectionCap()) {
        socket.destroy()
        this.#metrics.requestRejected('overloaded')
        return
      }
      acceptTls.call(this.server, socket)
      this.#onConnection(socket)
    })
    this.server.on('tlsClientError', (err: Error) => {
      this.#metrics.tlsHandshakeFailure('sponsor', classifyTlsFailure(err))
      this.#log.debug({ err: { code: (err as NodeJS.ErrnoException).code, message: err.message } }, 'sponsor TLS handshake failed')
    })
    this.server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => this.#onClientError(err, socket))
    // CONNECT asks for a tunnel, which the gateway never opens: answered and counted like any
    // request it cannot parse, rather than a connection dropped without a word.
    this.server.on('connect', (_req: IncomingMessage, socket: Socket) => this.#refuseConnect(socket))
    this.server.on('request', (req: IncomingMessage, res: ServerResponse) => this.#inTurn(handler, req, res, false))
    // Answer `Expect: 100-continue` only once the request is known to be routed and allowed.
    this.server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => this.#inTurn(handler, req, res, true))
    // Any other expectation is one the gateway cannot meet: Node's 417, with our code, counted.
    this.server.on('checkExpectation', (_req: IncomingMessage, res: ServerResponse) => {
      this.#metrics.requestRejected('bad_request')
      this.#log.info({ code: 'bad_request', status: 417 }, 'sponsor request with an Expect other than 100-continue; refused')
      const body = publicErrorBody('bad_request')
      res.writeHead(417, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), connection: 'close' }).end(body)
    })
  }

  listen(): Promise<{ port: number; host: string }> {
    const { host, port } = this.#config.listen
    return new Promise((resolve, reject) => {
      this.server.once('error', reject)
      this.server.listen(port, host, () => {
        this.server.off('error', reject)
        // Under `--workers`, Node's cluster hands every worker that listens, one restarted after a
        // crash included, the ticket keys of the first: a ticket of before a reload would resume on
        // it. Keys of our own, set once the handle is ours.
        this.server.setTicketKeys(randomBytes(48))
        const addr = this.server.address()
        resolve({ host, port: typeof addr === 'object' && addr !== null ? addr.port : port })
      })
    })
  }

  /**
   * New certificate, key and sponsor CA for new handshakes. The new context has new ticket keys of
   * its own: no session of the old trust resumes. When the reload takes a CA out of the sponsor
   * bundle, the open connections the new bundle does not anchor are closed (`#closeUntrusted`); the
   * others, and all of them when a CA is only added, go on.
   */
  reloadTls(tls: ServerTlsMaterial): void {
    // A CA renewed (the same name and key, a new serial or validity) is not taken out.
    const kept = new Set(tls.caCerts.map(caIdentity))
    const caRemoved = this.#clientCaCerts.some((ca) => !kept.has(caIdentity(ca)))
    this.#clientCaCerts = tls.caCerts
    this.#clientAnchors = trustAnchors(tls.caCerts)
    this.server.setSecureContext({
      cert: tls.cert,
      key: tls.key,
      ca: tls.ca,
      minVersion: this.#config.tls.minVersion,
      // `setSecureContext` builds a new context from these options alone: without them, a reload
      // would bring back Node's defaults.
      ciphers: TLS_CIPHERS,
      secureOptions: TLS_SECURE_OPTIONS,
      sessionTimeout: Math.ceil(this.#ticketKeyLifetimeMs / 1000),
    })
    if (caRemoved) {
      this.#caRemovals++
      this.#closeUntrusted()
    }
  }

  /**
   * Replaces the session ticket keys: every ticket issued so far stops resuming, and the next
   * connection of each client is verified in a full handshake.
   */
  rotateTicketKeys(): void {
    this.server.setTicketKeys(randomBytes(48))
  }

  /**
   * Ends the connections whose chain the sponsor bundle no longer anchors (`#anchoredNow`): an idle
   * one now, a busy one when its current response is done (which says `Connection: close`); any
   * request that still reaches one finds no principal on it (`principalOf`). Their requests are
   * lost, as they should be. The connections are read, then judged, `UNTRUSTED_BATCH` per turn of
   * the event loop: reading a chain costs ≈ 0.25 ms, and a thousand connections would otherwise hold
   * every other request for as long.
   */
  #closeUntrusted(): void {
    const run = ++this.#untrustRuns
    const sockets = [...this.#verified] as VerifiedSocket[]
    const intermediatesByLeaf = new Map<string, X509Certificate[]>()
    const links = new Map<string, boolean>()
    let closed = 0
    const judge = (from: number): void => {
      if (run !== this.#untrustRuns) return
      const to = Math.min(from + UNTRUSTED_BATCH, sockets.length)
      for (const socket of sockets.slice(from, to)) {
        if (socket.destroyed || socket[NOT_AFTER] === 0 || this.#anchoredNow(socket, links)) continue
        closed++
        socket[NOT_AFTER] = 0
        const res = responseInFlight(socket)
        if (res !== undefined) {
          if (!res.headersSent) res.shouldKeepAlive = false
          res.once('close', () => socket.destroy())
        } else socket.destroy()
      }
      if (to < sockets.length) setImmediate(judge, to)
      else if (closed > 0) this.#log.info({ closed }, 'sponsor connections closed: a reload took a CA out, and the bundle no longer anchors their chain')
    }
    // First what each leaf's full handshakes sent, for its resumed sessions (the same leaf, so the
    // same key holder), then each connection by its chain.
    const read = (from: number): void => {
      if (run !== this.#untrustRuns) return
      const to = Math.min(from + UNTRUSTED_BATCH, sockets.length)
      for (const socket of sockets.slice(from, to)) {
        if (socket.destroyed || socket.isSessionReused()) continue
        const [leaf, ...sent] = this.#chainSent(socket)
        if (leaf === undefined || sent.length === 0) continue
        const known = intermediatesByLeaf.get(leaf.fingerprint256) ?? []
        for (const cert of sent) {
          if (known.length < MAX_CHAIN && !known.some((k) => k.fingerprint256 === cert.fingerprint256)) known.push(cert)
        }
        intermediatesByLeaf.set(leaf.fingerprint256, known)
      }
      if (to < sockets.length) setImmediate(read, to)
      else {
        // Published whole: until then, handshakes judged meanwhile use the previous run's. Kept
        // while a handshake accepted before the reload may still complete, then let go.
        this.#intermediatesAtRemoval = intermediatesByLeaf
        setTimeout(() => {
          if (this.#intermediatesAtRemoval === intermediatesByLeaf) this.#intermediatesAtRemoval = new Map()
        }, this.#config.tls.handshakeTimeoutMs + HANDSHAKE_GRACE_MS).unref()
        judge(0)
      }
    }
    read(0)
  }

  /**
   * Whether the current bundle anchors the connection's chain. A resumed session carries its
   * client's leaf but not the intermediates of its full handshake: those its leaf's full-handshake
   * connections had sent at the last reload that took a CA out complete it. One the gateway cannot
   * complete is not anchored: its client connects again, in a full handshake the bundle decides.
   */
  #anchoredNow(socket: VerifiedSocket, links: Map<string, boolean>): boolean {
    let chain = this.#chainSent(socket)
    const leaf = chain[0]
    if (socket.isSessionReused() && leaf !== undefined) chain = [...chain, ...(this.#intermediatesAtRemoval.get(leaf.fingerprint256) ?? [])]
    return anchored(chain, this.#clientAnchors, links)
  }

  /**
   * The connection's chain without the CAs that were in the bundle it was accepted under and are no
   * longer (the leaf excepted): Node fills a chain in from that bundle, and cannot say whose copy a
   * certificate is. A client that sent such a CA itself loses it too, and reconnects: the safe
   * direction.
   */
  #chainSent(socket: VerifiedSocket): readonly X509Certificate[] {
    const acceptedUnder = (socket as TLSSocket & { _parent?: AcceptedSocket })._parent?.[ACCEPTED_BUNDLE]
    if (acceptedUnder === undefined || acceptedUnder === this.#clientCaCerts) return chainOf(socket)
    const current = new Set(this.#clientCaCerts.map((ca) => ca.fingerprint256))
    const gone = new Set(acceptedUnder.filter((ca) => !current.has(ca.fingerprint256)).map((ca) => ca.fingerprint256))
    return chainOf(socket).filter((cert, i) => i === 0 || !gone.has(cert.fingerprint256))
  }

  /** The idle timeout this listener runs with: its boot configuration's (a reload does not change it). */
  get idleTimeoutMs(): number {
    return this.#config.limits.idleTimeoutMs
  }

  /**
   * Whether `maxConnections` connections were open before the one just accepted. A connection is gone
   * once destroyed, though its socket says `close` only after libuv has closed it: a connection
   * accepted in between must not be refused for it. Node's own count (`_connections`, the one its
   * `maxConnections` compares, the new connection included) drops at the destroy, in O(1) (found by
   * re-review: a scan of every socket at the cap cost ≈ 30 µs a connection at 1,024); without it,
   * the open sockets are counted.
   */
  #atConnectionCap(): boolean {
    const counted = (this.server as unknown as { _connections?: unknown })._connections
    if (typeof counted === 'number') return counted - 1 >= this.#maxConnections
    if (this.#sockets.size < this.#maxConnections) return false
    let open = 0
    for (const socket of this.#sockets) if (!socket.destroyed) open++
    return open >= this.#maxConnections
  }

  get openConnections(): number {
    return this.#sockets.size
  }

  /**
   * Stop accepting connections and close the idle keep-alive ones; requests in flight go on, and
   * every response whose head is not out yet says `Connection: close`: its client must not send
   * another request on a connection the drain is about to close under it.
   */
  stopAccepting(): Promise<void> {
    this.#draining = true
    for (const socket of this.#verified) {
      const res = responseInFlight(socket)
      if (res !== undefined && !res.headersSent) res.shouldKeepAlive = false
    }
    return new Promise((resolve) => {
      this.server.close(() => resolve())
      this.server.closeIdleConnections()
    })
  }

  /** Destroy every remaining connection (after the drain deadline). */
  destroyAll(): void {
    this.server.closeAllConnections()
    for (const socket of this.#sockets) socket.destroy()
  }

  /**
   * One exchange per connection at a time. Node parses pipelined requests as fast as they arrive and
   * stops reading only for outgoing bytes, so a client that pipelines requests to a slow upstream
   * would make the gateway hold thousands of exchanges for a few bytes each. The next request waits,
   * with the socket paused, until the current response is done; more than
   * {@link MAX_PIPELINED_REQUESTS} waiting (one read's worth parsed at once) ends the connection.
   */
  #inTurn(handler: RequestHandler, req: IncomingMessage, res: ServerResponse, expectContinue: boolean): void {
    const socket = req.socket as PipelinedSocket
    let turn = socket[TURN]
    if (turn === undefined) {
      turn = { busy: false, waiting: [], requests: 0 }
      socket[TURN] = turn
    }
    // A request that asks to upgrade (`Upgrade: h2c`) is served as HTTP/1.1, the field dropped, but
    // Node's parser stops reading at it and discards the rest of that read: a request pipelined
    // behind it would wait unanswered until the idle timeout. The connection closes after its answer
    // instead, and the client sends the next one again (RFC 9112 §9.3.2). (`req.upgrade` cannot
    // tell: Node sets it back to false when the server has no 'upgrade' listener.)
    if (req.headers.upgrade !== undefined) res.shouldKeepAlive = false
    const limit = this.#maxRequestsPerSocket
    if (limit > 0) {
      turn.requests++
      // The last request of the connection: its response says `Connection: close`, and Node closes
      // the connection once it is sent.
      if (turn.requests === limit) res.shouldKeepAlive = false
      else if (turn.requests > limit) {
        // Pipelined behind the last one: never begun, never answered (the connection closes first);
        // RFC 9112 §9.3.2 has the client send it again on a new connection.
        // Reading stops too: a flood behind a slow last response must not pile up parsed requests.
        socket.pause()
        this.#log.debug({ requests: turn.requests, limit }, 'sponsor request pipelined past maxRequestsPerSocket; not begun')
        return
      }
    }
    const run = (r: IncomingMessage, s: ServerResponse, e: boolean) => {
      turn.busy = true
      // Begun during a drain (it was pipelined behind one in flight), or on a connection past its
      // lifetime: the last on its connection, served whole, its client verified anew on the next.
      if (this.#draining || Date.now() >= ((socket as VerifiedSocket)[RETIRE_AT] ?? Number.POSITIVE_INFINITY)) s.shouldKeepAlive = false
      s.once('close', () => {
        if (socket.destroyed) {
          // The connection is gone, and Node never closes the responses still queued on it: the
          // requests waiting their turn are dropped, never begun (their exchanges would never end).
          for (const [waiting] of turn.waiting.splice(0)) waiting.destroy()
          turn.busy = false
          return
        }
        if (!socket.writable) {
          // This response was the connection's last (`Connection: close`: a refusal with a body
          // still on the wire, a drain, a retired connection): Node is ending the socket, and never
          // gives the responses queued behind it one. The requests waiting are dropped, never begun,
          // for their client to send again (RFC 9112 §9.3.2): begun, a pipelined POST went upstream
          // while its answer could never be sent, and its exchange never ended (found by review).
          // Not destroyed: an unfinished request would take the socket, and this answer, with it.
          turn.waiting.length = 0
          turn.busy = false
          return
        }
        // Reading again: the next request's body may still be on the wire.
        socket.resume()
        const next = turn.waiting.shift()
        if (next !== undefined) run(...next)
        else turn.busy = false
      })
      handler.handle(r, s, e)
    }
    if (!turn.busy) {
      run(req, res, expectContinue)
      return
    }
    if (turn.waiting.length >= MAX_PIPELINED_REQUESTS) {
      if (!socket.destroyed) {
        this.#metrics.requestRejected('overloaded')
        this.#log.info({ code: 'overloaded', waiting: turn.waiting.length }, 'sponsor connection pipelined too many requests; closed')
      }
      socket.destroy()
      return
    }
    socket.pause()
    turn.waiting.push([req, res, expectContinue])
  }

  #onConnection(socket: AcceptedSocket): void {
    socket[ACCEPTED_UNDER] = this.#caRemovals
    socket[ACCEPTED_BUNDLE] = this.#clientCaCerts
    this.#sockets.add(socket)
    this.#metrics.connectionOpened('sponsor')
    socket.once('close', () => {
      this.#sockets.delete(socket)
      this.#metrics.connectionClosed('sponsor')
    })
  }

  #onSecureConnection(socket: VerifiedSocket): void {
    const peer = socket.getPeerCertificate(false)
    if (!socket.authorized || peer === null || peer.raw === undefined) {
      const reason = peer === null || peer.raw === undefined ? 'no_certificate' : classifyTlsFailure(socket.authorizationError)
      this.#refuseCertificate(socket, reason, { reason, tlsError: String(socket.authorizationError ?? '') }, 'sponsor client certificate refused')
      return
    }
    // A resumed session (ticket or session id) skips verification: OpenSSL reports the result of the
    // first handshake, so a ticket taken just before notAfter would outlive the certificate.
    const notAfter = Date.parse(peer.valid_to)
    if (!(Date.now() < notAfter)) {
      const reason = 'expired_certificate'
      this.#refuseCertificate(socket, reason, { reason, resumed: socket.isSessionReused() }, 'sponsor client certificate refused')
      return
    }
    // A CA certificate is not a client's: OpenSSL takes one whose key usage allows it, but whoever
    // holds a CA's key should be issuing client certificates, not presenting the CA.
    if (peer.ca) {
      this.#refuseCertificate(socket, 'untrusted_certificate', { reason: 'untrusted_certificate' }, 'sponsor client certificate refused: it is a CA certificate')
      return
    }
    socket[NOT_AFTER] = notAfter
    try {
      socket[PRINCIPAL] = principalFromCertificate(peer.raw)
    } catch (err) {
      this.#refuseCertificate(socket, 'untrusted_certificate', { err: (err as Error).message }, 'sponsor client certificate carries no usable identity')
      return
    }
    // A connection accepted before a reload took a CA out was verified against the older bundle
    // (Node binds the context when it accepts): refused unless the current bundle anchors it.
    const accepted = (socket as TLSSocket & { _parent?: AcceptedSocket })._parent?.[ACCEPTED_UNDER] ?? 0
    if (accepted < this.#caRemovals && !this.#anchoredNow(socket, new Map())) {
      const msg = 'sponsor client certificate refused: verified against a CA bundle a reload has since replaced'
      this.#refuseCertificate(socket, 'untrusted_certificate', { reason: 'untrusted_certificate' }, msg)
      return
    }
    socket[RETIRE_AT] = Date.now() + this.#ticketKeyLifetimeMs * (1 + CONNECTION_LIFETIME_SPREAD * Math.random())
    this.#verified.add(socket)
    socket.once('close', () => this.#verified.delete(socket))
  }

  /** A handshake whose certificate is refused: counted always, logged within the quota, closed. */
  #refuseCertificate(socket: TLSSocket, reason: TlsFailureReason, fields: Record<string, unknown>, msg: string): void {
    this.#metrics.tlsHandshakeFailure('sponsor', reason)
    if (this.#certificateRefusalLines.take()) this.#log.info(fields, msg)
    socket.destroy()
  }

  #onClientError(err: NodeJS.ErrnoException, socket: Socket): void {
    // Node hands every TLS handshake failure (a timeout, plain HTTP on this port, a protocol version)
    // to `clientError` as well. 'tlsClientError' has counted it; no HTTP answer can cross a handshake
    // that never finished, and waiting the refusal grace for one would hold the slot 5 s longer.
    // Only a verified connection carries HTTP.
    if (!this.#verified.has(socket as VerifiedSocket)) {
      socket.destroy()
      return
    }
    // The client reset its connection (idle, or in the middle of a request), or ended it in the middle
    // of a request's body: no request of its was refused (found by review: each hang-up counted a
    // `bad_request`, and one in the middle of an exchange was counted again there as `aborted`, which
    // is what it is). A request head cut by the end of input is still refused: it never began, also
    // when it was pipelined behind a complete request whose answer is on its way.
    const code = err.code ?? ''
    if (CLIENT_WENT_AWAY.has(code) || (code === 'HPE_INVALID_EOF_STATE' && responseInFlight(socket)?.req.complete === false)) {
      this.#log.debug({ parserError: err.code }, 'sponsor connection closed by the client')
      socket.destroy()
      return
    }
    this.#refuseOnSocket(clientErrorCode(err), err.code, socket)
  }

  /**
   * CONNECT hands the socket over without the HTTP layer's timeouts, so it is answered and closed
   * here. Pipelined behind a request still being answered, it ends the connection instead: an answer
   * written now would take that request's place.
   */
  #refuseConnect(socket: Socket): void {
    const pending = responseInFlight(socket)
    if (pending === undefined) {
      this.#refuseOnSocket('bad_request', 'CONNECT', socket)
      return
    }
    this.#countRefusal('bad_request', 'CONNECT')
    socket.destroy()
  }

  #countRefusal(code: ErrorCode, parserError: string | undefined): void {
    this.#metrics.requestRejected(code)
    if (this.#parserRefusalLines.take()) this.#log.info({ code, parserError }, 'sponsor request refused by the HTTP parser')
  }

  /** A refusal written on the socket itself (no `ServerResponse` exists), counted and logged. */
  #refuseOnSocket(code: ErrorCode, parserError: string | undefined, socket: Socket): void {
    // Node feeds the parser each TLS record until the socket is gone, and reports the same error
    // for each: one refusal is counted and answered once.
    const refused = socket as Socket & { [REFUSED]?: true }
    if (refused[REFUSED]) return
    refused[REFUSED] = true
    this.#countRefusal(code, parserError)
    const pending = responseInFlight(socket)
    if (pending?.req.complete === true) {
      // The error is a later request's (pipelined behind one the proxy has whole): an answer written
      // now would take the place of that request's own, which may have run upstream already. It is
      // answered, and the connection closed after it; the later one is never answered.
      if (!pending.headersSent) pending.shouldKeepAlive = false
      else pending.once('finish', () => socket.end())
      return
    }
    // The parser may fail after a request was handed to the proxy (a bad chunk in the body): the
    // error can still be answered as long as that request's response has not started.
    if (socket.writable && (pending === undefined || !pending.headersSent)) {
      const body = publicErrorBody(code)
      // Closed once the answer is out, or after a grace period if the client never reads it: a
      // client that keeps its side open must not keep the connection (and its slot) either.
      socket.end(
        `HTTP/1.1 ${ERROR_CODES[code].status} ${httpReason(ERROR_CODES[code].status)}\r\n` +
          'content-type: application/json\r\n' +
          `content-length: ${Buffer.byteLength(body)}\r\n` +
          'connection: close\r\n\r\n' +
          body,
        () => socket.destroy(),
      )
      setTimeout(destroySocket, REFUSAL_GRACE_MS, socket).unref()
      return
    }
    socket.destroy()
  }
}

/** How long a refused connection has to take its answer before it is closed regardless. */
const REFUSAL_GRACE_MS = 5_000

function destroySocket(socket: Socket): void {
  socket.destroy()
}

/**
 * How often Node looks for requests past `headersTimeout`/`requestTimeout`: half the shorter one,
 * between 100 ms and 1 s, so a timeout is enforced at most that late. The check walks the open
 * connections in C++, cheap at this rate.
 */
export function timeoutCheckInterval(headersTimeoutMs: number, requestTimeoutMs: number): number {
  return Math.max(100, Math.min(1000, Math.floor(Math.min(headersTimeoutMs, requestTimeoutMs) / 2)))
}

/** The response Node is writing on `socket` (its internal `_httpMessage`), if any. */
function responseInFlight(socket: Socket): ServerResponse | undefined {
  const res = (socket as Socket & { _httpMessage?: unknown })._httpMessage
  return res instanceof ServerResponse ? res : undefined
}

/**
 * The CAs of `bundle` OpenSSL anchors a chain in: its self-issued ones (their own signature is not
 * checked, as OpenSSL does not), and those a path of signatures within the bundle joins to one
 * (OpenSSL takes no intermediate alone as an anchor).
 */
function trustAnchors(bundle: readonly X509Certificate[]): X509Certificate[] {
  const now = Date.now()
  const current = (c: X509Certificate) => Date.parse(c.validFrom) <= now && now < Date.parse(c.validTo)
  const anchors = bundle.filter((ca) => current(ca) && ca.checkIssued(ca))
  for (let grew = true; grew; ) {
    grew = false
    for (const ca of bundle) {
      if (anchors.includes(ca) || !current(ca)) continue
      if (anchors.some((a) => a.ca && ca.checkIssued(a) && ca.verify(a.publicKey))) {
        anchors.push(ca)
        grew = true
      }
    }
  }
  return anchors
}

/** A CA as a renewal keeps it: its name and its key. */
function caIdentity(ca: X509Certificate): string {
  return `${ca.subject}\n${ca.publicKey.export({ type: 'spki', format: 'der' }).toString('base64')}`
}

/** Certificates of a client chain that are looked at: the leaf and what it sent (or Node linked). */
const MAX_CHAIN = 10

/**
 * The client's chain as Node links it (`getPeerCertificate(true)`: the certificates it sent, by
 * issuer name, and the root from the bundle), leaf first, read once per connection and kept: a
 * resumed session's is its leaf alone. Read only when a reload asks (once per connection: Node's
 * `getPeerX509Certificate()` would take the certificates out of the connection, nodejs/node#65579,
 * and reading the chain at every handshake costs 150–250 µs where the leaf alone costs 45).
 */
function chainOf(socket: VerifiedSocket): readonly X509Certificate[] {
  let chain = socket[CHAIN]
  if (chain === undefined) {
    const certs: X509Certificate[] = []
    let cert: DetailedPeerCertificate | undefined = socket.getPeerCertificate(true)
    for (; cert?.raw !== undefined && certs.length < MAX_CHAIN; cert = cert.issuerCertificate) {
      certs.push(new X509Certificate(cert.raw))
      if (cert.issuerCertificate === cert) break
    }
    chain = certs
    socket[CHAIN] = chain
  }
  return chain
}

function httpReason(status: number): string {
  switch (status) {
    case 400:
      return 'Bad Request'
    case 408:
      return 'Request Timeout'
    case 431:
      return 'Request Header Fields Too Large'
    default:
      return 'Error'
  }
}
