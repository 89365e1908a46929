import { createHash, randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { createServer, type Server } from 'node:https'
import type { AddressInfo } from 'node:net'
import { Readable } from 'node:stream'
import type { TLSSocket } from 'node:tls'
import t from 'tap'
import { upstreamSchema } from '../src/config/schema.js'
import { UpstreamPool } from '../src/upstream/pool.js'
import { makeTestPki } from './helpers/pki.js'

const MiB = 1024 * 1024
const CHUNK = 64 * 1024
/** Bigger than what loopback socket buffers absorb (several MiB each way), so back-pressure shows. */
const TOTAL = 24 * MiB

const pki = await makeTestPki()

interface Seen {
  peerUri: string | undefined
  servername: string | false | null
  alpn: string | false | null
  receivedSha256: string
  receivedBytes: number
}
/** Bytes the server has handed to `res.write()` for the download scenario. */
let downloadWritten = 0

let releaseUpload!: () => void
const uploadReleased = new Promise<void>((resolve) => (releaseUpload = resolve))

const server: Server = createServer(
  {
    cert: pki.trustedServer.certPem,
    key: pki.trustedServer.keyPem,
    ca: pki.trustedCa.certPem,
    requestCert: true,
    rejectUnauthorized: true,
  },
  (req, res) => {
    const socket = req.socket as TLSSocket
    if (req.url === '/upload') {
      // Read nothing until the test has seen the source stall: the request body must wait
      // (back-pressure), for as long as it takes on a loaded machine.
      req.pause()
      void uploadReleased.then(() => {
        const hash = createHash('sha256')
        let bytes = 0
        req.on('data', (chunk: Buffer) => {
          hash.update(chunk)
          bytes += chunk.length
        })
        req.on('end', () => {
          const seen: Seen = {
            peerUri: socket.getPeerCertificate().subjectaltname,
            servername: socket.servername,
            alpn: socket.alpnProtocol,
            receivedSha256: hash.digest('hex'),
            receivedBytes: bytes,
          }
          res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(seen))
        })
        req.resume()
      })
      return
    }
    if (req.url === '/download') {
      // Deterministic bytes written as fast as the socket drains, and no faster.
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(TOTAL) })
      const block = Buffer.alloc(CHUNK, 0x5a)
      const pump = (): void => {
        while (downloadWritten < TOTAL) {
          downloadWritten += CHUNK
          if (!res.write(block)) {
            res.once('drain', pump)
            return
          }
        }
        res.end()
      }
      pump()
      return
    }
    res.writeHead(404).end()
  },
)
server.listen(0, '127.0.0.1')
await once(server, 'listening')
const port = (server.address() as AddressInfo).port

const cfg = upstreamSchema.parse({
  // The URL names an IP; the certificate is checked against serverName.
  url: `https://127.0.0.1:${port}`,
  serverName: 'accreditation.trusted.test',
  tls: { ca: 'unused.pem', cert: 'unused.pem', key: 'unused.pem' },
})
const pool = new UpstreamPool('accreditation', cfg, {
  ca: Buffer.from(pki.trustedCa.certPem),
  cert: Buffer.from(pki.gatewayTrustedClient.certPem),
  key: Buffer.from(pki.gatewayTrustedClient.keyPem),
})

t.teardown(async () => {
  await pool.destroy()
  server.closeAllConnections()
  server.close()
})

/** Polls until `read()` stays put over 100 ms (the producer is stalled), for up to 10 s. */
async function stalled(read: () => number): Promise<{ at: number; stalled: boolean }> {
  let at = read()
  for (let i = 0; i < 100; i++) {
    await new Promise((r) => setTimeout(r, 100))
    const now = read()
    if (now === at && now > 0) return { at, stalled: true }
    at = now
  }
  return { at, stalled: false }
}

t.test('a 24 MiB request body streams up with back-pressure and arrives intact', async (t) => {
  const sent = createHash('sha256')
  let produced = 0
  // A lazy source: it only makes a chunk when undici asks for one.
  const source = new Readable({
    highWaterMark: CHUNK,
    read() {
      if (produced >= TOTAL) return void this.push(null)
      // Each chunk differs (a counter and a random tail), so a reordered or dropped chunk changes the hash.
      const chunk = Buffer.alloc(CHUNK, produced / CHUNK)
      randomBytes(16).copy(chunk, CHUNK - 16)
      produced += chunk.length
      sent.update(chunk)
      this.push(chunk)
    },
  })

  const answer = pool.request({
    method: 'POST',
    path: '/upload',
    headers: { 'content-type': 'application/octet-stream', 'content-length': String(TOTAL) },
    body: source,
    signal: new AbortController().signal,
  })
  // The server reads nothing until released: the source must be held, not drained into memory.
  const held = await stalled(() => produced)
  t.ok(held.stalled && held.at < TOTAL, `source paused by back-pressure at ${held.at} of ${TOTAL} bytes`)
  releaseUpload()

  const res = await answer
  t.equal(res.statusCode, 200)
  const seen = JSON.parse((await res.body.setEncoding('utf8').toArray()).join('')) as Seen
  t.equal(seen.receivedBytes, TOTAL)
  t.equal(seen.receivedSha256, sent.digest('hex'), 'the upstream received the body byte-identical')
  t.equal(seen.peerUri, 'URI:spiffe://trusted.test/ecluse-gateway', "the upstream saw the gateway's client certificate")
  t.equal(seen.servername, 'accreditation.trusted.test', 'SNI is serverName, not the URL host')
  t.equal(seen.alpn, 'http/1.1')
})

t.test('a 24 MiB response streams down only as fast as the caller reads it', async (t) => {
  const res = await pool.request({
    method: 'GET',
    path: '/download',
    headers: {},
    body: null,
    signal: new AbortController().signal,
  })
  t.equal(res.statusCode, 200)
  t.equal(res.headers['content-length'], String(TOTAL))
  // Nobody reads: the upstream must be held back by socket buffers and the body's highWaterMark.
  const held = await stalled(() => downloadWritten)
  t.ok(held.stalled && held.at < TOTAL, `upstream held back at ${held.at} of ${TOTAL} bytes while nobody reads`)

  const got = createHash('sha256')
  let bytes = 0
  for await (const chunk of res.body) {
    got.update(chunk as Buffer)
    bytes += (chunk as Buffer).length
  }
  t.equal(bytes, TOTAL)
  t.equal(got.digest('hex'), createHash('sha256').update(Buffer.alloc(TOTAL, 0x5a)).digest('hex'))
})
