/**
 * A photo bound to its record. With a route context of `photos-in/{id}`, the stream sealed on its
 * way to `/…/A/photo` carries `ecl.route` `photos-in/A`: sent on as the photo of B, anyone on the
 * sponsor's side between the two gateways could otherwise have swapped two records' photos without
 * reading either (the context named the direction only). The opening side reads `{id}` from its own
 * request's path, so the swap is refused before the upstream is contacted; on the way out,
 * `seal-body` binds the record the same way and `require-sealed-body` refuses another record's.
 */
import t from 'tap'
import { parseKeySet } from '../../src/crypto/keys.js'
import { createOpenStream, createSealStream } from '../../src/crypto/stream.js'
import { metricValue } from '../helpers/harness.js'
import { digestOf, recordingHandler, SPONSOR_APP, startSealing, tempDir, writeKeyFiles } from '../helpers/sealing.js'

const SEALED = 'application/vnd.ecluse.sealed'
/** A PNG's signature, then enough bytes to span several records. */
const PHOTO = Buffer.concat([Buffer.from('89504e470d0a1a0a', 'hex'), Buffer.alloc(40_000, 0x5a)])

async function bodyOf(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const parts: Buffer[] = []
  for await (const c of stream) parts.push(c as Buffer)
  return Buffer.concat(parts)
}

t.test('a photo sealed for one record neither opens nor passes a check as another record’s', async (t) => {
  const dir = await tempDir()
  const keys = await writeKeyFiles(dir, 'th')
  const pub = parseKeySet(keys.publicJwks)
  const privateSet = parseKeySet(keys.privateJwks, { requirePrivate: true })
  const uploads: Buffer[] = []
  const record = recordingHandler(uploads)
  // What the checked route's upstream answers, whatever the record asked for: A's photo.
  const sealedForA = createSealStream(pub, { contentType: 'image/png', recordSize: 16_384, route: 'photos-out/A' })
  sealedForA.end(PHOTO)
  const photoOfA = await bodyOf(sealedForA)
  const s = await startSealing({
    dir,
    keys: { th: { file: keys.publicPath }, 'th-private': { file: keys.privatePath, private: true } },
    handler: (req, res) => {
      if (req.method === 'PUT') return record(req, res)
      const [type, body] = (req.url ?? '').startsWith('/v1/checked/') ? [SEALED, photoOfA] : ['image/png', PHOTO]
      res.writeHead(200, { 'content-type': type, 'content-length': body.length })
      res.end(body)
    },
    routes: [
      // The edge's upload: sealed and bound to the record its path names.
      { name: 'seal-photo', methods: ['PUT'], path: '/v1/edge/:id/photo', allow: [SPONSOR_APP], upstream: 'backend', transforms: { request: [{ type: 'seal-body', recipients: 'th', context: 'photos-in/{id}' }] } },
      // The sidecar's: opened only as the photo of the record its own path names.
      { name: 'open-photo', methods: ['PUT'], path: '/v1/sidecar/:id/photo', allow: [SPONSOR_APP], upstream: 'backend', transforms: { request: [{ type: 'open-body', keys: 'th-private', context: 'photos-in/{id}' }] } },
      { name: 'hand-out', methods: ['GET'], path: '/v1/out/:id/photo', allow: [SPONSOR_APP], upstream: 'backend', transforms: { response: [{ type: 'seal-body', recipients: 'th', context: 'photos-out/{id}' }] } },
      { name: 'check', methods: ['GET'], path: '/v1/checked/:id/photo', allow: [SPONSOR_APP], upstream: 'backend', transforms: { response: [{ type: 'require-sealed-body', recipients: 'th', context: 'photos-out/{id}' }] } },
    ],
  })
  t.teardown(s.close)

  const put = await s.gw.request('/v1/edge/A/photo', { method: 'PUT', headers: { 'content-type': 'image/png' }, body: PHOTO })
  t.equal(put.status, 200)
  const sealed = uploads.pop()!
  const opensAs = async (route: string) => {
    const open = createOpenStream(privateSet, { route })
    open.end(sealed)
    return digestOf(open).then(
      (d) => d.bytes,
      (err: Error) => err.message,
    )
  }
  t.equal(await opensAs('photos-in/A'), PHOTO.length, 'sealed for photos-in/A')
  t.match(await opensAs('photos-in/B'), /ecl\.route does not match/, 'not for B')
  t.match(await opensAs('photos-in'), /ecl\.route does not match/, 'nor for the context without its record')

  const hits = s.upstream.hits
  // B's; and A's spelled as another id, which the upstream might read as A (`;` parameters
  // stripped, letter case ignored): bound to what the path says, not to what an upstream may read.
  for (const path of ['/v1/sidecar/B/photo', '/v1/sidecar/A;x/photo', '/v1/sidecar/a/photo']) {
    const swapped = await s.gw.request(path, { method: 'PUT', headers: { 'content-type': SEALED }, body: sealed })
    t.equal(swapped.status, 400, `${path}: refused`)
    t.same(swapped.json(), { error: 'open_failed', requestId: swapped.headers['x-request-id'] })
  }
  t.equal(s.upstream.hits, hits, 'no swapped photo reached the upstream')
  const refusals = s.gw.logs.lines.filter((l) => l.msg === 'request refused' && l.route === 'open-photo').map((l) => String(l.detail))
  t.match(refusals, [/ecl\.route does not match/, /ecl\.route does not match/, /ecl\.route does not match/], 'the log says why')

  for (const path of ['/v1/sidecar/A/photo', '/v1/sidecar/%41/photo']) {
    const own = await s.gw.request(path, { method: 'PUT', headers: { 'content-type': SEALED }, body: sealed })
    t.equal(own.status, 200, `${path}: opens as A's photo (the path normalised before it is read)`)
    t.ok(uploads.pop()?.equals(PHOTO), 'byte for byte')
    t.equal(s.upstream.seen.at(-1)?.headers['content-type'], 'image/png', 'with its media type')
  }

  // On the way out: seal-body binds the record it hands out.
  const out = await s.gw.request('/v1/out/B/photo')
  t.equal(out.status, 200)
  const open = createOpenStream(privateSet, { route: 'photos-out/B' })
  open.end(out.body)
  t.ok((await bodyOf(open)).equals(PHOTO), 'handed out bound to photos-out/B')

  const passes = await s.gw.request('/v1/checked/A/photo')
  t.equal(passes.status, 200)
  t.ok(passes.body.equals(photoOfA), 'A’s photo crosses as A’s, unchanged')
  const misfiled = await s.gw.request('/v1/checked/B/photo')
  t.equal(misfiled.status, 502, 'A’s photo handed out as B’s: refused')
  t.same(misfiled.json(), { error: 'transform_failed', requestId: misfiled.headers['x-request-id'] }, 'before a byte of it crossed')
  const checks = s.gw.logs.lines.filter((l) => l.msg === 'request refused' && l.route === 'check').map((l) => String(l.detail))
  t.match(checks, [/plaintext_refused: .*ecl\.route/])
})

t.test('a record id too long to bind is refused before the upstream is contacted, whichever direction binds it', async (t) => {
  const dir = await tempDir()
  const keys = await writeKeyFiles(dir, 'th')
  const s = await startSealing({
    dir,
    keys: { th: { file: keys.publicPath }, 'th-private': { file: keys.privatePath, private: true } },
    handler: recordingHandler([]),
    routes: [
      { name: 'seal-photo', methods: ['PUT'], path: '/v1/edge/:id/photo', allow: [SPONSOR_APP], upstream: 'backend', transforms: { request: [{ type: 'seal-body', recipients: 'th', context: 'photos-in/{id}' }] } },
      { name: 'hand-out', methods: ['GET'], path: '/v1/out/:id/photo', allow: [SPONSOR_APP], upstream: 'backend', transforms: { response: [{ type: 'seal-body', recipients: 'th', context: 'photos-out/{id}' }] } },
      // The edge's get-photo: a check on the response, its context bound to the path.
      { name: 'check', methods: ['GET', 'HEAD'], path: '/v1/checked/:id/photo', allow: [SPONSOR_APP], upstream: 'backend', transforms: { response: [{ type: 'require-sealed-body', recipients: 'th', context: 'photos-out/{id}' }] } },
      { name: 'open', methods: ['GET'], path: '/v1/opened/:id/photo', allow: [SPONSOR_APP], upstream: 'backend', transforms: { response: [{ type: 'open-body', keys: 'th-private', context: 'photos-out', alsoAccept: ['photos-out/{id}'] }] } },
      { name: 'not-yours', methods: ['GET'], path: '/v1/others/:id/photo', allow: ['uri:spiffe://sponsor.test/someone-else'], upstream: 'backend', transforms: { response: [{ type: 'seal-body', recipients: 'th', context: 'photos-out/{id}' }] } },
    ],
  })
  t.teardown(s.close)
  const id = 'a'.repeat(1100)
  for (const [route, step, path, method] of [
    ['seal-photo', 'seal-body', `/v1/edge/${id}/photo`, 'PUT'],
    ['hand-out', 'seal-body', `/v1/out/${id}/photo`, 'GET'],
    ['check', 'require-sealed-body', `/v1/checked/${id}/photo`, 'GET'],
    ['check', 'require-sealed-body', `/v1/checked/${id}/photo`, 'HEAD'],
    ['open', 'open-body', `/v1/opened/${id}/photo`, 'GET'],
  ] as const) {
    const res = await s.gw.request(path, method === 'PUT' ? { method, headers: { 'content-type': 'image/png' }, body: PHOTO } : { method })
    t.equal(res.status, 400, `${route}, ${method}: 400`)
    if (method !== 'HEAD') t.same(res.json(), { error: 'path_rejected', requestId: res.headers['x-request-id'] })
    t.equal(s.gw.logs.lines.filter((l) => l.msg === 'request refused').at(-1)?.detail, `${step}: the context bound to the path is longer than 1024 bytes`)
  }
  const metrics = await s.gw.metrics()
  for (const [route, count] of [['seal-photo', 1], ['hand-out', 1], ['check', 2], ['open', 1]] as const) {
    t.equal(metricValue(metrics, 'ecluse_authorization_denials_total', { route, reason: 'path_rejected' }), count, `${route}: counted with its route, once a request`)
  }
  t.equal(s.upstream.hits, 0, 'nothing reached the upstream, not even for the response’s steps')
  // The route's allow list comes first: a principal it does not admit learns nothing of the binding.
  const forbidden = await s.gw.request(`/v1/others/${id}/photo`)
  t.equal(forbidden.status, 403)
  t.equal(metricValue(await s.gw.metrics(), 'ecluse_authorization_denials_total', { route: 'not-yours', reason: 'path_rejected' }), 0)
  const ok = await s.gw.request(`/v1/out/${'a'.repeat(1000)}/photo`)
  t.equal(ok.status, 200, 'an id that fits is served')
})

t.test('a context changes in three reloads, neither gateway refusing the other’s photos in between', async (t) => {
  // The sealing side moves from `photos-in` to `photos-in/{id}`: the opening side accepts both first.
  const dir = await tempDir()
  const keys = await writeKeyFiles(dir, 'th')
  const pub = parseKeySet(keys.publicJwks)
  const sealedFor = async (route: string) => {
    const stream = createSealStream(pub, { contentType: 'image/png', recordSize: 16_384, route })
    stream.end(PHOTO)
    return bodyOf(stream)
  }
  const [old, bound, other] = await Promise.all([sealedFor('photos-in'), sealedFor('photos-in/A'), sealedFor('photos-in/B')])
  const uploads: Buffer[] = []
  const s = await startSealing({
    dir,
    keys: { th: { file: keys.publicPath }, 'th-private': { file: keys.privatePath, private: true } },
    handler: recordingHandler(uploads),
    routes: [
      { name: 'open-photo', methods: ['PUT'], path: '/v1/sidecar/:id/photo', allow: [SPONSOR_APP], upstream: 'backend', transforms: { request: [{ type: 'open-body', keys: 'th-private', context: 'photos-in', alsoAccept: ['photos-in/{id}'] }] } },
      { name: 'check', methods: ['PUT'], path: '/v1/checked/:id/photo', allow: [SPONSOR_APP], upstream: 'backend', transforms: { request: [{ type: 'require-sealed-body', recipients: 'th', context: 'photos-in/{id}', alsoAccept: ['photos-in'] }] } },
    ],
  })
  t.teardown(s.close)
  for (const prefix of ['/v1/sidecar', '/v1/checked']) {
    for (const [what, body, status] of [
      ['sealed under the old context', old, 200],
      ['bound to A', bound, 200],
      ['bound to B', other, prefix === '/v1/sidecar' ? 400 : 422],
    ] as const) {
      const res = await s.gw.request(`${prefix}/A/photo`, { method: 'PUT', headers: { 'content-type': SEALED }, body })
      t.equal(res.status, status, `${prefix}: ${what}: ${status}`)
    }
  }
  t.same(
    uploads.map((u) => (u.equals(PHOTO) ? 'photo' : u.equals(old) ? 'old' : u.equals(bound) ? 'bound' : 'other')),
    ['photo', 'photo', 'old', 'bound'],
    'opened to the photo, or checked and passed unchanged; B’s reached nothing',
  )
})
