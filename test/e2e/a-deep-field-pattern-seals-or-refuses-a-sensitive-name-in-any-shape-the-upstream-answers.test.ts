/**
 * Field patterns written for one shape of a document miss the same fields in another shape, and the
 * gateway cannot see every way an upstream picks its shape (a query parameter: `?view=flat`). A
 * pattern with `**` names a member at any depth: `seal` with `/**\/passport` seals every passport
 * member wherever the upstream put it, each bound to where it sits, and `require-sealed` with it
 * refuses a response that carries one in plaintext in any shape, before a byte of it crosses, or one
 * sealed for another place.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import t from 'tap'
import { FieldOpener } from '../../src/crypto/field.js'
import { parseKeySet } from '../../src/crypto/keys.js'
import { CANARY, canaryRecord, leaksCanary, SPONSOR_APP, startSealing, tempDir, writeKeyFiles } from '../helpers/sealing.js'

const SIX = ['name', 'birthDate', 'passport', 'email', 'phone', 'policeUnit']
const DEEP = SIX.map((f) => `/**/${f}`)
const records = [canaryRecord('r-1'), canaryRecord('r-2')]

/** The shapes an upstream gives the same records, picked by a query parameter the gateway relays. */
const VIEWS: Record<string, unknown> = {
  default: { records },
  flat: records,
  embed: { data: { items: records.map((r) => ({ holder: r })) }, count: 2 },
  single: records[0],
}

function byView(req: IncomingMessage, res: ServerResponse): void {
  req.resume()
  const view = new URL(req.url ?? '/', 'https://upstream.test').searchParams.get('view') ?? 'default'
  res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(VIEWS[view] ?? { none: true }))
}

/** Every string under `v` with its RFC 6901 location. */
function strings(v: unknown, at = ''): Array<[string, string]> {
  if (typeof v === 'string') return [[at, v]]
  if (v === null || typeof v !== 'object') return []
  return Object.entries(v).flatMap(([k, c]) => strings(c, `${at}/${k.replace(/~/g, '~0').replace(/\//g, '~1')}`))
}

t.test('seal with ** seals the six fields in every shape, each bound to where it sits; require-sealed refuses them in plaintext', async (t) => {
  const dir = await tempDir()
  const keys = await writeKeyFiles(dir, 'th')
  const route = { methods: ['GET'], allow: [SPONSOR_APP], upstream: 'backend' }
  const s = await startSealing({
    dir,
    keys: { th: { file: keys.publicPath } },
    handler: byView,
    routes: [
      { ...route, name: 'sealed', path: '/v1/sealed', transforms: { response: [{ type: 'seal', recipients: 'th', context: 'people', fields: DEEP }] } },
      { ...route, name: 'checked', path: '/v1/checked', transforms: { response: [{ type: 'require-sealed', recipients: 'th', context: 'people', fields: DEEP }] } },
    ],
  })
  t.teardown(s.close)
  const opener = new FieldOpener(parseKeySet(keys.privateJwks, { requirePrivate: true }))

  for (const view of Object.keys(VIEWS)) {
    const res = await s.gw.request(`/v1/sealed?view=${view}`)
    t.equal(res.status, 200, `${view}: sealed`)
    t.equal(leaksCanary(res.text), undefined, `${view}: no plaintext crosses`)
    const values = strings(res.json())
    const sealed = values.filter(([ptr]) => SIX.includes(ptr.split('/').at(-1)!))
    t.equal(sealed.length, view === 'single' ? 6 : 12, `${view}: every sensitive member sealed`)
    for (const [ptr, jwe] of sealed) {
      const name = ptr.split('/').at(-1)!
      const opened = JSON.parse(opener.open(jwe, { route: 'people', ptr }).toString()) as string
      t.ok(opened.startsWith(CANARY[name as keyof typeof CANARY]), `${view}: ${ptr} opens where it sits`)
      t.throws(() => opener.open(jwe, { route: 'people', ptr: `/elsewhere/${name}` }), { code: 'open_failed' }, `${view}: ${ptr} opens nowhere else`)
    }
    t.equal(values.find(([ptr]) => ptr.endsWith('/status'))?.[1], 'pending', `${view}: the rest is untouched`)

    const refused = await s.gw.request(`/v1/checked?view=${view}`)
    t.equal(refused.status, 502, `${view}: plaintext refused by require-sealed`)
    t.same(refused.json(), { error: 'transform_failed', requestId: refused.headers['x-request-id'] }, `${view}: a terse refusal`)
    t.equal(leaksCanary(refused.text), undefined, `${view}: none of it crossed`)
  }
  t.equal(leaksCanary(s.gw.logs.raw.join('\n')), undefined, 'nor reached the log')

  const none = await s.gw.request('/v1/checked?view=none')
  t.equal(none.status, 200, 'a body without those names passes require-sealed')

  // Values sealed where they sit pass require-sealed; the same values moved by a shape change do not.
  const sealedBody = (await s.gw.request('/v1/sealed?view=default')).json() as { records: unknown[] }
  VIEWS.presealed = sealedBody
  VIEWS.moved = sealedBody.records
  const passed = await s.gw.request('/v1/checked?view=presealed')
  t.equal(passed.status, 200, 'sealed values in place pass')
  t.same(passed.json(), sealedBody, 'unchanged')
  const moved = await s.gw.request('/v1/checked?view=moved')
  t.equal(moved.status, 502, 'sealed values moved to another depth are refused: each is bound to where it was sealed')
})
