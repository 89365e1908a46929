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

const pki = await makeTestPki()

interface Seen {
  peerUri: string | undefined
  servername: string | false
  alpn: string | false | null
  receivedSha256: string
  receivedBytes: number
}
const seen: Seen[] = []
/** Bytes the server has handed to `res.write()` for the download scenario. */
let downloadWritten = 0

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
      // Read nothing for a while: the gateway's request body must wait (back-pressure).
      setTimeout(() => {
        const hash = createHash('sha256')
        let bytes = 0
        req.on('data', (chunk: Buffer) => {
          hash.update(chunk)
          bytes += chunk.length
          // Echo: the same bytes go back, so both directions carry the whole body.
          if (!res.write(chunk)) {
            req.pause()
            res.once('drain', () => req.resume())
          }
        })
        req.on('end', () => {
          seen.push({
            peerUri: socket.getPeerCertificate().subjectaltname,
            servername: socket.servername,
            alpn: socket.alpnProtocol,
            receivedSha256: hash.digest('hex'),
            receivedBytes: bytes,
          })
          res.end()
        })
      }, 300)
      res.writeHead(200, { 'content-type': 'application/octet-stream' })
      return
    }
    if (req.url === '/download') {
      // Deterministic bytes written as fast as the socket drains, and no faster.
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(32 * MiB) })
      const block = Buffer.alloc(CHUNK, 0x5a)
      const pump = (): void => {
        while (downloadWritten < 32 * MiB) {
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

// Bigger than what loopback socket buffers absorb (a few MiB each way), so back-pressure shows.
t.test('a 24 MiB request body streams up with back-pressure and comes back intact', async (t) => {
  const total = 24 * MiB
  const sent = createHash('sha256')
  let produced = 0
  // A lazy source: it only makes a chunk when undici asks for one.
  const source = new Readable({
    highWaterMark: CHUNK,
    read() {
      if (produced >= total) return void this.push(null)
      // Each chunk differs (a counter and random tail), so a reordered or dropped chunk changes the hash.
      const chunk = Buffer.alloc(CHUNK, produced / CHUNK)
      randomBytes(16).copy(chunk, CHUNK - 16)
      produced += chunk.length
      sent.update(chunk)
      this.push(chunk)
    },
  })

  const res = await pool.request({
    method: 'POST',
    path: '/upload',
    headers: { 'content-type': 'application/octet-stream', 'content-length': String(total) },
    body: source,
    signal: new AbortController().signal,
  })
  t.equal(res.statusCode, 200)
  // The server has not read anything yet (300 ms): the source must have stopped well short.
  await new Promise((r) => setTimeout(r, 150))
  t.ok(produced < total / 2, `source paused by back-pressure (${produced} of ${total} bytes produced)`)

  const echoed = createHash('sha256')
  let echoedBytes = 0
  for await (const chunk of res.body) {
    echoed.update(chunk as Buffer)
    echoedBytes += (chunk as Buffer).length
  }
  const sentSha = sent.digest('hex')
  t.equal(echoedBytes, total)
  t.equal(echoed.digest('hex'), sentSha, 'the echoed body is byte-identical')
  t.equal(seen.length, 1)
  t.equal(seen[0]!.receivedBytes, total)
  t.equal(seen[0]!.receivedSha256, sentSha, 'the upstream received the body byte-identical')
  t.equal(seen[0]!.peerUri, 'URI:spiffe://trusted.test/ecluse-gateway', "the upstream saw the gateway's client certificate")
  t.equal(seen[0]!.servername, 'accreditation.trusted.test', 'SNI is serverName, not the URL host')
  t.equal(seen[0]!.alpn, 'http/1.1')
})

t.test('a 32 MiB response streams down only as fast as the caller reads it', async (t) => {
  const res = await pool.request({
    method: 'GET',
    path: '/download',
    headers: {},
    body: null,
    signal: new AbortController().signal,
  })
  t.equal(res.statusCode, 200)
  t.equal(res.headers['content-length'], String(32 * MiB))
  // Nobody reads for a while: the upstream must be held back by socket buffers + highWaterMark.
  await new Promise((r) => setTimeout(r, 300))
  t.ok(downloadWritten < 16 * MiB, `upstream held back while nobody reads (${downloadWritten} bytes written)`)

  const got = createHash('sha256')
  let bytes = 0
  for await (const chunk of res.body) {
    got.update(chunk as Buffer)
    bytes += (chunk as Buffer).length
  }
  t.equal(bytes, 32 * MiB)
  t.equal(got.digest('hex'), createHash('sha256').update(Buffer.alloc(32 * MiB, 0x5a)).digest('hex'))
})
