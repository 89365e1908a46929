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

t.test('answers anything but its three GET routes with a stable code', async (t) => {
  const admin = new AdminServer({
    listen: { host: '127.0.0.1', port: 0 },
    metrics: new GatewayMetrics({ routes: [], defaultMetrics: false }),
    readiness: () => ({ ready: true, checks: {} }),
    log: createLogger({ level: 'silent' }),
  })
  const { port } = await admin.listen()
  t.teardown(() => admin.close())

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
