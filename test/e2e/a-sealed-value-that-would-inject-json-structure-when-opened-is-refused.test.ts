import t from 'tap'
import { FieldSealer } from '../../src/crypto/field.js'
import { parseKeySet } from '../../src/crypto/keys.js'
import { CANARY, leaksCanary, recordingHandler, SPONSOR_APP, startSealing, tempDir, writeKeyFiles } from '../helpers/sealing.js'

// Whoever holds the public key set can seal any bytes. `open` splices what opens into the body, so
// it must accept exactly one JSON value (and in NDJSON, one without a line break): otherwise a
// crafted seal could add members, records or lines that no step ever saw.
t.test('a sealed value whose plaintext is not exactly one JSON value does not open, and nothing reaches the upstream', async (t) => {
  const dir = await tempDir()
  const keys = await writeKeyFiles(dir, 'th')
  const bodies: Buffer[] = []
  const s = await startSealing({
    dir,
    handler: recordingHandler(bodies),
    keys: { 'th-private': { file: keys.privatePath, private: true } },
    routes: [
      {
        name: 'open-json',
        methods: ['POST'],
        path: '/v1/json',
        allow: [SPONSOR_APP],
        upstream: 'backend',
        transforms: { request: [{ type: 'open', keys: 'th-private', context: 'acc', fields: ['/passport'] }] },
      },
      {
        name: 'open-ndjson',
        methods: ['POST'],
        path: '/v1/ndjson',
        allow: [SPONSOR_APP],
        upstream: 'backend',
        transforms: { request: [{ type: 'open', keys: 'th-private', context: 'acc', fields: ['/passport'], format: 'ndjson' }] },
      },
    ],
  })
  t.teardown(s.close)
  const pub = parseKeySet(keys.publicJwks, { publicOnly: true })
  const seal = (plaintext: string | Buffer) => new FieldSealer(pub, { route: 'acc' }).seal(Buffer.from(plaintext), { ptr: '/passport' })
  const post = (path: string, type: string, body: string) =>
    s.gw.request(path, { method: 'POST', body, headers: { 'content-type': type } })

  // Control: a well-formed seal opens, so the refusals below are about the plaintext's shape.
  const ok = await post('/v1/json', 'application/json', JSON.stringify({ passport: seal(JSON.stringify(CANARY.passport)) }))
  t.equal(ok.status, 200, 'a sealed JSON string opens')
  t.equal(bodies.length, 1)
  t.same(JSON.parse(bodies[0]!.toString('utf8')), { passport: CANARY.passport })
  // Nor about anything but the rewriter's rules: any other JSON value, non-ASCII and nested, opens.
  const value = { number: 'É-123 😀 \u00e9', list: [1, 2.5e3, null, true, { deep: [[['x']]] }] }
  const nested = await post('/v1/json', 'application/json', JSON.stringify({ passport: seal(JSON.stringify(value)) }))
  t.equal(nested.status, 200, 'a sealed object with non-ASCII text and nesting opens')
  t.same(JSON.parse(bodies[1]!.toString('utf8')), { passport: value })

  const crafted: Array<[string, string, string, string | Buffer]> = [
    ['a second member', '/v1/json', 'application/json', `"${CANARY.passport}","admin":true`],
    ['a closed object and a trailing value', '/v1/json', 'application/json', `"x"},{"passport":"${CANARY.passport}"`],
    ['two values', '/v1/json', 'application/json', `"${CANARY.passport}" "again"`],
    ['nothing at all', '/v1/json', 'application/json', ''],
    ['not JSON', '/v1/json', 'application/json', CANARY.passport],
    ['a line break that would split an NDJSON record', '/v1/ndjson', 'application/x-ndjson', `{"a":\n"${CANARY.passport}"}`],
    ['a second NDJSON record', '/v1/ndjson', 'application/x-ndjson', `"x"}\n{"passport":"${CANARY.passport}"`],
    // JSON.parse accepts the next four; the rewriter refuses each on input, because parsers read
    // them differently. An opened value must meet the same rules as the body it goes into.
    ['a duplicate member name', '/v1/json', 'application/json', `{"role":"user","role":"admin","n":"${CANARY.passport}"}`],
    ['invalid UTF-8', '/v1/json', 'application/json', Buffer.concat([Buffer.from(`"${CANARY.passport}`), Buffer.from([0xff, 0xfe, 0x22])])],
    ['an unpaired surrogate escape', '/v1/json', 'application/json', `"${CANARY.passport}\\ud800"`],
    ['nesting deeper than the rewriter accepts', '/v1/json', 'application/json', `${'['.repeat(100)}"${CANARY.passport}"${']'.repeat(100)}`],
  ]
  for (const [what, path, type, plaintext] of crafted) {
    const body = path === '/v1/ndjson' ? `${JSON.stringify({ passport: seal(plaintext) })}\n` : JSON.stringify({ passport: seal(plaintext) })
    const res = await post(path, type, body)
    t.equal(res.status, 400, `${what}: 400`)
    t.same(res.json(), { error: 'open_failed', requestId: res.headers['x-request-id'] }, `${what}: open_failed and nothing else`)
  }
  t.equal(bodies.length, 2, 'none of the crafted bodies reached the upstream')
  t.equal(leaksCanary(s.gw.logs.raw.join('\n')), undefined, 'no plaintext in the log')
  t.equal(leaksCanary(await s.gw.metrics()), undefined, 'no plaintext in /metrics')
})

t.test('what opens may nest only as deep as the body has left where it goes in', async (t) => {
  // Checked on its own, a 64-deep value opened at /a/b/p made a 67-deep body, which the rewriter
  // refuses on input: the cap protects a recursive parser upstream.
  const dir = await tempDir()
  const keys = await writeKeyFiles(dir, 'th')
  const bodies: Buffer[] = []
  const s = await startSealing({
    dir,
    handler: recordingHandler(bodies),
    keys: { 'th-private': { file: keys.privatePath, private: true } },
    routes: [
      {
        name: 'open',
        methods: ['POST'],
        path: '/v1/open',
        allow: [SPONSOR_APP],
        upstream: 'backend',
        transforms: { request: [{ type: 'open', keys: 'th-private', context: 'acc', fields: ['/a/b/p'] }] },
      },
      // The same body with nothing to open: what the rewriter itself accepts as input.
      { name: 'check', methods: ['POST'], path: '/v1/check', allow: [SPONSOR_APP], upstream: 'backend', transforms: { request: [{ type: 'strip', fields: ['/none'] }] } },
    ],
  })
  t.teardown(s.close)
  const pub = parseKeySet(keys.publicJwks, { publicOnly: true })
  const nested = (k: number) => `${'['.repeat(k)}${']'.repeat(k)}`
  for (const k of [61, 62, 64]) {
    const sealed = new FieldSealer(pub, { route: 'acc' }).seal(Buffer.from(nested(k)), { ptr: '/a/b/p' })
    const opened = await s.gw.request('/v1/open', { method: 'POST', body: JSON.stringify({ a: { b: { p: sealed } } }), headers: { 'content-type': 'application/json' } })
    const plain = `{"a":{"b":{"p":${nested(k)}}}}`
    const direct = await s.gw.request('/v1/check', { method: 'POST', body: plain, headers: { 'content-type': 'application/json' } })
    t.equal(opened.status === 200, direct.status === 200, `${k} levels: opened only if the rewriter accepts the body it makes (${direct.status})`)
    if (k === 61) t.equal(opened.status, 200, '61 levels under three fit the cap of 64')
    else t.equal((opened.json() as { error: string }).error, 'open_failed', `${k} levels under three do not`)
  }
  t.equal(bodies.filter((b) => b.toString().startsWith('{"a"')).length, 2, 'only the bodies within the cap reached the upstream')
})
