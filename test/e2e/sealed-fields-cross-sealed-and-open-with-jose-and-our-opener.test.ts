import { compactDecrypt, decodeProtectedHeader, importJWK } from 'jose'
import t from 'tap'
import { FieldOpener } from '../../src/crypto/field.js'
import { parseKeySet } from '../../src/crypto/keys.js'
import { metricValue } from '../helpers/harness.js'
import {
  CANARY,
  canaryRecord,
  leaksCanary,
  recordingHandler,
  SENSITIVE_FIELDS,
  SPONSOR_APP,
  startSealing,
  tempDir,
  writeKeyFiles,
} from '../helpers/sealing.js'

const CRIT = { 'ecl.route': true, 'ecl.ptr': true, 'ecl.rid': true }
const JWE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/

t.test('fields listed for sealing reach the upstream as compact JWE that jose and our opener both open', async (t) => {
  const dir = await tempDir()
  const keys = await writeKeyFiles(dir, 'trusted-host')
  const bodies: Buffer[] = []
  const s = await startSealing({
    dir,
    keys: { 'trusted-host': { file: keys.publicPath } },
    handler: recordingHandler(bodies),
    routes: [
      {
        name: 'accreditations',
        methods: ['POST'],
        path: '/v1/accreditations',
        allow: [SPONSOR_APP],
        upstream: 'backend',
        transforms: { request: [{ type: 'seal', recipients: 'trusted-host', context: 'accreditations', fields: [...SENSITIVE_FIELDS] }] },
      },
      {
        name: 'batch',
        methods: ['POST'],
        path: '/v1/batch',
        allow: [SPONSOR_APP],
        upstream: 'backend',
        transforms: {
          request: [
            {
              type: 'seal',
              recipients: 'trusted-host',
              fields: SENSITIVE_FIELDS.map((f) => `/records/*${f}`),
              records: { pattern: '/records/*', id: 'id' },
            },
          ],
        },
      },
    ],
  })
  t.teardown(s.close)
  const privateKey = await importJWK(keys.privateJwks.keys[0]!, 'ECDH-ES+A256KW')
  const opener = new FieldOpener(parseKeySet(keys.privateJwks, { requirePrivate: true }))

  // A document, with an escaped member name and untargeted bytes that must pass byte for byte.
  const record = canaryRecord('A-1')
  const sent = `{ "pass\\u0070ort" : ${JSON.stringify(CANARY.passport)},"name":${JSON.stringify(CANARY.name)},"birthDate":${JSON.stringify(CANARY.birthDate)},"email":${JSON.stringify(record.email)},"phone":${JSON.stringify(record.phone)},"policeUnit":${JSON.stringify(record.policeUnit)},"status":"pending","nested":{"name":"not targeted"} }`
  const res = await s.gw.request('/v1/accreditations', { method: 'POST', body: sent, headers: { 'content-type': 'application/json; charset=utf-8' } })
  t.equal(res.status, 200)
  const seen = bodies[0]!.toString('utf8')
  t.equal(leaksCanary(seen), undefined, 'no sensitive value reached the upstream in plaintext')
  const doc = JSON.parse(seen) as Record<string, unknown>
  t.equal(doc['status'], 'pending', 'untargeted members unchanged')
  t.same(doc['nested'], { name: 'not targeted' }, 'a member of the same name elsewhere is not targeted')
  t.ok(seen.startsWith('{ "pass\\u0070ort" : "'), 'bytes around a sealed value pass exactly as sent')
  const expected: Record<string, string> = {
    passport: CANARY.passport,
    name: CANARY.name,
    birthDate: CANARY.birthDate,
    email: record.email as string,
    phone: record.phone as string,
    policeUnit: record.policeUnit as string,
  }
  for (const [member, value] of Object.entries(expected)) {
    const jwe = doc[member]
    t.match(jwe, JWE, `${member} is a compact JWE`)
    const header = decodeProtectedHeader(jwe as string)
    t.equal(header['ecl.route'], 'accreditations')
    t.equal(header['ecl.ptr'], `/${member}`)
    t.equal(header.kid, keys.publicJwks.current)
    const out = await compactDecrypt(jwe as string, privateKey, { crit: CRIT, keyManagementAlgorithms: ['ECDH-ES+A256KW'] })
    t.equal(new TextDecoder().decode(out.plaintext), JSON.stringify(value), `jose opens ${member} to its exact JSON text`)
    t.equal(opener.open(jwe as string, { route: 'accreditations', ptr: `/${member}` }).toString(), JSON.stringify(value), `our opener too`)
  }
  // Every field of the message shares one ephemeral key (the sealing window's: one agreement per
  // window and recipient, docs/sealing.md; a six-field message is sealed well within one window).
  const epks = new Set(Object.keys(expected).map((m) => JSON.stringify(decodeProtectedHeader(doc[m] as string).epk)))
  t.equal(epks.size, 1, 'one ephemeral key for the whole message')

  // Records: each value is bound to its record id and its place inside the record; the route name
  // is the default context.
  const batch = { records: [canaryRecord('r-1', '-1'), canaryRecord(2, '-2'), { id: 'r-3', status: 'no sensitive field' }] }
  const res2 = await s.gw.request('/v1/batch', { method: 'POST', body: JSON.stringify(batch), headers: { 'content-type': 'application/json' } })
  t.equal(res2.status, 200)
  const seen2 = bodies[1]!.toString('utf8')
  t.equal(leaksCanary(seen2), undefined, 'no plaintext in a batch either')
  const out2 = JSON.parse(seen2) as { records: Array<Record<string, unknown>> }
  t.same(out2.records[2], { id: 'r-3', status: 'no sensitive field' }, 'absent fields are fine')
  const h = decodeProtectedHeader(out2.records[1]!['passport'] as string)
  t.equal(h['ecl.route'], 'batch')
  t.equal(h['ecl.ptr'], '/records/*/passport')
  t.equal(h['ecl.rid'], '2', 'a numeric id is bound as its decimal string')
  const opened = await compactDecrypt(out2.records[0]!['email'] as string, privateKey, { crit: CRIT })
  t.equal(new TextDecoder().decode(opened.plaintext), JSON.stringify(`${CANARY.email}-1`))

  // Nothing sensitive in the logs or the metrics, and the work shows in the metrics.
  const metrics = await s.gw.metrics()
  t.equal(leaksCanary(s.gw.logs.text()), undefined, 'no canary in the gateway log')
  t.equal(leaksCanary(metrics), undefined, 'no canary in /metrics')
  t.equal(metricValue(metrics, 'ecluse_sealed_fields_total', { route: 'accreditations', op: 'seal' }), 6)
  t.equal(metricValue(metrics, 'ecluse_sealed_fields_total', { route: 'batch', op: 'seal' }), 12)
  t.equal(metricValue(metrics, 'ecluse_crypto_operations_total', { op: 'seal', kind: 'field', result: 'ok' }), 18)
  t.ok(metricValue(metrics, 'ecluse_crypto_bytes_total', { op: 'seal', kind: 'field' }) > 300, 'plaintext bytes counted')
  t.equal(metricValue(metrics, 'ecluse_crypto_duration_seconds_count', { op: 'seal', kind: 'field' }), 2, 'one observation per message')
})
