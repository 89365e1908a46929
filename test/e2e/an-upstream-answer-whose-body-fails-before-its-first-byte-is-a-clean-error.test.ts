/**
 * Found by review: on a route without response steps the gateway wrote the upstream's head at once,
 * so an answer whose body failed before its first byte (the upstream reset, went silent past
 * `bodyTimeoutMs`, or sent a bad first chunk) reached the sponsor as an empty close, although
 * nothing had crossed yet. The head now goes with the body's first bytes, as Node would send it: such
 * an answer is a clean 502 or 504 with its code, as on a route with response steps.
 */
import t from 'tap'
import { Harness } from '../helpers/harness.js'

t.test('a body that fails before its first byte is a clean 502 or 504; one that fails after is cut', async (t) => {
  const h = await Harness.start({
    upstream: { bodyTimeoutMs: 300, headersTimeoutMs: 2000 },
    handler: (req, res) => {
      const how = req.url?.split('/').at(-1)
      if (how === 'reset') {
        // The head alone, then a reset.
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': '10' })
        res.flushHeaders()
        setTimeout(() => req.socket.destroy(), 50)
      } else if (how === 'silent') {
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': '10' })
        res.flushHeaders()
      } else if (how === 'bad-chunk') {
        req.socket.write('HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n')
      } else {
        // Part of the body, then a reset: too late for a clean answer.
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': '10' })
        res.write('{"a":')
        setTimeout(() => req.socket.destroy(), 50)
      }
    },
  })
  t.teardown(() => h.close())
  for (const [how, status, code] of [
    ['reset', 502, 'upstream_reset'],
    ['silent', 504, 'upstream_timeout'],
    ['bad-chunk', 502, 'upstream_bad_response'],
  ] as const) {
    const res = await h.request(`/v1/records/${how}`)
    t.equal(res.status, status, how)
    t.same(res.json(), { error: code, requestId: res.headers['x-request-id'] }, `${how}: the code, terse`)
  }
  const late = await h.raw('GET /v1/records/late HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n')
  t.match(late, /^HTTP\/1\.1 200 /, 'after the first byte, the head has crossed')
  t.notMatch(late, /\{"a":.{5}/, 'and the body is cut short, never completed')
})
