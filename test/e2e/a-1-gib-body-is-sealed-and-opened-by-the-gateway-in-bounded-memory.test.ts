import { createHash } from 'node:crypto'
import { pipeline } from 'node:stream/promises'
import t from 'tap'
import { request } from 'undici'
import { parseKeySet } from '../../src/crypto/keys.js'
import { createOpenStream, createSealStream, type SealedStreamInfo } from '../../src/crypto/stream.js'
import { gatewayConfig, metricValue, startGatewayProcess, TestUpstream } from '../helpers/harness.js'
import { makeTestPki } from '../helpers/pki.js'
import { digestOf, generatedBody, SPONSOR_APP, tempDir, writeKeyFiles } from '../helpers/sealing.js'

const MIB = 1024 * 1024
const UP = 1024 * MIB
const DOWN = 1024 * MIB
const RECORD = 64 * 1024
const SEALED = 'application/vnd.ecluse.sealed'

/**
 * The bound on the gateway's peak resident memory above idle. It comes from the configuration, not
 * the payload: per message the sealing side holds at most one record (`recordSize`, 64 KiB) and the
 * opening side at most one record (`maxRecordSize`, default 1 MiB) plus the last record held back
 * until the end of input; the rest is stream and socket buffers (a few 16-64 KiB high-water marks
 * per hop), undici's and the TLS layer's. That is a few MiB; the rest is V8/allocator slack, so the
 * bound is the plain relay's (streams-256-mib-both-ways-with-bounded-memory.test.ts): 64 MiB, a
 * sixteenth of either body. A gateway that buffered a body, or a record's worth per chunk, would
 * exceed it many times over.
 */
const BOUND_MIB = 64

// The gateway runs in its own process so that its peak resident memory (VmHWM) is its own: the
// client and the upstream (sealing, opening and hashing 1 GiB each way) live in this process.
t.test('a 1 GiB upload is sealed and a 1 GiB sealed download opened by the gateway, byte exact, in bounded memory', async (t) => {
  const pki = await makeTestPki()
  const dir = await tempDir('ecluse-1gib-')
  const keys = await writeKeyFiles(dir, 'trusted-host')
  const privateSet = parseKeySet(keys.privateJwks, { requirePrivate: true })
  const publicSet = parseKeySet(keys.publicJwks, { publicOnly: true })

  const uploads: Array<{ type: string | undefined; info: SealedStreamInfo | undefined; sha256: string; bytes: number; wire: number; error?: string }> = []
  const served: Array<Promise<string>> = []
  // The trusted side: opens what the gateway sealed (our opener; the Python decoders cover format
  // independence in test/crypto-independent-python-decoders-open-what-we-seal.test.ts, too slow for
  // 1 GiB), and serves sealed downloads of `?bytes=N` generated on the fly.
  const upstream = new TestUpstream(pki, (req, res) => {
    if (req.method === 'PUT') {
      const open = createOpenStream(privateSet, { route: 'bulk-in' })
      let wire = 0
      req.on('data', (c: Buffer) => {
        wire += c.length
      })
      const type = req.headers['content-type']
      digestOf(req.pipe(open)).then(
        (d) => {
          uploads.push({ type, info: open.info, ...d, wire })
          res.end('stored')
        },
        (err: Error) => {
          uploads.push({ type, info: undefined, sha256: '', bytes: 0, wire, error: err.message })
          res.writeHead(400).end()
        },
      )
      return
    }
    const bytes = Number(new URL(req.url ?? '', 'https://x').searchParams.get('bytes'))
    const hash = createHash('sha256')
    res.writeHead(200, { 'content-type': SEALED })
    const seal = createSealStream(publicSet, { contentType: 'application/x-bulk-export', route: 'bulk-out', recordSize: RECORD })
    served.push(pipeline(generatedBody(bytes, 2, hash), seal, res).then(() => hash.digest('hex')))
  })
  await upstream.listen()
  t.teardown(() => upstream.close())

  const routes = [
    {
      name: 'bulk-in',
      methods: ['PUT'],
      path: '/v1/bulk',
      allow: [SPONSOR_APP],
      upstream: 'backend',
      maxBodyBytes: UP,
      transforms: { request: [{ type: 'seal-body', recipients: 'trusted-host', recordSize: RECORD }] },
    },
    {
      name: 'bulk-out',
      methods: ['GET'],
      path: '/v1/bulk',
      allow: [SPONSOR_APP],
      upstream: 'backend',
      transforms: { response: [{ type: 'open-body', keys: 'trusted-host-private' }] },
    },
  ]
  const config = gatewayConfig(pki, upstream.port, routes, {
    keys: {
      'trusted-host': { file: keys.publicPath },
      'trusted-host-private': { file: keys.privatePath, private: true },
    },
  })
  Object.assign(config.upstreams.backend as Record<string, unknown>, { bodyTimeoutMs: 120_000, headersTimeoutMs: 120_000 })
  // The sponsor's idle timeout must outlast the upstream's (the schema refuses it otherwise).
  Object.assign(config.sponsor, { limits: { idleTimeoutMs: 180_000 } })
  const { gateway, ports, agent } = await startGatewayProcess(t, pki, dir, config, { bodyTimeout: 120_000, headersTimeout: 120_000 })
  const origin = `https://127.0.0.1:${ports.sponsor}`

  // Warm up both routes (TLS, JIT, pools, key import) so the baseline is the gateway at rest.
  const warmUp = await request(`${origin}/v1/bulk`, { method: 'PUT', body: 'warm', headers: { 'content-type': 'text/plain' }, dispatcher: agent })
  t.equal(warmUp.statusCode, 200)
  await warmUp.body.dump()
  const warmDown = await request(`${origin}/v1/bulk?bytes=4`, { dispatcher: agent })
  t.equal((await digestOf(warmDown.body)).bytes, 4)
  const idle = await gateway.memory()
  const started = performance.now()

  // Up: 1 GiB generated and hashed as it is sent.
  const sentHash = createHash('sha256')
  const up = await request(`${origin}/v1/bulk`, {
    method: 'PUT',
    body: generatedBody(UP, 1, sentHash),
    headers: { 'content-type': 'application/x-bulk-import', 'content-length': String(UP) },
    dispatcher: agent,
  })
  t.equal(up.statusCode, 200)
  t.equal(await up.body.text(), 'stored')
  const upMs = performance.now() - started
  const upload = uploads[1]!
  t.notOk(upload.error, 'the upstream opened the sealed stream')
  t.equal(upload.type, SEALED, 'the body crossed labelled as sealed')
  t.equal(upload.bytes, UP, 'every plaintext byte arrived')
  t.equal(upload.sha256, sentHash.digest('hex'), 'SHA-256 of the opened body matches what the client sent')
  t.equal(upload.info?.contentType, 'application/x-bulk-import', 'the media type travelled inside the seal')
  t.equal(upload.info?.kid, keys.publicJwks.current, 'sealed to the current key')
  t.equal(upload.info?.route, 'bulk-in', 'bound to the route')
  t.equal(upload.info?.recordSize, RECORD)
  t.ok(upload.wire > UP + (UP / RECORD) * 17, `what crossed is ciphertext of records and tags (${upload.wire} bytes)`)

  // Down: a 1 GiB sealed stream opened by the gateway's open-body step.
  const down = await request(`${origin}/v1/bulk?bytes=${DOWN}`, { dispatcher: agent })
  t.equal(down.statusCode, 200)
  t.equal(down.headers['content-type'], 'application/x-bulk-export', 'the sealed media type is restored')
  const received = await digestOf(down.body)
  const totalMs = performance.now() - started
  t.equal(received.bytes, DOWN, 'every byte arrived')
  t.equal(received.sha256, await served[1], 'SHA-256 of what the client received matches what the upstream sealed')

  const after = await gateway.memory()
  const growth = (after.peakBytes - idle.rssBytes) / MIB
  t.ok(growth < BOUND_MIB, `gateway peak RSS within ${BOUND_MIB} MiB of idle: +${growth.toFixed(1)} MiB for 2 GiB sealed and opened`)
  t.comment(`up ${(upMs / 1000).toFixed(1)} s, both ways ${(totalMs / 1000).toFixed(1)} s; idle RSS ${(idle.rssBytes / MIB).toFixed(1)} MiB`)

  const metrics = await (await request(`http://127.0.0.1:${ports.admin}/metrics`)).body.text()
  t.equal(metricValue(metrics, 'ecluse_crypto_operations_total', { op: 'seal', kind: 'stream', result: 'ok' }), 2)
  t.equal(metricValue(metrics, 'ecluse_crypto_operations_total', { op: 'open', kind: 'stream', result: 'ok' }), 2)
  t.equal(metricValue(metrics, 'ecluse_crypto_bytes_total', { op: 'seal', kind: 'stream' }), UP + 4, 'plaintext sealed, counted')
  t.equal(metricValue(metrics, 'ecluse_crypto_bytes_total', { op: 'open', kind: 'stream' }), DOWN + 4, 'plaintext opened, counted')
  t.equal(metricValue(metrics, 'ecluse_body_bytes_total', { route: 'bulk-out', direction: 'response' }), DOWN + 4)
})
