import t from 'tap'
import { request } from 'undici'
import { FieldSealer } from '../../src/crypto/field.js'
import { parseKeySet } from '../../src/crypto/keys.js'
import { metricValue } from '../helpers/harness.js'
import { CANARY, leaksCanary, SPONSOR_APP, startSealing, tempDir, writeKeyFiles } from '../helpers/sealing.js'

const RECORDS = 6000
/** The one record whose name arrives in plaintext, a few records before the end. */
const LEAKY = RECORDS - 5
const CONTEXT = 'accreditations'
const records = { pattern: '/records/*', id: 'id' }

t.test('a require-sealed field in plaintext near the end of a 6 MiB response: the sponsor sees an abort and never the value', async (t) => {
  const dir = await tempDir()
  const keys = await writeKeyFiles(dir, 'trusted-host')
  const publicSet = parseKeySet(keys.publicJwks, { publicOnly: true })

  // The body, built once: most records carry nothing sensitive, every tenth carries properly sealed
  // values (bound to its record), and one near the end carries the canary in plaintext.
  const sealer = new FieldSealer(publicSet, { route: CONTEXT })
  const pad = 'x'.repeat(900)
  const parts: string[] = []
  for (let i = 0; i < RECORDS; i++) {
    const id = `r-${i}`
    let sensitive = ''
    if (i === LEAKY) sensitive = `,"name":${JSON.stringify(CANARY.name)},"passport":${JSON.stringify(CANARY.passport)}`
    else if (i % 10 === 0) {
      const name = sealer.seal(Buffer.from(JSON.stringify(`sealed name ${i}`)), { ptr: '/records/*/name', rid: id })
      sensitive = `,"name":"${name}"`
    }
    parts.push(`{"id":"${id}","status":"accredited"${sensitive},"note":"${pad}"}`)
  }
  const body = Buffer.from(`{"records":[${parts.join(',')}]}`)
  const cut = body.indexOf(CANARY.name) - 2000 // the tail, sent only once the sponsor is receiving

  let headersSeen!: () => void
  const sponsorReceiving = new Promise<void>((resolve) => {
    headersSeen = resolve
  })
  const s = await startSealing({
    dir,
    keys: { 'trusted-host': { file: keys.publicPath } },
    handler: (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' })
      res.write(body.subarray(0, cut))
      void sponsorReceiving.then(() => {
        res.end(body.subarray(cut))
      })
    },
    routes: [
      {
        name: 'list',
        methods: ['GET'],
        path: '/v1/accreditations',
        allow: [SPONSOR_APP],
        upstream: 'backend',
        transforms: {
          response: [{ type: 'require-sealed', recipients: 'trusted-host', context: CONTEXT, fields: ['/records/*/name', '/records/*/passport'], records }],
        },
      },
    ],
  })
  t.teardown(s.close)

  const res = await request(`${s.gw.sponsorOrigin}/v1/accreditations`, { dispatcher: s.gw.agent() })
  t.equal(res.statusCode, 200, 'the status line went out before the plaintext value arrived')
  // The tail is released once the sponsor has received a megabyte: the gateway is provably streaming.
  const chunks: Buffer[] = []
  let got = 0
  const rest = await new Promise<{ completed: boolean }>((resolve) => {
    res.body.on('data', (chunk: Buffer) => {
      chunks.push(chunk)
      got += chunk.length
      if (got >= 1024 * 1024) headersSeen()
    })
    res.body.once('end', () => resolve({ completed: true }))
    res.body.once('error', () => resolve({ completed: false }))
  })
  const received = Buffer.concat(chunks)

  t.notOk(rest.completed, 'the sponsor sees an aborted response, never a complete 200')
  t.equal(leaksCanary(received.toString('latin1')), undefined, 'not one plaintext byte of the value reached the sponsor')
  t.ok(body.subarray(0, received.length).equals(received), 'what did arrive is an exact prefix of the verified records')
  t.ok(received.length < body.indexOf(CANARY.name), 'nothing from the refused value on')
  t.ok(got >= 1024 * 1024, `records verified before the refusal were streamed (${received.length} of ${body.length} bytes)`)

  await t.resolves(waitFor(() => s.gw.logs.find('access').length === 1), 'the exchange finished')
  const aborted = s.gw.logs.find('response aborted mid-stream')
  t.equal(aborted.length, 1, 'logged as an abort')
  t.equal(aborted[0]!['code'], 'transform_failed')
  // Where the value sits: its array index is structure, not content (a member name a * matched would show as *).
  t.match(String(aborted[0]!['err']), /^plaintext_refused: \/records\/\d+\/name: /, 'the underlying code and the pointer are in the log')
  t.equal(s.gw.logs.find('access')[0]!['aborted'], true)
  t.equal(s.gw.logs.find('sponsor request refused by the HTTP parser').length, 0, 'a response refusal is not reported as a client error')
  t.equal(leaksCanary(s.gw.logs.text()), undefined, 'no canary in the log')
  const metrics = await s.gw.metrics()
  t.equal(leaksCanary(metrics), undefined, 'no canary in /metrics')
  t.equal(metricValue(metrics, 'ecluse_transform_refusals_total', { route: 'list', reason: 'plaintext_refused' }), 1)
  t.equal(metricValue(metrics, 'ecluse_responses_total', { side: 'sponsor', route: 'list', status_class: 'aborted' }), 1)
  t.equal(metricValue(metrics, 'ecluse_rejected_requests_total', { reason: 'bad_request' }), 0, 'no client request counted as rejected')
  t.equal(metricValue(metrics, 'ecluse_sealed_fields_total', { route: 'list', op: 'verify' }), Math.ceil(LEAKY / 10), 'the sealed values before it were verified')
})

async function waitFor(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 500 && !cond(); i++) await new Promise((r) => setTimeout(r, 10))
  if (!cond()) throw new Error('timed out')
}
