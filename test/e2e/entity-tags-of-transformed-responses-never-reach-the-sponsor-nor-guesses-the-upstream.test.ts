/**
 * An upstream's entity-tag is often a hash of the representation it sends: on a route whose answers
 * the gateway seals, that is a hash of the plaintext. Relayed, it would let the sponsor test guesses
 * offline (a birth date has 36,500 candidates); a guessed tag in `If-None-Match` or `If-Match` would
 * let it test them online, through a 304 or a 412 from the upstream. On a route with response
 * transforms the gateway sends no `etag`, drops the tags of `If-None-Match`, and refuses those of
 * `If-Match` with 412 before the upstream is contacted. A plain route relays validators as before.
 */
import { createHash } from 'node:crypto'
import t from 'tap'
import { CANARY, canaryRecord, recordingHandler, SPONSOR_APP, startSealing, tempDir, writeKeyFiles } from '../helpers/sealing.js'

const record = JSON.stringify(canaryRecord('r-1'))
/** What Express's `etag` module sends: a hash of the body, here of the plaintext record. */
const TAG = `"${createHash('sha1').update(record).digest('base64').slice(0, 27)}"`

t.test('no etag of a transformed answer crosses; guessed tags are dropped or refused; plain routes keep validators', async (t) => {
  const dir = await tempDir()
  const keys = await writeKeyFiles(dir, 'th')
  const bodies: Buffer[] = []
  const record200 = recordingHandler(bodies, { body: record })
  const s = await startSealing({
    dir,
    keys: { th: { file: keys.publicPath } },
    handler: (req, res) => {
      // An origin that honours its validators, as most frameworks do.
      if (req.headers['if-none-match'] === TAG) {
        req.resume()
        res.writeHead(304, { etag: TAG }).end()
        return
      }
      if (req.headers['if-match'] !== undefined && req.headers['if-match'] !== TAG && req.headers['if-match'] !== '*') {
        req.resume()
        res.writeHead(412).end()
        return
      }
      res.setHeader('etag', TAG)
      res.setHeader('last-modified', 'Sat, 05 Dec 2026 10:00:00 GMT')
      record200(req, res)
    },
    routes: [
      {
        name: 'sealed',
        methods: ['GET', 'PUT'],
        path: '/v1/sealed/:id',
        allow: [SPONSOR_APP],
        upstream: 'backend',
        transforms: { response: [{ type: 'seal', recipients: 'th', fields: ['/passport', '/birthDate'] }] },
      },
      { name: 'plain', methods: ['GET', 'PUT'], path: '/v1/plain/:id', allow: [SPONSOR_APP], upstream: 'backend' },
    ],
  })
  t.teardown(s.close)

  const get = await s.gw.request('/v1/sealed/r-1')
  t.equal(get.status, 200)
  t.notOk(get.text.includes(CANARY.passport), 'the answer is sealed')
  t.equal(get.headers['etag'], undefined, 'no etag: it hashes the plaintext')
  t.equal(get.headers['last-modified'], 'Sat, 05 Dec 2026 10:00:00 GMT', 'a date names no content and stays')

  // A guessed tag (here the right one) never reaches the upstream: no 304 to confirm it.
  const guess = await s.gw.request('/v1/sealed/r-1', { headers: { 'if-none-match': TAG } })
  t.equal(guess.status, 200, 'If-None-Match with a tag: a full, sealed answer, never a 304')
  t.equal(s.upstream.seen.at(-1)!.headers['if-none-match'], undefined, 'the tag did not reach the upstream')
  const star = await s.gw.request('/v1/sealed/r-2', { method: 'PUT', headers: { 'if-none-match': '*', 'content-type': 'application/json' }, body: '{}' })
  t.equal(star.status, 200)
  t.equal(s.upstream.seen.at(-1)!.headers['if-none-match'], '*', '`*` names no content and passes')

  const hits = s.upstream.hits
  for (const tag of [TAG, '"wrong"', `W/${TAG}, "other"`]) {
    const put = await s.gw.request('/v1/sealed/r-1', { method: 'PUT', headers: { 'if-match': tag, 'content-type': 'application/json' }, body: '{}' })
    t.equal(put.status, 412, `If-Match ${tag}: 412`)
    t.same(put.json(), { error: 'precondition_failed', requestId: put.headers['x-request-id'] }, 'the terse error')
  }
  t.equal(s.upstream.hits, hits, 'no guess reached the upstream, right or wrong alike')
  const anyMatch = await s.gw.request('/v1/sealed/r-1', { method: 'PUT', headers: { 'if-match': '*', 'content-type': 'application/json' }, body: '{}' })
  t.equal(anyMatch.status, 200, 'If-Match: * passes')

  // Without transforms, validators are the upstream's business and work end to end.
  const plain = await s.gw.request('/v1/plain/r-1')
  t.equal(plain.headers['etag'], TAG)
  t.equal((await s.gw.request('/v1/plain/r-1', { headers: { 'if-none-match': TAG } })).status, 304)
  const stale = await s.gw.request('/v1/plain/r-1', { method: 'PUT', headers: { 'if-match': '"old"', 'content-type': 'application/json' }, body: '{}' })
  t.equal(stale.status, 412, "the upstream's own 412 on a plain route")
})
