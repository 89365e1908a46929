/**
 * A chained edge → sidecar, each with its own key files as on two hosts (the trusted host's folder
 * for the sidecar: private set and public set; a copy of the public set for the edge), rotated with
 * the CLI commands only, under continuous load:
 *
 *   keys init --rotate --stage → install the public set on the edge → reload the sidecar, then the edge
 *   keys promote               → install                            → reload the edge, then the sidecar
 *   keys retire                → install                            → reload the sidecar, then the edge
 *
 * The promote phase reloads the edge first on purpose: after a one-step rotation that order refuses
 * every request (the sidecar cannot open the new key); after a stage it refuses nothing. No request
 * fails; each request that ran entirely between two reloads used exactly the keys that state implies
 * (with the edge promoted and the sidecar not yet: requests sealed to the new key, responses to the
 * old one); at the end only the new key is in use, and a request sealed to the retired key is refused.
 */
import { copyFile, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { decodeProtectedHeader } from 'jose'
import t from 'tap'
import { FieldOpener } from '../../src/crypto/field.js'
import { parseKeySet } from '../../src/crypto/keys.js'
import { runCli } from '../helpers/cli.js'
import { metricValue } from '../helpers/harness.js'
import { aborted, ROTATION_CONTEXT, ROTATION_FIELDS, startRotationChain } from '../helpers/rotation.js'
import { CANARY, leaksCanary, tempDir } from '../helpers/sealing.js'

const FIELDS = ROTATION_FIELDS
const CONTEXT = ROTATION_CONTEXT
const CLIENTS = 4
/** Requests each client completes within a phase before the next step. */
const PER_CLIENT = 3
const OLD = 'k-2024'
const NEW = 'k-2025'

/** Stable phases (no reload in progress) and the steps between them. */
type Phase =
  | 'before'
  | 'staging'
  | 'staged'
  | 'promoting-edge'
  | 'edge-promoted'
  | 'promoting-sidecar'
  | 'promoted'
  | 'retiring'
  | 'retired'

/** Who seals to which key in each stable phase: [requests (edge), responses (sidecar)]. */
const EXPECTED: Partial<Record<Phase, readonly [string, string]>> = {
  before: [OLD, OLD],
  staged: [OLD, OLD],
  'edge-promoted': [NEW, OLD],
  promoted: [NEW, NEW],
  retired: [NEW, NEW],
}

interface Done {
  readonly op: 'POST' | 'GET'
  readonly client: number
  readonly ref: string
  /** The phase when the request was sent and when its response had arrived. */
  readonly start: Phase
  readonly end: Phase
  readonly status: number
  readonly text: string
}


/** The sum of every series of `name` whose labels include `labels`. */
function metricSum(text: string, name: string, labels: Record<string, string>): number {
  let sum = 0
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`)) continue
    if (Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) sum += Number(line.slice(line.lastIndexOf(' ') + 1))
  }
  return sum
}

t.test('stage, promote (edge first) and retire with the CLI under continuous load: no request fails', async (t) => {
  const dir = await tempDir('ecluse-cli-rotation-')
  const host = join(dir, 'host')
  const set = ['--out', host, '--name', 'trusted-host']
  const init = await runCli(['keys', 'init', ...set, '--kid', OLD])
  t.equal(init.code, 0, init.stderr)
  const privateFile = join(host, 'trusted-host.private.jwks.json')
  const publicFile = join(host, 'trusted-host.public.jwks.json')
  const edgePublic = join(dir, 'edge.public.jwks.json')
  // Installing the public set on the edge host: a copy, as a deployment tool would make it.
  const install = () => copyFile(publicFile, edgePublic)
  await install()

  const store = new Map<string, Record<string, unknown>>()
  const { chain, crossed } = await startRotationChain({ dir, store, edgePublic, sidecarPublic: publicFile, sidecarPrivate: privateFile })
  t.teardown(chain.close)

  // Continuous load: each client creates a record (sensitive fields sealed by the edge), then reads
  // it back (sealed by the sidecar, checked by the edge), until told to stop.
  let phase: Phase = 'before'
  let stop = false
  let seq = 0
  const done: Done[] = []
  const sent = new Map<string, Record<string, string>>()
  const client = async (c: number) => {
    while (!stop) {
      const ref = `-c${c}-${++seq}`
      const values = { name: CANARY.name + ref, passport: CANARY.passport + ref, email: CANARY.email + ref }
      sent.set(ref, values)
      const postStart = phase
      const created = await chain.edge
        .request('/v1/accreditations', {
          method: 'POST',
          body: JSON.stringify({ ...values, status: 'pending', ref }),
          headers: { 'content-type': 'application/json' },
        })
        .catch(aborted)
      done.push({ op: 'POST', client: c, ref, start: postStart, end: phase, status: created.status, text: created.text })
      if (created.status !== 200) continue
      const id = (JSON.parse(created.text) as { id: string }).id
      const getStart = phase
      const read = await chain.edge.request(`/v1/accreditations/${id}`).catch(aborted)
      done.push({ op: 'GET', client: c, ref, start: getStart, end: phase, status: read.status, text: read.text })
    }
  }
  /** Until every client has completed PER_CLIENT requests sent in this phase (so none is left from before). */
  const settle = async () => {
    const current = phase
    const enough = () =>
      Array.from({ length: CLIENTS }, (_, c) => done.filter((d) => d.client === c && d.start === current).length).every(
        (n) => n >= PER_CLIENT,
      )
    while (!enough()) await new Promise((r) => setTimeout(r, 10))
  }
  /** Reloads, then checks what its `reloaded` line says it now holds: the operator's check. */
  const reload = async (who: 'edge' | 'sidecar', why: string, kids: string[], current: string) => {
    t.match(await chain[who].gateway.reload(), { ok: true }, `the ${who} reloaded ${why}`)
    // Every key set of either gateway is a copy of the one pair of files.
    const { loaded } = chain[who].logs.find('reloaded').at(-1) as { loaded: { keySets: Array<{ name: string; current: string; kids: string[] }> } }
    t.ok(loaded.keySets.length > 0)
    for (const set of loaded.keySets) {
      t.same([set.kids, set.current], [kids, current], `its reloaded line lists ${kids.join(', ')} for ${set.name}, ${current} current`)
    }
  }
  const cli = async (argv: string[], expect: RegExp) => {
    const r = await runCli(argv)
    t.equal(r.code, 0, `${argv.slice(0, 2).join(' ')}: ${r.stderr}`)
    t.match(r.stdout, expect)
  }
  const load = Promise.all(Array.from({ length: CLIENTS }, (_, c) => client(c)))
  await settle()

  // 1. Stage: the new key accepted everywhere, sealed to by nobody yet.
  phase = 'staging'
  await cli(['keys', 'init', ...set, '--rotate', '--stage', '--kid', NEW], new RegExp(`^staged kid ${NEW} .*the current kid stays ${OLD}`))
  // Kept to check every value afterwards, those sealed to the old key included.
  const staged = parseKeySet(await readFile(privateFile), { requirePrivate: true })
  t.same([staged.kids, staged.current.kid], [[OLD, NEW], OLD], 'staged: both keys, the old one current')
  await install()
  await reload('sidecar', 'the staged set', [OLD, NEW], OLD)
  await reload('edge', 'the staged set', [OLD, NEW], OLD)
  phase = 'staged'
  await settle()

  // 2. Promote, the edge first: it seals requests to the new key, which the sidecar already opens,
  //    and still accepts the responses the sidecar seals to the old one.
  phase = 'promoting-edge'
  await cli(['keys', 'promote', ...set, '--kid', NEW], new RegExp(`^promoted kid ${NEW} `))
  await install()
  await reload('edge', 'the promoted set', [NEW, OLD], NEW)
  phase = 'edge-promoted'
  await settle()
  phase = 'promoting-sidecar'
  await reload('sidecar', 'the promoted set', [NEW, OLD], NEW)
  phase = 'promoted'
  await settle()

  // 3. Retire the old key: nothing is sealed to it any more.
  phase = 'retiring'
  await cli(['keys', 'retire', ...set, '--kid', OLD], new RegExp(`^retired kid ${OLD} .*\\nwarning: a value sealed to ${OLD} no longer opens`))
  await install()
  await reload('sidecar', 'the set without the old key', [NEW], NEW)
  await reload('edge', 'the set without the old key', [NEW], NEW)
  phase = 'retired'
  await settle()
  stop = true
  await load

  const failed = done.filter((d) => d.status !== 200)
  t.equal(failed.length, 0, `no failed request out of ${done.length}: ${failed.slice(0, 3).map((f) => `${f.op} ${f.start}→${f.end} ${f.status} ${f.text}`).join('; ')}`)
  for (const p of Object.keys(EXPECTED) as Phase[]) {
    t.ok(done.filter((d) => d.start === p && d.end === p).length >= CLIENTS * PER_CLIENT, `requests ran entirely in the phase "${p}"`)
  }

  // The files as the CLI left them: only the new key, current in both.
  const finalPrivate = parseKeySet(await readFile(privateFile), { requirePrivate: true })
  const finalPublic = parseKeySet(await readFile(edgePublic), { publicOnly: true })
  t.same([finalPrivate.kids, finalPrivate.current.kid], [[NEW], NEW], 'the private set: the new key only')
  t.same([finalPublic.kids, finalPublic.current.kid], [[NEW], NEW], 'the edge public set: the new key only')

  // Every response value came back sealed by the sidecar, to the key its state implies, and opens
  // (with the staged set, which holds both keys) to what was sent, bound to its record.
  const opener = new FieldOpener(staged)
  const kinds = () => Object.fromEntries(Object.keys(EXPECTED).map((p) => [p, new Set<string>()])) as Record<Phase, Set<string>>
  const responseKids = kinds()
  const seen = new Set<string>()
  for (const d of done.filter((x) => x.status === 200)) {
    const doc = JSON.parse(d.text) as Record<string, string>
    const values = sent.get(d.ref)!
    for (const f of FIELDS) {
      const member = f.slice(1) as keyof typeof values
      const kid = String(decodeProtectedHeader(doc[member]!).kid)
      seen.add(kid)
      if (d.start === d.end) responseKids[d.start]?.add(kid)
      const plain = opener.open(doc[member]!, { route: CONTEXT, ptr: f, rid: doc['id'] })
      if (plain.toString() !== JSON.stringify(values[member])) t.fail(`${d.op} ${d.ref}${f} did not open to what was sent`)
    }
  }

  // What the edge sealed, as it crossed: nothing in plaintext, every value opens to what was sent.
  const requestKids = kinds()
  const posts = new Map(done.filter((d) => d.op === 'POST').map((d) => [d.ref, d]))
  t.equal(crossed.filter((b) => b.startsWith('{')).length, posts.size, 'every POST crossed once (a GET has no body)')
  t.equal(crossed.filter((b) => leaksCanary(b) !== undefined).length, 0, 'nothing crossed in plaintext')
  let sealedToOld: string | undefined
  for (const body of crossed.filter((b) => b.startsWith('{'))) {
    const doc = JSON.parse(body) as Record<string, string>
    const d = posts.get(doc['ref']!)!
    const kid = String(decodeProtectedHeader(doc['name']!).kid)
    seen.add(kid)
    if (d.start === d.end) requestKids[d.start]?.add(kid)
    if (kid === OLD) sealedToOld ??= body
    for (const f of FIELDS) {
      const plain = opener.open(doc[f.slice(1)]!, { route: CONTEXT, ptr: f })
      if (plain.toString() !== JSON.stringify(sent.get(d.ref)![f.slice(1)])) t.fail(`${d.ref}${f} did not open`)
    }
  }
  t.same([...seen].sort(), [OLD, NEW], 'only the two keys were ever used')
  for (const [p, [request, response]] of Object.entries(EXPECTED) as Array<[Phase, readonly [string, string]]>) {
    t.same([...requestKids[p]], [request], `${p}: the edge sealed every request to ${request}`)
    t.same([...responseKids[p]], [response], `${p}: the sidecar sealed every response to ${response}`)
  }

  // Nothing was refused or failed anywhere, and each gateway counted its three reloads.
  for (const [who, g] of [['edge', chain.edge], ['sidecar', chain.sidecar]] as const) {
    const metrics = await g.metrics()
    t.equal(metricSum(metrics, 'ecluse_crypto_operations_total', { result: 'failed' }), 0, `${who}: no failed crypto operation`)
    t.ok(metricSum(metrics, 'ecluse_crypto_operations_total', { result: 'ok' }) > 0, `${who}: crypto operations were counted`)
    t.equal(metricSum(metrics, 'ecluse_transform_refusals_total', {}), 0, `${who}: no transform refusal`)
    t.equal(metricValue(metrics, 'ecluse_reloads_total', { result: 'ok' }), 3, `${who}: three reloads`)
    t.equal(metricValue(metrics, 'ecluse_reloads_total', { result: 'failed' }), 0, `${who}: none failed`)
  }

  // A request sealed to the retired key, replayed at the sidecar as the edge: refused, uniformly.
  t.ok(sealedToOld !== undefined, 'a request sealed to the old key was captured before the rotation')
  const stored = store.size
  chain.sidecar.agent(chain.pki.gatewayTrustedClient, chain.pki.trustedCa) // as the edge
  const replay = await chain.sidecar.request('/v1/accreditations', {
    method: 'POST',
    body: sealedToOld!,
    headers: { 'content-type': 'application/json' },
  })
  t.equal(replay.status, 400, 'the sidecar no longer opens the retired key')
  t.match(replay.json(), { error: 'open_failed' })
  t.equal(store.size, stored, 'and nothing reached the service')
  const sidecarMetrics = await chain.sidecar.metrics()
  t.equal(metricValue(sidecarMetrics, 'ecluse_transform_refusals_total', { route: 'create', reason: 'open_failed' }), 1, 'counted as open_failed')

  for (const [who, g] of [['edge', chain.edge], ['sidecar', chain.sidecar]] as const) {
    t.equal(leaksCanary(await g.metrics()), undefined, `no canary in the ${who} metrics`)
    t.equal(leaksCanary(g.logs.text()), undefined, `no canary in the ${who} log`)
  }
})
