import { execFile } from 'node:child_process'
import { once } from 'node:events'
import { createServer } from 'node:https'
import type { AddressInfo } from 'node:net'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import t from 'tap'
import { makeTestPki } from './helpers/pki.js'

// The system root store cannot be changed from inside a running process on Node 20, but
// NODE_EXTRA_CA_CERTS adds to it at start-up. A child process gets the sponsor CA as an extra
// *system* root; the control connection (default roots) then trusts a sponsor-CA upstream, while the
// pool (configured with the trusted CA) must still refuse it: `ca` replaces the roots, never adds.

const pki = await makeTestPki()

const server = createServer(
  {
    cert: pki.sponsorCaTrustedServer.certPem,
    key: pki.sponsorCaTrustedServer.keyPem,
    ca: pki.trustedCa.certPem,
    requestCert: true,
    rejectUnauthorized: true,
  },
  (_req, res) => res.end('must not be reached through the pool'),
)
server.listen(0, '127.0.0.1')
await once(server, 'listening')
t.teardown(() => {
  server.closeAllConnections()
  server.close()
})

const child = `
import { readFileSync } from 'node:fs'
import tls from 'node:tls'
const env = process.env
const read = (p) => readFileSync(p)
const port = Number(env.UPSTREAM_PORT)
const out = {}
out.control = await new Promise((resolve) => {
  const s = tls.connect({ host: '127.0.0.1', port, servername: 'accreditation.trusted.test',
    cert: read(env.CLIENT_CERT), key: read(env.CLIENT_KEY) }, () => { resolve(s.authorized); s.destroy() })
  s.on('error', (e) => resolve(e.code))
})
const { UpstreamPool } = await import(env.POOL_MODULE)
const pool = new UpstreamPool('accreditation', {
  url: 'https://127.0.0.1:' + port, serverName: 'accreditation.trusted.test',
  tls: { ca: 'x', cert: 'x', key: 'x', minVersion: 'TLSv1.2' }, connections: 1, connectTimeoutMs: 2000,
  headersTimeoutMs: 2000, bodyTimeoutMs: 2000, keepAliveTimeoutMs: 1000, healthPath: '/healthz',
}, { ca: read(env.TRUSTED_CA), cert: read(env.CLIENT_CERT), key: read(env.CLIENT_KEY) })
try {
  const res = await pool.request({ method: 'GET', path: '/', headers: {}, body: null, signal: new AbortController().signal })
  out.pool = 'connected ' + res.statusCode
} catch (e) {
  out.pool = e.code
  out.cause = e.cause && e.cause.code
}
await pool.destroy()
process.stdout.write(JSON.stringify(out))
`

t.test('a CA in the system store does not make the pool trust an upstream', async (t) => {
  const { stdout } = await promisify(execFile)(
    process.execPath,
    ['--import', 'tsx', '--input-type=module', '--eval', child],
    {
      cwd: fileURLToPath(new URL('..', import.meta.url)),
      timeout: 20_000,
      env: {
        ...process.env,
        NODE_OPTIONS: '',
        NODE_EXTRA_CA_CERTS: pki.sponsorCa.certPath,
        UPSTREAM_PORT: String((server.address() as AddressInfo).port),
        CLIENT_CERT: pki.gatewayTrustedClient.certPath,
        CLIENT_KEY: pki.gatewayTrustedClient.keyPath,
        TRUSTED_CA: pki.trustedCa.certPath,
        POOL_MODULE: new URL('../src/upstream/pool.ts', import.meta.url).href,
      },
    },
  )
  const out = JSON.parse(stdout) as { control: unknown; pool: unknown; cause: unknown }
  t.equal(out.control, true, 'control: with the default roots the sponsor CA is trusted in the child')
  t.equal(out.pool, 'upstream_tls', 'the pool still refuses the upstream')
  t.equal(out.cause, 'UNABLE_TO_VERIFY_LEAF_SIGNATURE')
})
