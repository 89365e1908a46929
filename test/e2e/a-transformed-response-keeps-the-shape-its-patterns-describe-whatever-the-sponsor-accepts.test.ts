/**
 * Field patterns name paths in one shape of a document. An upstream that negotiates its
 * representation would let the sponsor choose another shape with `Accept` (NDJSON for a JSON list,
 * HAL for plain JSON), where the same fields sit at paths no pattern names, and cross in plaintext
 * (found by a review). On a route with response transforms the sponsor's `accept` is not forwarded:
 * the upstream sends its default, the shape the route's patterns were written for. A plain route
 * still negotiates.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import t from 'tap'
import { canaryRecord, leaksCanary, startSealedAndPlainRoutes } from '../helpers/sealing.js'

const records = [canaryRecord('r-1'), canaryRecord('r-2')]

/** An origin that honours `Accept`, as framework content negotiation does. */
function negotiating(req: IncomingMessage, res: ServerResponse): void {
  req.resume()
  const accept = String(req.headers['accept'] ?? '')
  if (accept.includes('application/x-ndjson')) {
    res.writeHead(200, { 'content-type': 'application/x-ndjson' }).end(records.map((r) => `${JSON.stringify(r)}\n`).join(''))
  } else if (accept.includes('application/hal+json')) {
    res.writeHead(200, { 'content-type': 'application/hal+json' }).end(JSON.stringify({ _embedded: { records } }))
  } else {
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ records }))
  }
}

t.test('the sponsor cannot pick another shape of a transformed response; a plain route negotiates', async (t) => {
  const s = await startSealedAndPlainRoutes(negotiating)
  t.teardown(s.close)

  for (const accept of [undefined, 'application/x-ndjson', 'application/hal+json', 'application/hal+json, application/x-ndjson;q=0.5']) {
    const res = await s.gw.request('/v1/sealed', accept === undefined ? {} : { headers: { accept } })
    t.equal(res.status, 200, `accept ${accept}: answered`)
    t.equal(leaksCanary(res.text), undefined, `accept ${accept}: no plaintext crosses`)
    t.equal(res.text.split('"passport":"ey').length, 3, `accept ${accept}: the default shape, both records sealed`)
    t.equal(s.upstream.seen.at(-1)!.headers['accept'], undefined, `accept ${accept}: not forwarded`)
  }

  const plain = await s.gw.request('/v1/plain', { headers: { accept: 'application/x-ndjson' } })
  t.equal(plain.headers['content-type'], 'application/x-ndjson', 'a plain route still negotiates')
  t.equal(s.upstream.seen.at(-1)!.headers['accept'], 'application/x-ndjson')
})
