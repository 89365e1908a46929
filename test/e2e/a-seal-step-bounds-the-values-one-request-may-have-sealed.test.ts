/**
 * `seal`'s `maxValues`. Sealing amplifies: every value becomes a compact JWE of a few hundred bytes
 * and costs an AES-GCM seal and a key wrap, so a sponsor's body of tiny values under a wildcard
 * (`[1,1,1,…]` for `/*`, or NDJSON, whose every line repeats the pointers) would turn 1 MiB into
 * ≈ 200 MB for the upstream. A request may have at most 10,000 values sealed unless its route says
 * otherwise; the value beyond the bound is refused (`413 value_too_large`) before it is sealed, and a
 * body refused within `requestHoldBytes` never reaches the upstream. A response (the upstream's own
 * answer) is bounded only when the route says so.
 */
import t from 'tap'
import { DEFAULT_REQUEST_MAX_VALUES } from '../../src/transform/seal.js'
import { metricValue } from '../helpers/harness.js'
import { canaryRecord, keySetEnv, leaksCanary, recordingHandler, SPONSOR_APP, startSealing, tempDir, writeKeyFiles } from '../helpers/sealing.js'

const COMPACT_JWE = /^[\w-]+\.[\w-]+\.[\w-]+\.[\w-]+\.[\w-]+$/
const ones = (n: number) => `[${Array.from({ length: n }, () => '1').join(',')}]`

t.test('requests: the value beyond maxValues, or beyond 10,000 by default, is refused before it is sealed, and nothing reaches the upstream', async (t) => {
  const dir = await tempDir()
  const keys = await writeKeyFiles(dir, 'th')
  const bodies: Buffer[] = []
  const route = (name: string, fields: string[], extra: Record<string, unknown> = {}) => ({
    name,
    methods: ['POST'],
    path: `/v1/${name}`,
    allow: [SPONSOR_APP],
    upstream: 'backend',
    // Held whole before the upstream is contacted: a refusal anywhere in these bodies is a clean 4xx.
    requestHoldBytes: 16 * 1024 * 1024,
    transforms: { request: [{ type: 'seal', recipients: 'th', fields, ...extra }] },
  })
  const s = await startSealing({
    dir,
    keys: { th: { file: keys.publicPath } },
    handler: recordingHandler(bodies),
    routes: [route('bounded', ['/name', '/birthDate', '/passport', '/email', '/phone', '/policeUnit'], { maxValues: 3 }), route('default', ['/*'])],
  })
  t.teardown(s.close)
  const post = (name: string, body: string) => s.gw.request(`/v1/${name}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body })

  // A record of six sensitive values on a route that allows three.
  const record = canaryRecord('r1')
  const refused = await post('bounded', JSON.stringify(record))
  t.equal(refused.status, 413)
  t.same(refused.json(), { error: 'value_too_large', requestId: refused.headers['x-request-id'] })
  t.equal(s.upstream.hits, 0, 'nothing reached the upstream')
  const detail = s.gw.logs.lines.find((l) => l.msg === 'request refused')?.detail
  t.equal(detail, '/email: more than 3 values to seal in one message (maxValues)', 'the log names the fourth value and the bound')
  t.equal(leaksCanary(JSON.stringify(s.gw.logs.lines)), undefined, 'no plaintext in the log')
  t.equal(metricValue(await s.gw.metrics(), 'ecluse_transform_refusals_total', { route: 'bounded', reason: 'value_too_large' }), 1, 'counted as a refusal')
  t.equal(metricValue(await s.gw.metrics(), 'ecluse_crypto_operations_total', { op: 'seal', kind: 'field', result: 'ok' }), 3, 'three values sealed, the fourth refused before its seal')

  const three = { id: 'r2', name: 'Ada', email: 'a@example.test', phone: '+33 1 00 00 00 00' }
  t.equal((await post('bounded', JSON.stringify(three))).status, 200, 'three values: within the bound')
  const sealed = JSON.parse(bodies.pop()!.toString()) as Record<string, string>
  for (const f of ['name', 'email', 'phone']) t.match(sealed[f], COMPACT_JWE, `${f} sealed`)
  t.equal(sealed['id'], 'r2')

  // The default: 10,000 values per request.
  t.equal(DEFAULT_REQUEST_MAX_VALUES, 10_000)
  const over = await post('default', ones(DEFAULT_REQUEST_MAX_VALUES + 1))
  t.equal(over.status, 413, 'one value more than the default: refused')
  t.same(over.json(), { error: 'value_too_large', requestId: over.headers['x-request-id'] })
  t.equal(s.upstream.hits, 1, 'the refused body never reached the upstream')
  t.ok(s.gw.logs.lines.some((l) => l.msg === 'request refused' && l.detail === '/10000: more than 10000 values to seal in one message (maxValues)'), 'the 10,001st value is the one refused')

  const at = await post('default', ones(DEFAULT_REQUEST_MAX_VALUES))
  t.equal(at.status, 200, 'exactly the default: sealed')
  const all = JSON.parse(bodies.pop()!.toString()) as string[]
  t.equal(all.length, DEFAULT_REQUEST_MAX_VALUES)
  t.ok(all.every((v) => COMPACT_JWE.test(v)), 'every value crossed sealed')
})

t.test('responses: unbounded unless the route says so', async (t) => {
  const dir = await tempDir()
  const keys = await writeKeyFiles(dir, 'th')
  const answer = ones(DEFAULT_REQUEST_MAX_VALUES + 1)
  const route = (name: string, extra: Record<string, unknown> = {}) => ({
    name,
    methods: ['GET'],
    path: `/v1/${name}`,
    allow: [SPONSOR_APP],
    upstream: 'backend',
    transforms: { response: [{ type: 'seal', recipients: 'th', fields: ['/*'], ...extra }] },
  })
  const s = await startSealing({
    dir,
    keys: { th: { file: keys.publicPath } },
    handler: recordingHandler([], { body: answer }),
    routes: [route('listing'), route('bounded', { maxValues: 2 })],
  })
  t.teardown(s.close)

  const listing = await s.gw.request('/v1/listing')
  t.equal(listing.status, 200, 'an answer of more values than the request default is sealed whole')
  const values = listing.json() as string[]
  t.equal(values.length, DEFAULT_REQUEST_MAX_VALUES + 1)
  t.ok(values.every((v) => COMPACT_JWE.test(v)), 'every value sealed')

  const bounded = await s.gw.request('/v1/bounded')
  t.equal(bounded.status, 502, 'beyond the route\'s maxValues: refused, fail closed')
  t.same(bounded.json(), { error: 'transform_failed', requestId: bounded.headers['x-request-id'] })
  t.notMatch(bounded.text, /1,1/, 'no value crossed')
  t.equal(metricValue(await s.gw.metrics(), 'ecluse_transform_refusals_total', { route: 'bounded', reason: 'value_too_large' }), 1, 'counted under its own code')
})

t.test('maxValues is a positive integer of at most 1,000,000,000, and an option of seal only', async (t) => {
  const { createSealTransform } = await import('../../src/transform/seal.js')
  const { createOpenTransform } = await import('../../src/transform/open.js')
  const env = await keySetEnv(t)
  for (const bad of [0, -1, 1.5, 1_000_000_001, '2']) {
    t.throws(() => createSealTransform({ recipients: 'th', fields: ['/name'], maxValues: bad }, env), { code: 'config_invalid', message: /^maxValues: / }, `${JSON.stringify(bad)} refused`)
  }
  t.doesNotThrow(() => createSealTransform({ recipients: 'th', fields: ['/name'], maxValues: 1_000_000_000 }, env))
  t.throws(() => createOpenTransform({ keys: 'th-private', fields: ['/name'], maxValues: 2 }, env), { message: /maxValues: unknown option/ }, 'open makes no value larger')
})
