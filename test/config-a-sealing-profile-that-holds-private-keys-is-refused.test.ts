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

t.test("a public set whose kid names another key than the gateway's private set is refused; unrelated public sets may share kids", async (t) => {
  const openRoute = {
    ...sealRoute,
    name: 'open',
    path: '/v1/open',
    transforms: { request: [{ type: 'open', keys: 'th-private', fields: ['/passport'] }] },
  }
  // Hand-chosen kids, the same in two sets: the public file of the other installed by mistake.
  const own = await writeKeyFiles(dir, 'own', { kid: '2025-01' })
  const other = await writeKeyFiles(dir, 'other', { kid: '2025-01' })
  const sidecar = (publicPath: string, extra: Record<string, unknown> = {}) =>
    gatewayConfig(pki, 9443, [sealRoute, openRoute], {
      keys: { th: { file: publicPath }, 'th-private': { file: own.privatePath, private: true }, ...extra },
    })
  t.equal((await check('own-half', sidecar(own.publicPath))).code, 0, 'control: its own public half')

  const r = await check('other-half', sidecar(other.publicPath))
  t.equal(r.code, 1)
  t.equal(
    r.stderr,
    'ecluse: keys.th.file holds kid "2025-01" as another key than keys.th-private.file (private): what is sealed to one under that kid ' +
      'would be opened with the other, and never open; install the public half of the private set, or give the keys other kids\n',
  )
  t.equal(leaksKey(r.stderr + r.stdout), undefined, 'no private key value in the output')

  // Two public sets (two trusted hosts) that chose the same kid: each is used on its own.
  const edge = gatewayConfig(pki, 9443, [sealRoute, { ...sealRoute, name: 'other', path: '/v1/other', transforms: { request: [{ type: 'seal', recipients: 'other', fields: ['/passport'] }] } }], {
    keys: { th: { file: own.publicPath }, other: { file: other.publicPath } },
  })
  const e = await check('two-hosts', edge)
  t.equal(e.code, 0, e.stderr)
})
