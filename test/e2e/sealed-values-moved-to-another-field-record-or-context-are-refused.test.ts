import t from 'tap'
import { FieldSealer } from '../../src/crypto/field.js'
import { parseKeySet } from '../../src/crypto/keys.js'
import { CANARY, leaksCanary, recordingHandler, SPONSOR_APP, startSealing, tempDir, writeKeyFiles } from '../helpers/sealing.js'

const fields = ['/records/*/name', '/records/*/passport']
const records = { pattern: '/records/*', id: 'id' }

t.test('a sealed value opens only in its own record, member and context, on open and on require-sealed', async (t) => {
  const dir = await tempDir()
  const keys = await writeKeyFiles(dir, 'th')
  const other = await writeKeyFiles(dir, 'other')
  const bodies: Buffer[] = []
  const s = await startSealing({
    dir,
    handler: recordingHandler(bodies),
    keys: { th: { file: keys.publicPath }, 'th-private': { file: keys.privatePath, private: true } },
    routes: [
      {
        name: 'open',
        methods: ['POST'],
        path: '/v1/open',
        allow: [SPONSOR_APP],
        upstream: 'backend',
        transforms: { request: [{ type: 'open', keys: 'th-private', context: 'acc', fields, records }] },
      },
      {
        name: 'verify',
        methods: ['POST'],
        path: '/v1/verify',
        allow: [SPONSOR_APP],
        upstream: 'backend',
        transforms: { request: [{ type: 'require-sealed', recipients: 'th', context: 'acc', fields, records }] },
      },
    ],
  })
  t.teardown(s.close)
  const pub = parseKeySet(keys.publicJwks, { publicOnly: true })
  const seal = (value: string, ptr: string, rid: string, route = 'acc', set = pub) =>
    new FieldSealer(set, { route }).seal(Buffer.from(JSON.stringify(value)), { ptr, rid })

  const good = { records: [{ id: 'r-1', name: seal(CANARY.name, '/records/*/name', 'r-1'), passport: seal(CANARY.passport, '/records/*/passport', 'r-1') }] }
  const cases: Array<[string, unknown]> = [
    ['moved to another member of its record', { records: [{ id: 'r-1', name: seal(CANARY.passport, '/records/*/passport', 'r-1') }] }],
    ['moved to another record', { records: [{ id: 'r-2', passport: seal(CANARY.passport, '/records/*/passport', 'r-1') }] }],
    ['sealed for another context', { records: [{ id: 'r-1', passport: seal(CANARY.passport, '/records/*/passport', 'r-1', 'elsewhere') }] }],
    ['sealed for a key the gateway does not know', { records: [{ id: 'r-1', passport: seal(CANARY.passport, '/records/*/passport', 'r-1', 'acc', parseKeySet(other.publicJwks)) }] }],
    ['sent in plaintext', { records: [{ id: 'r-1', passport: CANARY.passport }] }],
    ['a number where a sealed value belongs', { records: [{ id: 'r-1', passport: 19071234 }] }],
    ['an object where a sealed value belongs', { records: [{ id: 'r-1', passport: { value: CANARY.passport } }] }],
  ]
  // Tampering shows only to the holder of the private key: require-sealed checks shape, key and
  // binding with public keys, open authenticates.
  const tampered = { records: [{ id: 'r-1', passport: `${good.records[0]!.passport.slice(0, -3)}AAA` }] }

  const post = (path: string, doc: unknown) =>
    s.gw.request(path, { method: 'POST', body: JSON.stringify(doc), headers: { 'content-type': 'application/json' } })

  for (const [what, doc] of cases) {
    const opened = await post('/v1/open', doc)
    t.equal(opened.status, 400, `open: ${what} → 400`)
    t.same(opened.json(), { error: 'open_failed', requestId: opened.headers['x-request-id'] }, `open: ${what} → open_failed, nothing else`)
    const verified = await post('/v1/verify', doc)
    t.equal(verified.status, 422, `require-sealed: ${what} → 422`)
    t.equal((verified.json() as { error: string }).error, 'plaintext_refused', `require-sealed: ${what} → plaintext_refused`)
    t.equal(leaksCanary(opened.text + verified.text), undefined, 'no value in the error bodies')
  }
  const tamperedOpen = await post('/v1/open', tampered)
  t.equal(tamperedOpen.status, 400)
  t.equal((tamperedOpen.json() as { error: string }).error, 'open_failed', 'a tampered value does not open')
  t.equal(s.upstream.hits, 0, 'no refused body reached the upstream at all')

  const noId = await post('/v1/verify', { records: [{ passport: good.records[0]!.passport }] })
  t.equal(noId.status, 422)
  t.equal((noId.json() as { error: string }).error, 'record_id_missing', 'a record without its id cannot be checked')
  t.equal(s.upstream.hits, 0)

  const ok = await post('/v1/verify', good)
  t.equal(ok.status, 200, 'in its place, the sealed value is accepted')
  t.same(JSON.parse(bodies[0]!.toString()), good, 'and forwarded unchanged')
  const okOpen = await post('/v1/open', good)
  t.equal(okOpen.status, 200, 'and opens')
  t.same(JSON.parse(bodies[1]!.toString()), { records: [{ id: 'r-1', name: CANARY.name, passport: CANARY.passport }] })

  // Records may be reordered between sealing and opening: the binding is the record id, not its index.
  const second = { id: 'r-0', passport: seal(`${CANARY.passport}-0`, '/records/*/passport', 'r-0') }
  const reordered = await post('/v1/open', { records: [second, good.records[0]] })
  t.equal(reordered.status, 200)

  t.equal(leaksCanary(s.gw.logs.text()), undefined, 'no canary in the log')
  t.equal(leaksCanary(await s.gw.metrics()), undefined, 'no canary in /metrics')
})

t.test('in NDJSON without records, a sealed value swapped with the same member of another line does not open', async (t) => {
  // Each line's `/ssn` was bound as `/ssn` alone: two lines' values could trade places and open.
  const dir = await tempDir()
  const keys = await writeKeyFiles(dir, 'th')
  const bodies: Buffer[] = []
  const step = { context: 'acc', fields: ['/ssn'] }
  const route = (name: string, transform: Record<string, unknown>) => ({
    name,
    methods: ['POST'],
    path: `/v1/${name}`,
    allow: [SPONSOR_APP],
    upstream: 'backend',
    transforms: { request: [{ ...transform, ...step }] },
  })
  const s = await startSealing({
    dir,
    handler: recordingHandler(bodies),
    keys: { th: { file: keys.publicPath }, 'th-private': { file: keys.privatePath, private: true } },
    routes: [
      route('seal', { type: 'seal', recipients: 'th' }),
      route('verify', { type: 'require-sealed', recipients: 'th' }),
      route('open', { type: 'open', keys: 'th-private' }),
    ],
  })
  t.teardown(s.close)
  const post = (path: string, body: string) =>
    s.gw.request(path, { method: 'POST', body, headers: { 'content-type': 'application/x-ndjson' } })

  const plain = `{"who":"alice","ssn":"${CANARY.passport}-a"}\n{"who":"mallory","ssn":"${CANARY.passport}-m"}\n`
  t.equal((await post('/v1/seal', plain)).status, 200)
  const sealedLines = bodies[0]!.toString().split('\n').filter(Boolean).map((l) => JSON.parse(l) as { who: string; ssn: string })
  t.equal(sealedLines.length, 2)
  const swapped = `${JSON.stringify({ who: 'alice', ssn: sealedLines[1]!.ssn })}\n${JSON.stringify({ who: 'mallory', ssn: sealedLines[0]!.ssn })}\n`

  const opened = await post('/v1/open', swapped)
  t.equal(opened.status, 400, 'swapped: open refuses')
  t.equal((opened.json() as { error: string }).error, 'open_failed')
  const verified = await post('/v1/verify', swapped)
  t.equal(verified.status, 422, 'swapped: require-sealed refuses')
  t.equal((verified.json() as { error: string }).error, 'plaintext_refused')
  t.equal(bodies.length, 1, 'no swapped body reached the upstream')

  const inPlace = await post('/v1/open', bodies[0]!.toString())
  t.equal(inPlace.status, 200, 'in their own lines, the values open')
  t.equal(bodies[1]!.toString(), plain, 'to the exact plaintext')
  t.equal(leaksCanary(opened.text + verified.text + s.gw.logs.text()), undefined, 'no value in the errors or the log')
})
