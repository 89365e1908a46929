import { writeFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import t from 'tap'
import { loadConfigFile, parseConfig } from '../src/config/load.js'

const nested = resolve('test/fixtures/config/nested')

t.test('every file path is resolved against the configuration file, not the working directory', async (t) => {
  const config = await loadConfigFile('test/fixtures/config/nested/relative-paths.yaml')
  t.same(config.sponsor.tls, {
    cert: resolve(nested, '../pki/gateway-sponsor.crt'),
    key: join(nested, 'gateway-sponsor.key'),
    clientCa: join(nested, 'sponsor-ca.crt'),
    minVersion: 'TLSv1.2',
    handshakeTimeoutMs: 5000,
  })
  const upstream = config.upstreams['accreditation']!.tls
  t.equal(upstream.ca, '/etc/ecluse/trusted-ca.crt', 'an absolute path stays as written')
  t.equal(upstream.cert, join(nested, 'sub/dir/gateway-trusted-client.crt'))
  t.equal(upstream.key, resolve(nested, '../../gateway-trusted-client.key'))
})

t.test('the same file loads to the same paths from another working directory', async (t) => {
  const fromHere = await loadConfigFile('test/fixtures/config/nested/relative-paths.yaml')
  const cwd = process.cwd()
  process.chdir(nested)
  t.teardown(() => process.chdir(cwd))
  const fromThere = await loadConfigFile('relative-paths.yaml')
  t.same(fromThere, fromHere)
})

t.test('a configuration in another directory resolves against that directory', async (t) => {
  const dir = t.testdir({ deploy: {} })
  const file = join(dir, 'deploy', 'gateway.yaml')
  const absoluteCa = join(dir, 'elsewhere', 'sponsor-ca.crt')
  await writeFile(
    file,
    `sponsor:
  listen: { port: 0 }
  tls: { cert: gw.crt, key: keys/gw.key, clientCa: ${JSON.stringify(absoluteCa)} }
upstreams:
  a:
    url: https://127.0.0.1:1
    serverName: a.test
    tls: { ca: ../ca/trusted.crt, cert: a.crt, key: a.key }
routes: []
admin: { listen: { port: 0 } }
`,
  )
  const config = await loadConfigFile(file)
  t.equal(config.sponsor.tls.cert, join(dir, 'deploy', 'gw.crt'))
  t.equal(config.sponsor.tls.key, join(dir, 'deploy', 'keys', 'gw.key'))
  t.equal(config.sponsor.tls.clientCa, absoluteCa)
  t.equal(config.upstreams['a']!.tls.ca, join(dir, 'ca', 'trusted.crt'))
})

t.test('parseConfig leaves paths as written (resolution is the loader\'s job)', async (t) => {
  const config = parseConfig(
    'sponsor:\n  listen: { port: 0 }\n  tls: { cert: a.crt, key: a.key, clientCa: ca.crt }\nupstreams: {}\nroutes: []\nadmin: { listen: { port: 0 } }\n',
    'inline.yaml',
  )
  t.equal(config.sponsor.tls.cert, 'a.crt')
})
