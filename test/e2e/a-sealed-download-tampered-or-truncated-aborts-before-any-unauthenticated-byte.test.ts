import { Readable } from 'node:stream'
import t from 'tap'
import { request } from 'undici'
import { parseKeySet } from '../../src/crypto/keys.js'
import { createSealStream, RECORD_OVERHEAD } from '../../src/crypto/stream.js'
import { metricValue } from '../helpers/harness.js'
import { leaksCanary, SPONSOR_APP, startSealing, tempDir, writeKeyFiles } from '../helpers/sealing.js'

const RS = 4096
const FULL = 40
/** A distinctive marker repeated through record `i`'s plaintext. */
const marker = (i: number) => `SECRET-REC-${i}-`

/** 40 full records and a partial last one, each filled with its own marker. */
function plaintext(): Buffer {
  const records = []
  for (let i = 0; i <= FULL; i++) {
    const size = i === FULL ? 1000 : RS
    records.push(Buffer.from(marker(i).repeat(Math.ceil(size / marker(i).length))).subarray(0, size))
  }
  return Buffer.concat(records)
}

async function sealed(keys: ReturnType<typeof parseKeySet>, body: Buffer, route: string, recordSize = RS): Promise<Buffer> {
  const out: Buffer[] = []
  for await (const c of Readable.from([body]).pipe(createSealStream(keys, { contentType: 'image/png', recordSize, route }))) out.push(c as Buffer)
  return Buffer.concat(out)
}

t.test('a sealed download that is tampered with or truncated aborts, and no unauthenticated record reaches the sponsor', async (t) => {
  const dir = await tempDir()
  const keys = await writeKeyFiles(dir, 'th')
  const publicSet = parseKeySet(keys.publicJwks, { publicOnly: true })
  const plain = plaintext()
  const good = await sealed(publicSet, plain, 'photos')
  const header = 12 + good.readUInt16BE(10)
  const recordAt = (i: number) => header + i * (RS + RECORD_OVERHEAD)
  const flipped = Buffer.from(good)
  flipped[recordAt(30) + 100]! ^= 0x01

  // What the upstream serves, and how much of the plaintext the opener may ever release before the
  // damage: only whole records that verified, never the damaged one (`withheld`).
  const cases: Record<string, { bytes: Buffer; releasable: number; withheld: number; pauseAt?: number }> = {
    'a bit flipped in record 30': { bytes: flipped, releasable: 30 * RS, withheld: 30, pauseAt: recordAt(20) },
    'truncated inside the last record': { bytes: good.subarray(0, good.length - 5), releasable: FULL * RS, withheld: FULL, pauseAt: recordAt(20) },
    'truncated at a record boundary': { bytes: good.subarray(0, recordAt(FULL)), releasable: FULL * RS, withheld: FULL, pauseAt: recordAt(20) },
    'trailing bytes after the last record': { bytes: Buffer.concat([good, Buffer.alloc(32)]), releasable: FULL * RS, withheld: FULL, pauseAt: recordAt(20) },
    'sealed for another context': { bytes: await sealed(publicSet, plain, 'documents'), releasable: 0, withheld: 0 },
    // Whoever holds the public key chooses the record size; tiny records multiply the CPU per byte.
    'sealed in records under minRecordSize': { bytes: await sealed(publicSet, plain, 'photos', 1024), releasable: 0, withheld: 0 },
  }
  let release: () => void = () => {}
  const s = await startSealing({
    dir,
    keys: { 'th-private': { file: keys.privatePath, private: true } },
    handler: (req, res) => {
      const c = cases[decodeURIComponent((req.url ?? '').split('/').at(-1)!)]!
      // Framing is clean (an exact content-length): only the opener can catch the damage.
      res.writeHead(200, { 'content-type': 'application/vnd.ecluse.sealed', 'content-length': c.bytes.length })
      if (c.pauseAt === undefined) return void res.end(c.bytes)
      // The rest only once the sponsor is receiving: the failure comes after the status line.
      res.write(c.bytes.subarray(0, c.pauseAt))
      release = () => {
        release = () => {}
        res.end(c.bytes.subarray(c.pauseAt))
      }
    },
    routes: [
      {
        name: 'photos',
        methods: ['GET'],
        path: '/v1/photos/:case',
        allow: [SPONSOR_APP],
        upstream: 'backend',
        transforms: { response: [{ type: 'open-body', keys: 'th-private' }] },
      },
      {
        name: 'small-photos',
        methods: ['GET'],
        path: '/v1/small-photos/:case',
        allow: [SPONSOR_APP],
        upstream: 'backend',
        transforms: { response: [{ type: 'open-body', keys: 'th-private', context: 'photos', minRecordSize: 1024 }] },
      },
    ],
  })
  t.teardown(s.close)

  // The intact stream, as a baseline: it opens completely.
  cases['intact'] = { bytes: good, releasable: plain.length, withheld: -1 }
  const intact = await s.gw.request('/v1/photos/intact')
  t.equal(intact.status, 200)
  t.equal(intact.headers['content-type'], 'image/png', 'the sealed media type is restored')
  t.ok(intact.body.equals(plain), 'the intact stream opens byte for byte')
  delete cases['intact']
  const small = await s.gw.request(`/v1/small-photos/${encodeURIComponent('sealed in records under minRecordSize')}`)
  t.equal(small.status, 200, 'records of 1 KiB open on a route whose minRecordSize allows them')
  t.ok(small.body.equals(plain), 'byte for byte')

  for (const [what, c] of Object.entries(cases)) {
    const outcome = await request(`${s.gw.sponsorOrigin}/v1/photos/${encodeURIComponent(what)}`, { dispatcher: s.gw.agent() }).then(
      (res) =>
        new Promise<{ status: number; completed: boolean; received: Buffer; type: unknown }>((resolve) => {
          const chunks: Buffer[] = []
          let got = 0
          res.body.on('data', (chunk: Buffer) => {
            chunks.push(chunk)
            got += chunk.length
            if (got >= 2 * RS) release()
          })
          const done = (completed: boolean) => resolve({ status: res.statusCode, completed, received: Buffer.concat(chunks), type: res.headers['content-type'] })
          res.body.once('end', () => done(true))
          res.body.once('error', () => done(false))
        }),
      () => ({ status: 0, completed: false, received: Buffer.alloc(0), type: undefined }),
    )
    t.notOk(outcome.status === 200 && outcome.completed, `${what}: never a complete 200`)
    if (c.pauseAt !== undefined) {
      t.equal(outcome.status, 200, `${what}: the status line had gone out (verified records were streaming)`)
      t.equal(outcome.type, 'image/png')
      t.ok(outcome.received.length >= 2 * RS, `${what}: verified records reached the sponsor (${outcome.received.length} bytes)`)
    } else {
      // Refused before the status line (the stream's header does not open): a clean 502, whose
      // body is the terse error and nothing of the upstream's.
      t.equal(outcome.status, 502, `${what}: refused before the status line is a 502`)
      t.same(JSON.parse(outcome.received.toString('utf8')).error, 'transform_failed', `${what}: transform_failed`)
      t.same(Object.keys(JSON.parse(outcome.received.toString('utf8'))), ['error', 'requestId'], `${what}: and nothing else`)
      continue
    }
    t.ok(outcome.received.length <= c.releasable, `${what}: at most the records before the damage (${outcome.received.length} <= ${c.releasable})`)
    t.ok(plain.subarray(0, outcome.received.length).equals(outcome.received), `${what}: what arrived is an exact prefix of the plaintext`)
    if (c.withheld >= 0) t.notOk(outcome.received.includes(marker(c.withheld)), `${what}: nothing of the damaged record ${c.withheld}`)
    t.equal(leaksCanary(outcome.received.toString('latin1')), undefined)
  }

  for (let i = 0; i < 300 && s.gw.logs.find('access').length < 6; i++) await new Promise((r) => setTimeout(r, 10))
  const early = Object.values(cases).filter((c) => c.pauseAt === undefined).length
  const aborted = s.gw.logs.find('response aborted mid-stream')
  t.equal(aborted.length, Object.keys(cases).length - early, 'every case after the status line logged as an abort')
  const refused = s.gw.logs.find('request refused')
  t.equal(refused.length, early, 'the case before it logged as a refusal')
  for (const l of [...aborted, ...refused]) {
    t.equal(l['code'], 'transform_failed')
    t.match(String(l['err'] ?? l['detail']), /^open_failed: /, 'the underlying code is in the log')
  }
  t.equal(s.gw.logs.find('sponsor request refused by the HTTP parser').length, 0)
  const n = Object.keys(cases).length
  const metrics = await s.gw.metrics()
  t.equal(metricValue(metrics, 'ecluse_crypto_operations_total', { op: 'open', kind: 'stream', result: 'failed' }), n)
  t.equal(metricValue(metrics, 'ecluse_crypto_operations_total', { op: 'open', kind: 'stream', result: 'ok' }), 2)
  t.equal(metricValue(metrics, 'ecluse_transform_refusals_total', { route: 'photos', reason: 'open_failed' }), n)
  t.equal(metricValue(metrics, 'ecluse_responses_total', { side: 'sponsor', route: 'photos', status_class: 'aborted' }), n - early)
  t.equal(metricValue(metrics, 'ecluse_responses_total', { side: 'sponsor', route: 'photos', status_class: '5xx' }), early)
  const secrets = Array.from({ length: FULL + 1 }, (_, i) => marker(i))
  t.equal(leaksCanary(s.gw.logs.text(), secrets), undefined, 'no plaintext in the log')
  t.equal(leaksCanary(metrics, secrets), undefined, 'nor in /metrics')
})
