/**
 * `serve --workers N` with sealing routes: the primary runs the checks of `config check` before it
 * forks, key sets included, and the workers seal and open with the configured sets. (Until this test
 * the primary compiled the route table without the key sets, so every configuration with a sealing
 * step failed at boot in cluster mode, the shipped profiles among them.)
 */
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { compactDecrypt, importJWK } from 'jose'
import t from 'tap'
import { Agent, request } from 'undici'
import { stringify } from 'yaml'
import { JOSE_OPEN } from '../helpers/cli.js'
import { ClusterProcess } from '../helpers/cluster.js'
import { gatewayConfig, TestUpstream } from '../helpers/harness.js'
import { makeTestPki } from '../helpers/pki.js'
import { CANARY, leaksCanary, recordingHandler, SPONSOR_APP, tempDir, writeKeyFiles } from '../helpers/sealing.js'

const REQUESTS = 8
const step = { context: 'accreditations', fields: ['/passport'] }
const routes = [
  { name: 'seal', methods: ['POST'], path: '/v1/seal', allow: [SPONSOR_APP], upstream: 'backend', transforms: { request: [{ type: 'seal', recipients: 'th', ...step }] } },
  {
    name: 'open',
    methods: ['POST'],
    path: '/v1/open',
    allow: [SPONSOR_APP],
    upstream: 'backend',
    transforms: { request: [{ type: 'open', keys: 'th-private', ...step }] },
  },
]

t.test('two workers seal with the public set and open with the private set of their configuration', async (t) => {
  const pki = await makeTestPki()
  const dir = await tempDir('ecluse-workers-sealing-')
  const keys = await writeKeyFiles(dir, 'th', { kid: 'workers-k' })
  const privateKey = await importJWK(keys.privateJwks.keys[0]!, 'ECDH-ES+A256KW')
  const bodies: Buffer[] = []
  const upstream = new TestUpstream(pki, recordingHandler(bodies))
  await upstream.listen()
  t.teardown(() => upstream.close())
  const configPath = join(dir, 'gateway.yaml')
  const config = gatewayConfig(pki, upstream.port, routes, {
    keys: { th: { file: keys.publicPath }, 'th-private': { file: keys.privatePath, private: true } },
    shutdown: { drainTimeoutMs: 2000 },
  })
  await writeFile(configPath, stringify(config))

  const cluster = new ClusterProcess(t, configPath)
  const { sponsor } = await cluster.started()

  const workers = new Set<unknown>()
  for (let i = 0; i < REQUESTS; i++) {
    // A fresh connection per request: the primary hands connections to the workers in turn.
    const agent = new Agent({
      connect: { ca: pki.sponsorCa.certPem, cert: pki.sponsorClient.certPem, key: pki.sponsorClient.keyPem, servername: 'localhost' },
    })
    t.teardown(() => agent.destroy())
    const passport = `${CANARY.passport}-${i}`
    const post = async (path: string, body: string) => {
      const res = await request(`${sponsor}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body, dispatcher: agent })
      await res.body.dump()
      t.equal(res.statusCode, 200, `${path} #${i}`)
      return bodies.at(-1)!.toString('utf8')
    }
    const sealed = await post('/v1/seal', JSON.stringify({ id: i, passport }))
    t.equal(leaksCanary(sealed), undefined, 'the upstream of the sealing route sees no plaintext')
    const jwe = JSON.parse(sealed).passport as string
    const opened = await compactDecrypt(jwe, privateKey, { ...JOSE_OPEN, keyManagementAlgorithms: ['ECDH-ES+A256KW'] })
    t.equal(Buffer.from(opened.plaintext).toString('utf8'), JSON.stringify(passport), 'jose opens what a worker sealed')
    t.equal(opened.protectedHeader.kid, 'workers-k')
    t.equal(JSON.parse(await post('/v1/open', sealed)).passport, passport, 'a worker opens it back')
    await agent.close()
  }
  for (const line of cluster.logged('access')) workers.add(line['worker'])
  t.equal(workers.size, 2, 'both workers sealed and opened')

  cluster.child.kill('SIGTERM')
  t.equal(await cluster.exited, 0)
  t.equal(cluster.stderr, '')
  t.equal(leaksCanary(cluster.lines.map((l) => JSON.stringify(l)).join('\n')), undefined, 'no plaintext in any log line')
})

t.test('the primary refuses a profile the key sets make unsafe or broken, before any worker starts', async (t) => {
  const pki = await makeTestPki()
  const dir = await tempDir('ecluse-workers-profile-')
  const keys = await writeKeyFiles(dir, 'th')
  const sealOnly = [routes[0]!]
  const cases = [
    {
      name: 'a sealing-only profile given the private keys',
      keys: { th: { file: keys.privatePath, private: true } },
      routes: sealOnly,
      message: /keys\.th\.private: a private key set that no open or open-body step uses/,
    },
    {
      name: 'a step naming a key set the configuration does not have',
      keys: { other: { file: keys.publicPath } },
      routes: sealOnly,
      message: /routes\[0\]\.transforms\.request\[0\]: recipients: unknown key set "th"/,
    },
    { name: 'a key file that is not there', keys: { th: { file: join(dir, 'missing.jwks.json') } }, routes: sealOnly, message: /keys\.th/ },
  ]
  for (const c of cases) {
    const configPath = join(dir, `${cases.indexOf(c)}.yaml`)
    await writeFile(configPath, stringify(gatewayConfig(pki, 9, c.routes, { keys: c.keys })))
    const cluster = new ClusterProcess(t, configPath)
    t.not(await cluster.exited, 0, c.name)
    t.match(cluster.stderr, c.message, c.name)
    t.notOk(
      cluster.lines.some((l) => l['msg'] === 'écluse gateway started' || l['msg'] === 'écluse cluster started'),
      `${c.name}: nothing listened`,
    )
  }
})
