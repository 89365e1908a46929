/**
 * An opener keeps the KEKs it derived (one per sealing window of the other side) between messages.
 * A reload builds new openers; the old route table's caches are erased (every KEK zeroed, the cache
 * then opening nothing) as soon as the last request that began under that table has ended, not
 * left to the garbage collector: after a key is retired, nothing derived from it stays in memory
 * longer than the requests that were using it. A request in flight across the reload finishes
 * with the old caches intact.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import t from 'tap'
import { FieldSealer } from '../../src/crypto/field.js'
import { parseKeySet } from '../../src/crypto/keys.js'
import type { OpenTransform } from '../../src/transform/open.js'
import type { OpenBodyTransform } from '../../src/transform/open-body.js'
import { CANARY, SPONSOR_APP, startSealing, tempDir, writeKeyFiles } from '../helpers/sealing.js'

const json = { 'content-type': 'application/json' }

t.test('the old table’s KEK caches are erased when its last request ends, not before', async (t) => {
  const dir = await tempDir()
  const keys = await writeKeyFiles(dir, 'th')
  // The upstream holds its answer to a request marked `hold` until the test releases it.
  let release: (() => void) | undefined
  const received: string[] = []
  const handler = (req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      received.push(Buffer.concat(chunks).toString())
      const answer = () => res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}')
      if (req.headers['x-hold'] === undefined) answer()
      else release = answer
    })
  }
  const route = { methods: ['POST'], allow: [SPONSOR_APP], upstream: 'backend', requestHeaders: ['x-hold'] }
  const s = await startSealing({
    dir,
    handler,
    keys: { 'th-private': { file: keys.privatePath, private: true } },
    routes: [
      { ...route, name: 'open', path: '/v1/open', transforms: { request: [{ type: 'open', keys: 'th-private', fields: ['/passport'] }] } },
      { ...route, name: 'blob', path: '/v1/blob', transforms: { request: [{ type: 'open-body', keys: 'th-private' }] } },
    ],
  })
  t.teardown(s.close)

  const recipients = parseKeySet(keys.publicJwks, { publicOnly: true })
  const sealed = () => JSON.stringify({ passport: new FieldSealer(recipients, { route: 'open' }).seal(Buffer.from(JSON.stringify(CANARY.passport)), { ptr: '/passport' }) })
  const caches = () => {
    const routes = s.gw.gateway.proxy.state.routes
    return {
      field: (routes.get('open')!.requestTransforms[0] as OpenTransform).kekCache,
      body: (routes.get('blob')!.requestTransforms[0] as OpenBodyTransform).kekCache,
    }
  }

  // A reload with nothing in flight erases the replaced caches at once.
  const first = caches()
  t.equal((await s.gw.request('/v1/open', { method: 'POST', headers: json, body: sealed() })).status, 200)
  t.equal(first.field.size, 1, 'the opener cached the KEK of the window')
  t.same(await s.gw.gateway.reload(), { ok: true })
  t.equal(first.field.erased, true, 'erased at the reload: no request was using it')
  t.equal(first.field.size, 0, 'every KEK dropped')
  t.equal(first.body.erased, true, 'the open-body cache too')

  // A request in flight across a reload keeps its table's caches until it ends.
  const second = caches()
  const held = s.gw.request('/v1/open', { method: 'POST', headers: { ...json, 'x-hold': '1' }, body: sealed() })
  while (release === undefined) await new Promise((r) => setTimeout(r, 10))
  t.equal(second.field.size, 1, 'the held request opened its field through the cache')
  t.same(await s.gw.gateway.reload(), { ok: true })
  const third = caches()
  t.not(third.field, second.field, 'new requests get a new opener')
  t.equal(second.field.erased, false, 'not erased while a request that began under it is in flight')
  t.equal((await s.gw.request('/v1/open', { method: 'POST', headers: json, body: sealed() })).status, 200, 'a new request opens through the new table')
  t.equal(third.field.size, 1)
  t.equal(second.field.erased, false, 'still not erased: the held request has not ended')
  release()
  const res = await held
  t.equal(res.status, 200, 'the held request completes')
  t.ok(received.at(-2)?.includes(CANARY.passport), 'opened by the old table')
  for (let i = 0; i < 50 && !second.field.erased; i++) await new Promise((r) => setTimeout(r, 10))
  t.equal(second.field.erased, true, 'erased once its last request ended')
  t.equal(second.body.erased, true)
  t.equal(third.field.erased, false, 'the live table’s cache is kept')
  t.equal((await s.gw.request('/v1/open', { method: 'POST', headers: json, body: sealed() })).status, 200, 'and serves')
})
