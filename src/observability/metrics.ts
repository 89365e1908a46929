/**
 * The gateway's metrics. One `GatewayMetrics` per process, built once at boot with its own
 * prom-client `Registry` (never the global one, so tests can build as many as they like).
 *
 * Label values are bounded by construction: route and upstream names come from the configuration,
 * everything else is a fixed enum. A raw path, a principal or a header value can never become a
 * label: an unknown route name is counted under the fixed route `"unmatched"`.
 *
 * Hot-path cost. prom-client's labelled `inc()` hashes the label object on every call (≈350 ns on
 * the reference machine). Counters and gauges here are instead plain number cells held by pre-bound
 * objects (`forRoute()`, `forUpstream()`), so an increment is one property store; the cells are
 * folded into prom-client by each metric's `collect()` hook when the registry is scraped. Histograms
 * have no public bulk-update API, so they use prom-client's pre-bound children directly.
 *
 * docs/metrics.md documents every metric, its labels and example PromQL.
 */
import { readFileSync } from 'node:fs'
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client'
import { EcluseError, ERROR_CODES, type ErrorCode } from '../errors.js'
import { droppedLogLines } from './logger.js'

// ---------------------------------------------------------------------------------------------
// Label vocabularies (fixed enums)

/** Which side of the gateway a series describes. */
export type MetricSide = 'sponsor' | 'upstream'

/** An HTTP status class, or `aborted` when no complete response was delivered. */
export type StatusClass = '1xx' | '2xx' | '3xx' | '4xx' | '5xx' | 'aborted'

/** Every status class, in exposition order. */
export const STATUS_CLASSES: readonly StatusClass[] = ['1xx', '2xx', '3xx', '4xx', '5xx', 'aborted']

/** Why a TLS handshake failed, as a fixed label value. See {@link classifyTlsFailure}. */
export type TlsFailureReason =
  | 'no_certificate'
  | 'untrusted_certificate'
  | 'expired_certificate'
  | 'handshake_timeout'
  | 'protocol'
  | 'other'

/** Every TLS failure reason. */
export const TLS_FAILURE_REASONS: readonly TlsFailureReason[] = [
  'no_certificate',
  'untrusted_certificate',
  'expired_certificate',
  'handshake_timeout',
  'protocol',
  'other',
]

/** Why a request was refused by routing or the route ACL. */
export type DenialReason = 'route_not_found' | 'method_not_allowed' | 'principal_not_allowed' | 'path_rejected'

/** Every denial reason. */
export const DENIAL_REASONS: readonly DenialReason[] = [
  'route_not_found',
  'method_not_allowed',
  'principal_not_allowed',
  'path_rejected',
]

/** Which body a byte count belongs to. */
export type BodyDirection = 'request' | 'response'

/** An upstream failure kind: an error code of the `upstream_` family. */
export type UpstreamErrorKind = Extract<ErrorCode, `upstream_${string}`>

/** Every `upstream_*` code in `src/errors.ts`, derived so a new code is picked up automatically. */
export const UPSTREAM_ERROR_KINDS: readonly UpstreamErrorKind[] = (Object.keys(ERROR_CODES) as ErrorCode[]).filter(
  (c): c is UpstreamErrorKind => c.startsWith('upstream_'),
)

/** The error codes a request can be rejected with before it reaches routing (pre-bound at boot). */
export const REJECT_REASONS = [
  'body_too_large',
  'request_framing',
  'headers_too_large',
  'request_timeout',
  'overloaded',
  'shutting_down',
  'bad_request',
  'http_version_not_supported',
] as const satisfies readonly ErrorCode[]

/** A pre-routing rejection reason. */
export type RejectReason = (typeof REJECT_REASONS)[number]

/** A listener whose open connections are counted. */
export type ConnectionSide = 'sponsor' | 'admin'

/** The outcome of a configuration / certificate reload. */
export type ReloadResult = 'ok' | 'failed'

/** A certificate the gateway presents: the sponsor listener's, or its client certificate for an upstream. */
export type CertificateName = 'sponsor_server' | `upstream:${string}` | 'sponsor_client_ca' | `upstream_ca:${string}`

/** The route label used for requests that matched no configured route. */
export const UNMATCHED_ROUTE = 'unmatched'

/**
 * Histogram buckets for latencies, in seconds: 1 ms to 300 s (the default `requestTimeoutMs`: an
 * upload or a download may take that long, and a quantile past the last bucket reads as that
 * bucket), dense where a healthy proxied request lands.
 */
export const LATENCY_BUCKETS_SECONDS: readonly number[] = [
  0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300,
]

/** The route-name grammar of the configuration schema; anything else is refused as a label. */
const ROUTE_NAME = /^[a-z0-9][a-z0-9_-]{0,62}$/
/** The upstream-name grammar of the configuration schema (bounded length for labels). */
const UPSTREAM_NAME = /^[a-z0-9][a-z0-9_-]{0,62}$/
/** Upstreams seen lazily beyond this many are folded into `other` (they come from config; a guard only). */
const MAX_UPSTREAMS = 256

/**
 * The status class of an HTTP status code. Codes outside 100–599 have no class (RFC 9110 §15) and
 * are counted as `5xx`: the gateway treats such a response as a server failure.
 */
export function statusClass(status: number): Exclude<StatusClass, 'aborted'> {
  if (status >= 100 && status < 200) return '1xx'
  if (status >= 200 && status < 300) return '2xx'
  if (status >= 300 && status < 400) return '3xx'
  if (status >= 400 && status < 500) return '4xx'
  return '5xx'
}

// ---------------------------------------------------------------------------------------------
// TLS failure classification

/** Exact Node / OpenSSL codes (`err.code`, or `tlsSocket.authorizationError`). */
const TLS_CODE_TABLE: ReadonlyMap<string, TlsFailureReason> = new Map<string, TlsFailureReason>([
  // The peer sent no certificate. Server side: OpenSSL's own error; client side: the alert the
  // server sends (TLS 1.3 `certificate_required`, RFC 8446 §6.2).
  ['ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE', 'no_certificate'],
  ['ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED', 'no_certificate'],
  ['NO_CERTIFICATE', 'no_certificate'],
  // Outside the validity window, locally detected (X509_V_ERR_*) or reported by the peer's alert.
  ['CERT_HAS_EXPIRED', 'expired_certificate'],
  ['CERT_NOT_YET_VALID', 'expired_certificate'],
  ['ERR_SSL_SSLV3_ALERT_CERTIFICATE_EXPIRED', 'expired_certificate'],
  // Chain does not lead to the configured CA, or the certificate is unfit.
  ['UNABLE_TO_GET_ISSUER_CERT', 'untrusted_certificate'],
  ['UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'untrusted_certificate'],
  ['UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'untrusted_certificate'],
  ['SELF_SIGNED_CERT_IN_CHAIN', 'untrusted_certificate'],
  ['DEPTH_ZERO_SELF_SIGNED_CERT', 'untrusted_certificate'],
  ['CERT_SIGNATURE_FAILURE', 'untrusted_certificate'],
  ['CERT_UNTRUSTED', 'untrusted_certificate'],
  ['CERT_REJECTED', 'untrusted_certificate'],
  ['CERT_REVOKED', 'untrusted_certificate'],
  ['INVALID_CA', 'untrusted_certificate'],
  ['INVALID_PURPOSE', 'untrusted_certificate'],
  // The security level (config/tls-policy.ts): a key too small, a digest too weak. Node 20 has no
  // name for these and says UNSPECIFIED, which only a chain verification reports.
  ['UNSPECIFIED', 'untrusted_certificate'],
  ['EE_KEY_TOO_SMALL', 'untrusted_certificate'],
  ['CA_KEY_TOO_SMALL', 'untrusted_certificate'],
  ['CA_MD_TOO_WEAK', 'untrusted_certificate'],
  ['PATH_LENGTH_EXCEEDED', 'untrusted_certificate'],
  ['CERT_CHAIN_TOO_LONG', 'untrusted_certificate'],
  ['HOSTNAME_MISMATCH', 'untrusted_certificate'],
  ['ERR_TLS_CERT_ALTNAME_INVALID', 'untrusted_certificate'],
  ['ERR_SSL_CERTIFICATE_VERIFY_FAILED', 'untrusted_certificate'],
  ['ERR_SSL_TLSV1_ALERT_UNKNOWN_CA', 'untrusted_certificate'],
  ['ERR_SSL_SSLV3_ALERT_BAD_CERTIFICATE', 'untrusted_certificate'],
  ['ERR_SSL_SSLV3_ALERT_UNSUPPORTED_CERTIFICATE', 'untrusted_certificate'],
  ['ERR_SSL_SSLV3_ALERT_CERTIFICATE_REVOKED', 'untrusted_certificate'],
  ['ERR_SSL_SSLV3_ALERT_CERTIFICATE_UNKNOWN', 'untrusted_certificate'],
  // The handshake deadline (`tls.Server` `handshakeTimeout`).
  ['ERR_TLS_HANDSHAKE_TIMEOUT', 'handshake_timeout'],
  // The peer spoke no acceptable TLS, or hung up mid-handshake. Note: with `rejectUnauthorized:
  // true` on a TLS 1.3 server, a refused client certificate surfaces as ECONNRESET "socket hang up"
  // (the verdict comes after the server's Finished); inspect `authorizationError` with
  // `rejectUnauthorized: false` to tell it apart, as the sponsor listener does.
  ['ECONNRESET', 'protocol'],
  ['EPIPE', 'protocol'],
  ['ERR_SSL_WRONG_VERSION_NUMBER', 'protocol'],
  ['ERR_SSL_UNSUPPORTED_PROTOCOL', 'protocol'],
  ['ERR_SSL_NO_PROTOCOLS_AVAILABLE', 'protocol'],
  ['ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION', 'protocol'],
  ['ERR_SSL_VERSION_TOO_LOW', 'protocol'],
  ['ERR_SSL_NO_SHARED_CIPHER', 'protocol'],
  ['ERR_SSL_SSLV3_ALERT_HANDSHAKE_FAILURE', 'protocol'],
  ['ERR_SSL_HTTP_REQUEST', 'protocol'],
  ['ERR_SSL_HTTPS_PROXY_REQUEST', 'protocol'],
])

/** Fallback on OpenSSL reason strings and messages, for errors that carry no known code. */
const TLS_TEXT_RULES: ReadonlyArray<readonly [RegExp, TlsFailureReason]> = [
  [/did not return a certificate|certificate required/i, 'no_certificate'],
  [/handshake timeout/i, 'handshake_timeout'],
  [/certificate (has )?expired|not yet valid/i, 'expired_certificate'],
  [
    /unknown ca|verify failed|self[- ]signed|unable to (get|verify)|bad certificate|altnames|unsuitable certificate|certificate (revoked|unknown|signature)/i,
    'untrusted_certificate',
  ],
  [
    /wrong version|unsupported protocol|protocol version|no shared cipher|handshake failure|http request|socket hang up|econnreset|disconnected before secure/i,
    'protocol',
  ],
]

/**
 * Map a TLS handshake failure to a fixed label value. Accepts an `Error` with a Node/OpenSSL
 * `code`, a `tlsSocket.authorizationError` (a code string at run time, typed `Error`), or a plain
 * string; follows `cause` (undici wraps socket errors) a few levels deep.
 *
 * @example
 * server.on('tlsClientError', (err) => metrics.tlsHandshakeFailure('sponsor', classifyTlsFailure(err)))
 */
export function classifyTlsFailure(err: unknown): TlsFailureReason {
  let current: unknown = err
  for (let depth = 0; depth < 4 && current !== undefined && current !== null; depth++) {
    const reason = classifyOne(current)
    if (reason !== 'other') return reason
    current = typeof current === 'object' ? (current as { cause?: unknown }).cause : undefined
  }
  return 'other'
}

function classifyOne(err: unknown): TlsFailureReason {
  if (typeof err === 'string') return TLS_CODE_TABLE.get(err) ?? classifyText(err)
  if (typeof err !== 'object' || err === null) return 'other'
  const { code, reason, message } = err as { code?: unknown; reason?: unknown; message?: unknown }
  if (typeof code === 'string') {
    const byCode = TLS_CODE_TABLE.get(code)
    if (byCode !== undefined) return byCode
  }
  if (typeof reason === 'string') {
    const byReason = classifyText(reason)
    if (byReason !== 'other') return byReason
  }
  if (typeof message === 'string') {
    const byMessage = classifyText(message)
    if (byMessage !== 'other') return byMessage
  }
  // Any other OpenSSL error during a handshake is a protocol-level failure (bad record, decode error…).
  if (typeof code === 'string' && code.startsWith('ERR_SSL_')) return 'protocol'
  return 'other'
}

function classifyText(text: string): TlsFailureReason {
  for (const [rule, reason] of TLS_TEXT_RULES) if (rule.test(text)) return reason
  return 'other'
}

// ---------------------------------------------------------------------------------------------
// Cells: hot-path counters as plain numbers, folded into prom-client at scrape time

/** One counter series. `add` is a property store; `flush` hands prom-client the delta. */
class CounterCell {
  value = 0
  #flushed = 0
  readonly #child: Counter.Internal

  constructor(child: Counter.Internal) {
    this.#child = child
  }

  flush(): void {
    const delta = this.value - this.#flushed
    if (delta > 0) {
      this.#child.inc(delta)
      this.#flushed = this.value
    }
  }
}

/** A prom-client counter whose series are cells. Series are created at boot (at zero). */
class CellCounter<L extends string> {
  readonly metric: Counter<L>
  readonly #cells: CounterCell[] = []

  constructor(registry: Registry, name: string, help: string, labelNames: readonly L[]) {
    const cells = this.#cells
    this.metric = new Counter<L>({
      name,
      help,
      labelNames,
      registers: [registry],
      collect() {
        for (const cell of cells) cell.flush()
      },
    })
  }

  /** Bind one series. Boot-time only: it validates labels and creates the series at 0. */
  cell(labels: Partial<Record<L, string>>): CounterCell {
    const child = this.metric.labels(labels)
    child.inc(0)
    const cell = new CounterCell(child)
    this.#cells.push(cell)
    return cell
  }
}

/** One gauge series; `value` is written on the hot path and published at scrape time. */
class GaugeCell {
  value = 0
  readonly #child: Gauge.Internal<string>

  constructor(child: Gauge.Internal<string>) {
    this.#child = child
  }

  flush(): void {
    this.#child.set(this.value)
  }
}

/** The prom-client families behind the pre-bound objects. */
interface Families {
  readonly requests: CellCounter<'side' | 'route'>
  readonly responses: CellCounter<'side' | 'route' | 'status_class'>
  readonly duration: Histogram<'route'>
  readonly ttfb: Histogram<'route'>
  readonly poolWait: Histogram<'upstream'>
  readonly bodyBytes: CellCounter<'route' | 'direction'>
  readonly denials: CellCounter<'route' | 'reason'>
  readonly upstreamErrors: CellCounter<'upstream' | 'kind'>
  readonly upstreamRetries: CellCounter<'upstream'>
}

function statusCells<C extends StatusClass>(
  counter: Families['responses'],
  side: MetricSide,
  route: string,
  classes: readonly C[],
): Readonly<Record<C, CounterCell>> {
  const cells = {} as Record<C, CounterCell>
  for (const cls of classes) cells[cls] = counter.cell({ side, route, status_class: cls })
  return cells
}

/**
 * The classes of `side="upstream"`: what the upstream answered, counted when its head arrives. A
 * body it then cuts short is `ecluse_upstream_errors_total{kind="upstream_reset"}` and the sponsor
 * side's `aborted`; an `aborted` series here would always read 0.
 */
const UPSTREAM_STATUS_CLASSES = STATUS_CLASSES.filter((c): c is UpstreamStatusClass => c !== 'aborted')
type UpstreamStatusClass = Exclude<StatusClass, 'aborted'>

// ---------------------------------------------------------------------------------------------
// Pre-bound per-route and per-upstream objects

/**
 * Every per-route series for one route, bound once at boot. Hold it on the compiled route and call
 * its methods on the hot path: no lookup, no label hashing for counters.
 *
 * @example
 * const m = metrics.forRoute('accreditations')
 * m.requestReceived()
 * m.sponsorResponse(statusClass(res.statusCode))
 * m.requestDuration((performance.now() - started) / 1000)
 */
export class RouteMetrics {
  /** The route label value (`"unmatched"` for the fallback). */
  readonly route: string
  readonly #requests: CounterCell
  readonly #sponsor: Readonly<Record<StatusClass, CounterCell>>
  readonly #upstream: Readonly<Record<UpstreamStatusClass, CounterCell>>
  readonly #duration: Histogram.Internal<'route'>
  readonly #ttfb: Histogram.Internal<'route'>
  readonly #bytesIn: CounterCell
  readonly #bytesOut: CounterCell
  readonly #denials: Readonly<Record<DenialReason, CounterCell>>

  /** @internal Built by `GatewayMetrics` only. */
  constructor(families: Families, route: string, proxied: boolean) {
    this.route = route
    this.#requests = families.requests.cell({ side: 'sponsor', route })
    this.#sponsor = statusCells(families.responses, 'sponsor', route, STATUS_CLASSES)
    // `unmatched` never reaches an upstream: do not publish upstream series for it.
    this.#upstream = proxied
      ? statusCells(families.responses, 'upstream', route, UPSTREAM_STATUS_CLASSES)
      : (Object.fromEntries(UPSTREAM_STATUS_CLASSES.map((c) => [c, new CounterCell(NOOP_COUNTER)])) as Record<
          UpstreamStatusClass,
          CounterCell
        >)
    this.#duration = families.duration.labels({ route })
    families.duration.zero({ route })
    this.#ttfb = families.ttfb.labels({ route })
    if (proxied) families.ttfb.zero({ route })
    this.#bytesIn = families.bodyBytes.cell({ route, direction: 'request' })
    this.#bytesOut = families.bodyBytes.cell({ route, direction: 'response' })
    const denials = {} as Record<DenialReason, CounterCell>
    for (const reason of DENIAL_REASONS) denials[reason] = families.denials.cell({ route, reason })
    this.#denials = denials
  }

  /** `ecluse_requests_total{side="sponsor"}`: one request received. */
  requestReceived(): void {
    this.#requests.value++
  }

  /** `ecluse_responses_total{side="sponsor"}`: what the client got. */
  sponsorResponse(cls: StatusClass): void {
    this.#sponsor[cls].value++
  }

  /** `ecluse_responses_total{side="upstream"}`: what the upstream answered. */
  upstreamResponse(cls: UpstreamStatusClass): void {
    this.#upstream[cls].value++
  }

  /** `ecluse_request_duration_seconds`: sponsor request start → response finished. */
  requestDuration(seconds: number): void {
    this.#duration.observe(seconds)
  }

  /** `ecluse_upstream_ttfb_seconds`: upstream request sent in full → response headers. */
  upstreamTtfb(seconds: number): void {
    this.#ttfb.observe(seconds)
  }


  /** `ecluse_body_bytes_total{direction="request"}`. */
  requestBytes(bytes: number): void {
    if (bytes > 0) this.#bytesIn.value += bytes
  }

  /** `ecluse_body_bytes_total{direction="response"}`. */
  responseBytes(bytes: number): void {
    if (bytes > 0) this.#bytesOut.value += bytes
  }

  /** `ecluse_body_bytes_total` by direction. */
  bodyBytes(direction: BodyDirection, bytes: number): void {
    if (bytes > 0) (direction === 'request' ? this.#bytesIn : this.#bytesOut).value += bytes
  }

  /** `ecluse_authorization_denials_total`. */
  authorizationDenied(reason: DenialReason): void {
    this.#denials[reason].value++
  }
}

/** A counter child that publishes nothing: for series a label combination can never have. */
const NOOP_COUNTER: Counter.Internal = { inc() {} }

/** Every per-upstream series for one upstream, bound once. */
export class UpstreamMetrics {
  /** The upstream label value. */
  readonly upstream: string
  readonly #errors: CellCounter<'upstream' | 'kind'>
  readonly #cells = new Map<ErrorCode, CounterCell>()
  readonly #retries: CounterCell
  readonly #poolWait: Histogram.Internal<'upstream'>

  /** @internal Built by `GatewayMetrics` only. */
  constructor(errors: CellCounter<'upstream' | 'kind'>, retries: CellCounter<'upstream'>, poolWait: Histogram<'upstream'>, upstream: string) {
    this.upstream = upstream
    this.#errors = errors
    for (const kind of UPSTREAM_ERROR_KINDS) this.#cells.set(kind, errors.cell({ upstream, kind }))
    this.#retries = retries.cell({ upstream })
    this.#poolWait = poolWait.labels({ upstream })
    poolWait.zero({ upstream })
  }

  /** `ecluse_upstream_pool_wait_seconds`: one request's wait for a free connection, however it ended. */
  poolWait(seconds: number): void {
    this.#poolWait.observe(seconds)
  }

  /** `ecluse_upstream_retries_total`: a request sent again after its connection closed before any answer. */
  retry(): void {
    this.#retries.value++
  }

  /**
   * `ecluse_upstream_errors_total{kind}`. `kind` should be an `upstream_*` code; any other code
   * (still a bounded enum) gets its own series on first use rather than being lost.
   */
  error(kind: ErrorCode): void {
    let cell = this.#cells.get(kind)
    if (cell === undefined) {
      if (!(kind in ERROR_CODES)) return
      cell = this.#errors.cell({ upstream: this.upstream, kind })
      this.#cells.set(kind, cell)
    }
    cell.value++
  }
}

// ---------------------------------------------------------------------------------------------
// The registry

/** Options for {@link GatewayMetrics}. */
export interface GatewayMetricsOptions {
  /** Every configured route name; each gets its pre-bound series at boot. */
  readonly routes: readonly string[]
  /** Configured upstream names, pre-bound at boot; others are bound on first use. */
  readonly upstreams?: readonly string[]
  /** `ecluse_build_info{version}`; defaults to the version in package.json. */
  readonly version?: string
  /** Node default metrics (`ecluse_process_*`, `ecluse_nodejs_*`); default true. */
  readonly defaultMetrics?: boolean
}

/**
 * The gateway's metrics registry and every gateway metric.
 *
 * @example
 * const metrics = new GatewayMetrics({ routes: config.routes.map((r) => r.name) })
 * const m = metrics.forRoute('accreditations')   // once, at boot
 * m.requestReceived()                            // per request
 * res.setHeader('content-type', metrics.contentType)
 * res.end(await metrics.render())
 */
export class GatewayMetrics {
  /** This gateway's own registry (never prom-client's global one). */
  readonly registry: Registry
  /** The content type of {@link render}'s output (Prometheus text format 0.0.4). */
  readonly contentType: string
  /** The fallback series for requests that matched no route. */
  readonly unmatched: RouteMetrics

  readonly #families: Families
  readonly #routes = new Map<string, RouteMetrics>()
  readonly #upstreams = new Map<string, UpstreamMetrics>()
  readonly #tls: Readonly<Record<MetricSide, Readonly<Record<TlsFailureReason, CounterCell>>>>
  readonly #connections: Readonly<Record<ConnectionSide, GaugeCell>>
  readonly #rejected: CellCounter<'reason'>
  readonly #rejectedCells = new Map<ErrorCode, CounterCell>()
  readonly #reloads: Counter<'result'>
  readonly #certExpiry: Gauge<'side' | 'name'>
  readonly #upstreamReady: Gauge<'upstream'>

  // ---- crypto (sealing) metrics ------------------------------------------------------------
  // Bounded labels only (fixed op/kind enums, route names, error codes); never a value, a kid or
  // anything else from a request. See `CryptoMetrics` below and docs/metrics.md.
  /** The sealing metrics: `ecluse_crypto_*`, `ecluse_sealed_fields_total`, `ecluse_transform_refusals_total`. */
  readonly crypto: CryptoMetrics
  // -------------------------------------------------------------------------------------------

  constructor(opts: GatewayMetricsOptions) {
    const registry = new Registry()
    this.registry = registry
    this.contentType = registry.contentType
    if (opts.defaultMetrics !== false) collectDefaultMetrics({ register: registry, prefix: 'ecluse_' })

    const histogram = (name: string, help: string) =>
      new Histogram<'route'>({
        name,
        help,
        labelNames: ['route'],
        buckets: [...LATENCY_BUCKETS_SECONDS],
        registers: [registry],
      })
    this.#families = {
      requests: new CellCounter(registry, 'ecluse_requests_total', 'Requests received.', ['side', 'route']),
      responses: new CellCounter(
        registry,
        'ecluse_responses_total',
        'Responses by side: what the sponsor client got, and what the upstream answered.',
        ['side', 'route', 'status_class'],
      ),
      duration: histogram(
        'ecluse_request_duration_seconds',
        'Sponsor request start to response finished, in seconds.',
      ),
      ttfb: histogram('ecluse_upstream_ttfb_seconds', 'Upstream request sent in full to response headers, in seconds.'),
      poolWait: new Histogram<'upstream'>({
        name: 'ecluse_upstream_pool_wait_seconds',
        help: 'Wait for a free connection of the upstream pool, in seconds: until the request was sent, or refused when none came.',
        labelNames: ['upstream'],
        buckets: [...LATENCY_BUCKETS_SECONDS],
        registers: [registry],
      }),
      bodyBytes: new CellCounter(registry, 'ecluse_body_bytes_total', 'Body bytes that crossed the gateway.', [
        'route',
        'direction',
      ]),
      denials: new CellCounter(
        registry,
        'ecluse_authorization_denials_total',
        'Requests refused by routing or the route ACL.',
        ['route', 'reason'],
      ),
      upstreamErrors: new CellCounter(registry, 'ecluse_upstream_errors_total', 'Upstream failures by error code.', [
        'upstream',
        'kind',
      ]),
      upstreamRetries: new CellCounter(
        registry,
        'ecluse_upstream_retries_total',
        'GET, HEAD and OPTIONS requests without a body sent once more after their upstream connection closed before any answer.',
        ['upstream'],
      ),
    }

    const tlsCounter = new CellCounter(
      registry,
      'ecluse_tls_handshake_failures_total',
      'TLS handshakes that failed, by side and reason.',
      ['side', 'reason'],
    )
    const tlsCells = (side: MetricSide) => {
      const cells = {} as Record<TlsFailureReason, CounterCell>
      for (const reason of TLS_FAILURE_REASONS) cells[reason] = tlsCounter.cell({ side, reason })
      return cells
    }
    this.#tls = { sponsor: tlsCells('sponsor'), upstream: tlsCells('upstream') }

    const connectionCells: GaugeCell[] = []
    const connections = new Gauge<'side'>({
      name: 'ecluse_open_connections',
      help: 'Open client connections per listener.',
      labelNames: ['side'],
      registers: [registry],
      collect() {
        for (const cell of connectionCells) cell.flush()
      },
    })
    const connectionCell = (side: ConnectionSide) => {
      const cell = new GaugeCell(connections.labels({ side }))
      connectionCells.push(cell)
      cell.flush()
      return cell
    }
    this.#connections = { sponsor: connectionCell('sponsor'), admin: connectionCell('admin') }

    this.#rejected = new CellCounter(
      registry,
      'ecluse_rejected_requests_total',
      'Requests refused before routing, by error code.',
      ['reason'],
    )
    for (const reason of REJECT_REASONS) this.#rejectedCells.set(reason, this.#rejected.cell({ reason }))

    this.#reloads = new Counter<'result'>({
      name: 'ecluse_reloads_total',
      help: 'Configuration and certificate reloads, by result.',
      labelNames: ['result'],
      registers: [registry],
    })
    this.#reloads.inc({ result: 'ok' }, 0)
    this.#reloads.inc({ result: 'failed' }, 0)

    this.#certExpiry = new Gauge<'side' | 'name'>({
      name: 'ecluse_certificate_expiry_timestamp_seconds',
      help: 'notAfter of each certificate the gateway presents, and the soonest of each CA bundle it trusts, as a Unix timestamp in seconds.',
      labelNames: ['side', 'name'],
      registers: [registry],
    })

    // The last readiness probe's answer per upstream. A failing probe takes the pod out of its
    // Service, so requests, and with them `ecluse_upstream_errors_total`, stop: without this gauge,
    // an upstream lost to a bad rotation would look like silence. Set by `/readyz` (the kubelet asks
    // every few seconds), not probed at scrape time: a scrape sends nothing to the trusted side.
    this.#upstreamReady = new Gauge<'upstream'>({
      name: 'ecluse_upstream_ready',
      help: "1 when the upstream answered the gateway's last readiness probe (mutual TLS, then any HTTP status), 0 when it did not.",
      labelNames: ['upstream'],
      registers: [registry],
    })

    // Process-wide (one stdout per process); each registry reports the lines dropped since it was made.
    let droppedReported = droppedLogLines()
    new Counter({
      name: 'ecluse_log_lines_dropped_total',
      help: "Log lines dropped because stdout's reader did not keep up with them, or had gone.",
      registers: [registry],
      collect() {
        const dropped = droppedLogLines()
        this.inc(dropped - droppedReported)
        droppedReported = dropped
      },
    })

    new Gauge<'version' | 'node'>({
      name: 'ecluse_build_info',
      help: 'Build information; the value is always 1.',
      labelNames: ['version', 'node'],
      registers: [registry],
    }).set({ version: opts.version ?? packageVersion(), node: process.version }, 1)

    this.unmatched = new RouteMetrics(this.#families, UNMATCHED_ROUTE, false)
    this.crypto = new CryptoMetrics(registry)
    this.registerRoutes(opts.routes)
    for (const name of opts.upstreams ?? []) this.forUpstream(name)
  }

  /**
   * Bind the series of routes not yet known (boot, and after a reload that adds routes). Idempotent;
   * series of removed routes stay (counters must not go backwards). Names must follow the config
   * grammar, and `unmatched` is reserved.
   */
  registerRoutes(names: readonly string[]): void {
    for (const name of names) {
      if (this.#routes.has(name)) continue
      if (name === UNMATCHED_ROUTE) {
        throw new EcluseError('config_invalid', `route name "${UNMATCHED_ROUTE}" is reserved for metrics`)
      }
      if (!ROUTE_NAME.test(name)) throw new EcluseError('config_invalid', `route name ${JSON.stringify(name)} is not a valid label`)
      this.#routes.set(name, new RouteMetrics(this.#families, name, true))
      this.crypto.registerRoute(name)
    }
  }

  /**
   * Binds the series of the routes a configuration put live, transform refusals at 0 for those with
   * transforms. Called once the routes serve (boot, a reload's swap), never for a configuration that
   * failed to load: counters must not go backwards, so a series once bound stays for good.
   */
  bindLiveRoutes(routes: ReadonlyArray<{ readonly name: string; readonly transformed: boolean }>): void {
    this.registerRoutes(routes.map((r) => r.name))
    for (const r of routes) if (r.transformed) this.crypto.forRoute(r.name).expectRefusals()
  }

  /** The pre-bound series of a configured route; any other name gets the `unmatched` series. */
  forRoute(name: string): RouteMetrics {
    return this.#routes.get(name) ?? this.unmatched
  }

  /** The pre-bound series of an upstream (bound on first use if not given at construction). */
  forUpstream(name: string): UpstreamMetrics {
    const known = this.#upstreams.get(name)
    if (known !== undefined) return known
    // Names come from the config; the grammar and the cap only guard against a caller bug. A bad
    // name is not remembered, so it cannot grow the map either.
    const label = UPSTREAM_NAME.test(name) && this.#upstreams.size < MAX_UPSTREAMS ? name : 'other'
    let m = this.#upstreams.get(label)
    if (m === undefined) {
      m = new UpstreamMetrics(this.#families.upstreamErrors, this.#families.upstreamRetries, this.#families.poolWait, label)
      this.#upstreams.set(label, m)
    }
    return m
  }

  // ---- by-name convenience API: one Map lookup per call; prefer holding `forRoute()` ---------

  /** `ecluse_requests_total{side="sponsor",route}`. */
  requestReceived(route: string): void {
    this.forRoute(route).requestReceived()
  }

  /** `ecluse_responses_total{side="sponsor",route,status_class}`. */
  sponsorResponse(route: string, cls: StatusClass): void {
    this.forRoute(route).sponsorResponse(cls)
  }

  /** `ecluse_responses_total{side="upstream",route,status_class}`. */
  upstreamResponse(route: string, cls: UpstreamStatusClass): void {
    this.forRoute(route).upstreamResponse(cls)
  }

  /** `ecluse_request_duration_seconds{route}`. */
  requestDuration(route: string, seconds: number): void {
    this.forRoute(route).requestDuration(seconds)
  }

  /** `ecluse_upstream_ttfb_seconds{route}`. */
  upstreamTtfb(route: string, seconds: number): void {
    this.forRoute(route).upstreamTtfb(seconds)
  }


  /** `ecluse_body_bytes_total{route,direction}`. */
  bodyBytes(route: string, direction: BodyDirection, bytes: number): void {
    this.forRoute(route).bodyBytes(direction, bytes)
  }

  /** `ecluse_authorization_denials_total{route,reason}`. */
  authorizationDenied(route: string, reason: DenialReason): void {
    this.forRoute(route).authorizationDenied(reason)
  }

  /** `ecluse_upstream_errors_total{upstream,kind}`. */
  upstreamError(upstream: string, kind: ErrorCode): void {
    this.forUpstream(upstream).error(kind)
  }

  // ---- listener-level series ---------------------------------------------------------------

  /** `ecluse_tls_handshake_failures_total{side,reason}`; see {@link classifyTlsFailure}. */
  tlsHandshakeFailure(side: MetricSide, reason: TlsFailureReason): void {
    this.#tls[side][reason].value++
  }

  /** `ecluse_open_connections{side}` + 1. */
  connectionOpened(side: ConnectionSide): void {
    this.#connections[side].value++
  }

  /** `ecluse_open_connections{side}` − 1. */
  connectionClosed(side: ConnectionSide): void {
    this.#connections[side].value--
  }

  /**
   * `ecluse_rejected_requests_total{reason}`. The listed {@link REJECT_REASONS} are pre-bound; any
   * other error code (a bounded enum) gets its series on first use.
   */
  requestRejected(reason: ErrorCode): void {
    let cell = this.#rejectedCells.get(reason)
    if (cell === undefined) {
      if (!(reason in ERROR_CODES)) return
      cell = this.#rejected.cell({ reason })
      this.#rejectedCells.set(reason, cell)
    }
    cell.value++
  }

  /** `ecluse_reloads_total{result}`. */
  reload(result: ReloadResult): void {
    this.#reloads.inc({ result })
  }

  /**
   * `ecluse_upstream_ready` from a readiness check: every configured upstream, ready or not
   * (upstreams a reload removed are no longer listed, so their series go).
   */
  upstreamReadiness(readiness: ReadonlyMap<string, boolean>): void {
    this.#upstreamReady.reset()
    for (const [upstream, ready] of readiness) this.#upstreamReady.set({ upstream }, ready ? 1 : 0)
  }

  /** Forgets every `ecluse_certificate_expiry_timestamp_seconds` series (before recording the current set). */
  clearCertificateExpiry(): void {
    this.#certExpiry.reset()
  }

  /**
   * `ecluse_certificate_expiry_timestamp_seconds{side,name}` = the certificate's notAfter.
   * A number is Unix time in **milliseconds** (as `Date.getTime()`).
   */
  certificateExpiry(side: MetricSide, name: CertificateName, notAfter: Date | number): void {
    const ms = typeof notAfter === 'number' ? notAfter : notAfter.getTime()
    if (!Number.isFinite(ms)) return
    this.#certExpiry.set({ side, name }, Math.floor(ms / 1000))
  }

  /** The whole registry in Prometheus text format (folds the cells in first, via `collect`). */
  render(): Promise<string> {
    return this.registry.metrics()
  }
}

// ---------------------------------------------------------------------------------------------
// Sealing (crypto) metrics

/** What a sealing operation did: encrypt, decrypt, or check a sealed value without opening it. */
export type CryptoOp = 'seal' | 'open' | 'verify'
/** Field-level compact JWE, or the whole-body sealed stream. */
export type CryptoKind = 'field' | 'stream'
export const CRYPTO_OPS: readonly CryptoOp[] = ['seal', 'open', 'verify']
export const CRYPTO_KINDS: readonly CryptoKind[] = ['field', 'stream']

/**
 * Buckets for the crypto time of one message, in seconds: 10 µs (one field) to 10 s (a large
 * sealed body).
 */
export const CRYPTO_BUCKETS_SECONDS: readonly number[] = [
  0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5, 2.5, 10,
]

/**
 * The pre-bound series of one (op, kind). A transform binds it once at construction and reports its
 * work as it is done (at the end of each chunk, not per value: per-field work only adds to plain
 * numbers it keeps itself), and its time once, when the message ends or is cut short.
 *
 * @example
 * const m = metrics.crypto.op('seal', 'field')   // at boot
 * m.progress(fieldsOk, 0, plaintextBytes)   // as the work is done
 * m.duration(cryptoSeconds)                 // when the message ends
 */
export class CryptoOpMetrics {
  readonly #ok: CounterCell
  readonly #failed: CounterCell
  readonly #bytes: CounterCell
  readonly #duration: Histogram.Internal<'op' | 'kind'>

  /** @internal Built by `CryptoMetrics` only. */
  constructor(ok: CounterCell, failed: CounterCell, bytes: CounterCell, duration: Histogram.Internal<'op' | 'kind'>) {
    this.#ok = ok
    this.#failed = failed
    this.#bytes = bytes
    this.#duration = duration
  }

  /**
   * One message's operations that succeeded and failed, and the time spent in its cryptography
   * (observed only when some operation ran), at its end; its bytes went by `progress`.
   */
  message(ok: number, failed: number, seconds: number): void {
    this.progress(ok, failed, 0)
    if (ok + failed > 0) this.#duration.observe(seconds)
  }

  /**
   * Work of a message still under way, counted as it is done: a long body's bytes show in `rate()`
   * while it streams, and what a message cut short had done is counted all the same.
   */
  progress(ok: number, failed: number, bytes: number): void {
    if (ok > 0) this.#ok.value += ok
    if (failed > 0) this.#failed.value += failed
    if (bytes > 0) this.#bytes.value += bytes
  }

  /** The time a message spent in the cryptography, observed once, when it ends or is cut short. */
  duration(seconds: number): void {
    this.#duration.observe(seconds)
  }
}

/** The codes the body transforms refuse a message with (the underlying code, for a response). */
export const TRANSFORM_REFUSAL_REASONS: readonly ErrorCode[] = [
  'unsupported_media_type',
  'json_invalid',
  'value_too_large',
  'plaintext_refused',
  'record_id_missing',
  'seal_failed',
  'open_failed',
]

/** The per-route sealing series, bound when the route is registered. */
export class CryptoRouteMetrics {
  readonly #route: string
  readonly #fields: Readonly<Record<CryptoOp, CounterCell>>
  readonly #refusals: CellCounter<'route' | 'reason'>
  readonly #refusalCells = new Map<ErrorCode, CounterCell>()

  /** @internal Built by `CryptoMetrics` only. */
  constructor(route: string, fields: Readonly<Record<CryptoOp, CounterCell>>, refusals: CellCounter<'route' | 'reason'>) {
    this.#route = route
    this.#fields = fields
    this.#refusals = refusals
  }

  /** `ecluse_sealed_fields_total{route,op}` += n. */
  sealedFields(op: CryptoOp, n: number): void {
    if (n > 0) this.#fields[op].value += n
  }

  /**
   * Binds the refusal series of every code a transform refuses with, at 0: for a route with
   * transforms, so that an alert on `increase()` sees the first refusal (a series that first
   * appears at 1 shows no increase).
   */
  expectRefusals(): void {
    for (const reason of TRANSFORM_REFUSAL_REASONS) {
      if (!this.#refusalCells.has(reason)) this.#refusalCells.set(reason, this.#refusals.cell({ route: this.#route, reason }))
    }
  }

  /** `ecluse_transform_refusals_total{route,reason}`: the code a transform refused a message with. */
  refused(reason: ErrorCode): void {
    let cell = this.#refusalCells.get(reason)
    if (cell === undefined) {
      // Error codes are a bounded enum; a series is bound on first use of each.
      if (!(reason in ERROR_CODES)) return
      cell = this.#refusals.cell({ route: this.#route, reason })
      this.#refusalCells.set(reason, cell)
    }
    cell.value++
  }
}

/**
 * The sealing metrics family set: `ecluse_crypto_operations_total{op,kind,result}`,
 * `ecluse_crypto_bytes_total{op,kind}` (plaintext bytes, so `rate()` is sealing throughput),
 * `ecluse_crypto_duration_seconds{op,kind}` (per message), `ecluse_sealed_fields_total{route,op}`
 * and `ecluse_transform_refusals_total{route,reason}`.
 */
export class CryptoMetrics {
  readonly #ops = new Map<string, CryptoOpMetrics>()
  readonly #routes = new Map<string, CryptoRouteMetrics>()
  readonly #fields: CellCounter<'route' | 'op'>
  readonly #refusals: CellCounter<'route' | 'reason'>
  /** Series for a route name that was never registered (a caller bug, or a test without routes). */
  readonly unmatched: CryptoRouteMetrics

  /** @internal Built by `GatewayMetrics` only. */
  constructor(registry: Registry) {
    const operations = new CellCounter(registry, 'ecluse_crypto_operations_total', 'Sealing operations by op, kind and result.', [
      'op',
      'kind',
      'result',
    ])
    const bytes = new CellCounter(registry, 'ecluse_crypto_bytes_total', 'Plaintext bytes sealed, opened or verified.', ['op', 'kind'])
    const duration = new Histogram<'op' | 'kind'>({
      name: 'ecluse_crypto_duration_seconds',
      help: 'Time spent in the cryptography for one message, in seconds.',
      labelNames: ['op', 'kind'],
      buckets: [...CRYPTO_BUCKETS_SECONDS],
      registers: [registry],
    })
    for (const op of CRYPTO_OPS) {
      for (const kind of CRYPTO_KINDS) {
        const child = duration.labels({ op, kind })
        duration.zero({ op, kind })
        this.#ops.set(
          `${op}:${kind}`,
          new CryptoOpMetrics(
            operations.cell({ op, kind, result: 'ok' }),
            operations.cell({ op, kind, result: 'failed' }),
            bytes.cell({ op, kind }),
            child,
          ),
        )
      }
    }
    this.#fields = new CellCounter(registry, 'ecluse_sealed_fields_total', 'JSON fields sealed, opened or verified, by route.', [
      'route',
      'op',
    ])
    this.#refusals = new CellCounter(
      registry,
      'ecluse_transform_refusals_total',
      'Messages a body transform refused, by route and error code.',
      ['route', 'reason'],
    )
    this.unmatched = this.#bind(UNMATCHED_ROUTE)
  }

  /** The pre-bound series of one (op, kind). */
  op(op: CryptoOp, kind: CryptoKind): CryptoOpMetrics {
    const m = this.#ops.get(`${op}:${kind}`)
    if (m === undefined) throw new EcluseError('internal', `no crypto series for ${op}/${kind}`)
    return m
  }

  /** @internal Bind a route's series (called by `GatewayMetrics.registerRoutes`). */
  registerRoute(name: string): void {
    if (!this.#routes.has(name)) this.#routes.set(name, this.#bind(name))
  }

  /** The pre-bound series of a registered route (one Map lookup); others land on `unmatched`. */
  forRoute(name: string): CryptoRouteMetrics {
    return this.#routes.get(name) ?? this.unmatched
  }

  #bind(route: string): CryptoRouteMetrics {
    const fields = {} as Record<CryptoOp, CounterCell>
    for (const op of CRYPTO_OPS) fields[op] = this.#fields.cell({ route, op })
    return new CryptoRouteMetrics(route, fields, this.#refusals)
  }
}

/** The gateway's version from package.json, found by walking up from this module (src or dist). */
function packageVersion(): string {
  let dir = new URL('.', import.meta.url)
  for (let i = 0; i < 4; i++) {
    dir = new URL('..', dir)
    try {
      const pkg = JSON.parse(readFileSync(new URL('package.json', dir), 'utf8')) as { name?: unknown; version?: unknown }
      if (pkg.name === 'ecluse' && typeof pkg.version === 'string') return pkg.version
    } catch {
      // not here; keep walking up
    }
  }
  return 'unknown'
}
