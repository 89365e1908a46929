/**
 * An opener keeps the KEKs it derived (one per sealing window of the other side) between messages.
 * A reload builds new openers; the old route table's caches are erased (every KEK zeroed, the cache
 * then opening nothing) as soon as the last request that began under that table has ended, not
 * left to the garbage collector: after a key is retired, nothing derived from it stays in memory
 * longer than the requests that were using it. A request in flight across the reload finishes
 * with the old caches intact.
 */
import { writeFile } from 'node:fs/promises'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { PassThrough } from 'node:stream'
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
  // The upstream holds its answer to a request marked `x-hold` until the test releases it.
  const releases: Array<() => void> = []
  const received: string[] = []
  const handler = (req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      received.push(Buffer.concat(chunks).toString())
      const answer = () => res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}')
      if (req.headers['x-hold'] === undefined) answer()
      else releases.push(answer)
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
  t.match(await s.gw.gateway.reload(), { ok: true })
  t.equal(first.field.erased, true, 'erased at the reload: no request was using it')
  t.equal(first.field.size, 0, 'every KEK dropped')
  t.equal(first.body.erased, true, 'the open-body cache too')

  // Requests in flight across a reload keep their table's caches until the last of them ends.
  const second = caches()
  const held = [1, 2].map(() => s.gw.request('/v1/open', { method: 'POST', headers: { ...json, 'x-hold': '1' }, body: sealed() }))
  while (releases.length < 2) await new Promise((r) => setTimeout(r, 10))
  // A third whose sealed field arrives only after the reload: it still opens with its own table.
  const late = new PassThrough()
  const streaming = s.gw.request('/v1/open', { method: 'POST', headers: json, body: late })
  late.write('{"status":"pending",')
  await new Promise((r) => setTimeout(r, 50))
  t.match(await s.gw.gateway.reload(), { ok: true })
  const third = caches()
  t.not(third.field, second.field, 'new requests get a new opener')
  t.equal(second.field.erased, false, 'not erased while requests that began under it are in flight')
  late.end(sealed().slice(1))
  t.equal((await streaming).status, 200, 'a field arriving after the reload opens through the table its request began under')
  t.ok(received.at(-1)?.includes(CANARY.passport), 'opened')
  t.equal((await s.gw.request('/v1/open', { method: 'POST', headers: json, body: sealed() })).status, 200, 'a new request opens through the new table')
  t.equal(third.field.size, 1)
  releases[0]!()
  t.equal((await held[0]!).status, 200, 'the first held request completes')
  await new Promise((r) => setTimeout(r, 50))
  t.equal(second.field.erased, false, 'still not erased: the second held request has not ended')
  releases[1]!()
  t.equal((await held[1]!).status, 200, 'the second completes')
  for (let i = 0; i < 50 && !second.field.erased; i++) await new Promise((r) => setTimeout(r, 10))
  t.equal(second.field.erased, true, 'erased once its last request ended')
  t.equal(second.field.size, 0)
  t.equal(second.body.erased, true)
  t.equal(third.field.erased, false, 'the live table’s cache is kept')
  t.equal((await s.gw.request('/v1/open', { method: 'POST', headers: json, body: sealed() })).status, 200, 'and serves')

  // A failed reload retires nothing.
  await writeFile(keys.privatePath, '{ broken')
  t.equal((await s.gw.gateway.reload()).ok, false)
  t.equal(third.field.erased, false, 'a failed reload keeps the live table and its cache')
})
