/**
 * Response transforms never see an answer without a body (HEAD, 204, 205, 304): there is nothing to seal.
 * The headers describing the body they would have rewritten must not cross either: a HEAD on a
 * seal-body route would otherwise tell the sponsor the media type and exact length of a document
 * whose GET carries its media type only inside the seal. A seal-body answer's language goes with its
 * media type (a review found `content-language` crossing beside the seal).
 */
import t from 'tap'
import { SPONSOR_APP, startSealing, tempDir, writeKeyFiles } from '../helpers/sealing.js'

const SECRET_TYPE = 'image/x-police-unit-badge'
const DOCUMENT = Buffer.from('%PDF-1.7 a scanned passport page')

t.test('HEAD, 204 and 304 on a transformed route carry no content-type, length or coding; a plain route keeps them', async (t) => {
  const dir = await tempDir()
  const keys = await writeKeyFiles(dir, 'th')
  const s = await startSealing({
    dir,
    keys: { th: { file: keys.publicPath } },
    handler: (req, res) => {
      const described = { 'content-type': SECRET_TYPE, 'content-length': DOCUMENT.length, etag: '"v1"', 'content-language': 'fr-x-dgsi' }
      if (req.url?.endsWith('/gone')) res.writeHead(204, { 'content-type': SECRET_TYPE }).end()
      // The gateway drops a guessed If-None-Match on such a route: this upstream answers 304 anyway.
      else if (req.url?.endsWith('/unchanged')) res.writeHead(304, { ...described, 'content-encoding': 'gzip' }).end()
      else if (req.method === 'HEAD') res.writeHead(200, described).end()
      else res.writeHead(200, described).end(DOCUMENT)
    },
    routes: [
      {
        name: 'sealed',
        methods: ['GET', 'HEAD', 'DELETE'],
        path: '/v1/sealed/:id',
        allow: [SPONSOR_APP],
        upstream: 'backend',
        transforms: { response: [{ type: 'seal-body', recipients: 'th' }] },
      },
      { name: 'plain', methods: ['GET', 'HEAD'], path: '/v1/plain/:id', allow: [SPONSOR_APP], upstream: 'backend' },
    ],
  })
  t.teardown(s.close)

  const get = await s.gw.request('/v1/sealed/doc')
  t.equal(get.status, 200)
  t.equal(get.headers['content-type'], 'application/vnd.ecluse.sealed', 'the GET is sealed, its media type inside the seal')
  t.notOk(get.body.includes(DOCUMENT), 'and its body too')
  t.equal(get.headers['content-language'], undefined, 'its language goes with its media type')

  const answers = [
    ['HEAD', await s.gw.request('/v1/sealed/doc', { method: 'HEAD' }), 200],
    ['304', await s.gw.request('/v1/sealed/unchanged'), 304],
    ['204', await s.gw.request('/v1/sealed/gone', { method: 'DELETE' }), 204],
  ] as const
  for (const [what, res, status] of answers) {
    t.equal(res.status, status, what)
    t.equal(res.headers['content-type'], undefined, `${what}: no media type`)
    t.not(res.headers['content-length'], String(DOCUMENT.length), `${what}: not the plaintext's length`)
    t.equal(res.headers['content-encoding'], undefined, `${what}: no coding`)
    t.equal(res.body.length, 0, `${what}: no body`)
    t.equal(res.headers['content-language'], undefined, `${what}: no language`)
    t.notOk(JSON.stringify(res.headers).includes(SECRET_TYPE), `${what}: the media type nowhere in the headers`)
  }
  t.equal(answers[1][1].headers['etag'], undefined, 'nor the entity-tag of the untransformed body')

  // Without transforms the gateway relays what the upstream says about its body.
  const plain = await s.gw.request('/v1/plain/doc', { method: 'HEAD' })
  t.equal(plain.headers['content-type'], SECRET_TYPE)
  t.equal(plain.headers['content-length'], String(DOCUMENT.length))
  t.equal(plain.headers['content-language'], 'fr-x-dgsi')
})

t.test('found by review: a 205 carries no content on any whole-body route, and an empty one is no failure', async (t) => {
  // RFC 9110 §15.3.6: no content in a 205. It was treated as an answer with a body: seal-body sealed
  // an empty stream into it (1,213 bytes a client that knows 205 reads as the next answer), and
  // require-sealed-body and open-body refused the empty answer as transform_failed.
  const dir = await tempDir()
  const keys = await writeKeyFiles(dir, 'th')
  let closedFinished: (finished: boolean) => void = () => {}
  const slowClosed = new Promise<boolean>((resolve) => {
    closedFinished = resolve
  })
  const s = await startSealing({
    dir,
    keys: { th: { file: keys.publicPath }, 'th-private': { file: keys.privatePath, private: true } },
    handler: (req, res) => {
      if (!req.url?.endsWith('/slow')) {
        res.writeHead(205, { 'content-type': SECRET_TYPE, 'content-length': 0 }).end()
        return
      }
      // Found by a re-review: a 205 that declares a body and sends it slowly held the upstream
      // connection, drained, long after the sponsor had its answer.
      res.writeHead(205, { 'content-type': SECRET_TYPE, 'content-length': 1_000_000 })
      res.write('x'.repeat(16))
      res.once('close', () => closedFinished(res.writableFinished))
    },
    routes: [
      ['seal', { type: 'seal-body', recipients: 'th' }],
      ['require', { type: 'require-sealed-body', recipients: 'th' }],
      ['open', { type: 'open-body', keys: 'th-private' }],
    ].map(([name, step]) => ({
      name,
      methods: ['GET'],
      path: `/v1/${String(name)}/:id`,
      allow: [SPONSOR_APP],
      upstream: 'backend',
      transforms: { response: [step] },
    })),
  })
  t.teardown(s.close)
  const slow = await s.gw.request('/v1/seal/slow')
  t.equal(slow.status, 205)
  t.equal(slow.body.length, 0)
  // Drained, it was let go only when undici's body timeout (5 s here) fired; destroyed, at once. Half
  // that timeout tells the two apart on any machine.
  const outcome = await Promise.race([slowClosed, new Promise((resolve) => setTimeout(resolve, 2500, 'still held'))])
  t.equal(outcome, false, 'the gateway let go of the upstream connection at once, before the declared body was sent')
  for (const name of ['seal', 'require', 'open']) {
    const res = await s.gw.request(`/v1/${name}/form`)
    t.equal(res.status, 205, `${name}: the 205 crosses`)
    t.equal(res.body.length, 0, `${name}: with no content`)
    t.equal(res.headers['content-length'], '0', `${name}: framed by a length of 0, not chunked`)
    t.equal(res.headers['transfer-encoding'], undefined)
    t.equal(res.headers['content-type'], undefined, `${name}: no media type`)
  }
})
