import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { minimalServeConfig, runCli, spawnCli } from './helpers/cli.js'
import { makeTestPki } from './helpers/pki.js'

const pki = await makeTestPki()

const TWO_ROUTES = `  - name: list
    methods: [GET]
    path: /v1/accreditations
    allow: [uri:spiffe://sponsor.test/accreditation-app]
    upstream: accreditation
  - name: get
    methods: [GET]
    path: /v1/accreditations/:id
    allow: [uri:spiffe://sponsor.test/accreditation-app]
    upstream: accreditation
`

/** A configuration over the test PKI; `routes` and `sponsorKey` vary per case. */
function configText(opts: { sponsorKey?: string; routes?: string } = {}): string {
  return minimalServeConfig(pki, { routes: TWO_ROUTES, ...opts })
}

const dir = t.testdir()
const write = async (name: string, text: string) => {
  const file = join(dir, name)
  await writeFile(file, text)
  return file
}

t.test('the CLI process: ok on a good file, one line naming the key on a bad one', async (t) => {
  const good = await write('good.yaml', configText())
  const badTls = await write('bad-tls.yaml', configText({ sponsorKey: pki.sponsorClient.keyPath }))
  const [ok, spelledAsServe, schema, tls] = await Promise.all([
    spawnCli(['config', 'check', good]),
    spawnCli(['config', 'check', '--config', good]),
    spawnCli(['config', 'check', 'test/fixtures/config/unknown-upstream.yaml']),
    spawnCli(['config', 'check', badTls]),
  ])

  t.equal(ok.code, 0, 'a good file exits 0')
  t.equal(ok.stdout.toString(), 'ok: 2 routes, 1 upstreams\n')
  t.equal(ok.stderr, '')
  t.same(spelledAsServe, ok, '--config FILE, as `serve` spells it, is the same check')

  t.equal(schema.code, 1, 'a schema problem exits 1')
  t.equal(schema.stdout.length, 0)
  t.equal(
    schema.stderr,
    'ecluse: test/fixtures/config/unknown-upstream.yaml: routes[0].upstream: unknown upstream "accreditaton"\n',
  )

  t.equal(tls.code, 1, 'a TLS problem exits 1')
  t.equal(
    tls.stderr,
    `ecluse: sponsor.tls.key: ${pki.sponsorClient.keyPath}: does not match the certificate in ${pki.gatewaySponsorServer.certPath}\n`,
  )
  t.notMatch(tls.stderr, 'PRIVATE KEY')
})

t.test('route-table problems are named with the file and the key, like the loader\'s', async (t) => {
  const route = (extra: string) => `  - name: r
    methods: [GET]
    path: /v1/items/:id
    allow: [cn:x]
    upstream: accreditation
${extra}`
  const transform = await write(
    'transform.yaml',
    configText({ routes: route('    transforms:\n      response: [{ type: no-such-transform, field: x }]\n') }),
  )
  const r = await runCli(['config', 'check', transform])
  t.equal(r.code, 1)
  t.match(
    r.stderr,
    new RegExp(
      `^ecluse: ${transform.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: routes\\[0\\]\\.transforms\\.response\\[0\\]\\.type: unknown transform "no-such-transform" \\(known: [^)]*\\)\\n$`,
    ),
  )

  const clash = await write(
    'clash.yaml',
    configText({ routes: `${route('')}${route('').replace('name: r', 'name: s').replace(':id', ':other')}` }),
  )
  const c = await runCli(['config', 'check', clash])
  t.equal(c.code, 1)
  t.match(c.stderr, `ecluse: ${clash}: routes[1].path: `)
  t.equal(c.stderr.split('\n').length, 2, 'one line')

  // Found by a review: a line of the loader's that names the file by position (`FILE:2:1: …`) got
  // the file again in front of it.
  const twice = await write('twice.yaml', `${configText()}log: { level: info }\nlog: { level: debug }\n`)
  const d = await runCli(['config', 'check', twice])
  t.equal(d.code, 1)
  t.match(d.stderr, new RegExp(`^ecluse: ${twice.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:\\d+:\\d+: `))
  t.equal(d.stderr.split(twice).length, 2, 'the file named once')
})

t.test('a private key file any user can read is warned about, as serve warns, and the check still passes', async (t) => {
  const { chmod, copyFile } = await import('node:fs/promises')
  const loose = join(dir, 'loose.key')
  await copyFile(pki.gatewaySponsorServer.keyPath, loose)
  await chmod(loose, 0o644)
  const r = await runCli(['config', 'check', await write('loose.yaml', configText({ sponsorKey: loose }))])
  t.equal(r.code, 0)
  t.equal(r.stdout, 'ok: 2 routes, 1 upstreams\n')
  t.equal(r.stderr, `warning: sponsor.tls.key: ${loose}: private key file is readable by every user of this host; make it 0600 (or 0640, 0440 for a group)\n`)
  await chmod(loose, 0o600)
  t.equal((await runCli(['config', 'check', join(dir, 'loose.yaml')])).stderr, '', 'none once it is 0600')
})

t.test('a configuration file any user can write is warned about, as serve warns, and the check still passes', async (t) => {
  const { chmod } = await import('node:fs/promises')
  const { WRITABLE_FILE_WARNING } = await import('../src/config/key-file-modes.js')
  const open = await write('open.yaml', configText())
  await chmod(open, 0o666)
  const r = await runCli(['config', 'check', open])
  t.equal(r.code, 0)
  t.equal(r.stderr, `warning: the configuration file: ${open}: ${WRITABLE_FILE_WARNING}\n`)
})

t.test('found by a review of the file-mode warnings: a file replaceable through a folder higher up, or through a symbolic link, is warned about', async (t) => {
  const { chmod, copyFile, mkdir, symlink } = await import('node:fs/promises')
  const { WRITABLE_FILE_WARNING } = await import('../src/config/key-file-modes.js')
  // shared/ 0777 → ecluse/ 0755 → the key: another user renames ecluse/ away and puts their own in its place.
  const shared = join(dir, 'shared')
  await mkdir(join(shared, 'ecluse'), { recursive: true })
  const deep = join(shared, 'ecluse', 'sponsor.key')
  await copyFile(pki.gatewaySponsorServer.keyPath, deep)
  await chmod(deep, 0o600)
  await chmod(shared, 0o777)
  t.teardown(() => chmod(shared, 0o755))
  const r1 = await runCli(['config', 'check', await write('deep.yaml', configText({ sponsorKey: deep }))])
  t.equal(r1.code, 0)
  t.equal(r1.stderr, `warning: sponsor.tls.key: ${deep}: ${WRITABLE_FILE_WARNING}\n`, 'a world-writable folder two levels up')
  await chmod(shared, 0o1777)
  const r2 = await runCli(['config', 'check', await write('deep.yaml', configText({ sponsorKey: deep }))])
  t.equal(r2.stderr, '', 'with the sticky bit there, others cannot move what is not theirs')

  // etc/sponsor.key → open/sponsor.key, open/ 0777: the link's folder is the owner's, the target's is not.
  const open = join(dir, 'open')
  await mkdir(open, { recursive: true })
  await mkdir(join(dir, 'etc'), { recursive: true })
  const target = join(open, 'sponsor.key')
  await copyFile(pki.gatewaySponsorServer.keyPath, target)
  await chmod(target, 0o600)
  const link = join(dir, 'etc', 'sponsor.key')
  await symlink(target, link)
  await chmod(open, 0o777)
  t.teardown(() => chmod(open, 0o755))
  const r3 = await runCli(['config', 'check', await write('linked.yaml', configText({ sponsorKey: link }))])
  t.equal(r3.code, 0)
  t.equal(r3.stderr, `warning: sponsor.tls.key: ${link}: ${WRITABLE_FILE_WARNING}\n`, 'the file a link resolves to, in a world-writable folder')
})

t.test('found by a re-review: only a read-only Kubernetes configMap or secret volume is exempt, proven by the mount, not by a name', async (t) => {
  const { chmod, copyFile, mkdir, symlink } = await import('node:fs/promises')
  const { inKubeletVolume, MOUNT_INFO, WRITABLE_FILE_WARNING } = await import('../src/config/key-file-modes.js')
  const line = (mountPoint: string, root: string, options: string) => `1234 30 0:52 ${root} ${mountPoint.replaceAll(' ', '\\040')} ${options},relatime - ext4 /dev/sda1 rw`
  const kubelet = '/var/lib/kubelet/pods/6a1f/volumes/kubernetes.io~configmap/ecluse-config'
  const mounts = [
    { mountPoint: '/', root: '/', readOnly: false },
    { mountPoint: '/etc/ecluse', root: kubelet, readOnly: true },
    { mountPoint: '/etc/bound', root: '/srv/shared', readOnly: true },
    { mountPoint: '/etc/ecluse/writable', root: '/var/lib/kubelet/pods/6a1f/volumes/kubernetes.io~secret/keys', readOnly: false },
  ]
  t.ok(inKubeletVolume('/etc/ecluse/..2026_12_07_02_13_20.1/ca.crt', mounts), 'in a read-only configMap volume')
  t.ok(inKubeletVolume('/etc/ecluse', mounts), 'its mount point')
  t.notOk(inKubeletVolume('/etc/bound/..2026_12_07_02_13_20.1/ca.crt', mounts), 'a read-only bind of a host folder, whatever its folders are named')
  t.notOk(inKubeletVolume('/etc/ecluse/writable/ca.crt', mounts), 'a mount of kubelet’s that is not read-only')
  t.notOk(inKubeletVolume('/etc/ecluse-other/ca.crt', mounts), 'a folder whose name only starts like the mount point')

  // Through the warning itself, with this process's mount table replaced by one the test writes.
  const { join } = await import('node:path')
  const volume = join(dir, 'volume')
  const version = join(volume, '..2026_12_07_02_13_20.1')
  await mkdir(version, { recursive: true })
  const key = join(version, 'sponsor.key')
  await copyFile(pki.gatewaySponsorServer.keyPath, key)
  await chmod(key, 0o600)
  await symlink(key, join(volume, 'sponsor.key')).catch(() => undefined)
  await chmod(volume, 0o777)
  t.teardown(() => chmod(volume, 0o755))
  const mountInfo = join(dir, 'mountinfo')
  const saved = MOUNT_INFO.path
  MOUNT_INFO.path = mountInfo
  t.teardown(() => {
    MOUNT_INFO.path = saved
  })
  const config = await write('volume.yaml', configText({ sponsorKey: join(volume, 'sponsor.key') }))
  const check = async (mountLine: string) => {
    await writeFile(mountInfo, `${line('/', '/', 'rw')}\n${mountLine}\n`)
    return (await runCli(['config', 'check', config])).stderr
  }
  const warned = `warning: sponsor.tls.key: ${join(volume, 'sponsor.key')}: ${WRITABLE_FILE_WARNING}\n`
  t.equal(await check(line(volume, kubelet, 'ro')), '', 'kubelet’s read-only volume in a 0777 folder: no warning')
  t.equal(await check(line(volume, '/srv/shared', 'ro')), warned, 'a read-only bind of a host folder named like kubelet’s version folders: warned')
  t.equal(await check(line(volume, kubelet, 'rw')), warned, 'kubelet’s volume writable here: warned')
  t.equal(await check(''), warned, 'no such mount: warned')
})
