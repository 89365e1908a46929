import { once } from 'node:events'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { createServer as createHttpsServer } from 'node:https'
import type { AddressInfo } from 'node:net'
import { PassThrough } from 'node:stream'
import t, { type Test } from 'tap'
import { type UpstreamConfig, upstreamSchema } from '../src/config/schema.js'
import { isEcluseError } from '../src/errors.js'
import { UpstreamAbort, type UpstreamErrorCode, UpstreamPool, type UpstreamResponse } from '../src/upstream/pool.js'
import { makeTestPki } from './helpers/pki.js'

// With every connection busy, a request waits in the pool's own queue, oldest first, for at most
// connectTimeoutMs. undici's queue, where it used to wait, has no deadline at all.

const pki = await makeTestPki()

/** An mTLS upstream that answers nothing until the test releases each request, in arrival order. */
async function heldUpstream(t: Test) {
  const held: Array<{ path: string; res: ServerResponse }> = []
  const arrived: string[] = []
  const server = createHttpsServer(
    { cert: pki.trustedServer.certPem, key: pki.trustedServer.keyPem, ca: pki.trustedCa.certPem, requestCert: true, rejectUnauthorized: true },
    (req: IncomingMessage, res: ServerResponse) => {
      arrived.push(req.url ?? '')
      held.push({ path: req.url ?? '', res })
    },
  )
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => {
    server.closeAllConnections()
    server.close()
  })
  return {
    port: (server.address() as AddressInfo).port,
    arrived,
    /** Answers the oldest held request with its own path. */
    releaseOldest(): void {
      const next = held.shift()
      if (next === undefined) throw new Error('no request is held')
      next.res.end(next.path)
    },
  }
}

function poolFor(t: Test, port: number, errors: UpstreamErrorCode[], overrides: Partial<UpstreamConfig> = {}): UpstreamPool {
  const cfg = upstreamSchema.parse({
    url: `https://127.0.0.1:${port}`,
    serverName: 'accreditation.trusted.test',
    tls: { ca: 'unused.pem', cert: 'unused.pem', key: 'unused.pem' },
    connections: 1,
    connectTimeoutMs: 5_000,
    ...overrides,
  })
  const pool = new UpstreamPool(
    'accreditation',
    cfg,
    { ca: Buffer.from(pki.trustedCa.certPem), cert: Buffer.from(pki.gatewayTrustedClient.certPem), key: Buffer.from(pki.gatewayTrustedClient.keyPem) },
    { onError: (code) => errors.push(code) },
  )
  t.teardown(() => pool.destroy())
  return pool
}

function get(pool: UpstreamPool, path: string, signal: AbortSignal | UpstreamAbort = new UpstreamAbort()): Promise<UpstreamResponse> {
  return pool.request({ method: 'GET', path, headers: {}, body: null, signal })
}

async function text(res: UpstreamResponse): Promise<string> {
  const chunks: Buffer[] = []
  for await (const chunk of res.body) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks).toString()
}

/** Resolves once `predicate` holds, polling the event loop (the upstream's arrivals are async). */
async function until(predicate: () => boolean): Promise<void> {
  for (let i = 0; i < 500 && !predicate(); i++) await new Promise((resolve) => setTimeout(resolve, 5))
  if (!predicate()) throw new Error('condition never held')
}

t.test('past `connections`, requests wait and reach the upstream one at a time, oldest first', async (t) => {
  const upstream = await heldUpstream(t)
  const errors: UpstreamErrorCode[] = []
  const pool = poolFor(t, upstream.port, errors)
  const first = get(pool, '/1')
  await until(() => upstream.arrived.length === 1)
  const second = get(pool, '/2')
  const third = get(pool, '/3')
  t.equal(pool.waiting, 2, 'two requests wait in the pool')
  await new Promise((resolve) => setTimeout(resolve, 100))
  t.same(upstream.arrived, ['/1'], 'nothing else reached the upstream while its one connection was busy')

  upstream.releaseOldest()
  t.equal(await text(await first), '/1')
  await until(() => upstream.arrived.length === 2)
  t.same(upstream.arrived, ['/1', '/2'], 'the oldest waiting request went next')
  t.equal(pool.waiting, 1)
  upstream.releaseOldest()
  t.equal(await text(await second), '/2')
  await until(() => upstream.arrived.length === 3)
  upstream.releaseOldest()
  t.equal(await text(await third), '/3')
  t.equal(pool.waiting, 0)
  t.same(errors, [], 'no failure counted')

  // Every connection was handed back: a fourth request goes straight to the upstream.
  const fourth = get(pool, '/4')
  t.equal(pool.waiting, 0, 'not queued')
  await until(() => upstream.arrived.length === 4)
  upstream.releaseOldest()
  t.equal(await text(await fourth), '/4')
})

t.test('a request body that waited in vain is destroyed with the refusal, as undici destroys one it fails to send', async (t) => {
  const upstream = await heldUpstream(t)
  const pool = poolFor(t, upstream.port, [], { connectTimeoutMs: 200 })
  const first = get(pool, '/1')
  await until(() => upstream.arrived.length === 1)
  // A body stage (a sealer holds a key and plaintext until destroyed) that never reaches undici.
  const body = new PassThrough()
  const bodyError = new Promise((resolve) => body.on('error', resolve))
  body.write('{"passport":"X1"}')
  const err = await pool.request({ method: 'POST', path: '/2', headers: {}, body, signal: new UpstreamAbort() }).then(
    () => null,
    (e: unknown) => e,
  )
  t.ok(isEcluseError(err) && err.code === 'upstream_unavailable')
  t.ok(body.destroyed, 'the body is destroyed')
  t.equal(await bodyError, err, 'with the refusal itself, which a chain reports as its cause')
  upstream.releaseOldest()
  await text(await first)
})

t.test('a request waits connectTimeoutMs at most, then fails upstream_unavailable without reaching the upstream', async (t) => {
  const upstream = await heldUpstream(t)
  const errors: UpstreamErrorCode[] = []
  const pool = poolFor(t, upstream.port, errors, { connectTimeoutMs: 300 })
  const first = get(pool, '/1')
  await until(() => upstream.arrived.length === 1)
  const started = performance.now()
  const err = await get(pool, '/2').then(
    () => null,
    (e: unknown) => e,
  )
  const elapsed = performance.now() - started
  t.ok(isEcluseError(err) && err.code === 'upstream_unavailable', `upstream_unavailable (${String(err)})`)
  t.match((err as Error).message, /all 1 connections stayed busy for 300 ms/)
  t.ok(elapsed >= 280 && elapsed < 2_000, `after about connectTimeoutMs (${elapsed.toFixed(0)} ms)`)
  t.same(errors, ['upstream_unavailable'], 'counted once')
  t.equal(pool.waiting, 0, 'no longer waiting')
  upstream.releaseOldest()
  t.equal(await text(await first), '/1')
  await new Promise((resolve) => setTimeout(resolve, 50))
  t.same(upstream.arrived, ['/1'], 'the refused request never reached the upstream')
})

t.test('a request aborted while it waits leaves the queue, uncounted, and takes no connection with it', async (t) => {
  for (const kind of ['UpstreamAbort', 'AbortSignal'] as const) {
    const upstream = await heldUpstream(t)
    const errors: UpstreamErrorCode[] = []
    const pool = poolFor(t, upstream.port, errors)
    const first = get(pool, '/1')
    await until(() => upstream.arrived.length === 1)
    const abort = kind === 'UpstreamAbort' ? new UpstreamAbort() : new AbortController()
    const waiting = get(pool, '/2', abort instanceof UpstreamAbort ? abort : abort.signal)
    t.equal(pool.waiting, 1, kind)
    abort.abort()
    const err = await waiting.then(
      () => null,
      (e: unknown) => e,
    )
    t.equal((err as Error | null)?.name, 'AbortError', `${kind}: rejected as an abort, which the caller knows it asked for`)
    t.equal(pool.waiting, 0, kind)
    upstream.releaseOldest()
    await text(await first)
    const next = get(pool, '/3')
    t.equal(pool.waiting, 0, `${kind}: the connection is free again`)
    await until(() => upstream.arrived.length === 2)
    upstream.releaseOldest()
    t.equal(await text(await next), '/3', kind)
    t.same(upstream.arrived, ['/1', '/3'], `${kind}: the aborted request never reached the upstream`)
    t.same(errors, [], `${kind}: nothing counted`)
  }
  // Already aborted: refused at once, never queued.
  const upstream = await heldUpstream(t)
  const pool = poolFor(t, upstream.port, [])
  const first = get(pool, '/1')
  await until(() => upstream.arrived.length === 1)
  const abort = new UpstreamAbort()
  abort.abort()
  const err = await get(pool, '/2', abort).then(
    () => null,
    (e: unknown) => e,
  )
  t.equal((err as Error | null)?.name, 'AbortError')
  t.equal(pool.waiting, 0)
  upstream.releaseOldest()
  await text(await first)
})

t.test('a response body the caller destroys hands its connection to the next request', async (t) => {
  const upstream = await heldUpstream(t)
  const pool = poolFor(t, upstream.port, [])
  const first = get(pool, '/1')
  await until(() => upstream.arrived.length === 1)
  const second = get(pool, '/2')
  t.equal(pool.waiting, 1)
  upstream.releaseOldest()
  ;(await first).body.destroy()
  await until(() => upstream.arrived.length === 2)
  upstream.releaseOldest()
  t.equal(await text(await second), '/2')
})

t.test('closing the pool refuses the requests still waiting with upstream_unavailable', async (t) => {
  const upstream = await heldUpstream(t)
  const pool = poolFor(t, upstream.port, [])
  const first = get(pool, '/1')
  await until(() => upstream.arrived.length === 1)
  const waiting = get(pool, '/2')
  const closed = pool.close()
  const err = await waiting.then(
    () => null,
    (e: unknown) => e,
  )
  t.ok(isEcluseError(err) && err.code === 'upstream_unavailable', String(err))
  t.match((err as Error).message, /pool closed while waiting/)
  upstream.releaseOldest()
  t.equal(await text(await first), '/1', 'the request in flight finishes')
  await closed
  t.same(upstream.arrived, ['/1'])
})
