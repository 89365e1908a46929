/**
 * Found by a review: undici's parser errors (an answer llhttp refuses) carry no `code` (undici 7 looks
 * the number up in a table keyed by name), so the gateway's `HPE_*` handling never matched: such an
 * error mid-body was counted nowhere, logged as a bare `HTTPParserError`, and an upstream that
 * closed its connection inside a chunked answer on `Connection: close` was not counted as the reset
 * it is. They are known by name now; the upstream's bytes the error holds never reach the log.
 */
import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import tls from 'node:tls'
import t from 'tap'
import { request } from 'undici'
import { Harness, metricValue } from '../helpers/harness.js'
import { makeTestPki } from '../helpers/pki.js'

const pki = await makeTestPki()
const MARKER = 'P-CANARY-0612345678'

/** A trusted-side server that answers every request with `answer`'s writes, on mutual TLS. */
async function rawUpstream(t: { teardown(fn: () => unknown): void }, answer: (socket: tls.TLSSocket) => void): Promise<number> {
  const server = tls.createServer(
    { cert: pki.trustedServer.certPem, key: pki.trustedServer.keyPem, ca: pki.trustedCa.certPem, requestCert: true, rejectUnauthorized: true },
    (socket) => {
      socket.on('error', () => {})
      socket.once('data', () => answer(socket))
    },
  )
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => server.close())
  return (server.address() as AddressInfo).port
}

const cases = [
  {
    what: 'a chunk the parser refuses, on a kept-alive connection',
    answer: (socket: tls.TLSSocket) => {
      socket.write('HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n')
      setTimeout(() => socket.write(`zz\r\n${MARKER}\r\n`), 30)
    },
    kind: 'upstream_bad_response',
    reason: /Response does not match the HTTP\/1\.1 protocol \(Invalid character in chunk size\)/,
  },
  {
    what: 'a chunked answer cut by the upstream closing its connection (Connection: close)',
    answer: (socket: tls.TLSSocket) => {
      socket.write(`HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\nconnection: close\r\ntransfer-encoding: chunked\r\n\r\n13\r\n${MARKER}\r\n`)
      setTimeout(() => socket.end(), 30)
    },
    kind: 'upstream_reset',
    reason: /Invalid EOF state/,
  },
] as const

for (const { what, answer, kind, reason } of cases) {
  t.test(`${what}: counted as ${kind}, logged with the parser's reason and none of the bytes`, async (t) => {
    const h = await Harness.start({ upstreamPort: await rawUpstream(t, answer) })
    t.teardown(() => h.close())
    const res = await request(`${h.sponsorOrigin}/v1/records/1`, { dispatcher: h.agent() })
    t.equal(res.statusCode, 200, 'the head had crossed')
    await t.rejects(res.body.arrayBuffer(), 'the answer is cut, never finished as if complete')
    await new Promise((r) => setTimeout(r, 100))
    const metrics = await h.metrics()
    t.equal(metricValue(metrics, 'ecluse_upstream_errors_total', { upstream: 'backend', kind }), 1, `counted once as ${kind}`)
    const other = kind === 'upstream_reset' ? 'upstream_bad_response' : 'upstream_reset'
    t.equal(metricValue(metrics, 'ecluse_upstream_errors_total', { upstream: 'backend', kind: other }), 0)
    t.match(h.logs.text(), reason, "the parser's reason is in the log")
    t.notMatch(h.logs.text(), MARKER, "and none of the upstream's bytes")
  })
}
