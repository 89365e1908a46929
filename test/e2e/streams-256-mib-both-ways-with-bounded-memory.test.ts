import { createHash } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import t from 'tap'
import { request } from 'undici'
import { gatewayConfig, metricValue, startGatewayProcess, TestUpstream } from '../helpers/harness.js'
import { makeTestPki } from '../helpers/pki.js'

const TOTAL = 256 * 1024 * 1024
const CHUNK = 64 * 1024

/** A deterministic body generated on the fly, so neither end ever holds it whole. */
function generated(seed: number): Readable {
  const block = Buffer.alloc(CHUNK)
  for (let i = 0; i < CHUNK; i++) block[i] = (i * 31 + seed) & 0xff
  let sent = 0
  return new Readable({
    read() {
      if (sent >= TOTAL) return void this.push(null)
      const out = Buffer.from(block)
      out.writeUInt32BE(sent / CHUNK, 0) // every chunk differs, so a reordering changes the hash
      sent += CHUNK
      this.push(out)
    },
  })
}

async function digestOf(stream: Readable): Promise<string> {
  const hash = createHash('sha256')
  for await (const chunk of stream) hash.update(chunk as Buffer)
  return hash.digest('hex')
}

// The gateway runs in its own process so that its peak resident memory (VmHWM) is its own.
t.test('256 MiB streams up and 256 MiB streams down with matching checksums; gateway memory stays flat', async (t) => {
  const pki = await makeTestPki()
  const dir = await mkdtemp(join(tmpdir(), 'ecluse-stream-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const expectedUp = await digestOf(generated(1))
  const expectedDown = await digestOf(generated(2))
  let receivedUp = ''
  const upstream = new TestUpstream(pki, (req, res) => {
    const warmUp = req.headers['content-length'] !== String(TOTAL)
    void digestOf(req).then((d) => {
      if (warmUp) return void res.end('ok')
      receivedUp = d
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': TOTAL })
      generated(2).pipe(res)
    })
  })
  await upstream.listen()
  t.teardown(() => upstream.close())
  const routes = [
    { name: 'bulk', methods: ['PUT'], path: '/v1/bulk', allow: ['uri:spiffe://sponsor.test/accreditation-app'], upstream: 'backend', maxBodyBytes: TOTAL },
  ]
  const config = gatewayConfig(pki, upstream.port, routes)
  ;(config.upstreams.backend as Record<string, unknown>)['bodyTimeoutMs'] = 60_000
  // The sponsor's idle timeout must outlast the upstream's (the schema refuses it otherwise).
  Object.assign(config.sponsor, { limits: { idleTimeoutMs: 120_000 } })
  const { gateway, ports, agent } = await startGatewayProcess(t, pki, dir, config, { bodyTimeout: 60_000, headersTimeout: 60_000 })

  // Warm up (TLS, JIT, pools) so the baseline is the gateway at rest, not at boot.
  const warm = await request(`https://127.0.0.1:${ports.sponsor}/v1/bulk`, { method: 'PUT', body: 'warm', dispatcher: agent })
  await warm.body.dump()
  const idle = await gateway.memory()

  const res = await request(`https://127.0.0.1:${ports.sponsor}/v1/bulk`, {
    method: 'PUT',
    body: generated(1),
    headers: { 'content-type': 'application/octet-stream', 'content-length': String(TOTAL) },
    dispatcher: agent,
  })
  t.equal(res.statusCode, 200)
  const down = await digestOf(res.body)
  t.equal(receivedUp, expectedUp, 'the upstream received every byte, in order')
  t.equal(down, expectedDown, 'the client received every byte, in order')

  const after = await gateway.memory()
  const growth = (after.peakBytes - idle.rssBytes) / (1024 * 1024)
  t.ok(growth < 64, `gateway peak RSS stayed within 64 MiB of idle: +${growth.toFixed(1)} MiB for 512 MiB relayed`)

  const metrics = await (await request(`http://127.0.0.1:${ports.admin}/metrics`)).body.text()
  t.equal(metricValue(metrics, 'ecluse_body_bytes_total', { route: 'bulk', direction: 'request' }), TOTAL + 4)
  t.equal(metricValue(metrics, 'ecluse_body_bytes_total', { route: 'bulk', direction: 'response' }), TOTAL + 2)
})
