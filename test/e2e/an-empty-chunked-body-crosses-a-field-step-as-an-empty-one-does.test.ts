/**
 * Found by a review: a field step let a body that declares `content-length: 0` through untouched,
 * but refused the same empty body sent chunked (no bytes, then the last chunk) as no JSON: a 502 on
 * an empty answer, a 400 on an empty upload. An empty body holds no field; both framings now cross
 * empty. A body of whitespace only is still no JSON, and refused.
 */
import { Readable } from 'node:stream'
import t from 'tap'
import { request } from 'undici'
import { Harness } from '../helpers/harness.js'

const SPONSOR_APP = 'uri:spiffe://sponsor.test/accreditation-app'

t.test('an empty chunked body crosses a field step both ways; whitespace alone does not', async (t) => {
  const received: string[] = []
  const h = await Harness.start({
    routes: [
      {
        name: 'records',
        methods: ['GET', 'POST'],
        path: '/v1/records/*',
        allow: [SPONSOR_APP],
        upstream: 'backend',
        transforms: { request: [{ type: 'strip', fields: ['/internal'] }], response: [{ type: 'strip', fields: ['/internal'] }] },
      },
    ],
    handler: (req, res) => {
      const chunks: Buffer[] = []
      req.on('data', (c: Buffer) => chunks.push(c))
      req.on('end', () => {
        received.push(Buffer.concat(chunks).toString())
        // No content-length: Node sends the answer chunked, here with no bytes at all, or spaces.
        res.writeHead(200, { 'content-type': 'application/json' })
        res.end(req.url?.endsWith('/spaces') ? '  ' : undefined)
      })
    },
  })
  t.teardown(() => h.close())
  const agent = h.agent()

  const answer = await request(`${h.sponsorOrigin}/v1/records/1`, { dispatcher: agent })
  t.equal(answer.statusCode, 200, 'an empty chunked answer is no failure of the step')
  t.equal(await answer.body.text(), '')

  const upload = await request(`${h.sponsorOrigin}/v1/records/1`, {
    method: 'POST',
    dispatcher: agent,
    headers: { 'content-type': 'application/json' },
    body: Readable.from([Buffer.alloc(0)]),
  })
  t.equal(upload.statusCode, 200, 'an empty chunked upload goes on')
  await upload.body.dump()
  t.equal(received.length, 2)
  t.equal(received.at(-1), '', 'and reaches the upstream empty')

  const spaces = await request(`${h.sponsorOrigin}/v1/records/spaces`, { dispatcher: agent })
  t.equal(spaces.statusCode, 502, 'whitespace alone is still no JSON')
  t.match(await spaces.body.json(), { error: 'transform_failed' })
})
