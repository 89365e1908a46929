/**
 * `require-sealed-body`, the whole-body counterpart of `require-sealed`: with public keys only, the
 * gateway lets a body cross only if it is a sealed stream for the key set and the step's context.
 * The edge's `get-photo` relied on the sidecar's `seal-body` alone (docs/profiles.md): a sidecar
 * misconfigured to answer the photo in plaintext would have sent it to the sponsor. Now a plaintext
 * photo (even one labelled as sealed), a stream for another context or key, and a non-sealed media
 * type are refused before a byte crosses; a stream whose records do not frame is cut at its end.
 */
import { Readable } from 'node:stream'
import t from 'tap'
import { request } from 'undici'
import { parseKeySet } from '../../src/crypto/keys.js'
import { createSealStream } from '../../src/crypto/stream.js'
import { metricValue } from '../helpers/harness.js'
import { readUntilAbort, recordingHandler, SPONSOR_APP, startSealing, tempDir, writeKeyFiles } from '../helpers/sealing.js'

const SEALED = 'application/vnd.ecluse.sealed'
/** A JPEG's first bytes, then enough to pass the response hold window (64 KiB). */
const PHOTO = Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), Buffer.alloc(300_000, 0x42)])

t.test('only a sealed stream for the step’s key set and context crosses, either way', async (t) => {
  const dir = await tempDir()
  const keys = await writeKeyFiles(dir, 'th')
  const other = await writeKeyFiles(dir, 'other')
  const pub = parseKeySet(keys.publicJwks)
  const seal = async (route: string, keySet = pub) => {
    const stream = createSealStream(keySet, { contentType: 'image/jpeg', recordSize: 16_384, route })
    stream.end(PHOTO)
    const parts: Buffer[] = []
    for await (const c of stream) parts.push(c as Buffer)
    return Buffer.concat(parts)
  }
  const good = await seal('photos-out')
  const jweEnd = 12 + good.readUInt16BE(10)
  const answers: Record<string, { type: string; body: Buffer }> = {
    good: { type: SEALED, body: good },
    'plain-labelled-sealed': { type: SEALED, body: PHOTO },
    jpeg: { type: 'image/jpeg', body: PHOTO },
    'other-context': { type: SEALED, body: await seal('photos-in') },
    'other-key': { type: SEALED, body: await seal('photos-out', parseKeySet(other.publicJwks)) },
    // The last record cut to 10 bytes: the records no longer frame, seen only at the end.
    cut: { type: SEALED, body: good.subarray(0, good.length - ((good.length - jweEnd) % (16_384 + 17)) + 10) },
  }
  const uploads: Buffer[] = []
  const record = recordingHandler(uploads)
  const s = await startSealing({
    dir,
    keys: { th: { file: keys.publicPath } },
    handler: (req, res) => {
      if (req.method === 'PUT') return record(req, res)
      const answer = answers[(req.url ?? '').split('/').pop()!]!
      res.writeHead(200, { 'content-type': answer.type, 'content-length': answer.body.length })
      res.end(answer.body)
    },
    routes: [
      {
        name: 'get-photo',
        methods: ['GET'],
        path: '/v1/photos/:id',
        allow: [SPONSOR_APP],
        upstream: 'backend',
        transforms: { response: [{ type: 'require-sealed-body', recipients: 'th', context: 'photos-out' }] },
      },
      {
        name: 'put-photo',
        methods: ['PUT'],
        path: '/v1/uploads/:id',
        allow: [SPONSOR_APP],
        upstream: 'backend',
        transforms: { request: [{ type: 'require-sealed-body', recipients: 'th', context: 'photos-in' }] },
      },
    ],
  })
  t.teardown(s.close)

  const ok = await s.gw.request('/v1/photos/good')
  t.equal(ok.status, 200)
  t.equal(ok.headers['content-type'], SEALED)
  t.ok(ok.body.equals(good), 'a stream sealed for photos-out crosses byte for byte')

  for (const id of ['plain-labelled-sealed', 'jpeg', 'other-context', 'other-key']) {
    const res = await s.gw.request(`/v1/photos/${id}`)
    t.equal(res.status, 502, `${id}: 502`)
    t.same(res.json(), { error: 'transform_failed', requestId: res.headers['x-request-id'] }, `${id}: transform_failed, before a byte of the body`)
  }
  const refused = s.gw.logs.lines.filter((l) => l.msg === 'request refused' && l.route === 'get-photo').map((l) => String(l.detail))
  t.match(refused, [/plaintext_refused: .*bad magic/, /plaintext_refused: .*content-type is not/, /ecl\.route/, /kid/], 'the log says why, each time')

  const cut = await request(`${s.gw.sponsorOrigin}/v1/photos/cut`, { dispatcher: s.gw.agent() })
  t.equal(cut.statusCode, 200, 'records that do not frame: seen only at the end, after the status line')
  const read = await readUntilAbort(cut.body)
  t.notOk(read.completed, 'so the response is cut, never complete')
  t.ok(read.received.length < answers['cut']!.body.length, 'and its end never arrives')

  // Uploads: a stream sealed for photos-in crosses; a plaintext photo reaches nothing.
  const upload = await s.gw.request('/v1/uploads/1', { method: 'PUT', headers: { 'content-type': SEALED }, body: await seal('photos-in') })
  t.equal(upload.status, 200)
  t.equal(uploads.length, 1)
  const plain = await s.gw.request('/v1/uploads/2', { method: 'PUT', headers: { 'content-type': SEALED }, body: Readable.from([PHOTO]) })
  t.equal(plain.status, 422)
  t.same(plain.json(), { error: 'plaintext_refused', requestId: plain.headers['x-request-id'] })
  const misfiled = await s.gw.request('/v1/uploads/3', { method: 'PUT', headers: { 'content-type': SEALED }, body: good })
  t.equal(misfiled.status, 422, 'a stream sealed for photos-out is not an upload')
  t.equal(uploads.length, 1, 'neither reached the upstream')
  t.same(s.upstream.seen.filter((r) => r.method === 'PUT').map((r) => r.url), ['/v1/uploads/1'])

  const metrics = await s.gw.metrics()
  t.equal(metricValue(metrics, 'ecluse_crypto_operations_total', { op: 'verify', kind: 'stream', result: 'ok' }), 2, 'two streams checked and passed')
  t.equal(metricValue(metrics, 'ecluse_crypto_operations_total', { op: 'verify', kind: 'stream', result: 'failed' }), 6, 'six refused (the media type is refused before any check)')
  t.equal(metricValue(metrics, 'ecluse_transform_refusals_total', { route: 'get-photo', reason: 'plaintext_refused' }), 5)
  t.equal(metricValue(metrics, 'ecluse_transform_refusals_total', { route: 'put-photo', reason: 'plaintext_refused' }), 2)
})

t.test('the trusted side’s own error answers cross as they are; no other JSON does', async (t) => {
  // Found by review: with the service down, the sidecar's `502 upstream_refused` reached the sponsor
  // as `transform_failed`, counted as plaintext refused (the critical alert), the real code lost.
  const dir = await tempDir()
  const keys = await writeKeyFiles(dir, 'th')
  const id = '0b6f7c1e-4f2a-4d0e-9a51-3c8f2d7e9b10'
  const answers: Record<string, { status: number; body: string }> = {
    'gateway-error': { status: 502, body: `{"error":"upstream_refused","requestId":"${id}"}` },
    'gateway-error-no-id': { status: 503, body: '{"error":"shutting_down"}' },
    // The body a gateway sends for a service's error answer it withholds (errorBodies: withhold).
    'gateway-withheld': { status: 404, body: `{"upstreamStatus":404,"requestId":"${id}"}` },
    'withheld-other-status': { status: 502, body: `{"upstreamStatus":404,"requestId":"${id}"}` },
    'withheld-no-id': { status: 404, body: '{"upstreamStatus":404}' },
    // 16 free bytes in a request id: "Ada Lovelace" in hex.
    'id-carrying-bytes': { status: 502, body: '{"error":"upstream_refused","requestId":"41646120-4c6f-7665-6c61-636500000000"}' },
    'error-with-a-200': { status: 200, body: `{"error":"upstream_refused","requestId":"${id}"}` },
    'with-a-value': { status: 502, body: `{"error":"upstream_refused","requestId":"${id}","name":"Ada Lovelace"}` },
    spaced: { status: 502, body: `{"error": "upstream_refused","requestId":"${id}"}` },
    'unknown-code': { status: 502, body: `{"error":"Ada Lovelace","requestId":"${id}"}` },
    'not-a-uuid': { status: 502, body: '{"error":"upstream_refused","requestId":"Ada Lovelace"}' },
    record: { status: 200, body: '{"name":"Ada Lovelace"}' },
    long: { status: 502, body: `{"error":"upstream_refused","requestId":"${id}"}${' '.repeat(300)}` },
  }
  const s = await startSealing({
    dir,
    keys: { th: { file: keys.publicPath } },
    handler: (req, res) => {
      if (req.method === 'PUT') {
        req.resume()
        req.on('end', () => res.end())
        return
      }
      const answer = answers[(req.url ?? '').split('/').pop()!]!
      res.writeHead(answer.status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(answer.body) })
      res.end(answer.body)
    },
    routes: [
      {
        name: 'get-photo',
        methods: ['GET', 'PUT'],
        path: '/v1/photos/:id',
        allow: [SPONSOR_APP],
        upstream: 'backend',
        transforms: { request: [{ type: 'require-sealed-body', recipients: 'th' }], response: [{ type: 'require-sealed-body', recipients: 'th' }] },
        // The step judges error answers itself: with `withhold`, the default, they are answered
        // before it runs (an-upstream-error-answer-crosses-with-its-status-and-without-its-body).
        errorBodies: 'pass',
      },
    ],
  })
  t.teardown(s.close)
  const withheld = await s.gw.request('/v1/photos/gateway-withheld')
  t.same([withheld.status, withheld.json()], [404, { upstreamStatus: 404, requestId: withheld.headers['x-request-id'] }], 'a withheld answer crosses under this request id')
  for (const [what, code] of [
    ['gateway-error', 'upstream_refused'],
    ['gateway-error-no-id', 'shutting_down'],
    ['id-carrying-bytes', 'upstream_refused'],
  ] as const) {
    const res = await s.gw.request(`/v1/photos/${what}`)
    t.equal(res.status, answers[what]!.status, `${what}: its status`)
    t.same(res.json(), { error: code, requestId: res.headers['x-request-id'] }, `${what}: this gateway’s answer with its code, nothing else of the upstream’s`)
  }
  for (const what of ['with-a-value', 'spaced', 'unknown-code', 'not-a-uuid', 'record', 'long', 'error-with-a-200', 'withheld-other-status', 'withheld-no-id']) {
    const res = await s.gw.request(`/v1/photos/${what}`)
    t.equal(res.status, 502, `${what}: refused`)
    t.match(res.json(), { error: 'transform_failed' }, `${what}: transform_failed`)
    t.notMatch(res.text, 'Ada', `${what}: none of it crosses`)
  }
  t.notMatch(s.gw.logs.raw.join('\n'), 'Ada', 'nor reaches the log')
  const metrics = await s.gw.metrics()
  t.equal(metricValue(metrics, 'ecluse_transform_refusals_total', { route: 'get-photo', reason: 'plaintext_refused' }), 9, 'the nine refused, counted')
  // A request is never an error answer, and a content coding is refused as such.
  const put = await s.gw.request('/v1/photos/1', { method: 'PUT', headers: { 'content-type': 'application/json' }, body: answers['gateway-error']!.body })
  t.equal(put.status, 422, 'a request labelled JSON: plaintext_refused, whatever it holds')
  const gzip = await s.gw.request('/v1/photos/1', { method: 'PUT', headers: { 'content-type': SEALED, 'content-encoding': 'gzip' }, body: 'x' })
  t.equal(gzip.status, 415)
  t.match(gzip.json(), { error: 'unsupported_media_type' })
  t.equal(s.upstream.seen.filter((r) => r.method === 'PUT').length, 0, 'no request reached the upstream')
})
