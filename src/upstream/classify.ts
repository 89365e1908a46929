/**
 * Upstream failures → stable `upstream_*` codes. The original error stays as `cause` for the log;
 * a client only ever sees the code (errors.ts).
 *
 * Errors come from three layers with three spellings: Node's socket layer (`ECONNREFUSED`), OpenSSL
 * through Node (`CERT_HAS_EXPIRED`, `ERR_SSL_…`) and undici (`UND_ERR_…`, `HPE_…` from llhttp).
 * Happy-eyeballs connects may wrap them in an `AggregateError`; they are unwrapped here.
 */
import { EcluseError, type ErrorCode, foreignErrorDetail, isEcluseError } from '../errors.js'

/** The subset of error codes that describe a failure of the trusted side. */
export type UpstreamErrorCode = Extract<ErrorCode, `upstream_${string}`>

const BY_CODE: ReadonlyMap<string, UpstreamErrorCode> = new Map<string, UpstreamErrorCode>([
  ['ECONNREFUSED', 'upstream_refused'],

  ['ECONNRESET', 'upstream_reset'],
  ['ECONNABORTED', 'upstream_reset'],
  ['ENETRESET', 'upstream_reset'],
  ['EPIPE', 'upstream_reset'],
  // undici's SocketError: "other side closed", "closed", or a reset it observed.
  ['UND_ERR_SOCKET', 'upstream_reset'],

  ['UND_ERR_CONNECT_TIMEOUT', 'upstream_connect_timeout'],
  // The kernel's own SYN timeout, when it fires before ours.
  ['ETIMEDOUT', 'upstream_connect_timeout'],
  // The TLS handshake is part of connecting.
  ['ERR_TLS_HANDSHAKE_TIMEOUT', 'upstream_connect_timeout'],

  ['UND_ERR_HEADERS_TIMEOUT', 'upstream_timeout'],
  ['UND_ERR_BODY_TIMEOUT', 'upstream_timeout'],

  ['UND_ERR_CLOSED', 'upstream_unavailable'],
  ['UND_ERR_DESTROYED', 'upstream_unavailable'],
  ['ENOTFOUND', 'upstream_unavailable'],
  ['EAI_AGAIN', 'upstream_unavailable'],
  ['EHOSTUNREACH', 'upstream_unavailable'],
  ['EHOSTDOWN', 'upstream_unavailable'],
  ['ENETUNREACH', 'upstream_unavailable'],
  ['ENETDOWN', 'upstream_unavailable'],
  ['EADDRNOTAVAIL', 'upstream_unavailable'],
  // The gateway's own resources for a connection (descriptors, socket buffers) ran out.
  ['EMFILE', 'upstream_unavailable'],
  ['ENFILE', 'upstream_unavailable'],
  ['ENOBUFS', 'upstream_unavailable'],
  // A TLS record the socket layer could not make sense of.
  ['EPROTO', 'upstream_tls'],

  ['UND_ERR_REQ_CONTENT_LENGTH_MISMATCH', 'upstream_bad_response'],
  ['UND_ERR_RES_CONTENT_LENGTH_MISMATCH', 'upstream_bad_response'],
  ['UND_ERR_HEADERS_OVERFLOW', 'upstream_bad_response'],
  ['UND_ERR_RES_EXCEEDED_MAX_SIZE', 'upstream_bad_response'],
])

/**
 * OpenSSL's X509_V_ERR_* names as Node spells them in `err.code` (src/crypto/crypto_common.cc):
 * the peer certificate did not verify against the trusted CA bundle.
 */
const X509_VERIFY_CODES: ReadonlySet<string> = new Set([
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_CRL',
  'UNABLE_TO_DECRYPT_CERT_SIGNATURE',
  'UNABLE_TO_DECRYPT_CRL_SIGNATURE',
  'UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY',
  'CERT_SIGNATURE_FAILURE',
  'CRL_SIGNATURE_FAILURE',
  'CERT_NOT_YET_VALID',
  'CERT_HAS_EXPIRED',
  'CRL_NOT_YET_VALID',
  'CRL_HAS_EXPIRED',
  'ERROR_IN_CERT_NOT_BEFORE_FIELD',
  'ERROR_IN_CERT_NOT_AFTER_FIELD',
  'ERROR_IN_CRL_LAST_UPDATE_FIELD',
  'ERROR_IN_CRL_NEXT_UPDATE_FIELD',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'CERT_CHAIN_TOO_LONG',
  'CERT_REVOKED',
  'INVALID_CA',
  'PATH_LENGTH_EXCEEDED',
  'INVALID_PURPOSE',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'HOSTNAME_MISMATCH',
  // What Node 20 calls the verification errors it has no name for, among them the security level's
  // (EE_KEY_TOO_SMALL, CA_KEY_TOO_SMALL, CA_MD_TOO_WEAK: config/tls-policy.ts).
  'UNSPECIFIED',
  'EE_KEY_TOO_SMALL',
  'CA_KEY_TOO_SMALL',
  'CA_MD_TOO_WEAK',
])

/** undici `SocketError` messages (client-h1) for a response it refused, not a lost connection. */
const UNDICI_BAD_ANSWERS: ReadonlySet<string> = new Set(['bad response', 'bad upgrade'])

/** Errors that mean "whoever holds the signal stopped this", not "the upstream failed". */
const ABORT_CODES: ReadonlySet<string> = new Set(['ABORT_ERR', 'UND_ERR_ABORTED', 'UND_ERR_ABORT'])

function codeOf(err: unknown): string | undefined {
  if (typeof err !== 'object' || err === null) return undefined
  const code = (err as { code?: unknown }).code
  return typeof code === 'string' ? code : undefined
}

function byCode(code: string | undefined): UpstreamErrorCode | undefined {
  if (code === undefined) return undefined
  const mapped = BY_CODE.get(code)
  if (mapped !== undefined) return mapped
  // ERR_TLS_CERT_ALTNAME_INVALID (name check against serverName), ERR_SSL_* (OpenSSL alerts such as
  // TLSV1_ALERT_UNKNOWN_CA when the upstream refuses our certificate, or version mismatches).
  if (X509_VERIFY_CODES.has(code) || code.startsWith('ERR_TLS_') || code.startsWith('ERR_SSL_')) {
    return 'upstream_tls'
  }
  // llhttp parse errors: the upstream spoke something that is not HTTP/1.1 we can relay.
  if (code.startsWith('HPE_')) return 'upstream_bad_response'
  return undefined
}

/**
 * undici's error for an answer its HTTP/1.1 parser (llhttp) refused. Its `code` should be llhttp's
 * `HPE_*` name but is left undefined (undici 7 looks the number up in a table keyed by name), so it is
 * known by its name; its `data` holds the upstream's raw bytes, which are never logged.
 */
export function isUpstreamParserError(err: unknown): boolean {
  return typeof err === 'object' && err !== null && (err as { name?: unknown }).name === 'HTTPParserError'
}

/** llhttp's reason when the connection ended inside a message (a body cut on `Connection: close`). */
const PARSER_EOF = '(Invalid EOF state)'

/**
 * Maps any error raised while talking to an upstream (request or response body) to an
 * `upstream_*` code. Follows `cause` and `AggregateError.errors` a few levels deep; anything not
 * recognised (`recognizedUpstreamError`) is `upstream_bad_response` (the exchange could not be
 * relayed safely).
 *
 * @example
 * classifyUpstreamError(Object.assign(new Error('x'), { code: 'ECONNREFUSED' })) // 'upstream_refused'
 */
export function classifyUpstreamError(err: unknown): UpstreamErrorCode {
  return recognizedUpstreamError(err) ?? 'upstream_bad_response'
}

/**
 * The `upstream_*` code of an error that carries the mark of the upstream connection (a socket,
 * TLS, undici or llhttp code, or an `upstream_*` EcluseError), else `undefined`: an error without
 * one (a `TypeError` from a body stage) did not come from the upstream.
 */
export function recognizedUpstreamError(err: unknown): UpstreamErrorCode | undefined {
  let current: unknown = err
  for (let depth = 0; depth < 4 && current != null; depth++) {
    if (isEcluseError(current) && current.code.startsWith('upstream_')) {
      return current.code as UpstreamErrorCode
    }
    const code = codeOf(current)
    // undici's parser destroys the socket with these on an answer it cannot relay (an unsolicited
    // 100 Continue, a 101 to a request that asked for no upgrade): the upstream's answer was wrong,
    // the connection was not reset under it.
    if (code === 'UND_ERR_SOCKET' && UNDICI_BAD_ANSWERS.has((current as Error).message)) return 'upstream_bad_response'
    // The connection closed inside the answer: as much a reset as an ECONNRESET.
    if (isUpstreamParserError(current)) return String((current as Error).message).endsWith(PARSER_EOF) ? 'upstream_reset' : 'upstream_bad_response'
    const mapped = byCode(code)
    if (mapped !== undefined) return mapped
    if (current instanceof AggregateError && current.errors.length > 0) {
      const first = current.errors.map((e) => byCode(codeOf(e))).find((c) => c !== undefined)
      if (first !== undefined) return first
    }
    // OpenSSL errors without a mapped code still carry `library: 'SSL routines'`.
    if (typeof current === 'object' && (current as { library?: unknown }).library === 'SSL routines') {
      return 'upstream_tls'
    }
    // Any other system error of the socket (Node sets `syscall`: read, write, connect): the
    // connection failed under the exchange.
    if (typeof current === 'object' && typeof (current as { syscall?: unknown }).syscall === 'string') return 'upstream_reset'
    current = (current as { cause?: unknown }).cause
  }
  return undefined
}

/** True for an abort (signal reason, undici's RequestAbortedError, a DOMException AbortError). */
export function isAbortError(err: unknown): boolean {
  if (typeof err !== 'object' || err === null) return false
  const code = codeOf(err)
  return (code !== undefined && ABORT_CODES.has(code)) || (err as { name?: unknown }).name === 'AbortError'
}

/**
 * Converts an upstream error to an `EcluseError`, keeping the original as `cause`. An `EcluseError`
 * passes through unchanged (e.g. a request body stage that refused the body with `body_too_large`).
 */
export function toUpstreamError(upstream: string, err: unknown): EcluseError {
  if (isEcluseError(err)) return err
  const recognized = recognizedUpstreamError(err)
  const code = recognized ?? 'upstream_bad_response'
  // The texts of socket, TLS, undici and llhttp errors are constant; another error's message may
  // quote what it failed on, so the log gets its name and code only, and no `cause` to carry it.
  if (recognized === undefined || !(err instanceof Error)) return new EcluseError(code, `upstream ${upstream}: ${foreignErrorDetail(err)}`)
  // llhttp's reason is a constant text; the error's `data` (the upstream's bytes) stays out of the log.
  if (isUpstreamParserError(err)) return new EcluseError(code, `upstream ${upstream}: HTTPParserError: ${err.message}`)
  return new EcluseError(code, `upstream ${upstream}: ${err.name}${codeOf(err) ? ` ${codeOf(err)}` : ''}: ${err.message}`, { cause: err })
}

/**
 * Classifies an `error` emitted by an `UpstreamResponse.body`. Such an error always means the
 * response is incomplete (reset mid-body → `upstream_reset`, body timeout → `upstream_timeout`,
 * fewer bytes than Content-Length or a malformed chunk → `upstream_bad_response`): the caller must abort its own
 * response (destroy the connection), never finish it as if complete.
 *
 * An `EcluseError` (a downstream stage that destroyed the pipeline) passes through unchanged.
 *
 * @example
 * pipeline(upstreamRes.body, res, (err) => { if (err) { const e = upstreamBodyError('acc', err); log(e); res.destroy() } })
 */
export function upstreamBodyError(upstream: string, err: unknown): EcluseError {
  const failure = toUpstreamError(upstream, err)
  // The connection was up (its answer had begun): the socket's ETIMEDOUT here is a read that timed
  // out, not a connect.
  if (failure.code === 'upstream_connect_timeout') return new EcluseError('upstream_timeout', failure.message, { cause: failure.cause })
  // Its handshake had succeeded: a TLS failure now (a record that does not decrypt, EPROTO) broke a
  // session, as a reset does. `upstream_tls` stays the certificates' and handshakes' (its alert is
  // critical and sends the on-call to the certificates; found by review of the alerts).
  if (failure.code === 'upstream_tls') return new EcluseError('upstream_reset', failure.message, { cause: failure.cause })
  return failure
}
