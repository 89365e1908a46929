/**
 * Found by review: an upstream may answer before it has read the whole request (a streaming 200
 * begun at once). When the request body then fails — here a chunked upload that grows past the
 * route's `maxBodyBytes` — undici ends that answer with the body's error. That error was taken for
 * the response's: a route with response steps answered `502 transform_failed`, one without logged
 * `response aborted mid-stream`, and `body_too_large` was never counted. It is the request's
 * refusal: a clean 413 where the answer's head is still held, an abort where it has crossed, and
 * counted as the request's either way.
 */
import type { ServerResponse } from 'node:http'
import t from 'tap'
import { Harness, metricValue } from '../helpers/harness.js'

const ALLOW = ['uri:spiffe://sponsor.test/accreditation-app']

/** Answers at once, and keeps writing for 1.5 s whatever the request does. */
function answerEarly(res: ServerResponse): void {
  res.writeHead(200, { 'content-type': 'application/json' })
  res.write('{"a":"')
  const timer = setInterval(() => res.write('x'.repeat(1000)), 20)
  res.on('close', () => clearInterval(timer))
  setTimeout(() => {
    clearInterval(timer)
    res.end('"}')
  }, 1500)
}

/** A chunked PUT of 8 KiB chunks every 20 ms (more than the route's limit); what came back. */
function uploadTooMuch(h: Harness, path: string): Promise<string> {
  return h.rawSession((socket) => {
    socket.write(`PUT ${path} HTTP/1.1\r\nhost: localhost\r\ntransfer-encoding: chunked\r\n\r\n`)
    let sent = 0
    const timer = setInterval(() => {
      if (sent++ > 30 || socket.destroyed) {
        clearInterval(timer)
        return
      }
      socket.write(`2000\r\n${'a'.repeat(0x2000)}\r\n`)
    }, 20)
  })
}

t.test('an upload over its limit while the upstream already answers is refused as the request, and counted', async (t) => {
  const h = await Harness.start({
    handler: (req, res) => {
      req.resume()
      answerEarly(res)
    },
    routes: [
      { name: 'plain', methods: ['PUT'], path: '/v1/plain/*', allow: ALLOW, upstream: 'backend', maxBodyBytes: 100_000 },
      { name: 'held', methods: ['PUT'], path: '/v1/held/*', allow: ALLOW, upstream: 'backend', maxBodyBytes: 100_000, transforms: { response: [{ type: 'strip', fields: ['/secret'] }] } },
    ],
  })
  t.teardown(() => h.close())

  // The head is held for the response step: nothing has crossed, so the refusal is a clean answer.
  const held = await uploadTooMuch(h, '/v1/held/1')
  t.match(held, /^HTTP\/1\.1 413 /, 'a 413, not a 502')
  t.match(held, '"error":"body_too_large"')
  t.notMatch(held, 'xxxx', 'nothing of the answer crossed')
  t.equal(metricValue(await h.metrics(), 'ecluse_rejected_requests_total', { reason: 'body_too_large' }), 1, 'counted as the request refused')
  t.equal(h.logs.find('response aborted mid-stream').length, 0)

  // No response step: the head and a part of the answer have crossed, so the answer is cut, and
  // never ends as a complete one (no last chunk); the refusal is still the request's.
  const plain = await uploadTooMuch(h, '/v1/plain/1')
  t.match(plain, /^HTTP\/1\.1 200 /)
  t.notMatch(plain, /\r\n0\r\n\r\n$/, 'the chunked answer never ends')
  t.equal(metricValue(await h.metrics(), 'ecluse_rejected_requests_total', { reason: 'body_too_large' }), 2)
  t.ok(h.logs.lines.some((l) => l['msg'] === 'request refused' && l['code'] === 'body_too_large' && l['route'] === 'plain'), 'logged as the request refused')
  t.equal(h.logs.find('response aborted mid-stream').length, 0, 'not as the response aborted')
})
