import { once } from 'node:events'
import type { RequestListener } from 'node:http'
import { createServer } from 'node:https'
import { type AddressInfo, createServer as createNetServer } from 'node:net'
import type { TLSSocket } from 'node:tls'
import t from 'tap'
import { upstreamSchema } from '../src/config/schema.js'
import { type UpstreamErrorCode, UpstreamPool } from '../src/upstream/pool.js'
import { makeTestPki, type TestCert } from './helpers/pki.js'

const pki = await makeTestPki()
t.jobs = 4

async function upstream(cert: TestCert, handler: RequestListener) {
  const stats = { handshakes: 0, paths: [] as string[], peers: [] as string[] }
  const server = createServer(
    { cert: cert.certPem, key: cert.keyPem, ca: pki.trustedCa.certPem, requestCert: true, rejectUnauthorized: true },
    (req, res) => {
      stats.paths.push(req.url ?? '')
      handler(req, res)
    },
  )
  server.on('secureConnection', (s: TLSSocket) => {
    stats.handshakes++
    stats.peers.push(s.getPeerCertificate().subjectaltname ?? '')
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => {
    server.closeAllConnections()
    server.close()
  })
  return { port: (server.address() as AddressInfo).port, stats }
}

function poolFor(port: number, errors: UpstreamErrorCode[] = []): UpstreamPool {
  const pool = new UpstreamPool(
    'accreditation',
    upstreamSchema.parse({
      url: `https://127.0.0.1:${port}`,
      serverName: 'accreditation.trusted.test',
      tls: { ca: 'unused.pem', cert: 'unused.pem', key: 'unused.pem' },
      healthPath: '/health/ready',
    }),
    {
      ca: Buffer.from(pki.trustedCa.certPem),
      cert: Buffer.from(pki.gatewayTrustedClient.certPem),
      key: Buffer.from(pki.gatewayTrustedClient.keyPem),
    },
    { onError: (code) => errors.push(code), probeTimeoutMs: 300 },
  )
  t.teardown(() => pool.destroy())
  return pool
}

t.test('any HTTP status on healthPath counts as reachable, each probe on a fresh handshake', async (t) => {
  const { port, stats } = await upstream(pki.trustedServer, (_req, res) => {
    res.writeHead(503).end('{"status":"degraded"}')
  })
  const errors: UpstreamErrorCode[] = []
  const pool = poolFor(port, errors)
  t.same(await pool.probe(), { ok: true, detail: 'HTTP 503' })
  t.same(await pool.probe(), { ok: true, detail: 'HTTP 503' })
  t.same(stats.paths, ['/health/ready', '/health/ready'])
  t.equal(stats.handshakes, 2, 'a kept-alive socket cannot hide a handshake that would now fail')
  t.same(stats.peers, ['URI:spiffe://trusted.test/ecluse-gateway', 'URI:spiffe://trusted.test/ecluse-gateway'])
  t.same(errors, [], 'probes are not counted as request failures')
})

t.test('an upstream from the wrong CA is not ready: upstream_tls', async (t) => {
  const { port, stats } = await upstream(pki.sponsorCaTrustedServer, (_req, res) => res.end())
  const result = await poolFor(port).probe()
  t.equal(result.ok, false)
  t.match(result.detail, /^upstream_tls: /)
  t.same(stats.paths, [])
})

t.test('a closed port is not ready: upstream_refused', async (t) => {
  const gone = createNetServer().listen(0, '127.0.0.1')
  await once(gone, 'listening')
  const port = (gone.address() as AddressInfo).port
  gone.close()
  await once(gone, 'close')
  const result = await poolFor(port).probe()
  t.equal(result.ok, false)
  t.match(result.detail, /^upstream_refused: /)
})

t.test('a silent upstream is not ready within the probe deadline', async (t) => {
  const { port } = await upstream(pki.trustedServer, () => {})
  const started = performance.now()
  const result = await poolFor(port).probe()
  const elapsed = performance.now() - started
  t.equal(result.ok, false)
  t.match(result.detail, /^upstream_timeout: /)
  t.ok(elapsed >= 280 && elapsed < 1_500, `bounded by probeTimeoutMs (${Math.round(elapsed)} ms)`)
})

t.test('a closed pool is not ready', async (t) => {
  const { port, stats } = await upstream(pki.trustedServer, (_req, res) => res.end())
  const pool = poolFor(port)
  await pool.close()
  t.same(await pool.probe(), { ok: false, detail: 'upstream_unavailable: pool closed' })
  t.equal(stats.handshakes, 0)
})
