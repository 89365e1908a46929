import { Writable } from 'node:stream'
import t from 'tap'
import { createLogger, REDACTED } from '../src/observability/logger.js'

/** Capture what the logger writes, one parsed JSON object per line. */
function capture() {
  const lines: string[] = []
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      lines.push(...chunk.toString('utf8').split('\n').filter(Boolean))
      cb()
    },
  })
  return { stream, lines, text: () => lines.join('\n') }
}

const CANARY_KEY = 'CANARY-KEY-7f3a9c'
const CANARY_AUTH = 'Bearer CANARY-TOKEN-51d2'
const CANARY_COOKIE = 'session=CANARY-COOKIE-e80b'

t.test('credentials and key material never reach the log, at any depth', async (t) => {
  const out = capture()
  const log = createLogger({ level: 'debug', destination: out.stream })

  log.info({ authorization: CANARY_AUTH, key: CANARY_KEY }, 'top level')
  log.info(
    {
      req: { headers: { authorization: CANARY_AUTH, cookie: CANARY_COOKIE, 'proxy-authorization': CANARY_AUTH, accept: '*/*' } },
      res: { headers: { 'set-cookie': [CANARY_COOKIE] } },
    },
    'headers',
  )
  log.warn({ upstream: { name: 'trusted', tls: { key: CANARY_KEY, cert: 'public' } } }, 'nested config')
  log.debug({ jwks: { keys: [{ kty: 'EC', crv: 'P-256', x: 'pub-x', d: CANARY_KEY }] } }, 'array of JWKs')
  log.debug({ jwk: { kty: 'RSA', n: 'pub-n', e: 'AQAB', d: CANARY_KEY, p: CANARY_KEY, q: CANARY_KEY, dp: CANARY_KEY, dq: CANARY_KEY, qi: CANARY_KEY } }, 'rsa')
  log.debug({ a: { b: { c: { x: { e: { privateKey: CANARY_KEY, k: CANARY_KEY } } } } } }, 'deep')
  log.info({ outgoing: { Authorization: CANARY_AUTH, Cookie: CANARY_COOKIE } }, 'wire casing')
  log.child({ key: CANARY_KEY }).info('child bindings')
  log.error({ err: Object.assign(new Error('boom'), { key: CANARY_KEY }) }, 'error with a key property')

  const text = out.text()
  t.equal(out.lines.length, 9, 'every line was written')
  for (const canary of [CANARY_KEY, 'CANARY-TOKEN', 'CANARY-COOKIE']) {
    t.notOk(text.includes(canary), `${canary} never appears`)
  }

  const [top, headers, nested, jwks, rsa, deep, casing, child, error] = out.lines.map((l) => JSON.parse(l))
  t.equal(top.authorization, REDACTED)
  t.equal(top.key, REDACTED)
  t.same(headers.req.headers, {
    authorization: REDACTED,
    cookie: REDACTED,
    'proxy-authorization': REDACTED,
    accept: '*/*',
  }, 'other headers are kept')
  t.equal(headers.res.headers['set-cookie'], REDACTED)
  t.same(nested.upstream.tls, { key: REDACTED, cert: 'public' })
  t.same(jwks.jwks.keys[0], { kty: 'EC', crv: 'P-256', x: 'pub-x', d: REDACTED }, 'public members stay')
  t.same(rsa.jwk, { kty: 'RSA', n: 'pub-n', e: 'AQAB', d: REDACTED, p: REDACTED, q: REDACTED, dp: REDACTED, dq: REDACTED, qi: REDACTED })
  t.same(deep.a.b.c.x.e, { privateKey: REDACTED, k: REDACTED })
  t.same(casing.outgoing, { Authorization: REDACTED, Cookie: REDACTED })
  t.equal(child.key, REDACTED)
  t.equal(error.err.key, REDACTED)
  t.equal(error.err.message, 'boom')
})

t.test('lines are JSON with an ISO time, a string level and the service name', async (t) => {
  const out = capture()
  const log = createLogger({ level: 'info', destination: out.stream })
  const original = { headers: { authorization: CANARY_AUTH } }
  log.info(original, 'hello')
  log.debug('not written at info')
  t.equal(out.lines.length, 1)
  const line = JSON.parse(out.lines[0]!)
  t.equal(line.service, 'ecluse')
  t.equal(line.level, 'info')
  t.equal(line.msg, 'hello')
  t.match(line.time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/)
  t.equal(original.headers.authorization, CANARY_AUTH, 'the caller’s object is not mutated')
})

t.test('header and credential names in any case, rawHeaders lists and the properties of errors are censored', async (t) => {
  const out = capture()
  const log = createLogger({ level: 'debug', destination: out.stream })
  const secret = 'CANARY-SECRET-93be'
  log.info({ headers: { AUTHORIZATION: secret, 'X-Api-Key': secret, 'x-auth-token': secret, 'X-Trace': 'kept' } }, 'cases')
  log.info({ rawHeaders: ['Host', 'gw', 'Authorization', secret, 'COOKIE', secret, 'Accept', '*/*'] }, 'raw')
  log.info({ tls: { PrivateKey: secret, private_key: secret, passphrase: secret, D: 'kept' } }, 'names')
  const inner = Object.assign(new Error('inner'), { headers: { authorization: secret } })
  log.error({ err: Object.assign(new Error('outer'), { tls: { key: secret }, headers: { Cookie: secret }, nested: inner }) }, 'error')
  log.error({ err: new AggregateError([Object.assign(new Error('one'), { passphrase: secret })], 'many') }, 'aggregate')
  log.info({ tls: { KEY: secret, Key: secret }, kids: ['secret', 'k-2026', 'token', 'k-2027'] }, 'lists of values')
  const text = out.text()
  t.equal(out.lines.length, 6)
  t.notOk(text.includes(secret), 'the secret never appears')
  const [cases, raw, names, error, aggregate, values] = out.lines.map((l) => JSON.parse(l))
  t.same(cases.headers, { AUTHORIZATION: REDACTED, 'X-Api-Key': REDACTED, 'x-auth-token': REDACTED, 'X-Trace': 'kept' })
  t.same(raw.rawHeaders, ['Host', 'gw', 'Authorization', REDACTED, 'COOKIE', REDACTED, 'Accept', '*/*'], 'the value after a sensitive name')
  t.same(names.tls, { PrivateKey: REDACTED, private_key: REDACTED, passphrase: REDACTED, D: 'kept' }, 'a JWK member is exact-case only')
  t.same(error.err.tls, { key: REDACTED })
  t.same(error.err.headers, { Cookie: REDACTED })
  t.same(error.err.nested.headers, { authorization: REDACTED }, 'an error held by an error')
  t.equal(error.err.message, 'outer')
  t.match(error.err.stack, /outer/, 'the error is still serialised')
  t.equal(aggregate.err.aggregateErrors[0].passphrase, REDACTED)
  t.same(values.tls, { KEY: REDACTED, Key: REDACTED }, '`key` in any case')
  t.same(values.kids, ['secret', 'k-2026', 'token', 'k-2027'], 'a list that is not rawHeaders is values, kept')
})

t.test('an error under another key than err, and a header list under headers, are censored too', async (t) => {
  // Found by a review: `{ error: e }` and `{ errors: [e] }` were written by JSON.stringify with the
  // error's own properties in clear, and undici's flat `headers` list was kept as values.
  const out = capture()
  const log = createLogger({ level: 'debug', destination: out.stream })
  const secret = 'CANARY-SECRET-4c1d'
  const failure = Object.assign(new Error('failed'), { headers: { Authorization: secret }, rawHeaders: ['Cookie', secret] })
  log.error({ error: failure }, 'under error')
  log.error({ errors: [failure], detail: { cause: failure } }, 'in a list and nested')
  log.info({ request: { headers: ['host', 'gw', 'authorization', secret, 'accept', '*/*'] } }, 'undici headers list')
  const text = out.text()
  t.equal(out.lines.length, 3)
  t.notOk(text.includes(secret), 'the secret never appears')
  const [under, list, undici] = out.lines.map((l) => JSON.parse(l))
  t.same(under.error.headers, { Authorization: REDACTED })
  t.same(under.error.rawHeaders, ['Cookie', REDACTED])
  t.equal(under.error.message, 'failed', 'serialised as err is')
  t.match(under.error.stack, /failed/)
  t.same(list.errors[0].headers, { Authorization: REDACTED })
  t.same(list.detail.cause.headers, { Authorization: REDACTED })
  t.same(undici.request.headers, ['host', 'gw', 'authorization', REDACTED, 'accept', '*/*'])
})

t.test('an error under a nested err, in a list or in bindings, and headers as name/value pairs are censored too', async (t) => {
  // Found by review: `err` was left to pino's serializer at every depth, which serializes only the
  // top-level one, so `{ ctx: { err } }` went out with the error's own properties in clear; and a
  // header list of pairs (fetch's HeadersInit, Object.entries) was searched as values.
  const out = capture()
  const secret = 'CANARY-SECRET-9b27'
  const failure = Object.assign(new Error('failed'), { privateKey: secret, headers: { authorization: secret } })
  const log = createLogger({ level: 'debug', destination: out.stream })
  log.error({ ctx: { err: failure } }, 'nested err')
  log.error({ errors: [{ err: failure }] }, 'err in a list')
  log.child({ ctx: { err: failure, password: secret } }).child({ token: secret }).error('in bindings, a child’s and its child’s')
  log.info({ headers: [['Authorization', secret], ['accept', '*/*'], ['cookie', secret]] }, 'pairs')
  const text = out.text()
  t.equal(out.lines.length, 4)
  t.notOk(text.includes(secret), 'the secret never appears')
  const [nested, listed, bound, pairs] = out.lines.map((l) => JSON.parse(l))
  t.same(nested.ctx.err.privateKey, REDACTED)
  t.same(nested.ctx.err.headers, { authorization: REDACTED })
  t.equal(nested.ctx.err.message, 'failed', 'serialised as the top-level err is')
  t.same(listed.errors[0].err.privateKey, REDACTED)
  t.same(bound.ctx.err.privateKey, REDACTED)
  t.same([bound.ctx.password, bound.token], [REDACTED, REDACTED], 'pino writes a child’s bindings without the bindings formatter: scrubbed all the same')
  t.same(pairs.headers, [['Authorization', REDACTED], ['accept', '*/*'], ['cookie', REDACTED]], 'the value of a sensitive pair')
})

t.test('an error keeps its type under err, and an error that points back at itself is logged, not a crash', async (t) => {
  const out = capture()
  const log = createLogger({ level: 'debug', destination: out.stream })
  log.error({ err: new TypeError('boom') }, 'typed')
  const looped = Object.assign(new Error('looped'), { ctx: {} as Record<string, unknown> })
  looped.ctx['back'] = looped
  t.doesNotThrow(() => log.error({ err: looped }, 'cycle under err'))
  t.doesNotThrow(() => log.error({ error: looped }, 'cycle under another key'))
  const list: unknown[] = []
  list.push(list)
  t.doesNotThrow(() => log.info({ list }, 'a list holding itself'))
  const [typed, underErr, underOther, selfList] = out.lines.map((l) => JSON.parse(l))
  t.equal(typed.err.type, 'TypeError', 'the type of the error, not "Object"')
  t.equal(typed.err.message, 'boom')
  t.equal(underErr.err.message, 'looped')
  t.equal(underOther.error.message, 'looped')
  t.ok(selfList.msg === 'a list holding itself')
})
