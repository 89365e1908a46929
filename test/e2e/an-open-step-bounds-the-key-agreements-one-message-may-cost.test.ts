/**
 * `open`'s `maxKeyAgreements`. Whoever holds the public key can seal every value of a message under
 * a fresh ephemeral key (jose does, one per value), and each then costs the opener an X25519
 * agreement: a body of such values buys ≈ 40 µs of the trusted side's CPU per value. With the option,
 * a message that would cost more agreements than that is refused (`400 open_failed`) before its
 * upstream is contacted; values sealed in one sealing window (Écluse's sealer: the six of a record
 * share one ephemeral key) cost one agreement, and values whose key is cached cost none.
 */
import { CompactEncrypt, importJWK } from 'jose'
import t from 'tap'
import { FieldSealer } from '../../src/crypto/field.js'
import { parseKeySet } from '../../src/crypto/keys.js'
import { recordingHandler, SPONSOR_APP, startSealing, tempDir, writeKeyFiles } from '../helpers/sealing.js'

const CONTEXT = 'accreditations'
const FIELDS = ['/name', '/phone', '/email'] as const

t.test('a message costing more key agreements than maxKeyAgreements is refused before the upstream', async (t) => {
  const dir = await tempDir()
  const keys = await writeKeyFiles(dir, 'th')
  const jwk = keys.publicJwks.keys[0]!
  const joseKey = await importJWK(jwk, 'ECDH-ES+A256KW')
  /** One value as jose seals it: its own ephemeral key, hence its own agreement to open. */
  const joseSeal = (ptr: string, value: string) =>
    new CompactEncrypt(Buffer.from(JSON.stringify(value)))
      .setProtectedHeader({ alg: 'ECDH-ES+A256KW', enc: 'A256GCM', kid: jwk.kid as string, crit: ['ecl.route', 'ecl.ptr'], 'ecl.route': CONTEXT, 'ecl.ptr': ptr })
      .encrypt(joseKey, { crit: { 'ecl.route': true, 'ecl.ptr': true } })
  const bodies: Buffer[] = []
  const route = (name: string, path: string, extra: Record<string, unknown>) => ({
    name,
    methods: ['POST'],
    path,
    allow: [SPONSOR_APP],
    upstream: 'backend',
    transforms: { request: [{ type: 'open', keys: 'th-private', context: CONTEXT, fields: [...FIELDS], ...extra }] },
  })
  const s = await startSealing({
    dir,
    keys: { 'th-private': { file: keys.privatePath, private: true } },
    handler: recordingHandler(bodies),
    routes: [route('bounded', '/v1/bounded', { maxKeyAgreements: 2 }), route('unbounded', '/v1/unbounded', {})],
  })
  t.teardown(s.close)
  const post = (path: string, record: Record<string, string>) =>
    s.gw.request(path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(record) })

  // Three values, three ephemeral keys.
  const three = Object.fromEntries(await Promise.all(FIELDS.map(async (f) => [f.slice(1), await joseSeal(f, `value of ${f}`)] as const)))
  const refused = await post('/v1/bounded', three)
  t.equal(refused.status, 400)
  t.same(refused.json(), { error: 'open_failed', requestId: refused.headers['x-request-id'] })
  t.equal(s.upstream.hits, 0, 'nothing reached the upstream')
  const detail = s.gw.logs.lines.find((l) => l.msg === 'request refused')?.detail
  t.equal(detail, '/email: more than 2 key agreements in one message (maxKeyAgreements)', 'the log names the value and the bound')
  t.notMatch(JSON.stringify(s.gw.logs.lines), /value of \//, 'no plaintext in the log, not even of the values opened before the bound')

  const unbounded = await post('/v1/unbounded', three)
  t.equal(unbounded.status, 200, 'without the option, the same message opens')
  t.same(JSON.parse(bodies.pop()!.toString()), { name: 'value of /name', phone: 'value of /phone', email: 'value of /email' })

  // Two values, each under a new ephemeral key: within the bound.
  const two = { name: await joseSeal('/name', 'value of /name'), email: await joseSeal('/email', 'value of /email') }
  t.equal((await post('/v1/bounded', two)).status, 200, 'two agreements: within the bound')
  bodies.pop()
  // The same three again: their keys are cached now (each opened a value), so no agreement at all.
  t.equal((await post('/v1/bounded', three)).status, 200, 'values whose keys are cached cost no agreement')
  bodies.pop()

  // Écluse's sealer: the values of a message share one window, one ephemeral key.
  const sealer = new FieldSealer(parseKeySet(keys.publicJwks), { route: CONTEXT })
  const ours = Object.fromEntries(FIELDS.map((f) => [f.slice(1), sealer.seal(Buffer.from(JSON.stringify(`ours ${f}`)), { ptr: f })]))
  t.equal((await post('/v1/bounded', ours)).status, 200, 'one agreement for a record sealed by Écluse')
  t.same(JSON.parse(bodies.pop()!.toString()), { name: 'ours /name', phone: 'ours /phone', email: 'ours /email' })
})
