import t from 'tap'
import { classifyTlsFailure, type TlsFailureReason } from '../src/observability/metrics.js'

/** An error shaped like Node's: a message plus OpenSSL's `code` and `reason` when it has them. */
function nodeError(code: string | undefined, message: string, reason?: string): Error {
  return Object.assign(new Error(message), code === undefined ? {} : { code }, reason === undefined ? {} : { reason })
}

// Codes and messages as Node 20 reports them (observed against real handshakes, see
// metrics-classifies-real-handshake-failures.test.ts), plus the peer alerts for the client role.
const table: Array<[unknown, TlsFailureReason, string]> = [
  // no certificate
  [nodeError('ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE', 'x', 'peer did not return a certificate'), 'no_certificate', 'server: client sent none'],
  [nodeError('ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED', 'x', 'tlsv13 alert certificate required'), 'no_certificate', 'client: TLS 1.3 alert 116'],
  // expired
  ['CERT_HAS_EXPIRED', 'expired_certificate', 'authorizationError string'],
  [nodeError('CERT_HAS_EXPIRED', 'certificate has expired'), 'expired_certificate', 'client verifying an expired server'],
  ['CERT_NOT_YET_VALID', 'expired_certificate', 'not yet valid'],
  [nodeError('ERR_SSL_SSLV3_ALERT_CERTIFICATE_EXPIRED', 'x', 'sslv3 alert certificate expired'), 'expired_certificate', 'peer alert'],
  // untrusted
  ['UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'untrusted_certificate', 'other CA'],
  ['UNABLE_TO_GET_ISSUER_CERT', 'untrusted_certificate', 'issuer missing'],
  ['UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'untrusted_certificate', 'issuer not local'],
  [nodeError('SELF_SIGNED_CERT_IN_CHAIN', 'self-signed certificate in certificate chain'), 'untrusted_certificate', 'foreign root in chain'],
  ['DEPTH_ZERO_SELF_SIGNED_CERT', 'untrusted_certificate', 'self-signed leaf'],
  [nodeError('INVALID_PURPOSE', 'unsuitable certificate purpose'), 'untrusted_certificate', 'CA cert used as leaf'],
  [nodeError('ERR_TLS_CERT_ALTNAME_INVALID', "Hostname/IP does not match certificate's altnames"), 'untrusted_certificate', 'name mismatch'],
  [nodeError('ERR_SSL_TLSV1_ALERT_UNKNOWN_CA', 'x', 'tlsv1 alert unknown ca'), 'untrusted_certificate', 'peer: unknown ca'],
  [nodeError('ERR_SSL_SSLV3_ALERT_BAD_CERTIFICATE', 'x'), 'untrusted_certificate', 'peer: bad certificate'],
  [nodeError('ERR_SSL_CERTIFICATE_VERIFY_FAILED', 'x', 'certificate verify failed'), 'untrusted_certificate', 'verify failed'],
  // timeout
  [nodeError('ERR_TLS_HANDSHAKE_TIMEOUT', 'TLS handshake timeout'), 'handshake_timeout', 'server deadline'],
  [new Error('TLS handshake timeout'), 'handshake_timeout', 'message only'],
  // protocol
  [nodeError('ECONNRESET', 'read ECONNRESET'), 'protocol', 'reset mid-handshake'],
  [nodeError('ECONNRESET', 'socket hang up'), 'protocol', 'hang up'],
  [nodeError('ERR_SSL_UNSUPPORTED_PROTOCOL', 'x', 'unsupported protocol'), 'protocol', 'version below minVersion'],
  [nodeError('ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION', 'x', 'tlsv1 alert protocol version'), 'protocol', 'peer: version'],
  [nodeError('ERR_SSL_WRONG_VERSION_NUMBER', 'x', 'wrong version number'), 'protocol', 'not TLS'],
  [nodeError('ERR_SSL_NO_SHARED_CIPHER', 'x', 'no shared cipher'), 'protocol', 'cipher'],
  [nodeError('ERR_SSL_SSLV3_ALERT_HANDSHAKE_FAILURE', 'x', 'sslv3 alert handshake failure'), 'protocol', 'peer: handshake failure'],
  [nodeError('ERR_SSL_HTTP_REQUEST', 'x', 'http request'), 'protocol', 'plain HTTP on the TLS port'],
  [nodeError('ERR_SSL_EXCESSIVE_MESSAGE_SIZE', 'x', 'excessive message size'), 'protocol', 'any other ERR_SSL_ code'],
  // wrapped (undici puts the socket error in `cause`)
  [Object.assign(new TypeError('fetch failed'), { cause: nodeError('CERT_HAS_EXPIRED', 'certificate has expired') }), 'expired_certificate', 'cause chain'],
  // everything else
  [nodeError('ECONNREFUSED', 'connect ECONNREFUSED'), 'other', 'not a handshake failure'],
  [new Error('something else'), 'other', 'unknown error'],
  ['', 'other', 'empty string'],
  [undefined, 'other', 'undefined'],
  [null, 'other', 'null'],
  [42, 'other', 'number'],
  [{ code: 17 }, 'other', 'non-string code'],
]

t.plan(table.length)
for (const [input, expected, why] of table) {
  t.equal(classifyTlsFailure(input), expected, `${why} → ${expected}`)
}
