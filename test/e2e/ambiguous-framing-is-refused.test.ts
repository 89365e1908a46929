import t from 'tap'
import { Harness, metricValue } from '../helpers/harness.js'

const CASES = {
  'Content-Length with Transfer-Encoding':
    'POST /v1/records/1 HTTP/1.1\r\nhost: localhost\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n',
  'two different Content-Length headers':
    'POST /v1/records/1 HTTP/1.1\r\nhost: localhost\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\nhello!',
  'two equal Content-Length headers':
    'POST /v1/records/1 HTTP/1.1\r\nhost: localhost\r\ncontent-length: 5\r\ncontent-length: 5\r\n\r\nhello',
  'an obs-fold continuation line':
    'GET /v1/records/1 HTTP/1.1\r\nhost: localhost\r\nx-folded: a\r\n  b\r\n\r\n',
  'a chunked body with a bad chunk size':
    'POST /v1/records/1 HTTP/1.1\r\nhost: localhost\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n',
}

t.test('ambiguous framing is refused with 400 and never reaches the upstream', async (t) => {
  const h = await Harness.start()
  t.teardown(() => h.close())
  for (const [name, bytes] of Object.entries(CASES)) {
    const response = await h.raw(bytes)
    t.match(response, /^HTTP\/1\.1 400 /, name)
    t.match(response, /"error":"(request_framing|bad_request)"/, `${name}: stable code`)
  }
  t.equal(h.upstream.hits, 0)
  const metrics = await h.metrics()
  const refused =
    metricValue(metrics, 'ecluse_rejected_requests_total', { reason: 'request_framing' }) +
    metricValue(metrics, 'ecluse_rejected_requests_total', { reason: 'bad_request' })
  t.equal(refused, Object.keys(CASES).length, 'every refusal is counted')
})

t.test('an Expect other than 100-continue is a 417 with the stable code, counted, and never reaches the upstream', async (t) => {
  const h = await Harness.start()
  t.teardown(() => h.close())
  const response = await h.raw('POST /v1/records/1 HTTP/1.1\r\nhost: localhost\r\nexpect: foo\r\ncontent-length: 2\r\n\r\n{}')
  t.match(response, /^HTTP\/1\.1 417 /)
  t.match(response, /\r\n\r\n\{"error":"bad_request"\}$/, 'the code alone')
  t.equal(h.upstream.hits, 0)
  t.equal(metricValue(await h.metrics(), 'ecluse_rejected_requests_total', { reason: 'bad_request' }), 1, 'counted')
})
