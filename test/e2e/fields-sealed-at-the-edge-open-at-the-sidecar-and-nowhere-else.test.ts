import t from 'tap'
import type { UpstreamHandler } from '../helpers/harness.js'
import {
  CANARY,
  canaryRecord,
  EDGE_GATEWAY,
  leaksCanary,
  SENSITIVE_FIELDS,
  SPONSOR_APP,
  startChain,
  tempDir,
  writeKeyFiles,
} from '../helpers/sealing.js'

const fields = SENSITIVE_FIELDS.map((f) => `/records/*${f}`)
const records = { pattern: '/records/*', id: 'id' }
const step = { context: 'accreditations', fields, records }

t.test('a batch sealed at the edge crosses the trusted network sealed and reaches the service in plaintext, and back', async (t) => {
  const dir = await tempDir()
  const keys = await writeKeyFiles(dir, 'trusted-host')
  const seenOnTheWire: string[] = []
  const seenByService: string[] = []
  // The service echoes the batch back with a new status: its response is sealed by the sidecar and
  // opened... nowhere (the edge holds no private key): the sponsor receives sealed values back.
  const handler: UpstreamHandler = (req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString()
      seenByService.push(text)
      const doc = JSON.parse(text) as { records: Array<Record<string, unknown>> }
      for (const r of doc.records) r['status'] = 'accredited'
      const body = JSON.stringify(doc)
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) })
      res.end(body)
    })
  }
  const chain = await startChain({
    dir,
    handler,
    edgeKeys: { 'trusted-host': { file: keys.publicPath } },
    sidecarKeys: { 'trusted-host-private': { file: keys.privatePath, private: true } },
    edgeRoutes: [
      {
        name: 'accreditations',
        methods: ['POST'],
        path: '/v1/accreditations',
        allow: [SPONSOR_APP],
        upstream: 'backend',
        transforms: {
          request: [{ type: 'seal', recipients: 'trusted-host', ...step }],
          // The edge checks what comes back: a plaintext value in the answer would be refused.
          response: [{ type: 'require-sealed', recipients: 'trusted-host', ...step }],
        },
      },
    ],
    sidecarRoutes: [
      {
        name: 'accreditations-in',
        methods: ['POST'],
        path: '/v1/accreditations',
        allow: [EDGE_GATEWAY],
        upstream: 'backend',
        transforms: {
          // Request: open for the service. Response (runs in reverse): re-seal what it returns.
          request: [
            { type: 'require-sealed', recipients: 'trusted-host-private', ...step },
            { type: 'open', keys: 'trusted-host-private', ...step },
          ],
          response: [{ type: 'seal', recipients: 'trusted-host-private', ...step }],
        },
      },
    ],
  })
  t.teardown(chain.close)
  // Capture what crosses between the edge and the sidecar, at the sidecar's door.
  chain.sidecar.gateway.proxy.handle = ((orig) =>
    function (this: unknown, req, res, expectContinue) {
      const chunks: Buffer[] = []
      req.on('data', (c: Buffer) => chunks.push(c))
      req.on('end', () => seenOnTheWire.push(Buffer.concat(chunks).toString()))
      return orig.call(chain.sidecar.gateway.proxy, req, res, expectContinue)
    })(chain.sidecar.gateway.proxy.handle) as typeof chain.sidecar.gateway.proxy.handle

  const batch = { records: [canaryRecord('r-1', '-1'), canaryRecord(42, '-2'), { id: 'r-3', note: 'nothing sensitive' }] }
  const res = await chain.edge.request('/v1/accreditations', { method: 'POST', body: JSON.stringify(batch), headers: { 'content-type': 'application/json' } })
  t.equal(res.status, 200, res.text.slice(0, 200))

  t.equal(seenByService.length, 1)
  t.same(JSON.parse(seenByService[0]!), batch, 'the service received exactly what the sponsor sent')
  t.equal(seenOnTheWire.length, 1)
  t.equal(leaksCanary(seenOnTheWire[0]!), undefined, 'between the gateways, every sensitive value was sealed')
  t.equal(leaksCanary(res.text), undefined, 'the answer crossed back sealed')
  const back = res.json() as { records: Array<Record<string, unknown>> }
  t.equal(back.records[0]!['status'], 'accredited', 'untargeted members pass both ways')
  t.match(back.records[1]!['passport'], /^eyJ/, 'the passport came back as a JWE')
  t.same(back.records[2], { id: 'r-3', note: 'nothing sensitive', status: 'accredited' })

  for (const [who, g] of [['edge', chain.edge], ['sidecar', chain.sidecar]] as const) {
    t.equal(leaksCanary(g.logs.text()), undefined, `no canary in the ${who} log`)
    t.equal(leaksCanary(await g.metrics()), undefined, `no canary in the ${who} metrics`)
  }
  t.notOk(seenOnTheWire[0]!.includes(CANARY.passport), 'the passport never crossed in clear')
})
