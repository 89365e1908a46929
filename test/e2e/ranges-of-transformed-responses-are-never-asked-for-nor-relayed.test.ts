/**
 * A transform reads a whole document: a byte range of one is a document of another shape (the inner
 * record of a list, say), whose sensitive members no field pattern names. A route that allowed
 * `range` and sealed `/records/*` names handed the sponsor `206 {"id":…,"name":"<plaintext>"}` when it
 * asked for the bytes of one record (found by a review). On a route with response transforms the
 * gateway drops `range` (ignoring it is always correct, RFC 9110 §14.2) and refuses a 206 the
 * upstream sends anyway; a plain route relays ranges as before.
 */
import t from 'tap'
import type { UpstreamHandler } from '../helpers/harness.js'
import { CANARY, canaryRecord, leaksCanary, startSealedAndPlainRoutes } from '../helpers/sealing.js'

const list = JSON.stringify({ records: [canaryRecord('r-1'), canaryRecord('r-2')] })
// The bytes of the first record inside the list: a document of its own, with `/name` at its top.
const first = JSON.stringify(canaryRecord('r-1'))
const from = list.indexOf(first)
const RANGE = `bytes=${from}-${from + first.length - 1}`

t.test('a range on a transformed route never reaches the upstream, a 206 is refused, a plain route keeps ranges', async (t) => {
  let alwaysPartial = false
  // An origin that honours ranges, as static-file servers and many frameworks do; or one that
  // answers 206 whatever it was asked.
  const ranges: UpstreamHandler = (req, res) => {
    req.resume()
    const m = /^bytes=(\d+)-(\d+)$/.exec(String(req.headers['range'] ?? (alwaysPartial ? RANGE : '')))
    if (m === null) {
      res.writeHead(200, { 'content-type': 'application/json' }).end(list)
      return
    }
    const [start, end] = [Number(m[1]), Number(m[2])]
    res.writeHead(206, { 'content-type': 'application/json', 'content-range': `bytes ${start}-${end}/${list.length}` }).end(list.slice(start, end + 1))
  }
  const s = await startSealedAndPlainRoutes(ranges, { requestHeaders: ['range', 'if-range'], plainResponseHeaders: ['content-range'] })
  t.teardown(s.close)

  const ranged = await s.gw.request('/v1/sealed', { headers: { range: RANGE, 'if-range': 'Sat, 05 Dec 2026 10:00:00 GMT' } })
  t.equal(ranged.status, 200, 'the whole document, sealed')
  t.equal(ranged.text.split('"name":"ey').length, 3, 'both records, their names sealed')
  t.equal(leaksCanary(ranged.text), undefined, 'no plaintext')
  t.equal(s.upstream.seen.at(-1)!.headers['range'], undefined, 'the range did not reach the upstream')
  t.equal(s.upstream.seen.at(-1)!.headers['if-range'], undefined, 'nor its condition')

  alwaysPartial = true
  const partial = await s.gw.request('/v1/sealed')
  t.equal(partial.status, 502, 'a 206 the upstream sends anyway is refused')
  t.same(partial.json(), { error: 'upstream_bad_response', requestId: partial.headers['x-request-id'] })
  t.notOk(partial.text.includes(CANARY.name), 'and nothing of it crosses')
  alwaysPartial = false

  const plain = await s.gw.request('/v1/plain', { headers: { range: RANGE } })
  t.equal(plain.status, 206, 'a plain route relays the range')
  t.equal(plain.text, first)
  t.equal(plain.headers['content-range'], `bytes ${from}-${from + first.length - 1}/${list.length}`)
})
