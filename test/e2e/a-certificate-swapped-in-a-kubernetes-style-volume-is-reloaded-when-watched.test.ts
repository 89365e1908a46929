/**
 * `reload.watchIntervalMs`: a change to the configuration or to any file it names reloads the
 * gateway as SIGHUP does. Kubernetes updates a mounted Secret by writing a new timestamped directory
 * and swapping the `..data` symlink, the files themselves being symlinks through it; cert-manager
 * renews on its own schedule. Here a sponsor certificate is rotated that way, then replaced by a
 * broken one (one failed reload, not one per check), then fixed.
 */
import { X509Certificate } from 'node:crypto'
import { mkdir, rename, symlink, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import tls from 'node:tls'
import t from 'tap'
import { ConfigWatcher, filesDigest, filesOf } from '../../src/config/watch.js'
import { issueCertificate } from '../../src/pki/dev-pki.js'
import { gatewayConfig, Harness, metricValue, startGatewayProcess, TestUpstream } from '../helpers/harness.js'
import { makeTestPki, type TestPki } from '../helpers/pki.js'

/** A Secret volume as the kubelet lays it out: `tls.crt` → `..data/tls.crt` → `..<version>/tls.crt`. */
class SecretVolume {
  readonly dir: string
  #version = 0
  constructor(dir: string) {
    this.dir = dir
  }
  get cert(): string {
    return join(this.dir, 'tls.crt')
  }
  get key(): string {
    return join(this.dir, 'tls.key')
  }
  /** Writes a new version and swaps `..data` to it in one rename, as the kubelet does. */
  async update(files: { 'tls.crt': string; 'tls.key': string }): Promise<void> {
    const version = `..2026_12_05_${++this.#version}`
    await mkdir(join(this.dir, version), { recursive: true })
    for (const [name, text] of Object.entries(files)) await writeFile(join(this.dir, version, name), text, { mode: 0o600 })
    await symlink(version, join(this.dir, '..data_tmp'))
    await rename(join(this.dir, '..data_tmp'), join(this.dir, '..data'))
    if (this.#version === 1) for (const name of Object.keys(files)) await symlink(join('..data', name), join(this.dir, name))
  }
}

function sponsorServer(pki: TestPki): { 'tls.crt': string; 'tls.key': string } {
  const leaf = issueCertificate(pki.sponsorCa, { commonName: 'ecluse.sponsor.test', dnsNames: ['localhost'], ips: ['127.0.0.1'], usage: 'server' })
  return { 'tls.crt': leaf.certPem, 'tls.key': leaf.keyPem }
}

/** The serial number of the certificate the sponsor listener presents to a new connection. */
function presentedSerial(h: { sponsorTls(): tls.ConnectionOptions }, port?: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ ...h.sponsorTls(), ...(port === undefined ? {} : { port }) }, () => {
      resolve(socket.getPeerX509Certificate()!.serialNumber)
      socket.destroy()
    })
    socket.on('error', reject)
  })
}

t.test('in process: a swapped certificate is reloaded once per change, a broken one is reported once', async (t) => {
  const h = await Harness.start()
  t.teardown(() => h.close())
  const volume = new SecretVolume(join(h.dir, 'secret'))
  const first = sponsorServer(h.pki)
  await volume.update(first)
  const sponsor = h.config['sponsor'] as { tls: Record<string, unknown> }
  await h.writeConfig({ ...h.config, sponsor: { ...sponsor, tls: { ...sponsor.tls, cert: volume.cert, key: volume.key } } })
  t.match(await h.gateway.reload(), { ok: true })
  t.equal(await presentedSerial(h), new X509Certificate(first['tls.crt']).serialNumber)

  const watcher = new ConfigWatcher(h.configPath, filesOf(h.gateway.config), 60_000, h.gateway.configDigest, () => h.gateway.configDigest)
  watcher.start(() => h.gateway.reload(), h.gateway.log)
  t.teardown(() => watcher.stop())
  t.equal(await watcher.check(), false, 'nothing changed: no reload')

  const second = sponsorServer(h.pki)
  await volume.update(second)
  t.equal(await watcher.check(), false, 'a change seen once waits for the next check')
  t.equal(await watcher.check(), true, 'the swapped symlink is a change')
  await sleep(100)
  t.equal(await presentedSerial(h), new X509Certificate(second['tls.crt']).serialNumber, 'new connections get the new certificate')

  await volume.update({ 'tls.crt': '-----BEGIN CERTIFICATE-----\nnot one\n-----END CERTIFICATE-----\n', 'tls.key': second['tls.key'] })
  t.equal(await watcher.check(), false)
  t.equal(await watcher.check(), true)
  t.equal(await watcher.check(), false, 'the same broken files are not reloaded again at every check')
  await sleep(100)
  t.equal(h.logs.find('reload failed; keeping the previous configuration and certificates').length, 1, 'one failed reload')
  t.equal(await presentedSerial(h), new X509Certificate(second['tls.crt']).serialNumber, 'still serving the last good certificate')

  const third = sponsorServer(h.pki)
  await volume.update(third)
  t.equal(await watcher.check(), false)
  t.equal(await watcher.check(), true, 'fixed: reloaded')
  await sleep(100)
  t.equal(await presentedSerial(h), new X509Certificate(third['tls.crt']).serialNumber)
  const metrics = await h.metrics()
  t.equal(metricValue(metrics, 'ecluse_reloads_total', { result: 'ok' }), 3)
  t.equal(metricValue(metrics, 'ecluse_reloads_total', { result: 'failed' }), 1)

  // Stopped (the gateway drains): a change is no longer acted on, even by a check already running.
  watcher.stop()
  await volume.update(sponsorServer(h.pki))
  t.equal(await watcher.check(), false, 'a stopped watcher reloads nothing')
})

t.test('ecluse serve with reload.watchIntervalMs reloads a rotated certificate by itself', async (t) => {
  const pki = await makeTestPki()
  const upstream = new TestUpstream(pki, (_req, res) => res.end('ok'))
  const port = await upstream.listen()
  t.teardown(() => upstream.close())
  const dir = join(pki.dir, `serve-watch-${process.pid}`)
  await mkdir(dir, { recursive: true })
  const volume = new SecretVolume(join(dir, 'secret'))
  await volume.update(sponsorServer(pki))
  const config = gatewayConfig(pki, port, [
    { name: 'records', methods: ['GET'], path: '/v1/records/*', allow: ['uri:spiffe://sponsor.test/accreditation-app'], upstream: 'backend' },
  ])
  const withVolume = { ...config, sponsor: { ...config.sponsor, tls: { ...config.sponsor.tls, cert: volume.cert, key: volume.key } }, reload: { watchIntervalMs: 1000 } }
  const { gateway, ports } = await startGatewayProcess(t, pki, dir, withVolume)
  await gateway.logged('watching the configuration files for changes')
  const rotated = sponsorServer(pki)
  await volume.update(rotated)
  await gateway.logged('reloaded')
  const client = { sponsorTls: () => ({ host: '127.0.0.1', servername: 'localhost', ca: pki.sponsorCa.certPem, cert: pki.sponsorClient.certPem, key: pki.sponsorClient.keyPem }) }
  t.equal(await presentedSerial(client, ports.sponsor), new X509Certificate(rotated['tls.crt']).serialNumber, 'the rotated certificate is presented')
})

t.test('a change that failed to load is tried again with a growing delay while the files stay as they are', async (t) => {
  const h = await Harness.start()
  t.teardown(() => h.close())
  // The action stands in for a reload that fails twice (say, a certificate not valid yet), then works:
  // what runs is then the files on disk.
  const outcomes = [false, false, true]
  const tries: number[] = []
  let running = h.gateway.configDigest
  const watcher = new ConfigWatcher(h.configPath, filesOf(h.gateway.config), 100, h.gateway.configDigest, () => running)
  watcher.start(async () => {
    tries.push(Date.now())
    const ok = outcomes.shift() ?? true
    if (ok) running = await filesDigest(h.configPath, filesOf(h.gateway.config))
    return { ok }
  }, h.gateway.log)
  t.teardown(() => watcher.stop())
  await h.writeConfig({ ...h.config, log: { level: 'info' } })
  for (let waited = 0; tries.length < 3 && waited < 5_000; waited += 50) await sleep(50)
  t.equal(tries.length, 3, 'tried at the change, then twice more')
  const [first, second, third] = tries as [number, number, number]
  t.ok(second - first >= 200, `the first retry waits twice the interval (${second - first} ms)`)
  t.ok(third - second >= 400, `the next one twice as long (${third - second} ms)`)
  await sleep(1_000)
  t.equal(tries.length, 3, 'once it worked, nothing is tried again')
  t.equal(h.logs.find('trying again a change that is not running yet').length, 2)
})
