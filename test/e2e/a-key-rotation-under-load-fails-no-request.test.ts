import { copyFile, cp, mkdir, readFile, rename } from 'node:fs/promises'
import { join } from 'node:path'
import { decodeProtectedHeader } from 'jose'
import t from 'tap'
import { main } from '../../src/cli.js'
import { FieldOpener } from '../../src/crypto/field.js'
import { parseKeySet } from '../../src/crypto/keys.js'
import { metricValue } from '../helpers/harness.js'
import { aborted, ROTATION_CONTEXT, ROTATION_FIELDS, startRotationChain } from '../helpers/rotation.js'
import { CANARY, leaksCanary, tempDir } from '../helpers/sealing.js'

const FIELDS = ROTATION_FIELDS
const CONTEXT = ROTATION_CONTEXT
const CLIENTS = 4

function io() {
  const out: string[] = []
  return {
    out,
    io: { stdout: { write: (s: string) => out.push(s) }, stderr: { write: (s: string) => out.push(s) }, env: {} },
  }
}

/** Installs a key file, replacing the target atomically (copy beside it, then rename). */
async function install(from: string, to: string): Promise<void> {
  await copyFile(from, `${to}.tmp`)
  await rename(`${to}.tmp`, to)
}

function kidsByPhase(): Record<Phase, Set<string>> {
  return { before: new Set(), 'sidecar-private': new Set(), 'edge-rotated': new Set(), 'sidecar-rotated': new Set() }
}

type Phase = 'before' | 'sidecar-private' | 'edge-rotated' | 'sidecar-rotated'

interface Done {
  readonly op: 'POST' | 'GET'
  readonly suffix: string
  /** The phase when the request was sent. */
  readonly phase: Phase
  /** The phase when its answer had arrived: a request in flight across a reload may see either state. */
  readonly ended: Phase
  readonly status: number
  readonly text: string
}

t.test('a key set rotated under continuous load in the documented order (docs/profiles.md): no request fails', async (t) => {
  const dir = await tempDir('ecluse-rotation-')
  // The trusted host's key folder (the sidecar's files) and an edge's copy of the public file.
  const keysDir = join(dir, 'keys')
  const edgeDir = join(dir, 'edge')
  const cli = io()
  t.equal(await main(['keys', 'init', '--out', keysDir, '--name', 'trusted-host', '--kid', 'k-2024'], cli.io), 0, 'keys init wrote the set')
  const privateFile = join(keysDir, 'trusted-host.private.jwks.json')
  const publicFile = join(keysDir, 'trusted-host.public.jwks.json')
  const edgePublicFile = join(edgeDir, 'trusted-host.public.jwks.json')
  await mkdir(edgeDir)
  await copyFile(publicFile, edgePublicFile)
  const store = new Map<string, Record<string, unknown>>()
  const { chain, crossed } = await startRotationChain({ dir, store, edgePublic: edgePublicFile, sidecarPublic: publicFile, sidecarPrivate: privateFile })
  t.teardown(chain.close)

  // Continuous load: each client creates a record (sensitive fields sealed by the edge), then reads
  // it back (sealed by the sidecar, verified by the edge), until told to stop.
  let phase: Phase = 'before'
  let stop = false
  let seq = 0
  const done: Done[] = []
  const sent = new Map<string, Record<string, string>>()
  const client = async (c: number) => {
    while (!stop) {
      const suffix = `-c${c}-${++seq}`
      const values = { name: CANARY.name + suffix, passport: CANARY.passport + suffix, email: CANARY.email + suffix }
      sent.set(suffix, values)
      const started = phase
      const created = await chain.edge
        .request('/v1/accreditations', {
          method: 'POST',
          body: JSON.stringify({ ...values, status: 'pending' }),
          headers: { 'content-type': 'application/json' },
        })
        .catch(aborted)
      done.push({ op: 'POST', suffix, phase: started, ended: phase, status: created.status, text: created.text })
      if (created.status !== 200) continue
      const id = (JSON.parse(created.text) as { id: string }).id
      const readPhase = phase
      const read = await chain.edge.request(`/v1/accreditations/${id}`).catch(aborted)
      done.push({ op: 'GET', suffix, phase: readPhase, ended: phase, status: read.status, text: read.text })
    }
  }
  const until = async (n: number) => {
    const target = done.length + n
    while (done.length < target && !stop) await new Promise((r) => setTimeout(r, 20))
  }
  const load = Promise.all(Array.from({ length: CLIENTS }, (_, c) => client(c)))

  await until(40)
  // Rotate with the CLI into a copy of the folder: the new key in front of both files, current.
  const nextDir = join(dir, 'keys.next')
  await cp(keysDir, nextDir, { recursive: true })
  const rotated = io()
  t.equal(await main(['keys', 'init', '--out', nextDir, '--name', 'trusted-host', '--rotate', '--kid', 'k-2025'], rotated.io), 0, 'keys init --rotate')
  t.match(rotated.out.join(''), /new current kid k-2025/)
  // Both sides seal (the edge requests, the sidecar responses) and both check (the sidecar opens,
  // the edge requires sealed): each direction's receiver must accept the new key before anything is
  // sealed to it. Installing both files on both sides at once, in either order, fails requests.
  await until(10)
  // 1. The sidecar learns the private key; it still seals responses to the old one.
  await install(join(nextDir, 'trusted-host.private.jwks.json'), privateFile)
  t.match(await chain.sidecar.gateway.reload(), { ok: true }, '1. the sidecar reloaded the new private set')
  phase = 'sidecar-private'
  await until(40)
  // 2. The edge gets the new public set: it seals requests to the new key, accepts either back.
  await install(join(nextDir, 'trusted-host.public.jwks.json'), edgePublicFile)
  t.match(await chain.edge.gateway.reload(), { ok: true }, '2. the edge reloaded the new public set')
  const edgeReloaded = chain.edge.logs.find('reloaded').at(-1) as { loaded: { keySets: Array<{ name: string; current: string }> } }
  t.equal(edgeReloaded.loaded.keySets.find((k) => k.name === 'trusted-host')?.current, 'k-2025', 'the reload line names the key the edge now seals to')
  phase = 'edge-rotated'
  await until(40)
  // 3. The sidecar seals responses to the new key.
  await install(join(nextDir, 'trusted-host.public.jwks.json'), publicFile)
  t.match(await chain.sidecar.gateway.reload(), { ok: true }, '3. the sidecar reloaded the new public set')
  phase = 'sidecar-rotated'
  await until(40)
  stop = true
  await load

  const failed = done.filter((d) => d.status !== 200)
  t.equal(failed.length, 0, `no failed request out of ${done.length}: ${failed.slice(0, 3).map((f) => `${f.op} ${f.phase} ${f.status} ${f.text}`).join('; ')}`)

  const rotatedSet = parseKeySet(await readFile(privateFile), { requirePrivate: true })
  t.same(rotatedSet.kids, ['k-2025', 'k-2024'], 'the rotated set: the new key current, the old one kept')
  const opener = new FieldOpener(rotatedSet)

  // Every response value came back sealed, to the key current at the sidecar, and opens to what was
  // sent. Which key a request in flight across a reload meets depends on whether it reached the
  // gateway before the reload or after: those are checked to open, not counted in a phase.
  const responseKids = kidsByPhase()
  let straddled = 0
  for (const d of done.filter((x) => x.status === 200)) {
    const doc = JSON.parse(d.text) as Record<string, string>
    const values = sent.get(d.suffix)!
    for (const f of FIELDS) {
      const member = f.slice(1) as keyof typeof values
      if (d.phase === d.ended) responseKids[d.phase].add(String(decodeProtectedHeader(doc[member]!).kid))
      const plain = opener.open(doc[member]!, { route: CONTEXT, ptr: f, rid: doc['id'] })
      if (plain.toString() !== JSON.stringify(values[member])) t.fail(`${d.op} ${d.suffix}${f} did not open to what was sent`)
    }
  }
  t.same([...responseKids.before], ['k-2024'], 'before the rotation, responses were sealed to the old key')
  t.same([...responseKids['sidecar-private']], ['k-2024'], 'with only the private set new, still to the old key')
  t.ok(responseKids['edge-rotated'].has('k-2024'), 'the reloaded edge still accepts responses sealed to the old key')
  t.same([...responseKids['sidecar-rotated']], ['k-2025'], 'once the sidecar reloaded the new public set, to the new key')

  // What the edge sealed, as it crossed: every value opens with the rotated private set, the ones
  // sealed before the rotation (the old kid) included; after the edge's reload only the new kid.
  const requestKids = kidsByPhase()
  const phaseOf = new Map(done.filter((d) => d.op === 'POST').map((d) => [d.suffix, d.phase === d.ended ? d.phase : undefined]))
  let oldKidOpened = 0
  const posts = crossed.filter((b) => b.startsWith('{')) // a GET has no body
  t.equal(posts.length, done.filter((d) => d.op === 'POST').length, 'every POST crossed once')
  t.equal(posts.map((b) => leaksCanary(b)).filter(Boolean).length, 0, 'nothing crossed in plaintext')
  for (const body of posts) {
    const doc = JSON.parse(body) as Record<string, string>
    const name = JSON.parse(opener.open(doc['name']!, { route: CONTEXT, ptr: '/name' }).toString()) as string
    const suffix = name.slice(CANARY.name.length)
    const kid = String(decodeProtectedHeader(doc['name']!).kid)
    const sealedIn = phaseOf.get(suffix)
    if (sealedIn === undefined) straddled++
    else requestKids[sealedIn].add(kid)
    for (const f of FIELDS) {
      const plain = opener.open(doc[f.slice(1)]!, { route: CONTEXT, ptr: f })
      if (plain.toString() !== JSON.stringify(sent.get(suffix)![f.slice(1)])) t.fail(`${suffix}${f} did not open`)
    }
    if (kid === 'k-2024') oldKidOpened++
  }
  t.same([...requestKids.before], ['k-2024'], 'before the rotation, the edge sealed to the old key')
  t.same([...requestKids['sidecar-private']], ['k-2024'], 'until its own reload, still to the old key')
  t.same([...requestKids['edge-rotated']], ['k-2025'], 'after the edge reloaded the new public set, to the new key')
  t.same([...requestKids['sidecar-rotated']], ['k-2025'], 'and on')
  t.ok(straddled <= CLIENTS * 3, `at most one request per client in flight across each reload (${straddled})`)
  t.ok(oldKidOpened >= 20, `values sealed to the old key before the rotation still open with the rotated set (${oldKidOpened})`)

  // And the sidecar itself still opens a request sealed before the rotation.
  const old = posts.find((b) => decodeProtectedHeader(JSON.parse(b).name).kid === 'k-2024')!
  const before = store.size
  chain.sidecar.agent(chain.pki.gatewayTrustedClient, chain.pki.trustedCa) // as the edge
  const replay = await chain.sidecar.request('/v1/accreditations', {
    method: 'POST',
    body: old,
    headers: { 'content-type': 'application/json' },
  })
  t.equal(replay.status, 200, 'a request sealed to the old key opens at the reloaded sidecar')
  t.equal(store.size, before + 1)
  t.match(String([...store.values()].at(-1)!['passport']), /^CANARY-PASSPORT-/, 'and the service received the plaintext')

  for (const [who, g] of [['edge', chain.edge], ['sidecar', chain.sidecar]] as const) {
    const metrics = await g.metrics()
    t.equal(metricValue(metrics, 'ecluse_reloads_total', { result: 'ok' }), who === 'sidecar' ? 2 : 1, `the ${who} counted its reloads`)
    t.equal(metricValue(metrics, 'ecluse_reloads_total', { result: 'failed' }), 0)
    t.equal(leaksCanary(metrics), undefined, `no canary in the ${who} metrics`)
    t.equal(leaksCanary(g.logs.text()), undefined, `no canary in the ${who} log`)
  }
})
