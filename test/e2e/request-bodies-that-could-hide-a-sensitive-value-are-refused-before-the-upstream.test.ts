import t from 'tap'
import { metricValue } from '../helpers/harness.js'
import { CANARY, leaksCanary, recordingHandler, SPONSOR_APP, startSealing, tempDir, writeKeyFiles } from '../helpers/sealing.js'

const fields = ['/name', '/passport', '/people/*/name']

t.test('every way a request could carry a listed field past the rewriter is refused and nothing reaches the upstream', async (t) => {
  const dir = await tempDir()
  const keys = await writeKeyFiles(dir, 'th')
  const bodies: Buffer[] = []
  // Every content-type line the upstream received, per request it received.
  const contentTypes: string[][] = []
  const record = recordingHandler(bodies)
  const s = await startSealing({
    dir,
    handler: (req, res) => {
      contentTypes.push(req.headersDistinct['content-type'] ?? [])
      record(req, res)
    },
    keys: { th: { file: keys.publicPath } },
    routes: [
      {
        name: 'seal',
        methods: ['POST'],
        path: '/v1/seal',
        allow: [SPONSOR_APP],
        upstream: 'backend',
        transforms: { request: [{ type: 'seal', recipients: 'th', fields, maxValueBytes: 4096 }] },
      },
      {
        name: 'seal-json-only',
        methods: ['POST'],
        path: '/v1/seal-json',
        allow: [SPONSOR_APP],
        upstream: 'backend',
        transforms: { request: [{ type: 'seal', recipients: 'th', fields, format: 'json' }] },
      },
      {
        name: 'seal-records',
        methods: ['POST'],
        path: '/v1/seal-records',
        allow: [SPONSOR_APP],
        upstream: 'backend',
        transforms: {
          request: [{ type: 'seal', recipients: 'th', fields: ['/people/*/phones/*'], records: { pattern: '/people/*', id: 'id' }, maxFieldsPerRecord: 2 }],
        },
      },
    ],
  })
  t.teardown(s.close)

  const P = JSON.stringify(CANARY.passport)
  const N = JSON.stringify(CANARY.name)
  const json = { 'content-type': 'application/json' }
  const cases: Array<[string, { headers: Record<string, string | string[]>; body: string | Buffer }, number, string]> = [
    ['a text/plain body', { headers: { 'content-type': 'text/plain' }, body: `{"passport":${P}}` }, 415, 'unsupported_media_type'],
    // Repeated, a singleton keeps its first value (as Node's req.headers), for the step and the upstream alike.
    ['two content-type lines, the first not JSON', { headers: { 'content-type': ['text/plain', 'application/json'] }, body: `{"passport":${P}}` }, 415, 'unsupported_media_type'],
    ['a body without content-type', { headers: {}, body: `{"passport":${P}}` }, 415, 'unsupported_media_type'],
    ['a latin-1 charset', { headers: { 'content-type': 'application/json; charset=iso-8859-1' }, body: `{"passport":${P}}` }, 415, 'unsupported_media_type'],
    ['a UTF-16 charset', { headers: { 'content-type': 'application/json;charset=utf-16' }, body: Buffer.from(`{"passport":${P}}`, 'utf16le') }, 415, 'unsupported_media_type'],
    ['two charsets', { headers: { 'content-type': 'application/json; charset=utf-8; charset=utf-8' }, body: `{"passport":${P}}` }, 415, 'unsupported_media_type'],
    ['an unknown media type parameter', { headers: { 'content-type': 'application/json; x=1' }, body: `{"passport":${P}}` }, 415, 'unsupported_media_type'],
    ['a gzip content-encoding', { headers: { ...json, 'content-encoding': 'gzip' }, body: `{"passport":${P}}` }, 415, 'unsupported_media_type'],
    ['stacked content-encodings', { headers: { ...json, 'content-encoding': 'identity, br' }, body: `{"passport":${P}}` }, 415, 'unsupported_media_type'],
    // RFC 6902 names the field in a string, where no pattern reaches it.
    ['a JSON Patch', { headers: { 'content-type': 'application/json-patch+json' }, body: `[{"op":"replace","path":"/passport","value":${P}}]` }, 415, 'unsupported_media_type'],
    ['a member written twice', { headers: json, body: `{"passport":"sealed-later","passport":${P}}` }, 400, 'json_invalid'],
    ['a member written twice, once escaped', { headers: json, body: `{"passport":${P},"pass\\u0070ort":"x"}` }, 400, 'json_invalid'],
    ['a name escaped as a surrogate pair trick', { headers: json, body: `{"name":${N},"\\u006eame":"x"}` }, 400, 'json_invalid'],
    ['a trailing comma', { headers: json, body: `{"passport":${P},}` }, 400, 'json_invalid'],
    ['a truncated body', { headers: json, body: `{"passport":${P}` }, 400, 'json_invalid'],
    ['a byte order mark', { headers: json, body: Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(`{"passport":${P}}`)]) }, 400, 'json_invalid'],
    ['invalid UTF-8 in a member name', { headers: json, body: Buffer.concat([Buffer.from('{"pass'), Buffer.from([0xc0, 0xaf]), Buffer.from(`":${P}}`)]) }, 400, 'json_invalid'],
    ['a second document after the first', { headers: json, body: `{"ok":1}{"passport":${P}}` }, 400, 'json_invalid'],
    ['single quotes', { headers: json, body: `{'passport':${P}}` }, 400, 'json_invalid'],
    ['a value over maxValueBytes', { headers: json, body: `{"passport":"${CANARY.passport}${'x'.repeat(5000)}"}` }, 413, 'value_too_large'],
  ]
  for (const [what, req, status, code] of cases) {
    const res = await s.gw.request('/v1/seal', { method: 'POST', ...req })
    t.equal(res.status, status, `${what} → ${status}`)
    t.equal((res.json() as { error: string }).error, code, `${what} → ${code}`)
    t.equal(leaksCanary(res.text), undefined, `${what}: the error does not echo the value`)
  }
  const json2 = await s.gw.request('/v1/seal-json', { method: 'POST', headers: { 'content-type': 'application/x-ndjson' }, body: `{"passport":${P}}\n` })
  t.equal(json2.status, 415, 'format: json refuses NDJSON')
  const phones = (n: number) => JSON.stringify({ people: [{ id: 'p-1', phones: Array.from({ length: n }, (_, i) => `${CANARY.phone}${i}`) }] })
  const tooMany = await s.gw.request('/v1/seal-records', { method: 'POST', headers: json, body: phones(3) })
  t.equal(tooMany.status, 413, 'a record with more values than maxFieldsPerRecord is refused')
  t.equal((tooMany.json() as { error: string }).error, 'value_too_large')
  t.equal(leaksCanary(tooMany.text), undefined)
  t.equal(s.upstream.hits, 0, 'not one refused request reached the upstream')

  // What is accepted: JSON media types with no charset or utf-8, identity coding, NDJSON by type.
  const accepted: Array<[string, Record<string, string | string[]>, string]> = [
    ['application/json', json, `{"passport":${P}}`],
    ['two content-type lines, the first JSON', { 'content-type': ['application/json', 'text/plain'] }, `{"passport":${P}}`],
    ['charset=UTF-8, quoted', { 'content-type': 'application/json; charset="UTF-8"' }, `{"passport":${P}}`],
    ['a +json type', { 'content-type': 'application/problem+json' }, `{"passport":${P}}`],
    ['identity coding', { ...json, 'content-encoding': 'identity' }, `{"passport":${P}}`],
    ['NDJSON by its type', { 'content-type': 'application/x-ndjson' }, `{"passport":${P}}\n{"name":${N},"people":[{"name":${N}}]}\n`],
  ]
  for (const [what, headers, body] of accepted) {
    const res = await s.gw.request('/v1/seal', { method: 'POST', headers, body })
    t.equal(res.status, 200, `${what} is accepted`)
  }
  t.same(contentTypes[1], ['application/json'], 'two content-type lines: the upstream gets the one the step read, once')
  const atCap = await s.gw.request('/v1/seal-records', { method: 'POST', headers: json, body: phones(2) })
  t.equal(atCap.status, 200, 'a record with as many values as maxFieldsPerRecord is accepted')
  t.equal(bodies.length, accepted.length + 1)
  for (const b of bodies) t.equal(leaksCanary(b.toString()), undefined, 'and sealed before it crossed')
  const ndjson = bodies[accepted.length - 1]!.toString().split('\n')
  t.equal(ndjson.length, 3, 'NDJSON keeps its lines')
  t.match(JSON.parse(ndjson[1]!).people[0].name, /^eyJ/, 'a wildcard field inside a line is sealed')

  t.equal(leaksCanary(s.gw.logs.text()), undefined, 'no canary in the log')
  const metrics = await s.gw.metrics()
  t.equal(leaksCanary(metrics), undefined, 'no canary in /metrics')
  t.equal(metricValue(metrics, 'ecluse_transform_refusals_total', { route: 'seal', reason: 'unsupported_media_type' }), 10)
  t.equal(metricValue(metrics, 'ecluse_transform_refusals_total', { route: 'seal', reason: 'json_invalid' }), 9)
  t.equal(metricValue(metrics, 'ecluse_transform_refusals_total', { route: 'seal', reason: 'value_too_large' }), 1)
  t.equal(metricValue(metrics, 'ecluse_transform_refusals_total', { route: 'seal-records', reason: 'value_too_large' }), 1)
})

t.test('a record id or a place too long to bind is the body’s fault: 400 json_invalid, no seal failure counted', async (t) => {
  // It was 502 seal_failed (and counted as one, which the seal-failure alert watches).
  const dir = await tempDir()
  const keys = await writeKeyFiles(dir, 'th')
  const bodies: Buffer[] = []
  const s = await startSealing({
    dir,
    handler: recordingHandler(bodies),
    keys: { th: { file: keys.publicPath } },
    routes: [
      {
        name: 'records',
        methods: ['POST'],
        path: '/v1/records',
        allow: [SPONSOR_APP],
        upstream: 'backend',
        transforms: { request: [{ type: 'seal', recipients: 'th', fields: ['/records/*/name'], records: { pattern: '/records/*', id: 'id' } }] },
      },
      {
        name: 'deep',
        methods: ['POST'],
        path: '/v1/deep',
        allow: [SPONSOR_APP],
        upstream: 'backend',
        transforms: { request: [{ type: 'seal', recipients: 'th', fields: ['/**/name'] }] },
      },
    ],
  })
  t.teardown(s.close)
  const post = (path: string, doc: unknown) =>
    s.gw.request(path, { method: 'POST', body: JSON.stringify(doc), headers: { 'content-type': 'application/json' } })
  const cases: Array<[string, string, unknown]> = [
    ['a record id of 1025 characters', '/v1/records', { records: [{ id: 'i'.repeat(1025), name: CANARY.name }] }],
    ['a record id of 200 control characters', '/v1/records', { records: [{ id: '\u0001'.repeat(200), name: CANARY.name }] }],
    ['a place under two 600-character names', '/v1/deep', { ['a'.repeat(600)]: { ['b'.repeat(600)]: { name: CANARY.name } } }],
  ]
  for (const [what, path, doc] of cases) {
    const res = await post(path, doc)
    t.equal(res.status, 400, `${what} → 400`)
    t.equal((res.json() as { error: string }).error, 'json_invalid', what)
  }
  t.equal(bodies.length, 0, 'nothing reached the upstream')
  const metrics = await s.gw.metrics()
  t.equal(metricValue(metrics, 'ecluse_crypto_operations_total', { op: 'seal', kind: 'field', result: 'failed' }), 0, 'no seal failure counted')
  const ok = await post('/v1/records', { records: [{ id: 'i'.repeat(1024), name: CANARY.name }] })
  t.equal(ok.status, 200, 'an id of 1024 characters binds')
  t.equal(metricValue(await s.gw.metrics(), 'ecluse_crypto_operations_total', { op: 'seal', kind: 'field', result: 'ok' }), 1, 'and is counted')
  t.equal(leaksCanary(s.gw.logs.text() + bodies.map(String).join('')), undefined)
})

t.test('a field the configuration spells out in full that is too long to bind is refused at boot, not per request', async (t) => {
  const { compileFieldRules } = await import('../../src/transform/json-fields.js')
  const compile = (fields: string[], records?: { pattern: string; id: string }) =>
    compileFieldRules({ fields, ...(records === undefined ? {} : { records }), format: 'auto', maxValueBytes: 65_536, maxRecordBytes: 1_048_576, maxFieldsPerRecord: 1000 })
  t.throws(() => compile([`/${'a'.repeat(1024)}`]), { code: 'config_invalid', message: /fields: "\/a{63}…" is too long to bind \(over 1024 bytes\)/ })
  t.throws(() => compile([`/records/*/${'b'.repeat(1020)}`], { pattern: '/records/*', id: 'id' }), { code: 'config_invalid', message: /too long to bind/ }, 'its record claim')
  t.doesNotThrow(() => compile([`/${'a'.repeat(1023)}`]), '1024 bytes with its slash')
  t.doesNotThrow(() => compile([`/*/${'a'.repeat(1023)}`]), 'a pattern with a `*` is judged per value')
})
