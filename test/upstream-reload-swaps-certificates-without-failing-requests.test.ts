import { once } from 'node:events'
import { createServer } from 'node:https'
import type { AddressInfo } from 'node:net'
import { PassThrough } from 'node:stream'
import type { TLSSocket } from 'node:tls'
import t from 'tap'
import { upstreamSchema } from '../src/config/schema.js'
import type { EcluseError } from '../src/errors.js'
import { type ClientTlsMaterial, type UpstreamErrorCode, UpstreamPool } from '../src/upstream/pool.js'
import { issueCertificateAsync, makeTestPki } from './helpers/pki.js'

const OLD_URI = 'URI:spiffe://trusted.test/ecluse-gateway'
const NEW_URI = 'URI:spiffe://trusted.test/ecluse-gateway-rotated'

const pki = await makeTestPki()
const rotated = await issueCertificateAsync(pki.trustedCa, {
  commonName: 'ecluse-gateway',
  uris: ['spiffe://trusted.test/ecluse-gateway-rotated'],
  usage: 'client',
  // What is under test is the certificate the pool presents; reusing the key saves an RSA keygen.
  keyPem: pki.gatewayTrustedClient.keyPem,
})
const oldMaterial: ClientTlsMaterial = {
  ca: Buffer.from(pki.trustedCa.certPem),
  cert: Buffer.from(pki.gatewayTrustedClient.certPem),
  key: Buffer.from(pki.gatewayTrustedClient.keyPem),
}
const newMaterial: ClientTlsMaterial = {
  ca: Buffer.from(pki.trustedCa.certPem),
  cert: Buffer.from(rotated.certPem),
  key: Buffer.from(rotated.keyPem),
}

/** Open TLS connections by the client identity they were established with. */
const openSockets = new Map<string, number>()
let releaseSlow: () => void = () => {}
const slowReleased = new Promise<void>((resolve) => {
  releaseSlow = resolve
})

const server = createServer(
  {
    cert: pki.trustedServer.certPem,
    key: pki.trustedServer.keyPem,
    ca: pki.trustedCa.certPem,
    requestCert: true,
    rejectUnauthorized: true,
  },
  (req, res) => {
    const peer = (req.socket as TLSSocket).getPeerCertificate().subjectaltname ?? 'none'
    if (req.url === '/slow') {
      res.writeHead(200, { 'x-peer': peer })
      res.write('first half;')
      void slowReleased.then(() => res.end('second half'))
      return
    }
    if (req.url === '/upload') {
      let bytes = 0
      req.on('data', (c: Buffer) => {
        bytes += c.length
      })
      req.on('end', () => res.end(`${peer} ${bytes}`))
      return
    }
    res.end(peer)
  },
)
server.on('secureConnection', (socket: TLSSocket) => {
  const peer = socket.getPeerCertificate().subjectaltname ?? 'none'
  openSockets.set(peer, (openSockets.get(peer) ?? 0) + 1)
  socket.on('close', () => openSockets.set(peer, (openSockets.get(peer) ?? 1) - 1))
})
server.listen(0, '127.0.0.1')
await once(server, 'listening')

const errors: UpstreamErrorCode[] = []
const pool = new UpstreamPool(
  'accreditation',
  upstreamSchema.parse({
    url: `https://127.0.0.1:${(server.address() as AddressInfo).port}`,
    serverName: 'accreditation.trusted.test',
    tls: { ca: 'unused.pem', cert: 'unused.pem', key: 'unused.pem' },
    keepAliveTimeoutMs: 60_000, // idle sockets would outlive the test: only close() may end them
  }),
  oldMaterial,
  { onError: (code) => errors.push(code) },
)
t.teardown(async () => {
  releaseSlow()
  await pool.destroy()
  server.closeAllConnections()
  server.close()
})

function call(path: string, method = 'GET', body: PassThrough | null = null) {
  return pool.request({ method, path, headers: {}, body, signal: new AbortController().signal })
}

async function text(p: ReturnType<typeof call>): Promise<string> {
  const res = await p
  return (await res.body.setEncoding('utf8').toArray()).join('')
}

t.test('requests in flight on the old certificate finish; new ones present the new one', async (t) => {
  t.equal(await text(call('/who')), OLD_URI, 'before: the first certificate')

  // In flight at reload time: a response half-sent, and a request body half-sent.
  const slow = await call('/slow')
  t.equal(slow.headers['x-peer'], OLD_URI)
  const upload = new PassThrough()
  const uploading = call('/upload', 'POST', upload)
  upload.write('a'.repeat(1000))
  await new Promise((r) => setTimeout(r, 50))

  pool.reload(newMaterial)

  t.equal(await text(call('/who')), NEW_URI, 'after: the rotated certificate, on a fresh handshake')

  upload.end('b'.repeat(1000))
  t.equal(await text(uploading), `${OLD_URI} 2000`, 'the upload started before the reload completed whole')
  releaseSlow()
  t.equal((await slow.body.setEncoding('utf8').toArray()).join(''), 'first half;second half')

  // The drained old pool lets its connections go; nothing keeps talking with the old identity.
  for (let i = 0; i < 50 && (openSockets.get(OLD_URI) ?? 0) > 0; i++) await new Promise((r) => setTimeout(r, 20))
  t.equal(openSockets.get(OLD_URI), 0, 'old connections closed once drained')
  t.ok((openSockets.get(NEW_URI) ?? 0) > 0, 'the new pool keeps its connection alive')
  t.same(errors, [])
})

t.test('a burst of requests across two reloads all succeed', async (t) => {
  const burst: Array<Promise<string>> = []
  for (let i = 0; i < 30; i++) {
    burst.push(text(call('/who')))
    if (i === 10) pool.reload(oldMaterial)
    if (i === 20) pool.reload(newMaterial)
  }
  const answers = await Promise.all(burst)
  // The swap is one synchronous assignment: each request went out with the material current when
  // it was dispatched, and none failed.
  t.same(answers, [
    ...Array<string>(11).fill(NEW_URI),
    ...Array<string>(10).fill(OLD_URI),
    ...Array<string>(9).fill(NEW_URI),
  ])
  t.same(errors, [])
})

t.test('a reload with broken material throws and keeps the current certificate', async (t) => {
  const broken: ClientTlsMaterial = { ...newMaterial, key: Buffer.from(pki.gatewaySponsorServer.keyPem) }
  t.throws(() => pool.reload(broken), { code: 'tls_material_invalid' })
  t.throws(() => pool.reload({ ...newMaterial, ca: Buffer.alloc(0) }), { code: 'tls_material_invalid' })
  t.equal(await text(call('/who')), NEW_URI, 'still serving with the last good certificate')
})

t.test('close() lets an in-flight response finish, then refuses', async (t) => {
  const res = await call('/who-else')
  const closed = pool.close()
  const err = (await call('/who').catch((e: unknown) => e)) as EcluseError
  t.equal(err.code, 'upstream_unavailable')
  t.equal((await res.body.setEncoding('utf8').toArray()).join(''), NEW_URI)
  await closed
  t.throws(() => pool.reload(newMaterial), { code: 'upstream_unavailable' })
})
