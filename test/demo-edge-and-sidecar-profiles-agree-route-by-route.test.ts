/**
 * The two reference profiles are one deployment: every value the edge seals is opened by the sidecar
 * with the same context, pointers and record binding; every value the edge requires sealed is sealed
 * by the sidecar the same way; the certificates, names and ports line up. A change to one profile
 * that the other does not follow fails here, not in a deployment.
 */
import { readFile } from 'node:fs/promises'
import path from 'node:path'
import t from 'tap'
import { parse } from 'yaml'
import { DEMO_SERVICE_PORT, REPO_ROOT, SENSITIVE_FIELDS } from '../src/demo/chain.js'
import { DEV_LEAF_SPECS } from '../src/pki/dev-pki.js'

interface Step {
  type: string
  context?: string
  fields?: string[]
  records?: { pattern: string; id: string }
  format?: string
  recipients?: string
  keys?: string
}
interface Route {
  name: string
  methods: string[]
  path: string
  allow: string[]
  upstream: string
  jwks?: string
  transforms?: { request?: Step[]; response?: Step[] }
}
interface Profile {
  sponsor: { listen: { host: string; port: number }; tls: Record<string, string> }
  upstreams: Record<string, { url: string; serverName: string; tls: Record<string, string> }>
  keys: Record<string, { file: string; private?: boolean }>
  routes: Route[]
  admin: { listen: { host: string; port: number } }
}

const load = async (f: string) => parse(await readFile(path.join(REPO_ROOT, 'config', f), 'utf8')) as Profile
const edge = await load('edge.yaml')
const sidecar = await load('trusted-sidecar.yaml')
const sidecarRoute = (name: string) => sidecar.routes.find((r) => r.name === name)
const binding = (s: Step) => ({ context: s.context, fields: s.fields, records: s.records })
const fieldsAt = (prefix: string) => SENSITIVE_FIELDS.map((f) => `${prefix}/${f}`)

t.test('every edge route has its sidecar route, and the sidecar has nothing else but its JWKS', async (t) => {
  for (const r of edge.routes) {
    const s = sidecarRoute(r.name)
    t.ok(s, `the sidecar has ${r.name}`)
    t.same([s?.methods, s?.path], [r.methods, r.path], `${r.name}: same methods and path`)
  }
  const extra = sidecar.routes.filter((s) => !edge.routes.some((r) => r.name === s.name))
  t.same(
    extra.map((s) => [s.name, s.jwks, s.transforms]),
    [['jwks', 'trusted-host', undefined]],
    'the only other sidecar route publishes the public set and carries no body',
  )
})

t.test('what the edge seals on the way in, the sidecar opens with the same binding', async (t) => {
  let checked = 0
  for (const r of edge.routes) {
    const opens = sidecarRoute(r.name)?.transforms?.request ?? []
    for (const step of r.transforms?.request ?? []) {
      const expected = step.type === 'seal' ? 'open' : step.type === 'seal-body' ? 'open-body' : undefined
      t.ok(expected, `${r.name}: the edge's request steps only seal (${step.type})`)
      const match = opens.find((o) => o.type === expected && o.context === step.context)
      t.ok(match, `${r.name}: the sidecar has ${expected} for context ${step.context}`)
      if (match !== undefined) t.same(binding(match), binding(step), `${r.name}: same pointers and record binding`)
      checked++
    }
  }
  t.equal(checked, 2, 'create-accreditation and put-photo')
})

t.test('what the edge requires sealed on the way back, the sidecar seals with the same binding', async (t) => {
  let checked = 0
  for (const r of edge.routes) {
    const seals = sidecarRoute(r.name)?.transforms?.response ?? []
    for (const step of r.transforms?.response ?? []) {
      const expected = step.type === 'require-sealed' ? 'seal' : step.type === 'require-sealed-body' ? 'seal-body' : undefined
      t.ok(expected, `${r.name}: the edge only verifies responses (${step.type})`)
      const match = seals.find((s) => s.type === expected && s.context === step.context)
      t.ok(match, `${r.name}: the sidecar has ${expected} for context ${step.context}`)
      if (match !== undefined) t.same(binding(match), binding(step), `${r.name}: same pointers and record binding`)
      checked++
    }
  }
  t.equal(checked, 4, 'create, get, list and get-photo')
})

t.test('the field lists are the record’s sensitive members, by id, and the vetting notes are stripped first', async (t) => {
  const byName = Object.fromEntries(sidecar.routes.map((r) => [r.name, r]))
  for (const [name, prefix] of [
    ['create-accreditation', ''],
    ['get-accreditation', ''],
    ['list-accreditations', '/records/*'],
  ] as const) {
    const response = byName[name]?.transforms?.response ?? []
    // Response steps run in reverse: the last listed runs first, so strip is listed first.
    t.same(response[0], { type: 'strip', fields: [`${prefix}/vetting`] }, `${name}: the notes are stripped`)
    t.same(binding(response[1]!), { context: 'accreditations', fields: fieldsAt(prefix), records: { pattern: prefix, id: 'id' } })
  }
  t.same(byName['create-accreditation']?.transforms?.request?.[0]?.fields, fieldsAt(''), 'the sidecar opens every sensitive member')
  // NDJSON would repeat the six pointers on every line: as many key agreements as lines of values
  // sealed each under its own ephemeral key. One record per request, on both sides.
  t.equal(byName['create-accreditation']?.transforms?.request?.[0]?.format, 'json', 'the sidecar opens a JSON document only')
  t.equal(edge.routes.find((r) => r.name === 'create-accreditation')?.transforms?.request?.[0]?.format, 'json', 'the edge seals one as well')
  t.same(byName['get-photo']?.transforms?.response, [{ type: 'seal-body', recipients: 'trusted-host', context: 'photos-out/{id}' }])
})

t.test('the edge holds the public set only; the sidecar opens with its private set and seals to the public one', async (t) => {
  t.same(edge.keys, { 'trusted-host': { file: '../keys/trusted-host.public.jwks.json' } })
  t.same(sidecar.keys, {
    'trusted-host': { file: '../keys/trusted-host.public.jwks.json' },
    'trusted-host-private': { file: '../keys/trusted-host.private.jwks.json', private: true },
  })
  const steps = (p: Profile) => p.routes.flatMap((r) => [...(r.transforms?.request ?? []), ...(r.transforms?.response ?? [])])
  for (const s of steps(edge)) t.equal(s.recipients, 'trusted-host', `edge ${s.type} uses the public set`)
  for (const s of steps(sidecar)) {
    if (s.type === 'open' || s.type === 'open-body') t.equal(s.keys, 'trusted-host-private', `sidecar ${s.type} opens with the private set`)
    else if (s.type !== 'strip') t.equal(s.recipients, 'trusted-host', `sidecar ${s.type} seals to the public set`)
  }
})

t.test('certificates, names and ports line up along the chain', async (t) => {
  const [up] = Object.values(edge.upstreams)
  t.equal(up?.url, `https://127.0.0.1:${sidecar.sponsor.listen.port}`, "the edge's upstream is the sidecar's listener")
  t.ok((DEV_LEAF_SPECS.sidecarServer.dnsNames as readonly string[]).includes(up!.serverName), 'and its name is on the sidecar certificate')
  t.same(
    [up?.tls['ca'], up?.tls['cert'], sidecar.sponsor.tls['cert'], sidecar.sponsor.tls['clientCa']],
    ['../certs/trusted-ca.crt', '../certs/edge-client.crt', '../certs/sidecar-server.crt', '../certs/sponsor-ca.crt'],
    'edge → sidecar: the trusted CA verifies the sidecar; the sponsor CA verifies the edge',
  )
  t.equal(edge.sponsor.tls['clientCa'], '../certs/sponsor-ca.crt')
  const edgeId = `uri:${DEV_LEAF_SPECS.edgeClient.uris[0]}`
  for (const r of sidecar.routes) t.same(r.allow, [edgeId], `sidecar ${r.name} admits the edge only`)
  for (const r of edge.routes) t.same(r.allow, [`uri:${DEV_LEAF_SPECS.sponsorClient.uris[0]}`], `edge ${r.name} admits the sponsor app`)
  const [service] = Object.values(sidecar.upstreams)
  t.equal(service?.url, `https://127.0.0.1:${DEMO_SERVICE_PORT}`, "the sidecar's upstream is the demo service")
  t.ok((DEV_LEAF_SPECS.trustedServer.dnsNames as readonly string[]).includes(service!.serverName))
  t.same([edge.sponsor.listen, sidecar.sponsor.listen.host, edge.admin.listen, sidecar.admin.listen], [
    { host: '127.0.0.1', port: 8443 },
    '127.0.0.1',
    { host: '127.0.0.1', port: 9090 },
    { host: '127.0.0.1', port: 9091 },
  ], 'the ports npm start prints, loopback only')
})
