import { gzipSync } from 'node:zlib'
import t from 'tap'
import { metricValue } from '../helpers/harness.js'
import { CANARY, canaryRecord, leaksCanary, SPONSOR_APP, startSealing, tempDir, writeKeyFiles } from '../helpers/sealing.js'

const record = JSON.stringify(canaryRecord('r-1'))
const json = 'application/json'

/** What the upstream answers for each case: a body a field or body transform cannot inspect safely. */
const answers: Record<string, { headers: Record<string, string>; body: Buffer }> = {
  gzip: { headers: { 'content-type': json, 'content-encoding': 'gzip' }, body: gzipSync(record) },
  'identity-then-gzip': { headers: { 'content-type': json, 'content-encoding': 'identity, gzip' }, body: gzipSync(record) },
  latin1: { headers: { 'content-type': 'application/json; charset=iso-8859-1' }, body: Buffer.from(record, 'latin1') },
  utf16: { headers: { 'content-type': 'application/json; charset=utf-16' }, body: Buffer.from(record, 'utf16le') },
  // Found by a re-review: a charset the gateway does not relay must not be dropped before the steps
  // read the type, or they would read UTF-7 (`+AHA-assport`) as UTF-8 and miss the member.
  utf7: { headers: { 'content-type': 'application/json; charset=utf-7' }, body: Buffer.from(record) },
  'unknown-charset': { headers: { 'content-type': 'application/json; charset=x-internal-7' }, body: Buffer.from(record) },
  'text-plain': { headers: { 'content-type': 'text/plain' }, body: Buffer.from(record) },
  untyped: { headers: {}, body: Buffer.from(record) },
}

t.test('a response the transforms cannot read (compressed, another charset, not JSON, not sealed) is a 502 transform_failed and none of its body crosses', async (t) => {
  const dir = await tempDir()
  const keys = await writeKeyFiles(dir, 'th')
  const fields = ['/name', '/passport', '/email']
  const s = await startSealing({
    dir,
    keys: { th: { file: keys.publicPath }, 'th-private': { file: keys.privatePath, private: true } },
    handler: (req, res) => {
      const a = answers[(req.url ?? '').split('/').at(-1)!]!
      res.writeHead(200, { ...a.headers, 'content-length': a.body.length })
      res.end(a.body)
    },
    routes: [
      // The sidecar's side: seal the service's plaintext on the way back.
      { name: 'seal', methods: ['GET'], path: '/v1/seal/:case', allow: [SPONSOR_APP], upstream: 'backend', transforms: { response: [{ type: 'seal', recipients: 'th', fields }] } },
      // The edge's side: require sealed values in what comes back.
      { name: 'check', methods: ['GET'], path: '/v1/check/:case', allow: [SPONSOR_APP], upstream: 'backend', transforms: { response: [{ type: 'require-sealed', recipients: 'th', fields }] } },
      // Whole bodies: seal-body refuses a content coding; open-body anything but a sealed stream.
      { name: 'seal-body', methods: ['GET'], path: '/v1/seal-body/:case', allow: [SPONSOR_APP], upstream: 'backend', transforms: { response: [{ type: 'seal-body', recipients: 'th' }] } },
      { name: 'open-body', methods: ['GET'], path: '/v1/open-body/:case', allow: [SPONSOR_APP], upstream: 'backend', transforms: { response: [{ type: 'open-body', keys: 'th-private' }] } },
    ],
  })
  t.teardown(s.close)

  const requests: Array<[route: string, answer: string]> = [
    ...Object.keys(answers).flatMap((a) => [['seal', a], ['check', a]] as Array<[string, string]>),
    ['seal-body', 'gzip'],
    ['seal-body', 'identity-then-gzip'],
    ['open-body', 'text-plain'],
    ['open-body', 'gzip'],
  ]
  const gzipped = gzipSync(record)
  for (const [route, answer] of requests) {
    const what = `${route} / ${answer}`
    const res = await s.gw.request(`/v1/${route}/${answer}`)
    t.equal(res.status, 502, `${what}: 502`)
    const body = res.json() as Record<string, unknown>
    t.same(Object.keys(body).sort(), ['error', 'requestId'], `${what}: the terse error body and nothing else`)
    t.equal(body['error'], 'transform_failed', `${what}: transform_failed`)
    t.equal(res.headers['content-encoding'], undefined, `${what}: no coding carried over`)
    t.equal(leaksCanary(res.text), undefined, `${what}: no plaintext`)
    t.notOk(res.body.includes(gzipped.subarray(10, 40)), `${what}: none of the compressed body`)
    const refused = s.gw.logs.find('request refused').filter((l) => l['reqId'] === body['requestId'])
    t.equal(refused.length, 1, `${what}: logged`)
    t.equal(refused[0]?.['code'], 'transform_failed')
    t.match(String(refused[0]?.['detail']), /^unsupported_media_type: /, `${what}: the underlying code is in the log`)
  }
  t.equal(s.upstream.hits, requests.length, 'each request did reach the upstream: it is its answer that was refused')
  t.equal(s.gw.logs.find('response aborted mid-stream').length, 0, 'refused before a byte went out, not aborted')

  const metrics = await s.gw.metrics()
  const perRoute = { seal: Object.keys(answers).length, check: Object.keys(answers).length, 'seal-body': 2, 'open-body': 2 }
  for (const [route, n] of Object.entries(perRoute)) {
    t.equal(metricValue(metrics, 'ecluse_transform_refusals_total', { route, reason: 'unsupported_media_type' }), n, `${route}: refusals counted`)
    t.equal(metricValue(metrics, 'ecluse_responses_total', { side: 'sponsor', route, status_class: '5xx' }), n)
  }
  t.equal(metricValue(metrics, 'ecluse_sealed_fields_total', { route: 'seal', op: 'seal' }), 0, 'nothing was sealed from a body that was not read')
  t.equal(leaksCanary(s.gw.logs.text()), undefined, 'no canary in the log')
  t.equal(leaksCanary(metrics), undefined, 'no canary in /metrics')
  t.notOk(s.gw.logs.text().includes(CANARY.passport), 'the passport is nowhere')
})
