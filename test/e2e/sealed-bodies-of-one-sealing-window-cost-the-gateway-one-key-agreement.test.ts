import { Readable } from 'node:stream'
import t from 'tap'
import { SEAL_WINDOW_MS, SEAL_WINDOWS, SealWindows } from '../../src/crypto/field.js'
import { createOpenStream, createSealStream, parseKeySet } from '../../src/crypto/index.js'
import { countAsymmetric } from '../helpers/asymmetric.js'
import { SPONSOR_APP, startSealing, tempDir, writeKeyFiles } from '../helpers/sealing.js'

// Small sealed bodies (photos of tens of KiB) used to pay two X25519 operations each to seal and
// one to open: ~300 µs of setup against ~20 µs of AES. The key JWE of a stream now takes the
// agreement of the sealing window, and `open-body` keeps a KEK cache for its route, so bodies of
// one window cost the gateway one agreement on each side. Counted on the diagnostics channel of
// the gateway running in this process, never by timing.

const PHOTOS = 5
const photo = (i: number) => Buffer.alloc(20_000 + i, i + 1)

async function sealed(body: Buffer, keys: ReturnType<typeof parseKeySet>, windows: SealWindows): Promise<Buffer> {
  const out: Buffer[] = []
  for await (const c of Readable.from([body]).pipe(createSealStream(keys, { contentType: 'image/jpeg', route: 'photos', windows }))) out.push(c as Buffer)
  return Buffer.concat(out)
}

async function opened(body: Buffer, keys: ReturnType<typeof parseKeySet>): Promise<Buffer> {
  const out: Buffer[] = []
  for await (const c of Readable.from([body]).pipe(createOpenStream(keys, { route: 'photos' }))) out.push(c as Buffer)
  return Buffer.concat(out)
}

function epkOf(sealedBody: Buffer): string {
  const jwe = sealedBody.toString('latin1', 12, 12 + sealedBody.readUInt16BE(10))
  return JSON.parse(Buffer.from(jwe.slice(0, jwe.indexOf('.')), 'base64url').toString()).epk.x
}

t.test('photos sealed and opened by the gateway within one sealing window cost one key agreement on each side', async (t) => {
  const dir = await tempDir()
  const keys = await writeKeyFiles(dir, 'th')
  const publicSet = parseKeySet(keys.publicJwks, { publicOnly: true })
  const privateSet = parseKeySet(keys.privateJwks, { requirePrivate: true })
  // Downloads: sealed by the test in one window of its own, opened by the gateway.
  const windows = new SealWindows({ now: () => 0 })
  const stored = await Promise.all(Array.from({ length: PHOTOS }, (_, i) => sealed(photo(i), publicSet, windows)))
  const uploads: Buffer[] = []
  const s = await startSealing({
    dir,
    keys: { th: { file: keys.publicPath }, 'th-private': { file: keys.privatePath, private: true } },
    handler: (req, res) => {
      if (req.method === 'GET') {
        const body = stored[Number((req.url ?? '').split('/').at(-1))]!
        res.writeHead(200, { 'content-type': 'application/vnd.ecluse.sealed', 'content-length': body.length })
        return void res.end(body)
      }
      const chunks: Buffer[] = []
      req.on('data', (c: Buffer) => chunks.push(c))
      req.on('end', () => {
        uploads.push(Buffer.concat(chunks))
        res.writeHead(204).end()
      })
    },
    routes: [
      {
        name: 'photos',
        methods: ['GET', 'PUT'],
        path: '/v1/photos/:n',
        allow: [SPONSOR_APP],
        upstream: 'backend',
        transforms: { request: [{ type: 'seal-body', recipients: 'th' }], response: [{ type: 'open-body', keys: 'th-private' }] },
      },
    ],
  })
  t.teardown(s.close)

  const { ops: downloads } = await countAsymmetric(async () => {
    for (let i = 0; i < PHOTOS; i++) {
      const res = await s.gw.request(`/v1/photos/${i}`)
      t.equal(res.status, 200)
      t.equal(res.headers['content-type'], 'image/jpeg')
      t.ok(res.body.equals(photo(i)), `photo ${i} opens byte for byte`)
    }
  })
  t.same(
    downloads.map((o) => [o.op, o.side]),
    [['ecdh-es', 'open']],
    `${PHOTOS} bodies of one window: one agreement for the route's opener`,
  )

  // Uploads: sealed by the gateway with the process-wide windows, from a fresh window.
  SEAL_WINDOWS.clear()
  const started = performance.now()
  const { ops: sealing } = await countAsymmetric(async () => {
    for (let i = 0; i < PHOTOS; i++) {
      const res = await s.gw.request(`/v1/photos/${i}`, { method: 'PUT', headers: { 'content-type': 'image/jpeg' }, body: photo(i) })
      t.equal(res.status, 204)
    }
  })
  const elapsed = performance.now() - started
  t.equal(uploads.length, PHOTOS)
  for (const [i, u] of uploads.entries()) t.ok((await opened(u, privateSet)).equals(photo(i)), `upload ${i} reached the upstream sealed, and opens`)
  t.ok(
    sealing.every((o) => o.op === 'ecdh-es' && o.side === 'seal'),
    'the gateway only sealed',
  )
  // A window lasts SEAL_WINDOW_MS from its first value: uploads that took longer (a very loaded
  // machine) may span two windows, never more than the time allows.
  const windowsSpanned = elapsed < SEAL_WINDOW_MS ? 1 : Math.ceil(elapsed / SEAL_WINDOW_MS) + 1
  t.ok(sealing.length >= 1 && sealing.length <= windowsSpanned, `${sealing.length} agreement(s) for ${PHOTOS} uploads in ${elapsed.toFixed(0)} ms`)
  t.ok(new Set(uploads.map(epkOf)).size <= windowsSpanned, 'their key JWEs share the window epk')
})
