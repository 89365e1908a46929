import { once } from 'node:events'
import type { RequestListener } from 'node:http'
import { createServer as createHttpsServer } from 'node:https'
import { type AddressInfo, createServer as createNetServer, type Socket } from 'node:net'
import type { Readable } from 'node:stream'
import t from 'tap'
import { type UpstreamConfig, upstreamSchema } from '../src/config/schema.js'
import { type EcluseError, isEcluseError } from '../src/errors.js'
import { type UpstreamErrorCode, UpstreamPool, upstreamBodyError } from '../src/upstream/pool.js'
import { makeTestPki } from './helpers/pki.js'

// undici arms header and body timeouts on its "fast timers" (about 1 s resolution), so a 300 ms
// timeout fires between 300 ms and roughly 1.5 s: the tests bound it on both sides accordingly.
const SHORT_MS = 300

const pki = await makeTestPki()
// Each scenario has its own upstream and pool; running them side by side keeps the file short.
t.jobs = 4

async function mtlsUpstream(handler: RequestListener): Promise<number> {
  const server = createHttpsServer(
    {
      cert: pki.trustedServer.certPem,
      key: pki.trustedServer.keyPem,
      ca: pki.trustedCa.certPem,
      requestCert: true,
      rejectUnauthorized: true,
    },
    handler,
  )
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => {
    server.closeAllConnections()
    server.close()
  })
  return (server.address() as AddressInfo).port
}

function poolFor(port: number, errors: UpstreamErrorCode[], overrides: Partial<UpstreamConfig> = {}, underBody: boolean[] = []): UpstreamPool {
  const cfg = upstreamSchema.parse({
    url: `https://127.0.0.1:${port}`,
    serverName: 'accreditation.trusted.test',
    tls: { ca: 'unused.pem', cert: 'unused.pem', key: 'unused.pem' },
    connectTimeoutMs: SHORT_MS,
    headersTimeoutMs: SHORT_MS,
    bodyTimeoutMs: SHORT_MS,
    ...overrides,
  })
  const pool = new UpstreamPool(
    'accreditation',
    cfg,
    {
      ca: Buffer.from(pki.trustedCa.certPem),
      cert: Buffer.from(pki.gatewayTrustedClient.certPem),
      key: Buffer.from(pki.gatewayTrustedClient.keyPem),
    },
    {
      onError: (code, _err, body) => {
        errors.push(code)
        underBody.push(body)
      },
    },
  )
  t.teardown(() => pool.destroy())
  return pool
}

function send(pool: UpstreamPool, method = 'GET', body: string | null = null, signal = new AbortController().signal) {
  return pool.request({
    method,
    path: '/v1/accreditations',
    headers: body === null ? {} : { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) },
    body: body === null ? null : (Buffer.from(body) as unknown as Readable),
    signal,
  })
}

async function failure(p: Promise<unknown>): Promise<EcluseError> {
  const err = await p.then(
    () => {
      throw new Error('expected the request to fail')
    },
    (e: unknown) => e,
  )
  if (!isEcluseError(err)) throw err
  return err
}

/** Resolves with the `error` a response body emits (it must not end). */
function bodyError(body: Readable): Promise<unknown> {
  return new Promise((resolve, reject) => {
    body.on('error', resolve)
    body.on('end', () => reject(new Error('the body ended as if complete')))
    body.resume()
  })
}

t.test('a closed port is upstream_refused, fast', async (t) => {
  const probe = createNetServer().listen(0, '127.0.0.1')
  await once(probe, 'listening')
  const port = (probe.address() as AddressInfo).port
  probe.close()
  await once(probe, 'close')

  const errors: UpstreamErrorCode[] = []
  const started = performance.now()
  const err = await failure(send(poolFor(port, errors, { connectTimeoutMs: 5_000 })))
  t.equal(err.code, 'upstream_refused')
  t.equal(err.status, 502)
  t.ok(performance.now() - started < 1_000, 'no wait for the 5 s connect timeout')
  t.same(errors, ['upstream_refused'])
})

t.test('an upstream that drops the connection is upstream_reset and the POST was sent exactly once', async (t) => {
  let posts = 0
  const port = await mtlsUpstream((req) => {
    posts++
    req.resume()
    req.on('end', () => req.socket.destroy())
  })
  const errors: UpstreamErrorCode[] = []
  const err = await failure(send(poolFor(port, errors), 'POST', '{"accreditation":"grant"}'))
  t.equal(err.code, 'upstream_reset')
  t.equal(err.status, 502)
  t.ok(err.cause, 'the original error is kept for the log')
  // Leave room for a retry to show up, if anything retried.
  await new Promise((r) => setTimeout(r, 200))
  t.equal(posts, 1, 'never replayed')
  t.same(errors, ['upstream_reset'])
})

t.test('a silent upstream is upstream_timeout after headersTimeoutMs, not before', async (t) => {
  const port = await mtlsUpstream((req) => {
    req.resume() // read the request, never answer
  })
  const errors: UpstreamErrorCode[] = []
  const started = performance.now()
  const err = await failure(send(poolFor(port, errors)))
  const elapsed = performance.now() - started
  t.equal(err.code, 'upstream_timeout')
  t.equal(err.status, 504)
  t.ok(elapsed >= SHORT_MS - 20, `not before the timeout (${Math.round(elapsed)} ms)`)
  t.ok(elapsed < 2_500, `not much after it (${Math.round(elapsed)} ms)`)
  t.same(errors, ['upstream_timeout'])
})

t.test('an upstream that never completes the TLS handshake is upstream_connect_timeout', async (t) => {
  // Accepts TCP, then says nothing: the handshake (part of connecting) cannot finish.
  const sockets = new Set<Socket>()
  const tarpit = createNetServer((s) => sockets.add(s)).listen(0, '127.0.0.1')
  await once(tarpit, 'listening')
  t.teardown(() => {
    for (const s of sockets) s.destroy()
    tarpit.close()
  })
  const errors: UpstreamErrorCode[] = []
  const started = performance.now()
  const err = await failure(send(poolFor((tarpit.address() as AddressInfo).port, errors)))
  const elapsed = performance.now() - started
  t.equal(err.code, 'upstream_connect_timeout')
  t.equal(err.status, 504)
  t.ok(elapsed >= SHORT_MS - 20 && elapsed < 2_500, `about connectTimeoutMs (${Math.round(elapsed)} ms)`)
  t.same(errors, ['upstream_connect_timeout'])
})

t.test('a body that stalls errors the response body stream with upstream_timeout', async (t) => {
  const port = await mtlsUpstream((_req, res) => {
    res.writeHead(200, { 'content-length': '1000' })
    res.write('{"partial":') // …and nothing more
  })
  const errors: UpstreamErrorCode[] = []
  const res = await send(poolFor(port, errors))
  t.equal(res.statusCode, 200, 'the header block arrived')
  const started = performance.now()
  const err = upstreamBodyError('accreditation', await bodyError(res.body))
  t.equal(err.code, 'upstream_timeout')
  t.ok(performance.now() - started >= SHORT_MS - 20, 'not before bodyTimeoutMs')
  t.same(errors, ['upstream_timeout'], 'counted once')
})

t.test('a connection dropped mid-body errors the response body stream with upstream_reset', async (t) => {
  const port = await mtlsUpstream((_req, res) => {
    res.writeHead(200, { 'content-length': '1000' })
    res.write('{"partial":', () => setTimeout(() => res.socket?.destroy(), 20))
  })
  const errors: UpstreamErrorCode[] = []
  const res = await send(poolFor(port, errors))
  t.equal(res.statusCode, 200)
  t.equal(upstreamBodyError('accreditation', await bodyError(res.body)).code, 'upstream_reset')
  t.same(errors, ['upstream_reset'])
})

t.test('a socket or TLS failure under a body is counted by its code; an error of our own stages is not', async (t) => {
  // Found by review: undici destroys a response body with the socket's own error when the socket
  // fails before it ends (client-h1 errorRequest): a TLS failure (EPROTO, ERR_SSL_*), a timeout or
  // EPIPE of the socket was classified but not counted in ecluse_upstream_errors_total, only the
  // resets undici names. A stage downstream that fails destroys the body with its own error, which
  // carries no such code and is the gateway's to report, not the upstream's.
  const port = await mtlsUpstream((_req, res) => {
    res.writeHead(200, { 'content-length': '1000' })
    res.write('{"partial":')
  })
  const cases: Array<[string, Error, UpstreamErrorCode | undefined]> = [
    // A session broken after its handshake, as a reset: upstream_tls (a critical alert) stays the handshake's.
    ['EPROTO', Object.assign(new Error('write EPROTO'), { code: 'EPROTO', syscall: 'write' }), 'upstream_reset'],
    ['ERR_SSL_*', Object.assign(new Error('decryption failed or bad record mac'), { code: 'ERR_SSL_DECRYPTION_FAILED_OR_BAD_RECORD_MAC', library: 'SSL routines' }), 'upstream_reset'],
    ['ETIMEDOUT', Object.assign(new Error('read ETIMEDOUT'), { code: 'ETIMEDOUT', syscall: 'read' }), 'upstream_timeout'],
    ['EPIPE', Object.assign(new Error('write EPIPE'), { code: 'EPIPE', syscall: 'write' }), 'upstream_reset'],
    ['ECONNABORTED', Object.assign(new Error('read ECONNABORTED'), { code: 'ECONNABORTED', syscall: 'read' }), 'upstream_reset'],
    ['ENETRESET', Object.assign(new Error('read ENETRESET'), { code: 'ENETRESET', syscall: 'read' }), 'upstream_reset'],
    ['a stage\'s refusal', Object.assign(new Error('transform failed'), { code: 'transform_failed' }), undefined],
    ['a stage\'s bug', new TypeError('x is not a function'), undefined],
  ]
  for (const [what, err, counted] of cases) {
    const errors: UpstreamErrorCode[] = []
    const underBody: boolean[] = []
    const pool = poolFor(port, errors, {}, underBody)
    const res = await send(pool)
    t.equal(res.statusCode, 200)
    const seen = bodyError(res.body)
    res.body.destroy(err)
    t.equal(await seen, err)
    t.same(errors, counted === undefined ? [] : [counted], `${what}: ${counted ?? 'not counted'}`)
    // A TLS failure under a body is not a handshake's (main.ts counts only those as one).
    t.same(underBody, counted === undefined ? [] : [true], 'reported as under a body')
  }
})

t.test('a response that is not HTTP is upstream_bad_response', async (t) => {
  const port = await mtlsUpstream((req) => {
    req.socket.end('HTTP/1.1 2OO OK\r\n\r\n')
  })
  const errors: UpstreamErrorCode[] = []
  const err = await failure(send(poolFor(port, errors)))
  t.equal(err.code, 'upstream_bad_response')
  t.same(errors, ['upstream_bad_response'])
})

t.test('an abort by our own signal is rethrown as is, and not counted as an upstream failure', async (t) => {
  const port = await mtlsUpstream((req) => {
    req.resume()
  })
  const errors: UpstreamErrorCode[] = []
  const controller = new AbortController()
  const reason = new Error('sponsor went away')
  setTimeout(() => controller.abort(reason), 50)
  const err = await send(poolFor(port, errors), 'GET', null, controller.signal).catch((e: unknown) => e)
  t.equal(err, reason)
  t.same(errors, [])
})

t.test('a closed pool refuses with upstream_unavailable', async (t) => {
  const port = await mtlsUpstream((_req, res) => res.end('ok'))
  const errors: UpstreamErrorCode[] = []
  const pool = poolFor(port, errors)
  await pool.close()
  const err = await failure(send(pool))
  t.equal(err.code, 'upstream_unavailable')
  t.equal(err.status, 503)
})
