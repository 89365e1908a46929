/**
 * HTTP/1.1 messages Node's parsers let through but a relay must not pass on as they are: a request
 * transfer coding the upstream would never see, framing headers past Node's header count, a missing
 * or doubled Host, CONNECT, HTTP/1.0 (whose responses cannot show a cut); and from the upstream, an unsolicited 100 or 101, a 204 that declares a
 * length, an answer sent before the request body is in.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import tls from 'node:tls'
import t from 'tap'
import { Harness, metricValue } from '../helpers/harness.js'

const HOST = 'host: localhost\r\n'

t.test('requests: a transfer coding, hidden framing, Host and CONNECT', async (t) => {
  const bodies: string[] = []
  const h = await Harness.start({
    handler: (req: IncomingMessage, res: ServerResponse) => {
      let body = ''
      req.setEncoding('latin1')
      req.on('data', (c: string) => (body += c))
      req.on('end', () => {
        bodies.push(body)
        res.writeHead(200, { 'content-type': 'application/json' }).end(`{"bytes":${body.length}}`)
      })
    },
  })
  t.teardown(() => h.close())

  const refused: Array<[string, string, RegExp, string]> = [
    // The coding would go with the hop-by-hop header, and the upstream would take gzip bytes for the content.
    ['a transfer coding before chunked', `POST /v1/records/1 HTTP/1.1\r\n${HOST}transfer-encoding: gzip, chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n`, /^HTTP\/1\.1 400 /, 'request_framing'],
    ['no Host', 'GET /v1/records/1 HTTP/1.1\r\n\r\n', /^HTTP\/1\.1 400 /, 'bad_request'],
    ['two Host headers', `GET /v1/records/1 HTTP/1.1\r\n${HOST}${HOST}\r\n`, /^HTTP\/1\.1 400 /, 'bad_request'],
    ['CONNECT', `CONNECT accreditation.trusted.test:443 HTTP/1.1\r\n${HOST}\r\n`, /^HTTP\/1\.1 400 /, 'bad_request'],
    // HTTP/1.0 has no chunked coding: a body of unknown length ends with the connection, so the
    // close that aborts a response the gateway cannot finish safely would read as its complete end.
    ['HTTP/1.0', 'GET /v1/records/1 HTTP/1.0\r\n\r\n', /^HTTP\/1\.1 505 /, 'http_version_not_supported'],
    ['HTTP/1.0 with a Host', `GET /v1/records/1 HTTP/1.0\r\n${HOST}\r\n`, /^HTTP\/1\.1 505 /, 'http_version_not_supported'],
  ]
  for (const [what, bytes, status, code] of refused) {
    const answer = await h.raw(bytes)
    t.match(answer, status, `${what}: refused`)
    t.match(answer, new RegExp(`"error":"${code}"`), `${what}: ${code}`)
  }
  t.equal(h.upstream.hits, 0, 'none of them reached the upstream')
  t.match(await h.raw(`GET /v1/records/1 HTTP/1.1\r\n${HOST}\r\n`), /^HTTP\/1\.1 200 /, 'control: the same GET in HTTP/1.1 is relayed')
  t.equal(h.upstream.hits, 1)
  const metrics = await h.metrics()
  t.equal(metricValue(metrics, 'ecluse_rejected_requests_total', { reason: 'http_version_not_supported' }), 2, 'counted')
  t.equal(metricValue(metrics, 'ecluse_rejected_requests_total', { reason: 'request_framing' }), 1, 'counted')
  t.equal(metricValue(metrics, 'ecluse_rejected_requests_total', { reason: 'bad_request' }), 3, 'counted')

  // CONNECT leaves the HTTP layer's timeouts behind: a client that keeps its side open after the
  // answer must not keep the connection (a slot of maxConnections) for ever.
  // allowHalfOpen is a net.Socket option tls.connect passes on, missing from its type.
  const client = tls.connect({ ...h.sponsorTls(), allowHalfOpen: true } as tls.ConnectionOptions)
  t.teardown(() => client.destroy())
  const answered = await new Promise<string>((resolve, reject) => {
    let answer = ''
    client.setEncoding('latin1')
    client.on('data', (d: string) => (answer += d))
    // The gateway's side ends; this client keeps its own open.
    client.on('end', () => resolve(answer))
    client.on('error', reject)
    client.once('secureConnect', () => client.write(`CONNECT accreditation.trusted.test:443 HTTP/1.1\r\n${HOST}\r\n`))
  })
  t.match(answered, /"error":"bad_request"/, 'a half-open client still gets the answer')
  let open = h.gateway.sponsor.openConnections
  for (let waited = 0; open > 0 && waited < 7_000; waited += 100) {
    await new Promise((r) => setTimeout(r, 100))
    open = h.gateway.sponsor.openConnections
  }
  t.equal(open, 0, 'and the gateway closes the connection, though the client never did')

  // Past Node's default of 2000 headers, the rest vanished from the request the gateway saw while
  // the parser still framed the body with them: the body was dropped and its length never checked.
  const filler = Array.from({ length: 2000 }, (_, i) => `x-f${i}: 1\r\n`).join('')
  const hidden = await h.raw(`POST /v1/records/1 HTTP/1.1\r\n${HOST}${filler}content-length: 5\r\nconnection: close\r\n\r\nhello`)
  t.match(hidden, /^HTTP\/1\.1 200 /)
  t.equal(bodies.at(-1), 'hello', 'a Content-Length after 2000 headers still frames the body that goes upstream')
})

t.test('responses: an unsolicited 100 or 101, a 204 with a length, an early answer', async (t) => {
  const h = await Harness.start({
    handler: (req: IncomingMessage, res: ServerResponse) => {
      const url = req.url ?? ''
      if (url.endsWith('/early')) {
        // Answered before the request body is read, as an upstream refusing an upload does.
        res.writeHead(201, { 'content-type': 'application/json' }).end('{"stored":false}')
        return
      }
      req.resume()
      req.on('end', () => {
        if (url.endsWith('/100')) req.socket.end('HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok')
        else if (url.endsWith('/101')) req.socket.end('HTTP/1.1 101 Switching Protocols\r\nupgrade: h2c\r\nconnection: upgrade\r\n\r\n')
        else if (url.endsWith('/204')) req.socket.end('HTTP/1.1 204 No Content\r\ncontent-length: 5\r\n\r\n')
        else if (url.endsWith('/identity')) req.socket.end('HTTP/1.1 200 OK\r\ntransfer-encoding: identity\r\nconnection: close\r\n\r\npart of a bo')
        else if (url.endsWith('/gzip-chunked')) req.socket.end('HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n')
        else res.end('ok')
      })
    },
  })
  t.teardown(() => h.close())

  for (const what of ['100', '101', 'identity', 'gzip-chunked']) {
    const res = await h.request(`/v1/records/${what}`)
    t.equal(res.status, 502, `${what}: 502`)
    t.equal((res.json() as { error: string }).error, 'upstream_bad_response', `${what}: the upstream's answer, not a reset connection`)
  }
  const noContent = await h.request('/v1/records/204')
  t.equal(noContent.status, 204)
  t.equal(noContent.headers['content-length'], undefined, 'a 204 carries no Content-Length (RFC 9110 §8.6)')

  // The client is still sending when the answer comes: the connection must end with it, or the
  // rest of the body would be read as the next request.
  const answer = await new Promise<string>((resolve, reject) => {
    const socket = tls.connect(h.sponsorTls())
    let out = ''
    socket.setEncoding('latin1')
    socket.on('data', (d: string) => (out += d))
    socket.on('close', () => resolve(out))
    socket.on('error', (err) => (out === '' ? reject(err) : resolve(out)))
    socket.once('secureConnect', () => socket.write(`PUT /v1/records/early HTTP/1.1\r\n${HOST}content-length: 1000000\r\n\r\n${'x'.repeat(1000)}`))
  })
  t.match(answer, /^HTTP\/1\.1 201 /, 'the early answer is relayed')
  t.match(answer, /\r\nconnection: close\r\n/i, 'with connection: close, the body being unfinished')
})
