/**
 * From the re-review: a record-bound step holds a record whole, then releases it into the answer at
 * once, and the upstream's body ends: its pool place went to the next request while the record
 * waited in the gateway's buffers for a client that did not read. With one upstream connection, 32
 * such clients held 32 records (≈ 220 MiB for 4 MiB ones): the records held were bounded by the
 * sponsor connections (1,024), not by `connections`, as the deploy examples' sums assumed. The
 * place is now kept until the answer is handed on.
 */
import { rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import tls from 'node:tls'
import t from 'tap'
import { stringify } from 'yaml'
import { Gateway } from '../../src/main.js'
import { createLogger } from '../../src/observability/logger.js'
import { LogCapture, TestUpstream } from '../helpers/harness.js'
import { makeTestPki } from '../helpers/pki.js'
import { SPONSOR_APP, TestGateway, tempDir, writeKeyFiles } from '../helpers/sealing.js'

// Larger than the kernel's socket buffers on loopback (≈ 4 MiB sent, 128 KiB received before the
// reader reads): the rest of the answer waits in the gateway's own buffers.
const RECORD_BYTES = 12 * 1024 * 1024

t.test('with one upstream connection, a second client waits while the first has not read its record', async (t) => {
  const body = JSON.stringify({ id: 'r-1', name: 'Alice', notes: 'x'.repeat(RECORD_BYTES - 64) })
  const pki = await makeTestPki()
  const dir = await tempDir()
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const keys = await writeKeyFiles(dir, 'th')
  const upstream = new TestUpstream(pki, (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) })
    res.end(body)
  })
  const port = await upstream.listen()
  t.teardown(() => upstream.close())
  const config = TestGateway.config({
    pki,
    dir,
    keys: { th: { file: keys.publicPath } },
    upstream: { port, ca: pki.trustedCa, cert: pki.gatewayTrustedClient },
    routes: [
      {
        name: 'rec',
        methods: ['GET'],
        path: '/v1/rec',
        allow: [SPONSOR_APP],
        upstream: 'backend',
        transforms: {
          response: [{ type: 'seal', recipients: 'th', context: 'c', fields: ['/name'], records: { pattern: '', id: 'id' }, maxRecordBytes: 16 * 1024 * 1024 }],
        },
      },
    ],
  }) as { upstreams: { backend: Record<string, unknown> }; log: unknown }
  config.upstreams.backend['connections'] = 1
  config.upstreams.backend['connectTimeoutMs'] = 10_000
  const configPath = join(dir, 'gateway.yaml')
  await writeFile(configPath, stringify(config))
  const gateway = await Gateway.start(configPath, { log: createLogger({ level: 'warn', destination: new LogCapture().stream }) })
  t.teardown(() => gateway.shutdown())

  const sockets: tls.TLSSocket[] = []
  t.teardown(() => {
    for (const s of sockets) s.destroy()
  })
  /** A client that sends its request and reads nothing; resolves with what it later receives. */
  const client = async (): Promise<tls.TLSSocket> => {
    const socket = tls.connect({ host: '127.0.0.1', port: gateway.sponsorPort, ca: pki.sponsorCa.certPem, cert: pki.sponsorClient.certPem, key: pki.sponsorClient.keyPem, servername: 'localhost' })
    socket.on('error', () => {})
    await new Promise((resolve) => socket.once('secureConnect', resolve))
    socket.write('GET /v1/rec HTTP/1.1\r\nhost: localhost\r\n\r\n')
    socket.pause()
    sockets.push(socket)
    return socket
  }
  const first = await client()
  await client()
  await sleep(1_500)
  t.equal(upstream.hits, 1, 'the second request waits for the place the first one’s record keeps')

  // The first client reads its answer: the place is free, and the second is served.
  let received = 0
  first.on('data', (chunk: Buffer) => {
    received += chunk.length
  })
  first.resume()
  for (let i = 0; i < 100 && upstream.hits < 2; i++) await sleep(50)
  t.equal(upstream.hits, 2, 'once the first answer was handed on, the second request went')
  for (let i = 0; i < 100 && received <= RECORD_BYTES; i++) await sleep(50)
  t.ok(received > RECORD_BYTES, `the first client got its record: ${received} bytes`)
})
