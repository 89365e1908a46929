import { rename, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { decodeProtectedHeader } from 'jose'
import t from 'tap'
import { request } from 'undici'
import { generateKeySet, type Jwks } from '../../src/crypto/keys.js'
import { gatewayConfig, metricValue, startGatewayProcess, TestUpstream } from '../helpers/harness.js'
import { makeTestPki } from '../helpers/pki.js'
import { CANARY, leaksCanary, recordingHandler, SPONSOR_APP, startSealing, tempDir } from '../helpers/sealing.js'

const json = { 'content-type': 'application/json' }
const step = { context: 'accreditations', fields: ['/passport'] }
const routes = [
  // Seals with the public set...
  {
    name: 'seal',
    methods: ['POST'],
    path: '/v1/seal',
    allow: [SPONSOR_APP],
    upstream: 'backend',
    transforms: { request: [{ type: 'seal', recipients: 'th', ...step }] },
  },
  // ...and opens with the private set: what one route sealed, the other opens.
  {
    name: 'open',
    methods: ['POST'],
    path: '/v1/open',
    allow: [SPONSOR_APP],
    upstream: 'backend',
    transforms: { request: [{ type: 'open', keys: 'th-private', ...step }] },
  },
]

/** Every string member of the JWKS long enough to be key material (x, y, d, n, e's peers, …). */
function keyValues(...sets: Jwks[]): string[] {
  return sets.flatMap((s) => s.keys.flatMap((k) => Object.entries(k).filter(([m, v]) => m !== 'kid' && typeof v === 'string' && v.length >= 16).map(([, v]) => v as string)))
}

/** Both files of a set, each replaced atomically (rename), as `ecluse keys init` writes them. */
async function writeSet(dir: string, priv: Jwks | string, pub: Jwks | string): Promise<void> {
  for (const [name, doc, mode] of [['th.private.jwks.json', priv, 0o600], ['th.public.jwks.json', pub, 0o644]] as const) {
    await writeFile(join(dir, `${name}.tmp`), typeof doc === 'string' ? doc : JSON.stringify(doc), { mode })
    await rename(join(dir, `${name}.tmp`), join(dir, name))
  }
}

t.test('a reload with a broken key file keeps the old set, sealing and opening, and names the file; the fixed file loads', async (t) => {
  const dir = await tempDir()
  const v1 = generateKeySet({ kid: 'k-old' })
  const v2 = generateKeySet({ kid: 'k-new' })
  const rotated = {
    priv: { keys: [...v2.privateJwks.keys, ...v1.privateJwks.keys], current: 'k-new' },
    pub: { keys: [...v2.publicJwks.keys, ...v1.publicJwks.keys], current: 'k-new' },
  }
  await writeSet(dir, v1.privateJwks, v1.publicJwks)
  const privateFile = join(dir, 'th.private.jwks.json')
  const publicFile = join(dir, 'th.public.jwks.json')
  const bodies: Buffer[] = []
  const s = await startSealing({
    dir,
    routes,
    handler: recordingHandler(bodies),
    keys: { th: { file: publicFile }, 'th-private': { file: privateFile, private: true } },
  })
  t.teardown(s.close)
  const secrets = keyValues(v1.privateJwks, v2.privateJwks)

  let n = 0
  /** Seals a fresh value; returns the sealed body as it reached the upstream and its kid. */
  const seal = async () => {
    const res = await s.gw.request('/v1/seal', { method: 'POST', headers: json, body: JSON.stringify({ passport: `${CANARY.passport}-${++n}` }) })
    t.equal(res.status, 200, 'sealing still works')
    const body = bodies.at(-1)!.toString()
    return { body, kid: decodeProtectedHeader(JSON.parse(body).passport).kid }
  }
  /** Opens a body sealed earlier; returns the plaintext the upstream received. */
  const open = async (sealed: string) => {
    const res = await s.gw.request('/v1/open', { method: 'POST', headers: json, body: sealed })
    t.equal(res.status, 200, 'opening still works')
    return JSON.parse(bodies.at(-1)!.toString()).passport as string
  }

  const before = await seal()
  t.equal(before.kid, 'k-old')

  const broken: Array<[string, () => Promise<void>, RegExp]> = [
    ['the public file is not JSON', () => writeSet(dir, v1.privateJwks, '{"keys":[{"kty":"OKP",'), /th\.public\.jwks\.json.*not valid JSON/],
    ['the public file holds private members', () => writeSet(dir, v1.privateJwks, rotated.priv), /keys\.th\.file .*th\.public\.jwks\.json.*holds private key material/],
    ['the private file is missing', async () => {
      await writeSet(dir, v1.privateJwks, v1.publicJwks)
      await rm(privateFile)
    }, /keys\.th-private\.file: the file it names: cannot be read \(ENOENT\)/],
    ['the private file holds public keys only', () => writeSet(dir, rotated.pub, rotated.pub), /keys\.th-private\.file .*th\.private\.jwks\.json.*has no private key material/],
    // The new public set is valid, the private one is not: nothing is swapped, not even the good one.
    ['a good public file next to a broken private one', () => writeSet(dir, '[]', rotated.pub), /keys\.th-private\.file .*th\.private\.jwks\.json/],
  ]
  let failures = 0
  for (const [what, breakIt, names] of broken) {
    await breakIt()
    const result = await s.gw.gateway.reload()
    failures++
    t.equal(result.ok, false, `${what}: the reload fails`)
    const error = (result as { error: string }).error
    t.match(error, names, `${what}: the error names the key set and its file`)
    t.equal(leaksCanary(error, secrets), undefined, `${what}: and no key value`)
    const now = await seal()
    t.equal(now.kid, 'k-old', `${what}: still sealing to the old key`)
    t.equal(await open(before.body), `${CANARY.passport}-1`, `${what}: still opening with the old set`)
    const metrics = await s.gw.metrics()
    t.equal(metricValue(metrics, 'ecluse_reloads_total', { result: 'failed' }), failures, `${what}: counted as failed`)
    t.equal(metricValue(metrics, 'ecluse_reloads_total', { result: 'ok' }), 0)
  }

  // Fixed: the rotated set, both files.
  await writeSet(dir, rotated.priv, rotated.pub)
  t.match(await s.gw.gateway.reload(), { ok: true }, 'the fixed files load')
  const after = await seal()
  t.equal(after.kid, 'k-new', 'the next value is sealed to the new key')
  t.equal(await open(before.body), `${CANARY.passport}-1`, 'a value sealed before the reload still opens')
  t.equal(await open(after.body), `${CANARY.passport}-${n}`, 'and so does one sealed after')
  const metrics = await s.gw.metrics()
  t.equal(metricValue(metrics, 'ecluse_reloads_total', { result: 'ok' }), 1)
  t.equal(metricValue(metrics, 'ecluse_reloads_total', { result: 'failed' }), broken.length)

  const log = s.gw.logs.text()
  t.equal(s.gw.logs.find('reload failed; keeping the previous configuration and certificates').length, broken.length)
  t.equal(leaksCanary(log, secrets), undefined, 'no canary and no key value in the log')
  t.equal(leaksCanary(metrics, secrets), undefined, 'nor in /metrics')
})

t.test('SIGHUP with a broken key file keeps the old set; SIGHUP after the fix takes the new one', async (t) => {
  const pki = await makeTestPki()
  const dir = await tempDir()
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const v1 = generateKeySet({ kid: 'k-old' })
  const v2 = generateKeySet({ kid: 'k-new' })
  await writeSet(dir, v1.privateJwks, v1.publicJwks)
  const bodies: Buffer[] = []
  const upstream = new TestUpstream(pki, recordingHandler(bodies))
  await upstream.listen()
  t.teardown(() => upstream.close())
  const config = gatewayConfig(pki, upstream.port, routes, {
    keys: { th: { file: join(dir, 'th.public.jwks.json') }, 'th-private': { file: join(dir, 'th.private.jwks.json'), private: true } },
  })
  const { gateway, ports, agent } = await startGatewayProcess(t, pki, dir, config)
  const sealKid = async () => {
    const res = await request(`https://127.0.0.1:${ports.sponsor}/v1/seal`, { method: 'POST', headers: json, body: '{"passport":"x"}', dispatcher: agent })
    t.equal(res.statusCode, 200)
    await res.body.dump()
    return decodeProtectedHeader(JSON.parse(bodies.at(-1)!.toString()).passport).kid
  }
  t.equal(await sealKid(), 'k-old')

  // A half-written rotation: the new public set in place, the private file truncated.
  await writeSet(dir, '{"keys":[', { keys: [...v2.publicJwks.keys, ...v1.publicJwks.keys], current: 'k-new' })
  gateway.child.kill('SIGHUP')
  const failed = await gateway.logged('reload failed; keeping the previous configuration and certificates')
  t.match(String(failed['error']), /th\.private\.jwks\.json/, 'the log names the file')
  t.equal(leaksCanary(JSON.stringify(failed), keyValues(v1.privateJwks, v2.privateJwks)), undefined, 'and no key value')
  t.equal(await sealKid(), 'k-old', 'still sealing to the old key')

  await writeSet(dir, { keys: [...v2.privateJwks.keys, ...v1.privateJwks.keys], current: 'k-new' }, { keys: [...v2.publicJwks.keys, ...v1.publicJwks.keys], current: 'k-new' })
  gateway.child.kill('SIGHUP')
  await gateway.logged('reloaded')
  t.equal(await sealKid(), 'k-new', 'after the fix, sealing to the new key')
  const metrics = await (await request(`http://127.0.0.1:${ports.admin}/metrics`)).body.text()
  t.equal(metricValue(metrics, 'ecluse_reloads_total', { result: 'failed' }), 1)
  t.equal(metricValue(metrics, 'ecluse_reloads_total', { result: 'ok' }), 1)
})
