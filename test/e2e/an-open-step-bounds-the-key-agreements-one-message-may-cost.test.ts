/**
 * `open`'s `maxKeyAgreements`. Whoever holds the public key can seal every value of a message under
 * a fresh ephemeral key (jose does, one per value), and each then costs the opener an X25519
 * agreement (an RSA key: a decryption per value, always): a body of such values buys ≈ 40 µs of the
 * trusted side's CPU per value. With the option, the value that would cost the message one more
 * asymmetric operation than its bound is refused (`400 open_failed`) before that operation, and the
 * upstream is never contacted; values sealed in one sealing window (Écluse's sealer: the values of a
 * record share one ephemeral key) cost one agreement, and values whose key is cached cost none.
 */
import { subscribe, unsubscribe } from 'node:diagnostics_channel'
import { CompactEncrypt, importJWK } from 'jose'
import t, { type Test } from 'tap'
import { FieldSealer, SealWindows } from '../../src/crypto/field.js'
import { ASYMMETRIC_CHANNEL, type AsymmetricOperation } from '../../src/crypto/jwe.js'
import { parseKeySet } from '../../src/crypto/keys.js'
import { createOpenTransform } from '../../src/transform/open.js'
import { createOpenBodyTransform } from '../../src/transform/open-body.js'
import { createRequireSealedTransform } from '../../src/transform/require-sealed.js'
import { metricValue } from '../helpers/harness.js'
import { type KeyFiles, keySetEnv, recordingHandler, SPONSOR_APP, startSealing, tempDir, writeKeyFiles } from '../helpers/sealing.js'

const CONTEXT = 'accreditations'
const FIELDS = ['/name', '/phone', '/email'] as const

/** Counts the gateway's (this process's) asymmetric operations on the opening side. */
function countOpens(t: Test): () => number {
  let n = 0
  const onMessage = (m: unknown) => {
    if ((m as AsymmetricOperation).side === 'open') n++
  }
  subscribe(ASYMMETRIC_CHANNEL, onMessage)
  t.teardown(() => unsubscribe(ASYMMETRIC_CHANNEL, onMessage))
  return () => {
    const seen = n
    n = 0
    return seen
  }
}

/** One value as jose seals it: its own ephemeral key (or RSA), hence an asymmetric operation to open. */
async function joseSeal(keys: KeyFiles, ptr: string, value: string): Promise<string> {
  const jwk = keys.publicJwks.keys[0]!
  const alg = jwk.alg as string
  return new CompactEncrypt(Buffer.from(JSON.stringify(value)))
    .setProtectedHeader({ alg, enc: 'A256GCM', kid: jwk.kid as string, crit: ['ecl.route', 'ecl.ptr'], 'ecl.route': CONTEXT, 'ecl.ptr': ptr })
    .encrypt(await importJWK(jwk, alg), { crit: { 'ecl.route': true, 'ecl.ptr': true } })
}

const sealAll = async (keys: KeyFiles, tag: string) =>
  Object.fromEntries(await Promise.all(FIELDS.map(async (f) => [f.slice(1), await joseSeal(keys, f, `${tag} ${f}`)] as const)))

async function startBounded(t: Test, keys: KeyFiles, dir: string, bodies: Buffer[]) {
  const route = (name: string, extra: Record<string, unknown>) => ({
    name,
    methods: ['POST'],
    path: `/v1/${name}`,
    allow: [SPONSOR_APP],
    upstream: 'backend',
    transforms: { request: [{ type: 'open', keys: 'th-private', context: CONTEXT, fields: [...FIELDS], ...extra }] },
  })
  const s = await startSealing({
    dir,
    keys: { 'th-private': { file: keys.privatePath, private: true } },
    handler: recordingHandler(bodies),
    routes: [route('bounded', { maxKeyAgreements: 2 }), route('unbounded', {})],
  })
  t.teardown(s.close)
  const post = (name: string, body: string, type = 'application/json') => s.gw.request(`/v1/${name}`, { method: 'POST', headers: { 'content-type': type }, body })
  return { s, post }
}

t.test('X25519: the value beyond maxKeyAgreements is refused before its agreement, and nothing reaches the upstream', async (t) => {
  const dir = await tempDir()
  const keys = await writeKeyFiles(dir, 'th')
  const bodies: Buffer[] = []
  const { s, post } = await startBounded(t, keys, dir, bodies)
  const opens = countOpens(t)

  const three = await sealAll(keys, 'three')
  const refused = await post('bounded', JSON.stringify(three))
  t.equal(refused.status, 400)
  t.same(refused.json(), { error: 'open_failed', requestId: refused.headers['x-request-id'] })
  t.equal(opens(), 2, 'two agreements made, the third refused before it')
  t.equal(s.upstream.hits, 0, 'nothing reached the upstream')
  t.equal(s.gw.logs.lines.find((l) => l.msg === 'request refused')?.detail, '/email: more than 2 key agreements in one message (maxKeyAgreements)', 'the log names the value and the bound')
  t.notMatch(JSON.stringify(s.gw.logs.lines), /three \//, 'no plaintext in the log, not even of the values opened before the bound')
  t.equal(metricValue(await s.gw.metrics(), 'ecluse_crypto_operations_total', { op: 'open', kind: 'field', result: 'failed' }), 1, 'counted as a failed open')

  const unbounded = await post('unbounded', JSON.stringify(three))
  t.equal(unbounded.status, 200, 'without the option, the same message opens')
  t.equal(opens(), 3)
  t.same(JSON.parse(bodies.pop()!.toString()), { name: 'three /name', phone: 'three /phone', email: 'three /email' })

  const two = { name: await joseSeal(keys, '/name', 'two /name'), email: await joseSeal(keys, '/email', 'two /email') }
  t.equal((await post('bounded', JSON.stringify(two))).status, 200, 'two agreements: within the bound')
  t.equal(opens(), 2)
  t.equal((await post('bounded', JSON.stringify(two))).status, 200, 'the same values again: their keys are cached, no agreement')
  t.equal(opens(), 0)
  bodies.length = 0

  // NDJSON: the bound is the message's, not a line's.
  const lines = await Promise.all([0, 1, 2].map(async (i) => JSON.stringify({ name: await joseSeal(keys, `/${i}/name`, `line ${i}`) })))
  const ndjson = await post('bounded', `${lines.join('\n')}\n`, 'application/x-ndjson')
  t.equal(ndjson.status, 400, 'three lines of one value each: refused')
  t.equal(opens(), 2)
  t.equal((await post('bounded', `${lines.slice(0, 2).join('\n')}\n`, 'application/x-ndjson')).status, 200, 'two lines: within the bound')

  // Écluse's sealer: the values of a message share one window, one ephemeral key.
  // (Windows that outlast the test: the process-wide one could end between two values.)
  const sealer = new FieldSealer(parseKeySet(keys.publicJwks), { route: CONTEXT, windows: new SealWindows({ maxAgeMs: 3_600_000 }) })
  const ours = Object.fromEntries(FIELDS.map((f) => [f.slice(1), sealer.seal(Buffer.from(JSON.stringify(`ours ${f}`)), { ptr: f })]))
  opens()
  t.equal((await post('bounded', JSON.stringify(ours))).status, 200, 'a record sealed by Écluse')
  t.equal(opens(), 1, 'one agreement for its three values')
  t.same(JSON.parse(bodies.pop()!.toString()), { name: 'ours /name', phone: 'ours /phone', email: 'ours /email' })

  // The bound counts agreements, not values, and a value whose key is cached still opens once the
  // message has none left: through the cache's map, and through its memoised last key.
  const fresh = (f: string) => joseSeal(keys, f, `fresh ${f}`)
  // A window of its own (the process-wide one would give it the key of `ours`, cached already), and
  // one that lasts the test: its key is agreed once, in the second case, and cached for the third.
  const second = new FieldSealer(parseKeySet(keys.publicJwks), { route: CONTEXT, windows: new SealWindows({ maxAgeMs: 3_600_000 }) })
  const window = (f: string) => second.seal(Buffer.from(JSON.stringify(`window ${f}`)), { ptr: f })
  for (const [what, record] of [
    ['two fresh keys, then one cached (in the map)', { name: await fresh('/name'), phone: await fresh('/phone'), email: two.email }],
    ['a fresh key, then two values of one window (the second through the memoised last key)', { name: await fresh('/name'), phone: window('/phone'), email: window('/email') }],
    ['three values, two agreements', { name: window('/name'), phone: await fresh('/phone'), email: await fresh('/email') }],
  ] as const) {
    opens()
    t.equal((await post('bounded', JSON.stringify(record))).status, 200, what)
    t.equal(opens(), 2, `${what}: two agreements`)
  }
})

t.test('RSA: every value is a decryption, never cached, so a message of more values than the bound is always refused', async (t) => {
  const dir = await tempDir()
  const keys = await writeKeyFiles(dir, 'th', { alg: 'RSA-OAEP-256', modulusLength: 2048 })
  const { s, post } = await startBounded(t, keys, dir, [])
  const opens = countOpens(t)
  const three = JSON.stringify(await sealAll(keys, 'rsa'))
  for (const attempt of ['first', 'again']) {
    t.equal((await post('bounded', three)).status, 400, `three values, ${attempt}: refused`)
    t.equal(opens(), 2, `${attempt}: two decryptions, the third refused before it`)
  }
  const { email: _email, ...two } = JSON.parse(three) as Record<string, string>
  t.equal((await post('bounded', JSON.stringify(two))).status, 200, 'two values: within the bound')
  t.equal(opens(), 2)
  t.equal(s.upstream.hits, 1, 'only that one reached the upstream')
})

t.test('maxKeyAgreements is a positive integer, and an option of open only', async (t) => {
  const env = await keySetEnv(t)
  for (const bad of [0, 1.5, 1_000_000_001, '2']) {
    t.throws(() => createOpenTransform({ keys: 'th-private', fields: ['/name'], maxKeyAgreements: bad }, env), { code: 'config_invalid', message: /^maxKeyAgreements: / }, `${JSON.stringify(bad)} refused`)
  }
  t.doesNotThrow(() => createOpenTransform({ keys: 'th-private', fields: ['/name'], maxKeyAgreements: 1 }, env))
  t.throws(() => createRequireSealedTransform({ recipients: 'th', fields: ['/name'], maxKeyAgreements: 2 }, env), { message: /maxKeyAgreements: unknown option/ }, 'require-sealed makes no agreement')
  t.throws(() => createOpenBodyTransform({ keys: 'th-private', maxKeyAgreements: 2 }, env), { message: /maxKeyAgreements: unknown option/ }, 'open-body makes one a stream')
})

t.test('by default a request may cost 2,000 agreements, a response any number; the value beyond is refused before its agreement', async (t) => {
  // Found by review: unbounded by default, a 10 MiB body of such values on a wildcard or NDJSON
  // route bought a second of the trusted side's CPU, where `seal` bounds a request's cost by default.
  const { DEFAULT_REQUEST_MAX_KEY_AGREEMENTS } = await import('../../src/transform/open.js')
  t.equal(DEFAULT_REQUEST_MAX_KEY_AGREEMENTS, 2_000)
  const dir = await tempDir()
  const keys = await writeKeyFiles(dir, 'th')
  const env = { log: (await import('pino')).pino({ level: 'silent' }), keySets: new Map([['th-private', parseKeySet(keys.privateJwks, { requirePrivate: true })]]) }
  const lines: string[] = []
  // In NDJSON a value's place is its line's: `/<line>/name`.
  for (let i = 0; i <= DEFAULT_REQUEST_MAX_KEY_AGREEMENTS; i++) lines.push(`${JSON.stringify({ name: await joseSeal(keys, `/${i}/name`, `n${i}`) })}\n`)
  const body = Buffer.from(lines.join(''))
  const opens = countOpens(t)
  /** Runs the step over `body` in `direction`; resolves to the output, or the error that ended it. */
  const run = async (direction: 'request' | 'response') => {
    // A step of its own each time: no KEK cached by the other run.
    const step = createOpenTransform({ keys: 'th-private', context: CONTEXT, fields: ['/name'], format: 'ndjson' }, env)
    const ctx = { direction, status: 200, routeName: 'r', path: '/', requestId: 'x', principal: { id: 'uri:x' } as never, headers: { 'content-type': 'application/x-ndjson' }, log: env.log }
    const stream = step.begin(ctx)!
    const out: Buffer[] = []
    stream.on('data', (c: Buffer) => out.push(c))
    const ended = new Promise<Buffer | Error>((resolve) => {
      stream.on('end', () => resolve(Buffer.concat(out)))
      stream.on('error', resolve)
    })
    stream.end(body)
    return ended
  }
  const refused = await run('request')
  t.type(refused, Error)
  t.match(refused, { code: 'open_failed', message: `/name: more than ${DEFAULT_REQUEST_MAX_KEY_AGREEMENTS} key agreements in one message (maxKeyAgreements)` })
  t.equal(opens(), DEFAULT_REQUEST_MAX_KEY_AGREEMENTS, 'the value beyond the bound made no agreement')
  const opened = await run('response')
  t.type(opened, Buffer)
  t.equal((opened as Buffer).toString().split('\n').filter(Boolean).length, DEFAULT_REQUEST_MAX_KEY_AGREEMENTS + 1)
  t.match((opened as Buffer).toString(), `{"name":"n${DEFAULT_REQUEST_MAX_KEY_AGREEMENTS}"}`, 'a response opens every value')
  t.equal(opens(), DEFAULT_REQUEST_MAX_KEY_AGREEMENTS + 1)
})
