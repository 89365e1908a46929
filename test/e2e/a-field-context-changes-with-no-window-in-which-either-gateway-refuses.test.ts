/**
 * `open` and `require-sealed` take `alsoAccept`: contexts accepted beside `context` while the sealing
 * side moves from one to the other, so that two gateways reloading at different times change a field
 * context without a window in which one refuses the other's values. A value bound to a context in
 * neither list is still refused, in every way it can be sealed (our sealer's canonical header, and
 * jose's, which the opener parses in full).
 */
import { CompactEncrypt, importJWK } from 'jose'
import { pino } from 'pino'
import t from 'tap'
import { configSchema } from '../../src/config/schema.js'
import { FieldSealer } from '../../src/crypto/field.js'
import { generateKeySet, parseKeySet } from '../../src/crypto/keys.js'
import { compileRouteTable } from '../../src/route/table.js'
import '../../src/transform/builtin.js'
import type { TransformEnv } from '../../src/transform/types.js'
import { CANARY, type KeyFiles, leaksCanary, recordingHandler, SPONSOR_APP, startSealing, tempDir, writeKeyFiles } from '../helpers/sealing.js'

const fields = ['/records/*/name', '/records/*/passport']
const records = { pattern: '/records/*', id: 'id' }

/** One value as jose seals it: its members in another order than our sealer's, so not on the fast path. */
async function joseSeal(keys: KeyFiles, route: string, ptr: string, rid: string, value: string): Promise<string> {
  const jwk = keys.publicJwks.keys[0]!
  const alg = jwk.alg as string
  const crit = ['ecl.route', 'ecl.ptr', 'ecl.rid']
  return new CompactEncrypt(Buffer.from(JSON.stringify(value)))
    .setProtectedHeader({ 'ecl.rid': rid, 'ecl.ptr': ptr, 'ecl.route': route, crit, kid: jwk.kid as string, enc: 'A256GCM', alg })
    .encrypt(await importJWK(jwk, alg), { crit: { 'ecl.route': true, 'ecl.ptr': true, 'ecl.rid': true } })
}

t.test('a value bound to context or to any of alsoAccept opens and passes; one bound elsewhere does not', async (t) => {
  const dir = await tempDir()
  const keys = await writeKeyFiles(dir, 'th')
  const bodies: Buffer[] = []
  const route = (name: string, step: Record<string, unknown>) => ({
    name,
    methods: ['POST'],
    path: `/v1/${name}`,
    allow: [SPONSOR_APP],
    upstream: 'backend',
    transforms: { request: [{ ...step, fields, records }] },
  })
  const s = await startSealing({
    dir,
    handler: recordingHandler(bodies),
    keys: { th: { file: keys.publicPath }, 'th-private': { file: keys.privatePath, private: true } },
    routes: [
      route('open', { type: 'open', keys: 'th-private', context: 'acc-v2', alsoAccept: ['acc-v1', 'acc-v0'] }),
      route('verify', { type: 'require-sealed', recipients: 'th', context: 'acc-v2', alsoAccept: ['acc-v1', 'acc-v0'] }),
      route('open-new-only', { type: 'open', keys: 'th-private', context: 'acc-v2' }),
      route('verify-new-only', { type: 'require-sealed', recipients: 'th', context: 'acc-v2' }),
      // No context: the route name, and what alsoAccept lists beside it.
      route('by-name', { type: 'open', keys: 'th-private', alsoAccept: ['acc-v1'] }),
    ],
  })
  t.teardown(s.close)
  const pub = parseKeySet(keys.publicJwks, { publicOnly: true })
  const seal = (context: string, rid: string) => {
    const sealer = new FieldSealer(pub, { route: context })
    return {
      id: rid,
      name: sealer.seal(Buffer.from(JSON.stringify(`${CANARY.name} ${rid}`)), { ptr: '/records/*/name', rid }),
      passport: sealer.seal(Buffer.from(JSON.stringify(`${CANARY.passport} ${rid}`)), { ptr: '/records/*/passport', rid }),
    }
  }
  const opened = (rid: string) => ({ id: rid, name: `${CANARY.name} ${rid}`, passport: `${CANARY.passport} ${rid}` })
  const post = (path: string, doc: unknown) =>
    s.gw.request(path, { method: 'POST', body: JSON.stringify(doc), headers: { 'content-type': 'application/json' } })

  // One message holding values of the new context, of both old ones, and one sealed by jose.
  const jose = { id: 'j', name: await joseSeal(keys, 'acc-v1', '/records/*/name', 'j', `${CANARY.name} j`) }
  const mixed = { records: [seal('acc-v2', 'a'), seal('acc-v1', 'b'), seal('acc-v0', 'c'), jose] }
  const open = await post('/v1/open', mixed)
  t.equal(open.status, 200, 'open: every accepted context opens, in one message')
  t.same(JSON.parse(bodies.at(-1)!.toString()), { records: [opened('a'), opened('b'), opened('c'), { id: 'j', name: `${CANARY.name} j` }] }, 'to the exact plaintext')
  const verify = await post('/v1/verify', mixed)
  t.equal(verify.status, 200, 'require-sealed: every accepted context passes')
  t.same(JSON.parse(bodies.at(-1)!.toString()), mixed, 'unchanged')
  const byName = await post('/v1/by-name', { records: [seal('by-name', 'a'), seal('acc-v1', 'b')] })
  t.equal(byName.status, 200, 'without a context: the route name and alsoAccept')
  t.same(JSON.parse(bodies.at(-1)!.toString()), { records: [opened('a'), opened('b')] })
  const hits = s.upstream.hits

  // Refused: a context in neither list (our sealer's header and jose's), and the old contexts where
  // only the new one is accepted.
  const joseElsewhere = { id: 'j', name: await joseSeal(keys, 'acc-v3', '/records/*/name', 'j', `${CANARY.name} j`) }
  const refused: Array<[string, string, string, unknown]> = [
    ['a context in neither list', '/v1/open', '/v1/verify', { records: [seal('acc-v2', 'a'), seal('acc-v3', 'b')] }],
    ['a context in neither list, sealed by jose', '/v1/open', '/v1/verify', { records: [joseElsewhere] }],
    ['a prefix of an accepted context', '/v1/open', '/v1/verify', { records: [seal('acc-v', 'a')] }],
    ['an old context where only the new is accepted', '/v1/open-new-only', '/v1/verify-new-only', { records: [seal('acc-v1', 'a')] }],
    ['an old context sealed by jose, only the new accepted', '/v1/open-new-only', '/v1/verify-new-only', { records: [jose] }],
    ['the route name where a context is set', '/v1/open', '/v1/verify', { records: [seal('open', 'a')] }],
    // An accepted context keeps the value bound to its member and its record.
    ['an accepted old context, moved to another record', '/v1/open', '/v1/verify', { records: [{ ...seal('acc-v1', 'a'), id: 'b' }] }],
    ['an accepted old context, moved to another member', '/v1/open', '/v1/verify', { records: [{ id: 'a', name: seal('acc-v1', 'a').passport }] }],
    ['an accepted old context, sealed without a record', '/v1/open', '/v1/verify', { records: [{ id: 'a', name: new FieldSealer(pub, { route: 'acc-v1' }).seal(Buffer.from('"x"'), { ptr: '/records/*/name' }) }] }],
  ]
  for (const [what, openPath, verifyPath, doc] of refused) {
    const o = await post(openPath, doc)
    t.equal(o.status, 400, `open: ${what} → 400`)
    t.same(o.json(), { error: 'open_failed', requestId: o.headers['x-request-id'] }, `open: ${what} → open_failed, nothing else`)
    const v = await post(verifyPath, doc)
    t.equal(v.status, 422, `require-sealed: ${what} → 422`)
    t.equal((v.json() as { error: string }).error, 'plaintext_refused', `require-sealed: ${what} → plaintext_refused`)
    t.equal(leaksCanary(o.text + v.text), undefined, 'no value in the error bodies')
  }
  t.equal(s.upstream.hits, hits, 'no refused body reached the upstream')
  t.match(s.gw.logs.text(), /ecl\.route does not match where the value sits/, 'the reason is in the log')
  t.equal(leaksCanary(s.gw.logs.text()), undefined, 'no value in the log')
})

t.test('alsoAccept is checked when the route table is compiled', async (t) => {
  const generated = generateKeySet()
  const env: TransformEnv = {
    log: pino({ level: 'silent' }),
    keySets: new Map([
      ['th', parseKeySet(generated.publicJwks)],
      ['thp', parseKeySet(generated.privateJwks, { requirePrivate: true })],
    ]),
  }
  const compile = (step: Record<string, unknown>) =>
    compileRouteTable(
      configSchema.parse({
        sponsor: { listen: { port: 0 }, tls: { cert: 'c', key: 'k', clientCa: 'ca' }, principalHeader: 'x-ecluse-principal' },
        upstreams: { svc: { url: 'https://127.0.0.1:8443', serverName: 'svc', tls: { ca: 'ca', cert: 'c', key: 'k' } } },
        admin: { listen: { port: 0 } },
        keys: { th: { file: 'th.json' } },
        routes: [{ name: 'r', path: '/v1/:id', methods: ['POST'], allow: ['dns:a'], upstream: 'svc', transforms: { request: [{ ...step, fields: ['/name'] }] } }],
      }),
      env,
    )
  const refused = (step: Record<string, unknown>, message: RegExp, why: string) =>
    t.throws(() => compile(step), { name: 'EcluseError', code: 'config_invalid', message }, why)
  for (const step of [{ type: 'open', keys: 'thp' }, { type: 'require-sealed', recipients: 'th' }]) {
    t.ok(compile({ ...step, context: 'acc-v2', alsoAccept: ['acc-v1'] }).get('r'), `${step.type}: a list of contexts`)
    refused({ ...step, alsoAccept: [] }, /alsoAccept/, `${step.type}: an empty list`)
    refused({ ...step, alsoAccept: ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i'] }, /alsoAccept/, `${step.type}: more than 8`)
    refused({ ...step, alsoAccept: ['photos/{id}'] }, /alsoAccept.*binds whole bodies only/s, `${step.type}: a path parameter, which binds bodies only`)
    refused({ ...step, alsoAccept: ['with space'] }, /alsoAccept.*visible ASCII/s, `${step.type}: not a context`)
  }
  refused({ type: 'seal', recipients: 'th', alsoAccept: ['acc-v1'] }, /alsoAccept/, 'seal: a sealer seals under one context')
})
