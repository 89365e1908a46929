import type { IncomingMessage } from 'node:http'
import tls from 'node:tls'
import t from 'tap'
import { request } from 'undici'
import { Harness } from '../helpers/harness.js'

t.test('a client that aborts mid-body aborts the upstream request', async (t) => {
  let firstChunk!: () => void
  const gotFirstChunk = new Promise<void>((resolve) => {
    firstChunk = resolve
  })
  let upstreamOutcome!: (how: string) => void
  const outcome = new Promise<string>((resolve) => {
    upstreamOutcome = resolve
  })
  const h = await Harness.start({
    handler: (req: IncomingMessage) => {
      req.once('data', () => firstChunk())
      req.on('end', () => upstreamOutcome('complete'))
      req.on('error', () => upstreamOutcome('aborted'))
      req.on('close', () => upstreamOutcome(req.complete ? 'complete' : 'aborted'))
    },
  })
  t.teardown(() => h.close())
  const socket = tls.connect(h.sponsorTls())
  socket.on('error', () => {})
  await new Promise<void>((resolve) => socket.once('secureConnect', () => resolve()))
  socket.write('PUT /v1/records/1 HTTP/1.1\r\nhost: localhost\r\ntransfer-encoding: chunked\r\n\r\n')
  socket.write(`4000\r\n${'a'.repeat(0x4000)}\r\n`)
  await gotFirstChunk
  socket.destroy()
  t.equal(await outcome, 'aborted', 'the upstream saw the request aborted, not completed')
})

t.test('an upstream that resets mid-body reaches the client as an abort, never as a complete response', async (t) => {
  const h = await Harness.start({
    handler: (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': 1_000_000 })
      res.write(Buffer.alloc(64 * 1024, 1), () => setTimeout(() => res.socket?.destroy(), 20))
    },
  })
  t.teardown(() => h.close())
  const res = await request(`${h.sponsorOrigin}/v1/records/1`, { dispatcher: h.agent() })
  t.equal(res.statusCode, 200, 'headers had already gone out')
  await t.rejects(res.body.arrayBuffer(), 'reading the body fails instead of ending early')
})

t.test('the same holds for a chunked upstream response', async (t) => {
  const h = await Harness.start({
    handler: (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream' })
      res.write(Buffer.alloc(64 * 1024, 1), () => setTimeout(() => res.socket?.destroy(), 20))
    },
  })
  t.teardown(() => h.close())
  const res = await request(`${h.sponsorOrigin}/v1/records/1`, { dispatcher: h.agent() })
  await t.rejects(res.body.arrayBuffer(), 'a chunked body cut short is an error for the client')
})

t.test('a client that hangs up mid-download aborts the upstream call and is no upstream fault in the log', async (t) => {
  // Its close aborted the upstream call, whose body then erred with "Request aborted": that was
  // logged as a warning, "response aborted mid-stream", code upstream_bad_response.
  let upstreamClosed!: () => void
  const closed = new Promise<void>((resolve) => {
    upstreamClosed = resolve
  })
  const h = await Harness.start({
    handler: (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream' })
      const timer = setInterval(() => res.write(Buffer.alloc(16 * 1024, 1)), 10)
      res.on('close', () => {
        clearInterval(timer)
        upstreamClosed()
      })
    },
  })
  t.teardown(() => h.close())
  const socket = tls.connect(h.sponsorTls())
  socket.on('error', () => {})
  await new Promise<void>((resolve) => socket.once('secureConnect', () => resolve()))
  socket.write('GET /v1/records/1 HTTP/1.1\r\nhost: localhost\r\n\r\n')
  let received = 0
  await new Promise<void>((resolve) =>
    socket.on('data', (d: Buffer) => {
      received += d.length
      if (received > 64 * 1024) resolve()
    }),
  )
  socket.destroy()
  await closed
  await new Promise((r) => setTimeout(r, 200))
  t.strictSame(h.logs.find('response aborted mid-stream'), [], 'no warning blaming the upstream')
  const access = h.logs.find('access').at(-1)!
  t.equal(access['aborted'], true, 'the access line says aborted')
  t.equal(access['code'], undefined, 'with no error code')
})
