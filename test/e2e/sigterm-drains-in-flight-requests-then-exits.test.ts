import { once } from 'node:events'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { Agent, request } from 'undici'
import { startGatewayProcess, TestUpstream } from '../helpers/harness.js'
import { makeTestPki } from '../helpers/pki.js'

// The real process: `ecluse serve` from source, driven by real signals.
t.test('SIGHUP reloads, SIGTERM drains the in-flight request, refuses new ones, then exits 0', async (t) => {
  const pki = await makeTestPki()
  const dir = await mkdtemp(join(tmpdir(), 'ecluse-signals-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  let release!: () => void
  const released = new Promise<void>((resolve) => {
    release = resolve
  })
  const upstream = new TestUpstream(pki, (req, res) => {
    if (req.url === '/slow') void released.then(() => res.end('slow-done'))
    else res.end('ok')
  })
  await upstream.listen()
  t.teardown(() => upstream.close())

  const config = {
    sponsor: {
      listen: { host: '127.0.0.1', port: 0 },
      tls: { cert: pki.gatewaySponsorServer.certPath, key: pki.gatewaySponsorServer.keyPath, clientCa: pki.sponsorCa.certPath },
    },
    upstreams: {
      backend: {
        url: `https://127.0.0.1:${upstream.port}`,
        serverName: 'accreditation.trusted.test',
        tls: { ca: pki.trustedCa.certPath, cert: pki.gatewayTrustedClient.certPath, key: pki.gatewayTrustedClient.keyPath },
      },
    },
    routes: [{ name: 'any', methods: ['GET'], path: '/*', allow: ['uri:spiffe://sponsor.test/accreditation-app'], upstream: 'backend' }],
    admin: { listen: { host: '127.0.0.1', port: 0 } },
    shutdown: { drainTimeoutMs: 5000 },
  }

  const { gateway, ports, agent } = await startGatewayProcess(t, pki, dir, config)
  const child = gateway.child
  const logged = (msg: string) => gateway.logged(msg)
  const port = ports.sponsor
  const origin = `https://127.0.0.1:${port}`

  const first = await request(`${origin}/fast`, { dispatcher: agent })
  t.equal(await first.body.text(), 'ok')

  child.kill('SIGHUP')
  await logged('reloaded')
  t.pass('SIGHUP reloaded the configuration')

  const slow = request(`${origin}/slow`, { dispatcher: agent })
  while (upstream.seen.filter((s) => s.url === '/slow').length === 0) await new Promise((r) => setTimeout(r, 10))
  child.kill('SIGTERM')
  await logged('draining')
  // A new connection is refused while draining.
  const fresh = new Agent({
    connect: { ca: pki.sponsorCa.certPem, cert: pki.sponsorClient.certPem, key: pki.sponsorClient.keyPem, servername: 'localhost' },
  })
  t.teardown(() => fresh.destroy())
  await t.rejects(request(`${origin}/fast`, { dispatcher: fresh }), 'no new connections while draining')
  release()
  const slowRes = await slow
  t.equal(await slowRes.body.text(), 'slow-done', 'the in-flight request completed')
  // It said keep-alive before, and the drain then closed the connection under a client that could
  // already be sending its next request on it.
  t.equal(slowRes.headers['connection'], 'close', 'and told its client not to reuse the connection')
  const [code] = await once(child, 'exit')
  t.equal(code, 0, 'exited cleanly after the drain')
})
