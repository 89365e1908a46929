import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { stringify } from 'yaml'
import { type CliIo, main } from '../src/cli.js'
import { gatewayConfig } from './helpers/harness.js'
import { makeTestPki } from './helpers/pki.js'
import { SPONSOR_APP, tempDir, writeKeyFiles } from './helpers/sealing.js'

// A gateway that only seals or verifies (the edge) must never hold the trusted host's private keys:
// whoever takes that gateway would open everything. `config check` refuses such a profile exactly as
// `serve` would, and never prints a key value while saying why.

const pki = await makeTestPki()
const dir = await tempDir()
t.teardown(() => import('node:fs/promises').then((fs) => fs.rm(dir, { recursive: true, force: true })))
const keys = await writeKeyFiles(dir, 'th')
const privateValues = (keys.privateJwks.keys as Array<Record<string, unknown>>).flatMap((k) =>
  ['d', 'p', 'q', 'dp', 'dq', 'qi'].map((m) => k[m]).filter((v): v is string => typeof v === 'string'),
)

const sealRoute = {
  name: 'create',
  methods: ['POST'],
  path: '/v1/records',
  allow: [SPONSOR_APP],
  upstream: 'backend',
  transforms: { request: [{ type: 'seal', recipients: 'th', fields: ['/passport'] }] },
}

async function check(name: string, config: Record<string, unknown>) {
  const file = join(dir, `${name}.yaml`)
  await writeFile(file, stringify(config))
  let stdout = ''
  let stderr = ''
  const io: CliIo = { stdout: { write: (s: string) => (stdout += s) }, stderr: { write: (s: string) => (stderr += s) }, env: {} }
  const code = await main(['config', 'check', file], io)
  return { code, stdout, stderr, file }
}

function leaksKey(text: string): string | undefined {
  return privateValues.find((v) => text.includes(v))
}

t.test('control: the sealing profile with the public set passes', async (t) => {
  const r = await check('public', gatewayConfig(pki, 9443, [sealRoute], { keys: { th: { file: keys.publicPath } } }))
  t.equal(r.code, 0, r.stderr)
  t.match(r.stdout, /^ok: 1 routes, 1 upstreams/)
})

t.test('the private file given to a public set is refused as key material, naming the file', async (t) => {
  const r = await check('private-file', gatewayConfig(pki, 9443, [sealRoute], { keys: { th: { file: keys.privatePath } } }))
  t.equal(r.code, 1)
  t.ok(r.stderr.startsWith(`ecluse: keys.th.file (${keys.privatePath}): keys[0] (kid "`), 'names the key path, the file and the key')
  t.match(r.stderr, /holds private key material where only public keys are allowed\n$/, 'and why')
  t.equal(leaksKey(r.stderr + r.stdout), undefined, 'no private key value in the output')
})

t.test('a private set that no open step uses is refused, naming the key', async (t) => {
  const r = await check(
    'private-unused',
    gatewayConfig(pki, 9443, [sealRoute], { keys: { th: { file: keys.privatePath, private: true } } }),
  )
  t.equal(r.code, 1)
  t.match(r.stderr, /keys\.th\.private: a private key set that no open or open-body step uses/)
  t.equal(leaksKey(r.stderr + r.stdout), undefined, 'no private key value in the output')
})

t.test('the same private set is accepted once an open step uses it', async (t) => {
  const openRoute = {
    ...sealRoute,
    name: 'open',
    path: '/v1/open',
    transforms: { request: [{ type: 'open', keys: 'th-private', fields: ['/passport'] }] },
  }
  const r = await check(
    'private-used',
    gatewayConfig(pki, 9443, [sealRoute, openRoute], {
      keys: { th: { file: keys.publicPath }, 'th-private': { file: keys.privatePath, private: true } },
    }),
  )
  t.equal(r.code, 0, r.stderr)
  t.match(r.stdout, /^ok: 2 routes, 1 upstreams/)
})

t.test('a set whose kid names another key than one of the gateway\'s private sets is refused, said once; two public sets may share kids', async (t) => {
  // Hand-chosen kids, the same in two sets: the public file of the other installed by mistake.
  const own = await writeKeyFiles(dir, 'own', { kid: '2025-01' })
  const other = await writeKeyFiles(dir, 'other', { kid: '2025-01' })
  const mismatch =
    'ecluse: keys.th.file and keys.th-private.file hold kid "2025-01" as two different keys: what is sealed under that kid ' +
    'to one would be opened with the other, and never open; install the public half of the private set, or give the keys other kids\n'
  // The sidecar: one route opens requests and seals responses.
  const exchange = {
    ...sealRoute,
    name: 'exchange',
    path: '/v1/exchange',
    transforms: { request: [{ type: 'open', keys: 'th-private', fields: ['/passport'] }], response: [{ type: 'seal', recipients: 'th', fields: ['/passport'] }] },
  }
  // Or, found by the second re-review, the usual split: a record stored sealed by one route is opened by another.
  const store = { ...sealRoute, name: 'store', path: '/v1/store', transforms: { response: [{ type: 'seal', recipients: 'th', fields: ['/passport'] }] } }
  const fetch = { ...sealRoute, name: 'fetch', path: '/v1/fetch', transforms: { request: [{ type: 'open', keys: 'th-private', fields: ['/passport'] }] } }
  for (const [what, routes] of [
    ['one route', [exchange]],
    ['two routes', [store, fetch]],
  ] as const) {
    const sidecar = (publicPath: string) =>
      gatewayConfig(pki, 9443, [...routes], { keys: { th: { file: publicPath }, 'th-private': { file: own.privatePath, private: true } } })
    const control = await check(`own-half-${routes.length}`, sidecar(own.publicPath))
    t.equal(control.code, 0, `${what}, control: its own public half (${control.stderr})`)
    const r = await check(`other-half-${routes.length}`, sidecar(other.publicPath))
    t.equal(r.code, 1, `${what}: refused`)
    t.equal(r.stderr, mismatch, `${what}: said once`)
    t.equal(leaksKey(r.stderr + r.stdout), undefined, 'no private key value in the output')
  }

  // Two public sets (two trusted hosts) that chose the same kid: nothing on the gateway opens either.
  const twoHosts = gatewayConfig(pki, 9443, [{ ...sealRoute, transforms: { request: [{ type: 'seal', recipients: 'th', fields: ['/passport'] }, { type: 'seal', recipients: 'other', fields: ['/name'] }] } }], {
    keys: { th: { file: own.publicPath }, other: { file: other.publicPath } },
  })
  const e = await check('two-hosts', twoHosts)
  t.equal(e.code, 0, e.stderr)
})
