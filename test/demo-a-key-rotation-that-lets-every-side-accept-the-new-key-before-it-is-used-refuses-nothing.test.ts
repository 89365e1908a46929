/**
 * Key rotation across the chain, with each gateway holding its own copy of the key files (as on two
 * hosts). Keys are used in both directions: the edge seals requests that the sidecar opens, and the
 * sidecar seals responses that the edge verifies. So a new key must be accepted by the receiving side
 * of each direction before anything is sealed to it: the sidecar gets the new private set first
 * (still sealing to the old key), then the edges get the new public set, then the sidecar the new
 * public set (docs/profiles.md). That order refuses nothing; reloading either gateway alone with the
 * whole rotated set refuses traffic until the other follows.
 */
import { copyFile, cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { request as httpRequest } from 'node:http'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { decodeProtectedHeader } from 'jose'
import { pino } from 'pino'
import t from 'tap'
import { type Agent, request } from 'undici'
import { main } from '../src/cli.js'
import { DEMO_KEY_SET, type DemoChain, ensureDemoKeys, sponsorAgent, startDemoChain } from '../src/demo/chain.js'

const work = await mkdtemp(path.join(tmpdir(), 'ecluse-demo-rotation-'))
t.teardown(() => rm(work, { recursive: true, force: true }))
const certsDir = path.join(work, 'certs')
const quiet = { edge: pino({ level: 'silent' }), sidecar: pino({ level: 'silent' }) }
const PUBLIC = `${DEMO_KEY_SET}.public.jwks.json`
const PRIVATE = `${DEMO_KEY_SET}.private.jwks.json`

interface Setup {
  chain: DemoChain
  agent: Agent
  /** The trusted host's key folder: the sidecar's files. */
  host: string
  /** The edge's own copy of the public set. */
  edgeFile: string
  /** `keys init --rotate` of a copy of the host's folder: the next key set, not yet installed. */
  next: string
  oldKid: string
  newKid: string
}

async function setup(name: string): Promise<Setup> {
  const host = path.join(work, name, 'host')
  const edgeDir = path.join(work, name, 'edge')
  await mkdir(edgeDir, { recursive: true })
  const keys = await ensureDemoKeys(host)
  const edgeFile = path.join(edgeDir, PUBLIC)
  await copyFile(keys.publicFile, edgeFile)
  const chain = await startDemoChain({
    ephemeralPorts: true,
    certsDir,
    keysDir: host,
    logs: quiet,
    adjust: (role, config) => {
      if (role === 'edge') (config['keys'] as Record<string, { file: string }>)[DEMO_KEY_SET]!.file = edgeFile
    },
  })
  const agent = await sponsorAgent(chain.pki)
  t.teardown(async () => {
    await agent.close()
    await chain.close()
  })
  const next = path.join(work, name, 'next')
  await cp(host, next, { recursive: true })
  const io = { stdout: { write: () => true }, stderr: { write: () => true }, env: {} }
  if ((await main(['keys', 'init', '--out', next, '--rotate'], io)) !== 0) throw new Error('keys init --rotate failed')
  const oldKid = (await currentOf(keys.publicFile))!
  const newKid = (await currentOf(path.join(next, PUBLIC)))!
  return { chain, agent, host, edgeFile, next, oldKid, newKid }
}

async function currentOf(file: string): Promise<string | undefined> {
  return (JSON.parse(await readFile(file, 'utf8')) as { current?: string }).current
}

interface Round {
  create: number | string
  get: number | string
  /** The kid the sponsor's copy of the record is sealed to. */
  kid: string | undefined
  stored: number
}

/** Creates a record and reads it back through the edge, as the sponsor application does. */
async function round(s: Setup): Promise<Round> {
  const base = `https://127.0.0.1:${s.chain.edge.sponsorPort}`
  const storedBefore = s.chain.service.records.size
  const attempt = async (f: () => Promise<{ statusCode: number; body: { json(): Promise<unknown> } }>) => {
    try {
      const res = await f()
      return { status: res.statusCode, body: (await res.body.json()) as Record<string, unknown> }
    } catch (err) {
      return { status: (err as { code?: string }).code ?? 'error', body: {} as Record<string, unknown> }
    }
  }
  const created = await attempt(() =>
    request(`${base}/v1/accreditations`, {
      dispatcher: s.agent,
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ category: 'guest', name: 'Rotation Test', passportNumber: 'DEMO-ROT' }),
    }),
  )
  const stored = s.chain.service.records.size - storedBefore
  // Read back the newest record the service holds (the create's answer may have been refused).
  const id = [...s.chain.service.records.keys()].at(-1)
  const got = await attempt(() => request(`${base}/v1/accreditations/${id}`, { dispatcher: s.agent }))
  const name = got.body['name']
  return { create: created.status, get: got.status, kid: typeof name === 'string' ? decodeProtectedHeader(name).kid : undefined, stored }
}

function refusals(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    httpRequest({ host: '127.0.0.1', port, path: '/metrics' }, (res) => {
      let body = ''
      res.setEncoding('utf8').on('data', (d: string) => (body += d))
      // The series of a route with transforms exist at 0 from boot: a refusal is a non-zero one.
      res.on('end', () => resolve(body.split('\n').filter((l) => l.startsWith('ecluse_transform_refusals_total{') && !l.endsWith('} 0')).join('\n')))
    })
      .on('error', reject)
      .end()
  })
}

t.test('private set to the sidecar, public set to the edge, public set to the sidecar: nothing refused', async (t) => {
  const s = await setup('documented')
  t.not(s.newKid, s.oldKid)
  t.same(await round(s), { create: 201, get: 200, kid: s.oldKid, stored: 1 }, 'before')

  // 1. The sidecar opens both keys, and still seals (and publishes) the old one.
  await copyFile(path.join(s.next, PRIVATE), path.join(s.host, PRIVATE))
  t.match(await s.chain.sidecar.reload(), { ok: true })
  t.same(await round(s), { create: 201, get: 200, kid: s.oldKid, stored: 1 }, 'after the sidecar learnt the private key')

  // 2. The edge seals requests to the new key and accepts responses sealed to either.
  await copyFile(path.join(s.next, PUBLIC), s.edgeFile)
  t.match(await s.chain.edge.reload(), { ok: true })
  t.same(await round(s), { create: 201, get: 200, kid: s.oldKid, stored: 1 }, 'after the edge learnt the public key')

  // 3. The sidecar seals responses to the new key.
  await copyFile(path.join(s.next, PUBLIC), path.join(s.host, PUBLIC))
  t.match(await s.chain.sidecar.reload(), { ok: true })
  t.same(await round(s), { create: 201, get: 200, kid: s.newKid, stored: 1 }, 'after the sidecar sealed to the new key')
  t.equal(await refusals(s.chain.edge.adminPort), '', 'the edge refused nothing')
  t.equal(await refusals(s.chain.sidecar.adminPort), '', 'the sidecar refused nothing')
})

t.test('the whole rotated set on the sidecar first: the edge refuses its responses until it follows', async (t) => {
  const s = await setup('sidecar-first')
  await copyFile(path.join(s.next, PRIVATE), path.join(s.host, PRIVATE))
  await copyFile(path.join(s.next, PUBLIC), path.join(s.host, PUBLIC))
  t.match(await s.chain.sidecar.reload(), { ok: true })
  const r = await round(s)
  t.equal(r.stored, 1, 'the request went through: the service stored the record')
  t.not(r.create, 201, 'but the sponsor never received the answer')
  t.not(r.get, 200, 'nor can it read the record')
  t.match(await refusals(s.chain.edge.adminPort), /route="get-accreditation",reason="plaintext_refused"\} [1-9]/, 'refused by require-sealed')
  await copyFile(path.join(s.next, PUBLIC), s.edgeFile)
  t.match(await s.chain.edge.reload(), { ok: true })
  t.same(await round(s), { create: 201, get: 200, kid: s.newKid, stored: 1 }, 'once the edge follows')
})

t.test('the public set on the edge first: the sidecar refuses its requests until it follows', async (t) => {
  const s = await setup('edge-first')
  await copyFile(path.join(s.next, PUBLIC), s.edgeFile)
  t.match(await s.chain.edge.reload(), { ok: true })
  const r = await round(s)
  t.equal(r.create, 400, 'open_failed at the sidecar')
  t.equal(r.stored, 0, 'nothing reached the service')
  t.match(await refusals(s.chain.sidecar.adminPort), /route="create-accreditation",reason="open_failed"\} 1/)
  await copyFile(path.join(s.next, PRIVATE), path.join(s.host, PRIVATE))
  t.match(await s.chain.sidecar.reload(), { ok: true })
  t.match(await round(s), { create: 201, get: 200, stored: 1 }, 'once the sidecar follows')
})

t.test('the chain’s reload leaves the edge alone when the sidecar, which opens, refuses its reload', async (t) => {
  const s = await setup('documented')
  // The edge's file already names the new key; the sidecar's private set is unreadable.
  await copyFile(path.join(s.next, PUBLIC), s.edgeFile)
  await writeFile(path.join(s.host, PRIVATE), '{ not json')
  const [sidecar, edge] = await s.chain.reload()
  t.equal(sidecar.ok, false, 'the sidecar refused its reload')
  t.same(edge, { ok: false, error: 'not reloaded: the sidecar, which opens, refused its reload first' })
  t.same(await round(s), { create: 201, get: 200, kid: s.oldKid, stored: 1 }, 'both sides still on the old key: nothing refused')
})
