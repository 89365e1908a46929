/**
 * The chained demo exactly as shipped (config/edge.yaml → config/trusted-sidecar.yaml → the demo
 * service), on port 0 with its own PKI and key set: what the sponsor gets through the edge is sealed
 * for the trusted host's key and bound to its field and record, the service stores plaintext, the
 * vetting notes never leave the trusted host, and the photo crosses sealed both ways. Nothing of the
 * sample shows up in either gateway's log or /metrics.
 */
import { spawn, spawnSync } from 'node:child_process'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { request as httpRequest } from 'node:http'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { compactDecrypt, decodeProtectedHeader, importJWK, type JWK } from 'jose'
import t from 'tap'
import {
  createSampleRecord,
  type DemoChain,
  SAMPLE_PHOTO,
  SAMPLE_RECORD,
  type SampleViews,
  SENSITIVE_FIELDS,
  sponsorAgent,
  startDemoChain,
} from '../src/demo/chain.js'
import { createLogger } from '../src/observability/logger.js'
import { LogCapture } from './helpers/harness.js'

const CRIT = { 'ecl.route': true, 'ecl.ptr': true, 'ecl.rid': true }
const SAMPLE_VALUES = SENSITIVE_FIELDS.map((f) => SAMPLE_RECORD[f])
const PYTHON = '/usr/bin/python3'
const DECODER = fileURLToPath(new URL('./independent/ecluse_decode.py', import.meta.url))

const work = await mkdtemp(path.join(tmpdir(), 'ecluse-demo-chain-'))
const logs = { edge: new LogCapture(), sidecar: new LogCapture() }
let chain: DemoChain
let sample: SampleViews
let privateJwks: { keys: JWK[] }

t.before(async () => {
  chain = await startDemoChain({
    ephemeralPorts: true,
    certsDir: path.join(work, 'certs'),
    keysDir: path.join(work, 'keys'),
    // Everything the gateways could say, so that a leak at any level is seen.
    logs: {
      edge: createLogger({ level: 'trace', destination: logs.edge.stream }),
      sidecar: createLogger({ level: 'trace', destination: logs.sidecar.stream }),
    },
  })
  sample = await createSampleRecord(chain)
  privateJwks = JSON.parse(await readFile(chain.keys.privateFile, 'utf8')) as { keys: JWK[] }
})
t.teardown(async () => {
  await chain?.close()
  await rm(work, { recursive: true, force: true })
})

/** Opens one sealed field with jose alone and the private set, as any JOSE library would. */
async function joseOpen(jwe: string): Promise<{ value: unknown; header: Record<string, unknown> }> {
  const { kid, alg } = decodeProtectedHeader(jwe)
  const jwk = privateJwks.keys.find((k) => k.kid === kid)
  if (jwk === undefined || alg === undefined) throw new Error(`no private key for kid ${String(kid)}`)
  const out = await compactDecrypt(jwe, await importJWK(jwk, alg), {
    crit: CRIT,
    keyManagementAlgorithms: [alg],
    contentEncryptionAlgorithms: ['A256GCM'],
  })
  return { value: JSON.parse(Buffer.from(out.plaintext).toString('utf8')), header: out.protectedHeader }
}

t.test('the sponsor sees every sensitive field as a compact JWE that opens, with jose, to the stored value', async (t) => {
  const { sponsorView, trustedView, id } = sample
  for (const f of SENSITIVE_FIELDS) {
    const sealed = sponsorView[f]
    t.type(sealed, 'string', f)
    t.match(sealed, /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/, `${f} is a compact JWE`)
    const { value, header } = await joseOpen(sealed as string)
    t.equal(value, trustedView[f], `${f} opens to the value the service stores`)
    t.equal(value, SAMPLE_RECORD[f], `${f} is the value the sponsor sent`)
    // The binding the profiles configure: context, JSON Pointer, the record's own id.
    t.same(
      { route: header['ecl.route'], ptr: header['ecl.ptr'], rid: header['ecl.rid'] },
      { route: 'accreditations', ptr: `/${f}`, rid: id },
      `${f} is bound to its context, field and record`,
    )
  }
  for (const [k, v] of Object.entries(sponsorView)) {
    if (!(SENSITIVE_FIELDS as readonly string[]).includes(k)) t.same(v, trustedView[k], `${k} passes in clear both ways`)
  }
  t.notOk('vetting' in sponsorView, 'the vetting notes are stripped: not even sealed')
  t.equal(sponsorView['id'], id)
})

t.test("the service's store holds the sample in plaintext, with its own vetting notes", async (t) => {
  const stored = chain.service.records.get(sample.id)
  t.ok(stored, 'the record is in the store')
  t.match(stored, { ...SAMPLE_RECORD, id: sample.id, status: 'pending' })
  t.match(stored?.['vetting'], { state: 'queued' }, 'the notes the sidecar strips exist at the service')
  t.equal(chain.service.records.size, 1, 'one record: nothing was sent twice')
})

t.test('the list, as the sponsor gets it, is sealed record by record', async (t) => {
  const agent = await sponsorAgent(chain.pki)
  t.teardown(() => agent.close())
  const { request } = await import('undici')
  const res = await request(`https://127.0.0.1:${chain.edge.sponsorPort}/v1/accreditations`, { dispatcher: agent })
  t.equal(res.statusCode, 200)
  const list = (await res.body.json()) as { records: Array<Record<string, unknown>> }
  t.equal(list.records.length, 1)
  const record = list.records[0]!
  t.notOk('vetting' in record)
  for (const f of SENSITIVE_FIELDS) {
    const { value, header } = await joseOpen(record[f] as string)
    t.equal(value, SAMPLE_RECORD[f], `${f} opens to the stored value`)
    t.same([header['ecl.route'], header['ecl.rid']], ['accreditations', sample.id], `${f} is bound to the record`)
  }
})

t.test('the photo reaches the service byte-exact with its media type, and comes back to the sponsor sealed', async (t) => {
  t.same(sample.trustedPhoto, { contentType: 'image/png', bytes: SAMPLE_PHOTO }, 'the service stores the PNG as sent')
  t.equal(sample.sponsorPhoto.contentType, 'application/vnd.ecluse.sealed')
  t.equal(sample.sponsorPhoto.bytes.subarray(0, 4).toString('latin1'), 'ECLS', 'a sealed stream (docs/sealed-stream-format.md)')
  t.equal(sample.sponsorPhoto.bytes.indexOf(SAMPLE_PHOTO.subarray(0, 16)), -1, 'not the PNG bytes')
  t.equal(sample.sponsorPhoto.bytes.indexOf(Buffer.from('image/png')), -1, 'the media type travels inside the seal')
})

const probe = spawnSync(PYTHON, ['-c', 'import cryptography, jwcrypto'], { encoding: 'utf8' })
const noPython = probe.error !== undefined || probe.status !== 0
const why = `${PYTHON} with python3-cryptography and python3-jwcrypto is needed: ${probe.error?.message ?? probe.stderr.trim()}`
t.test(
  'an independent decoder opens the sponsor’s photo with the private set, for photos-out and its record only',
  { skip: noPython && !process.env['CI'] ? why : false },
  async (t) => {
    if (noPython) {
      t.fail(why)
      return
    }
    const sealed = sample.sponsorPhoto.bytes.toString('hex')
    const out = await pythonDecode({
      keys: privateJwks.keys,
      fields: [],
      streams: [
        { sealed, route: `photos-out/${sample.id}` },
        { sealed, route: `photos-in/${sample.id}` },
        { sealed, route: 'photos-out' },
        { sealed, route: `photos-out/${sample.id}x` },
      ],
    })
    t.match(out.streams[0], { ok: true, contentType: 'image/png', plaintext: SAMPLE_PHOTO.toString('hex') })
    t.match(out.streams[1], { ok: false }, 'a photo handed out does not open as an upload')
    t.match(out.streams[2], { ok: false }, 'nor without its record')
    t.match(out.streams[3], { ok: false }, 'nor as the photo of another record')
  },
)

t.test('no sample value in either gateway’s log lines or /metrics', async (t) => {
  for (const role of ['edge', 'sidecar'] as const) {
    const text = logs[role].text()
    const accessLines = logs[role].lines.filter((l) => typeof l['route'] === 'string' && typeof l['status'] === 'number')
    t.ok(accessLines.length >= 4, `the ${role} log has its access lines (the capture works)`)
    const metrics = await getText(chain[role].adminPort, '/metrics')
    t.match(metrics, /ecluse_requests_total/, `the ${role} metrics were read`)
    for (const v of SAMPLE_VALUES) {
      t.notOk(text.includes(v), `the ${role} log does not contain ${JSON.stringify(v)}`)
      t.notOk(metrics.includes(v), `the ${role} metrics do not contain ${JSON.stringify(v)}`)
    }
  }
})

function getText(port: number, pathname: string): Promise<string> {
  return new Promise((resolve, reject) => {
    httpRequest({ host: '127.0.0.1', port, path: pathname }, (res) => {
      let body = ''
      res.setEncoding('utf8').on('data', (d: string) => (body += d))
      res.on('end', () => resolve(body))
    })
      .on('error', reject)
      .end()
  })
}

function pythonDecode(input: unknown): Promise<{ streams: Array<Record<string, unknown>> }> {
  return new Promise((resolve, reject) => {
    const child = spawn(PYTHON, [DECODER], { stdio: ['pipe', 'pipe', 'pipe'] })
    let out = ''
    let err = ''
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d))
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d))
    child.on('error', reject)
    child.on('close', (code) => (code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`decoder exited ${code}: ${err}`))))
    child.stdin.end(JSON.stringify(input))
  })
}
