/**
 * From the admin review: a message's sealing metrics were written only when its body ended (or a
 * step refused it). A body cut short by its client was never counted, though what had been sealed
 * had gone upstream; and a long one was counted all at once at its end, so `rate()` of
 * `ecluse_crypto_bytes_total` (the documented throughput of the encryption path, the dashboard's
 * panel) read zero while it streamed, then a spike. Bytes, and each field, are now counted as they
 * pass; the message's time when it ends or is cut short.
 */

import { setTimeout as sleep } from 'node:timers/promises'
import tls from 'node:tls'
import t from 'tap'
import { metricValue } from '../helpers/harness.js'
import { SPONSOR_APP, startSealing, tempDir, writeKeyFiles } from '../helpers/sealing.js'

type Sealing = Awaited<ReturnType<typeof startSealing>>

/** A raw sponsor connection, for a body the test cuts where it likes. */
async function sponsorSocket(s: Sealing): Promise<tls.TLSSocket> {
  const socket = tls.connect({
    host: '127.0.0.1',
    port: s.gw.gateway.sponsorPort,
    servername: 'localhost',
    ca: s.pki.sponsorCa.certPem,
    cert: s.pki.sponsorClient.certPem,
    key: s.pki.sponsorClient.keyPem,
  })
  socket.on('error', () => {})
  await new Promise<void>((resolve) => socket.once('secureConnect', () => resolve()))
  return socket
}

async function until(what: () => Promise<boolean>, ms = 10_000): Promise<void> {
  for (const deadline = Date.now() + ms; !(await what()); ) {
    if (Date.now() > deadline) throw new Error('timed out')
    await sleep(50)
  }
}

t.test('a sealed body: its bytes count while it streams, and its time when its client cuts it', async (t) => {
  const dir = await tempDir()
  const keys = await writeKeyFiles(dir, 'th')
  const s = await startSealing({
    dir,
    keys: { th: { file: keys.publicPath } },
    routes: [
      {
        name: 'upload',
        methods: ['POST'],
        path: '/v1/up/:id',
        allow: [SPONSOR_APP],
        upstream: 'backend',
        maxBodyBytes: 64 * 1024 * 1024,
        transforms: { request: [{ type: 'seal-body', recipients: 'th' }] },
      },
    ],
  })
  t.teardown(s.close)
  const stream = { op: 'seal', kind: 'stream' }
  const read = async (name: string, labels: Record<string, string>) => metricValue(await s.gw.metrics(), name, labels)
  const socket = await sponsorSocket(s)
  socket.write('POST /v1/up/1 HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/octet-stream\r\ncontent-length: 16777216\r\n\r\n')
  const chunk = Buffer.alloc(64 * 1024, 2)
  for (let i = 0; i < 64; i++) if (!socket.write(chunk)) await new Promise((r) => socket.once('drain', r))
  // 4 MiB of 16 sent: the sealer has had most of it, and nothing has ended.
  await until(async () => (await read('ecluse_crypto_bytes_total', stream)) >= 2 * 1024 * 1024)
  t.pass('bytes counted while the body streams')
  t.equal(await read('ecluse_crypto_operations_total', { ...stream, result: 'ok' }), 0, 'no operation has completed')
  t.equal(await read('ecluse_crypto_duration_seconds_count', stream), 0)
  socket.destroy()
  await until(async () => (await read('ecluse_crypto_duration_seconds_count', stream)) === 1)
  t.pass('the message cut short has its time observed')
  const bytes = await read('ecluse_crypto_bytes_total', stream)
  t.ok(bytes >= 2 * 1024 * 1024 && bytes <= 4 * 1024 * 1024, `what it had sealed stays counted: ${bytes} bytes`)
  t.equal(await read('ecluse_crypto_operations_total', { ...stream, result: 'ok' }), 0, 'not an operation that completed')
  t.equal(await read('ecluse_crypto_operations_total', { ...stream, result: 'failed' }), 0, 'nor one that failed')
})

t.test('sealed fields: each counts once its chunk is sealed, and those of a body cut short stay counted', async (t) => {
  const dir = await tempDir()
  const keys = await writeKeyFiles(dir, 'th')
  const s = await startSealing({
    dir,
    keys: { th: { file: keys.publicPath } },
    routes: [
      {
        name: 'bulk',
        methods: ['POST'],
        path: '/v1/bulk',
        allow: [SPONSOR_APP],
        upstream: 'backend',
        maxBodyBytes: 64 * 1024 * 1024,
        transforms: { request: [{ type: 'seal', recipients: 'th', context: 'people', fields: ['/passport'], format: 'ndjson' }] },
      },
    ],
  })
  t.teardown(s.close)
  const field = { op: 'seal', kind: 'field' }
  const read = async (name: string, labels: Record<string, string>) => metricValue(await s.gw.metrics(), name, labels)
  const socket = await sponsorSocket(s)
  socket.write('POST /v1/bulk HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/x-ndjson\r\ntransfer-encoding: chunked\r\n\r\n')
  let n = 0
  for (let i = 0; i < 50; i++) {
    const lines = Array.from({ length: 100 }, () => `${JSON.stringify({ id: n++, passport: `P${n}` })}\n`).join('')
    socket.write(`${Buffer.byteLength(lines).toString(16)}\r\n${lines}\r\n`)
  }
  // The body has not ended (no last chunk): every record sent is sealed and counted.
  await until(async () => (await read('ecluse_sealed_fields_total', { route: 'bulk', op: 'seal' })) === n)
  t.pass(`${n} fields counted while the body streams`)
  t.equal(await read('ecluse_crypto_operations_total', { ...field, result: 'ok' }), n)
  t.ok((await read('ecluse_crypto_bytes_total', field)) > 0)
  t.equal(await read('ecluse_crypto_duration_seconds_count', field), 0, 'the message has not ended')
  socket.destroy()
  await until(async () => (await read('ecluse_crypto_duration_seconds_count', field)) === 1)
  t.pass('the message cut short has its time observed')
  t.equal(await read('ecluse_sealed_fields_total', { route: 'bulk', op: 'seal' }), n, 'its fields stay counted, once')
  t.equal(await read('ecluse_crypto_operations_total', { ...field, result: 'ok' }), n)
})
