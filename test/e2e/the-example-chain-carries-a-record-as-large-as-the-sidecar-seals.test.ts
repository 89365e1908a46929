/**
 * From the deploy review: the sidecar example seals records of up to 4 MiB (`maxRecordBytes`, for
 * records the service made large), and the edge example checked them with `require-sealed`'s
 * default of 2 MiB, so a large stored record was refused at the edge (502) after the service had
 * answered. The examples' own `get-accreditation` routes, in a chain, now carry the largest record
 * the sidecar seals: six values at the sealing step's largest (64 KiB) and a 1,000-character id
 * (the two that make a sealed record grow), the rest plain.
 */
import t, { type Test } from 'tap'
import type { UpstreamHandler } from '../helpers/harness.js'
import { type K8s, loadExample } from '../helpers/kubernetes.js'
import { EDGE_GATEWAY, SPONSOR_APP, startChain, tempDir, writeKeyFiles } from '../helpers/sealing.js'

const SENSITIVE = ['name', 'birthDate', 'passportNumber', 'email', 'phone', 'policeUnit']

function exampleRoute(folder: string, gateway: K8s, allow: string): K8s {
  const route = structuredClone(gateway.routes.find((r: K8s) => r.name === 'get-accreditation'))
  if (route === undefined) throw new Error(`deploy/${folder} has no get-accreditation route`)
  return { ...route, allow: [allow], upstream: 'backend' }
}

/** The largest record the sidecar example's seal step takes, as JSON text. */
function largestRecord(sidecarRoute: K8s): string {
  const seal = sidecarRoute.transforms.response.find((s: K8s) => s.type === 'seal')
  const record: Record<string, string> = { id: 'i'.repeat(1000) }
  // A value's limit counts its JSON text, quotes included (64 KiB, the default).
  for (const field of SENSITIVE) record[field] = 'v'.repeat(64 * 1024 - 2)
  const used = Buffer.byteLength(JSON.stringify({ ...record, notes: '' }))
  record['notes'] = 'n'.repeat(seal.maxRecordBytes - used)
  const text = JSON.stringify(record)
  if (Buffer.byteLength(text) !== seal.maxRecordBytes) throw new Error('the record is not the largest the step takes')
  return text
}

const sidecarExample = await loadExample('kubernetes')
const edgeExample = await loadExample('kubernetes-edge')
const sidecarRoute = exampleRoute('kubernetes', sidecarExample.gateway, EDGE_GATEWAY)
const edgeRoute = exampleRoute('kubernetes-edge', edgeExample.gateway, SPONSOR_APP)
const body = largestRecord(sidecarRoute)

async function getThroughChain(t: Test, edgeRoutes: Array<Record<string, unknown>>): Promise<{ status: number; text: string; edgeLog: string }> {
  const dir = await tempDir()
  const keys = await writeKeyFiles(dir, 'trusted-host')
  let served = 0
  const handler: UpstreamHandler = (_req, res) => {
    served++
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) })
    res.end(body)
  }
  const chain = await startChain({
    dir,
    handler,
    edgeKeys: { 'trusted-host': { file: keys.publicPath } },
    // The route seals only: the sidecar's private set stays out (a profile check refuses it unused).
    sidecarKeys: { 'trusted-host': { file: keys.publicPath } },
    edgeRoutes,
    sidecarRoutes: [sidecarRoute],
  })
  t.teardown(chain.close)
  const res = await chain.edge.request(`/v1/accreditations/${'i'.repeat(10)}`)
  t.equal(served, 1, 'the service answered once')
  return { status: res.status, text: res.text, edgeLog: chain.edge.logs.text() }
}

t.test("the largest record the sidecar seals passes the edge's require-sealed", async (t) => {
  const res = await getThroughChain(t, [edgeRoute])
  t.equal(res.status, 200, res.status === 200 ? 'crossed' : res.text)
  const record = JSON.parse(res.text) as Record<string, string>
  for (const field of SENSITIVE) t.equal(record[field]?.split('.').length, 5, `${field} arrives as a compact JWE`)
  t.equal(record['notes']?.length, JSON.parse(body).notes.length, 'the plain part arrives whole')
  t.ok(Buffer.byteLength(res.text) > Buffer.byteLength(body), `sealed, it is larger: ${Buffer.byteLength(res.text)} bytes`)
})

t.test("control: at require-sealed's default maxRecordBytes the same record is refused at the edge", async (t) => {
  const { maxRecordBytes: _, ...defaulted } = edgeRoute.transforms.response[0]
  const res = await getThroughChain(t, [{ ...edgeRoute, transforms: { response: [defaulted] } }])
  t.equal(res.status, 502)
  t.match(res.text, '"error":"transform_failed"')
  t.match(res.edgeLog, 'value_too_large', 'the edge refused the record as too large')
})
