/**
 * One error type for the whole gateway, every code in one place (fastify `lib/errors.js`, jose
 * `src/util/errors.ts`). A client only ever sees `{ "error": code }` and the HTTP status mapped
 * here; the `detail` goes to the log and never crosses to either side.
 */

/** Every stable error code, with the HTTP status a client receives and a one-line public meaning. */
export const ERROR_CODES = {
  // ---- sponsor side: request shape and routing
  bad_request: { status: 400, summary: 'The request could not be parsed as HTTP/1.1.' },
  http_version_not_supported: {
    status: 505,
    summary: 'HTTP/1.0: a response cut short could not be told from a complete one; use HTTP/1.1.',
  },
  request_framing: {
    status: 400,
    summary: 'Ambiguous message framing (Content-Length with Transfer-Encoding, duplicate Content-Length, obs-fold).',
  },
  path_rejected: {
    status: 400,
    summary: 'The path is ambiguous (dot segments, encoded slash or dot, empty segment, NUL) and is refused before matching.',
  },
  headers_too_large: { status: 431, summary: 'The request header block exceeds the configured limit.' },
  route_not_found: { status: 404, summary: 'No route matches this method and path.' },
  method_not_allowed: { status: 405, summary: 'The path is routed but not for this method.' },
  forbidden: { status: 403, summary: 'The verified client principal is not allowed on this route.' },
  body_too_large: { status: 413, summary: 'The request body exceeds the route limit.' },
  precondition_failed: {
    status: 412,
    summary: 'If-Match names an entity-tag on a route whose responses are transformed: the gateway never sends one there.',
  },
  request_timeout: { status: 408, summary: 'The client was too slow to send its request.' },
  overloaded: { status: 503, summary: 'The gateway is at its connection or request cap.' },
  shutting_down: { status: 503, summary: 'The gateway is draining and accepts no new requests.' },
  misdirected_request: { status: 421, summary: 'The loopback admin listener answers only a Host that names loopback.' },

  // ---- trusted side: upstream failures
  upstream_refused: { status: 502, summary: 'The upstream refused the connection.' },
  upstream_reset: { status: 502, summary: 'The upstream closed or reset the connection before a complete response.' },
  upstream_tls: { status: 502, summary: 'The upstream failed mutual TLS verification.' },
  upstream_bad_response: { status: 502, summary: 'The upstream sent a response that cannot be relayed safely.' },
  upstream_unavailable: { status: 503, summary: 'The upstream pool is closed or saturated.' },
  upstream_connect_timeout: { status: 504, summary: 'Connecting to the upstream timed out.' },
  upstream_timeout: { status: 504, summary: 'The upstream did not answer within the configured timeout.' },

  // ---- body transforms (sealing); see docs/errors.md
  transform_failed: { status: 502, summary: 'A body transform could not guarantee the response is safe.' },
  request_transform_failed: { status: 500, summary: 'A request body transform failed on its own (a bug in a stage).' },
  unsupported_media_type: { status: 415, summary: 'The body type or encoding cannot be transformed safely.' },
  plaintext_refused: { status: 422, summary: 'A field or body that must cross sealed was present in plaintext.' },
  seal_failed: { status: 502, summary: 'A value could not be sealed; nothing was sent.' },
  open_failed: { status: 400, summary: 'A sealed value could not be opened (uniform, RFC 7516 §11.5).' },
  json_invalid: { status: 400, summary: 'The JSON body does not parse, or spells a member twice or ambiguously.' },
  value_too_large: { status: 413, summary: 'A single JSON value or record exceeds the configured cap.' },
  record_id_missing: { status: 422, summary: 'A record that holds a sealed field has no id to bind it to.' },

  // ---- boot and operations (never sent to a client)
  config_invalid: { status: 500, summary: 'The configuration file is invalid.' },
  tls_material_invalid: { status: 500, summary: 'A certificate, key or CA bundle cannot be loaded.' },
  key_material_invalid: { status: 500, summary: 'A JWK or JWKS file cannot be loaded.' },
  internal: { status: 500, summary: 'Unexpected internal error.' },
} as const satisfies Record<string, { status: number; summary: string }>

export type ErrorCode = keyof typeof ERROR_CODES

/**
 * The gateway's one error type. `detail` is for the log only.
 *
 * @example
 * throw new EcluseError('forbidden', `principal ${p.id} not in route ${route.name}`)
 */
export class EcluseError extends Error {
  readonly code: ErrorCode
  readonly status: number

  constructor(code: ErrorCode, detail?: string, options?: { cause?: unknown }) {
    super(detail ?? ERROR_CODES[code].summary, options)
    this.name = 'EcluseError'
    this.code = code
    this.status = ERROR_CODES[code].status
  }
}

export function isEcluseError(err: unknown): err is EcluseError {
  return err instanceof EcluseError
}

/** The exact body a client receives: a stable code and nothing else, never the detail. */
export function publicErrorBody(code: ErrorCode, requestId?: string): string {
  return requestId === undefined
    ? JSON.stringify({ error: code })
    : JSON.stringify({ error: code, requestId })
}

/**
 * The body the gateway sends in place of an upstream answer's own when the route withholds error
 * bodies (`routes[].errorBodies: withhold`): the upstream's status, which the status line repeats, and
 * the request id, nothing of what the upstream wrote. No `error` member: the failure is the
 * upstream's answer, not a refusal of the gateway's.
 */
export function withheldAnswerBody(status: number, requestId: string): string {
  return JSON.stringify({ upstreamStatus: status, requestId })
}

/** A gateway's own answer (`{"error":<code>,"requestId":<UUID>}`, or a withheld one's): a few dozen bytes. */
export const MAX_GATEWAY_ANSWER_BYTES = 256
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

/**
 * The same answer re-issued under `requestId`, if `body`, sent with `status`, is byte for byte one
 * that an Écluse gateway writes itself: an error answer (`publicErrorBody`, with its code's status)
 * or the body it sends in place of an upstream answer it withholds (`withheldAnswerBody`, with a
 * status `isWithheldStatus` takes). Anything else: undefined. So a gateway in front of another
 * passes on nothing of its answers' bytes but one code or status of a fixed set.
 */
export function readGatewayAnswer(body: Buffer, status: number | undefined, requestId: string): string | undefined {
  if (body.length > MAX_GATEWAY_ANSWER_BYTES) return undefined
  let doc: unknown
  try {
    doc = JSON.parse(body.toString('utf8'))
  } catch {
    return undefined
  }
  if (typeof doc !== 'object' || doc === null) return undefined
  const { error, upstreamStatus, requestId: theirs } = doc as Record<string, unknown>
  if (theirs !== undefined && (typeof theirs !== 'string' || !UUID.test(theirs))) return undefined
  // Byte for byte: no other member, no whitespace, nothing escaped.
  if (typeof error === 'string' && Object.hasOwn(ERROR_CODES, error)) {
    const code = error as ErrorCode
    const same = ERROR_CODES[code].status === status && Buffer.from(publicErrorBody(code, theirs)).equals(body)
    return same ? publicErrorBody(code, requestId) : undefined
  }
  if (upstreamStatus === status && typeof status === 'number' && isWithheldStatus(status) && typeof theirs === 'string') {
    return Buffer.from(withheldAnswerBody(status, theirs)).equals(body) ? withheldAnswerBody(status, requestId) : undefined
  }
  return undefined
}

/**
 * Answers whose body `errorBodies: withhold` replaces: every one that is not a success, but a 304 (no
 * body, a cache's answer). Statuses past 599, which undici and Node take (up to 999), are no success
 * either (the exchange refuses them before asking).
 */
export function isWithheldStatus(status: number): boolean {
  return Number.isInteger(status) && status >= 300 && status !== 304
}

/**
 * What a log may say of an error the gateway did not make (a plug-in stage's, a library's): its
 * name and code, never its message, which may quote the input it choked on (V8's `JSON.parse`
 * quotes up to the whole of a short one).
 *
 * @example
 * foreignErrorDetail(new SyntaxError('Unexpected token …')) // 'SyntaxError'
 */
export function foreignErrorDetail(err: unknown): string {
  if (!(err instanceof Error)) return typeof err
  const code = (err as { code?: unknown }).code
  return typeof code === 'string' && /^[A-Z0-9_]{1,64}$/.test(code) ? `${err.name} ${code}` : err.name
}
