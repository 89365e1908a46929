import { request } from 'node:http'
import { connect } from 'node:net'
import t from 'tap'
import { ADMIN_LIMITS, AdminServer } from '../src/admin/server.js'
import { createLogger } from '../src/observability/logger.js'
import { GatewayMetrics } from '../src/observability/metrics.js'

function call(port: number, path: string, method: string, body?: string): Promise<{ status: number; allow?: string; connection?: string; body: string }> {
  return new Promise((resolve, reject) => {
    const headers = body === undefined ? {} : { 'content-length': Buffer.byteLength(body) }
    const req = request({ host: '127.0.0.1', port, path, method, headers, agent: false }, (res) => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => {
        text += c
      })
      res.on('end', () =>
        resolve({
          status: res.statusCode ?? 0,
          allow: res.headers.allow,
          connection: res.headers.connection,
          body: text,
        }),
      )
    })
    req.on('error', reject)
    req.end(body)
  })
}

/** Send raw bytes and read the raw answer until the server closes. */
function raw(port: number, bytes: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => socket.write(bytes))
    let text = ''
    socket.setEncoding('utf8')
    socket.on('data', (c: string) => {
      text += c
    })
    socket.on('error', reject)
    socket.on('close', () => resolve(text))
  })
}

/** An admin listener with no route series and an always-ready check, closed by `t`; its port. */
async function startAdmin(t: { teardown(fn: () => unknown): void }, host = '127.0.0.1'): Promise<number> {
  const admin = new AdminServer({
    listen: { host, port: 0 },
    metrics: new GatewayMetrics({ routes: [], defaultMetrics: false }),
    readiness: () => ({ ready: true, checks: {} }),
    log: createLogger({ level: 'silent' }),
  })
  const { port } = await admin.listen()
  t.teardown(() => admin.close())
  return port
}

t.test('answers anything but its three GET routes with a stable code', async (t) => {
  const port = await startAdmin(t)

  for (const path of ['/', '/metrics/', '/admin', '/healthz/../metrics', '/METRICS', 'http://127.0.0.1/metrics']) {
    const res = await call(port, path, 'GET')
    t.equal(res.status, 404, `${path} → 404`)
    t.same(JSON.parse(res.body), { error: 'route_not_found' })
  }
  for (const method of ['POST', 'PUT', 'DELETE', 'OPTIONS', 'PATCH']) {
    const res = await call(port, '/metrics', method)
    t.equal(res.status, 405, `${method} /metrics → 405`)
    t.equal(res.allow, 'GET, HEAD')
    t.same(JSON.parse(res.body), { error: 'method_not_allowed' })
  }

  const withBody = await call(port, '/healthz', 'GET', 'x'.repeat(1000))
  t.equal(withBody.status, 413, 'a GET with a body is refused')
  t.equal(withBody.connection, 'close', 'and the unread body is not parsed as a next request')
  t.same(JSON.parse(withBody.body), { error: 'body_too_large' })

  const chunked = await raw(port, 'GET /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n')
  t.match(chunked, /^HTTP\/1\.1 413 /)

  const bigHeaders = await raw(port, `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(ADMIN_LIMITS.maxHeaderBytes + 1)}\r\n\r\n`)
  t.match(bigHeaders, /^HTTP\/1\.1 431 /, 'an oversized header block is refused')
  t.match(bigHeaders, /\{"error":"headers_too_large"\}$/)

  const garbage = await raw(port, 'NOT HTTP\r\n\r\n')
  t.match(garbage, /^HTTP\/1\.1 400 /)
  t.match(garbage, /\{"error":"bad_request"\}$/)
})

t.test('a body is refused with 413 and the connection closed whatever the path or method', async (t) => {
  const port = await startAdmin(t)
  for (const [path, method] of [['/anything', 'POST'], ['/metrics', 'PUT'], ['/readyz', 'GET']] as const) {
    const res = await call(port, path, method, 'x'.repeat(5000))
    t.equal(res.status, 413, `${method} ${path} with a body → 413`)
    t.equal(res.connection, 'close', 'the unread body is not parsed as a next request')
    t.same(JSON.parse(res.body), { error: 'body_too_large' })
  }
  // Behind a body on the same connection, a request is never served: the socket closes first.
  const pipelined = await raw(port, 'POST /x HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 3\r\n\r\nabcGET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n')
  t.match(pipelined, /^HTTP\/1\.1 413 /)
  t.notMatch(pipelined, /HTTP\/1\.1 200/, 'nothing after the refusal was answered')
})

t.test('on loopback, only a Host that names loopback is answered: a rebound DNS name is 421', async (t) => {
  const port = await startAdmin(t)
  const get = (hostHeader: string) => raw(port, `GET /metrics HTTP/1.1\r\nHost: ${hostHeader}\r\nConnection: close\r\n\r\n`)
  for (const host of ['127.0.0.1', `127.0.0.1:${port}`, 'localhost', `LOCALHOST:${port}`, '[::1]', `[::1]:${port}`, '127.0.0.2:9090']) {
    t.match(await get(host), /^HTTP\/1\.1 200 /, `Host: ${host} is answered`)
  }
  for (const host of ['evil.example', `evil.example:${port}`, 'localhost.', '127.0.0.1.', 'localhost.evil.example', '10.0.0.1', '[::2]', '127.0.0.1:x', 'a b']) {
    const answer = await get(host)
    t.match(answer, /^HTTP\/1\.1 421 /, `Host: ${host} → 421`)
    t.match(answer, /\{"error":"misdirected_request"\}$/)
    t.notMatch(answer, /ecluse_/, 'no metric in the answer')
  }
  // Bound beyond loopback (allowNonLoopback), Prometheus addresses it by the pod's IP: no check.
  const wide = await startAdmin(t, '0.0.0.0')
  const byIp = await raw(wide, 'GET /healthz HTTP/1.1\r\nHost: 10.1.2.3:9090\r\nConnection: close\r\n\r\n')
  t.match(byIp, /^HTTP\/1\.1 200 /)
})
