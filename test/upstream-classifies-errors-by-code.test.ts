import t from 'tap'
import { EcluseError } from '../src/errors.js'
import {
  classifyUpstreamError,
  isAbortError,
  toUpstreamError,
  type UpstreamErrorCode,
  upstreamBodyError,
} from '../src/upstream/pool.js'

function coded(code: string, message = 'x'): Error {
  return Object.assign(new Error(message), { code })
}

const TABLE: Array<[string, UpstreamErrorCode]> = [
  ['ECONNREFUSED', 'upstream_refused'],
  ['ECONNRESET', 'upstream_reset'],
  ['EPIPE', 'upstream_reset'],
  ['UND_ERR_SOCKET', 'upstream_reset'],
  ['UND_ERR_CONNECT_TIMEOUT', 'upstream_connect_timeout'],
  ['ETIMEDOUT', 'upstream_connect_timeout'],
  ['UND_ERR_HEADERS_TIMEOUT', 'upstream_timeout'],
  ['UND_ERR_BODY_TIMEOUT', 'upstream_timeout'],
  ['ERR_TLS_CERT_ALTNAME_INVALID', 'upstream_tls'],
  ['UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'upstream_tls'],
  ['CERT_HAS_EXPIRED', 'upstream_tls'],
  ['SELF_SIGNED_CERT_IN_CHAIN', 'upstream_tls'],
  ['DEPTH_ZERO_SELF_SIGNED_CERT', 'upstream_tls'],
  ['ERR_SSL_TLSV1_ALERT_UNKNOWN_CA', 'upstream_tls'],
  ['ERR_SSL_SSLV3_ALERT_BAD_CERTIFICATE', 'upstream_tls'],
  ['ERR_SSL_WRONG_VERSION_NUMBER', 'upstream_tls'],
  ['UND_ERR_CLOSED', 'upstream_unavailable'],
  ['UND_ERR_DESTROYED', 'upstream_unavailable'],
  ['ENOTFOUND', 'upstream_unavailable'],
  ['EHOSTUNREACH', 'upstream_unavailable'],
  ['UND_ERR_REQ_CONTENT_LENGTH_MISMATCH', 'upstream_bad_response'],
  ['UND_ERR_RES_CONTENT_LENGTH_MISMATCH', 'upstream_bad_response'],
  ['UND_ERR_HEADERS_OVERFLOW', 'upstream_bad_response'],
  ['HPE_INVALID_STATUS', 'upstream_bad_response'],
  ['SOMETHING_NEW', 'upstream_bad_response'],
]

t.test('each known error code maps to its upstream code', async (t) => {
  t.plan(TABLE.length)
  for (const [code, expected] of TABLE) t.equal(classifyUpstreamError(coded(code)), expected, code)
})

t.test('wrapped errors are unwrapped: AggregateError (happy eyeballs) and cause chains', async (t) => {
  const aggregate = new AggregateError([coded('ECONNREFUSED'), coded('ECONNREFUSED')], 'connect failed')
  t.equal(classifyUpstreamError(aggregate), 'upstream_refused')
  const wrapped = new TypeError('fetch failed', { cause: coded('CERT_HAS_EXPIRED') })
  t.equal(classifyUpstreamError(wrapped), 'upstream_tls')
  const openssl = Object.assign(new Error('ssl'), { library: 'SSL routines', reason: 'some new reason' })
  t.equal(classifyUpstreamError(openssl), 'upstream_tls')
  t.equal(classifyUpstreamError('a string'), 'upstream_bad_response')
  t.equal(classifyUpstreamError(null), 'upstream_bad_response')
})

t.test('toUpstreamError keeps the cause and lets an EcluseError through', async (t) => {
  const original = coded('ECONNRESET', 'read ECONNRESET')
  const err = toUpstreamError('accreditation', original)
  t.equal(err.code, 'upstream_reset')
  t.equal(err.status, 502)
  t.equal(err.cause, original)
  t.match(err.message, /^upstream accreditation: Error ECONNRESET: read ECONNRESET$/)

  const own = new EcluseError('body_too_large', 'limit')
  t.equal(toUpstreamError('accreditation', own), own)
  t.equal(upstreamBodyError('accreditation', own), own, 'a downstream stage error is not an upstream failure')
  t.equal(upstreamBodyError('accreditation', coded('UND_ERR_BODY_TIMEOUT')).code, 'upstream_timeout')
})

t.test('aborts are recognised in their three spellings', async (t) => {
  t.ok(isAbortError(new DOMException('This operation was aborted', 'AbortError')))
  t.ok(isAbortError(coded('UND_ERR_ABORTED')))
  t.ok(isAbortError(coded('ABORT_ERR')))
  t.notOk(isAbortError(coded('ECONNRESET')))
  t.notOk(isAbortError(undefined))
})
