/**
 * `serve --workers N` with `reload.watchIntervalMs`: the primary watches the files and asks every
 * worker to reload on a change, as on SIGHUP. A SIGHUP relayed while the workers still booted reached
 * them before they had a handler, SIGHUP's default action killed them, and the whole gateway stopped
 * (found by a review). The primary now asks a booting worker once that worker reports ready.
 *
 * Each worker answers with the outcome of its reload, so a change that failed to load in the workers
 * is tried again as in a single process; the primary used to relay a signal and never learn it.
 */
import { X509Certificate } from 'node:crypto'
import { appendFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import tls from 'node:tls'
import t from 'tap'
import { stringify } from 'yaml'
import { ClusterProcess, withEnv } from '../helpers/cluster.js'
import { echoHandler, gatewayConfig, TestUpstream } from '../helpers/harness.js'
import { issueCertificate, makeTestPki, type TestPki } from '../helpers/pki.js'
import { SPONSOR_APP, tempDir } from '../helpers/sealing.js'

/** The serial of the certificate a new connection to the sponsor listener is shown. */
function presentedSerial(pki: TestPki, origin: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const { port } = new URL(origin)
    const options = { host: '127.0.0.1', port: Number(port), servername: 'localhost', ca: pki.sponsorCa.certPem, cert: pki.sponsorClient.certPem, key: pki.sponsorClient.keyPem }
    const socket = tls.connect(options, () => {
      resolve(socket.getPeerX509Certificate()!.serialNumber)
      socket.destroy()
    })
    socket.on('error', reject)
  })
}

/**
 * A configuration watched every `watchIntervalMs`, in a new directory, of one route to an echo
 * upstream; `edit` may change it before it is written.
 */
async function watchedSetUp(
  t: { teardown(fn: () => unknown): void },
  prefix: string,
  watchIntervalMs = 1000,
  edit: (config: ReturnType<typeof gatewayConfig>, dir: string) => Promise<void> = async () => {},
): Promise<{ pki: TestPki; dir: string; configPath: string }> {
  const pki = await makeTestPki()
  const dir = await tempDir(prefix)
  const upstream = new TestUpstream(pki, echoHandler)
  await upstream.listen()
  t.teardown(() => upstream.close())
  const configPath = join(dir, 'gateway.yaml')
  const routes = [{ name: 'records', methods: ['GET'], path: '/v1/records/*', allow: [SPONSOR_APP], upstream: 'backend' }]
  const config = gatewayConfig(pki, upstream.port, routes, { reload: { watchIntervalMs } })
  await edit(config, dir)
  await writeFile(configPath, stringify(config))
  return { pki, dir, configPath }
}

t.test('a SIGHUP or a change while the workers boot is reloaded by each of them once started, and nothing stops', async (t) => {
  const { configPath } = await watchedSetUp(t, 'ecluse-workers-watch-')

  const cluster = new ClusterProcess(t, configPath)
  // The watcher starts once the workers are forked, long before they have started.
  await cluster.until(() => cluster.logged('watching the configuration files for changes').length > 0, 'the primary does not watch')
  t.equal(cluster.logged('écluse cluster started').length, 0, 'the workers are still booting')
  // The file changes now; the watcher's next check (within its second) may still find the workers
  // booting or not: a SIGHUP sent now, as an operator could, reaches them booting for certain.
  await appendFile(configPath, '# changed while the workers boot\n')
  cluster.child.kill('SIGHUP')
  await cluster.until(() => cluster.logged('relaying a reload to the workers').length > 0, 'the signal was not relayed')
  await cluster.started()
  await cluster.until(() => cluster.logged('reloaded').length >= 2, 'each worker reloads once started')
  // The outcome of a reload asked of a booting worker counts for the primary (and its watcher's retries).
  await cluster.until(
    () => cluster.logged('workers reloaded').some((l) => Number(l['afterBoot']) >= 1 && l['applied'] === 2),
    'the primary never learns how the reloads after boot went',
  )
  t.equal(cluster.logged('a worker failed to start; stopping').length, 0, 'no worker died of the signal')
  t.equal(cluster.child.exitCode, null, 'the gateway runs on')
})

t.test('a change that failed to load in the workers is tried again until it loads', async (t) => {
  let certPath = ''
  let keyPath = ''
  const { pki, configPath } = await watchedSetUp(t, 'ecluse-workers-retry-', 1000, async (config, dir) => {
    certPath = join(dir, 'tls.crt')
    keyPath = join(dir, 'tls.key')
    config.sponsor.tls = { ...config.sponsor.tls, cert: certPath, key: keyPath }
  })
  await writeFile(certPath, pki.gatewaySponsorServer.certPem)
  await writeFile(keyPath, pki.gatewaySponsorServer.keyPem, { mode: 0o600 })

  const cluster = new ClusterProcess(t, configPath)
  const { sponsor } = await cluster.started()
  // A renewed certificate that is not valid yet (a renewal on a clock a little ahead): every worker
  // refuses it, and only time makes it load. Nothing changes in the files after this.
  const renewed = issueCertificate(pki.sponsorCa, {
    commonName: 'ecluse.sponsor.test',
    dnsNames: ['localhost'],
    ips: ['127.0.0.1'],
    usage: 'server',
    notBefore: new Date(Math.ceil(Date.now() / 1000) * 1000 + 3000),
  })
  // The key first: a check between the two writes sees a key that does not match the certificate,
  // which fails in the same way.
  await writeFile(keyPath, renewed.keyPem, { mode: 0o600 })
  await writeFile(certPath, renewed.certPem)

  await cluster.until(() => cluster.logged('a reload failed in some workers; they keep their previous configuration').length > 0, 'the primary never learns the reload failed')
  await cluster.until(() => cluster.logged('trying again a change that is not running yet').length > 0, 'the failed change is not tried again')
  await cluster.until(() => cluster.logged('reloaded').length >= 2, 'the change never loads in both workers')
  t.equal(await presentedSerial(pki, sponsor), new X509Certificate(renewed.certPem).serialNumber, 'the renewed certificate is presented')
  t.equal(cluster.child.exitCode, null, 'the gateway runs on')
})

t.test('files a SIGHUP made every worker apply are no change to the primary watcher', async (t) => {
  // Found by a review: the watcher compared the files with its own last read only, so its next check
  // relayed a change the SIGHUP had applied already, and every worker reloaded it a second time.
  const intervalMs = 3000
  const { configPath } = await watchedSetUp(t, 'ecluse-workers-sighup-watch-', intervalMs)
  const cluster = new ClusterProcess(t, configPath)
  await cluster.started()
  // Right after one of the watcher's checks, so that the SIGHUP's relay ends long before the next.
  const watching = Date.parse(String(cluster.logged('watching the configuration files for changes')[0]!['time']))
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, Math.max(0, ms)))
  const nextCheck = watching + Math.ceil((Date.now() - watching + 1) / intervalMs) * intervalMs
  await sleep(nextCheck + 200 - Date.now())
  await appendFile(configPath, '# changed, then signalled\n')
  cluster.child.kill('SIGHUP')
  await cluster.until(() => cluster.logged('workers reloaded').length === 1, 'the SIGHUP was not applied')
  t.ok(Date.now() < nextCheck + intervalMs, 'applied before the next check (else this test proves nothing)')
  // Past the next check.
  await sleep(nextCheck + intervalMs + 1000 - Date.now())
  t.equal(cluster.logged('relaying a reload to the workers').length, 1, 'one relay: the SIGHUP')
  t.equal(cluster.logged('reloaded').length, 2, 'one reload per worker')
  t.equal(cluster.logged('configuration files changed; reloading').length, 0)
})

t.test('a worker that can no longer start is no reason to reload the others again and again', async (t) => {
  // Found by a re-review: what runs was judged on every slot, so while one could not start the
  // watcher found the change its siblings had applied "not running" and relayed it again, with a
  // growing delay, for as long as that slot stayed down.
  const { dir, configPath } = await watchedSetUp(t, 'ecluse-workers-one-down-')
  const marker = join(dir, 'slot-1-exits')
  withEnv(t, { ECLUSE_TEST_WORKER_EXITS_AT_BOOT: marker })
  const cluster = new ClusterProcess(t, configPath, 2, ['--import', './test/helpers/worker-exits-at-boot.ts'])
  await cluster.started()
  // Slot 1's worker goes, and every replacement exits at once.
  await writeFile(marker, '')
  const down = cluster.logged('écluse gateway started').find((l) => l['worker'] === 2)
  t.ok(down, "slot 1's first worker")
  process.kill(Number(down!['pid']), 'SIGKILL')
  await new Promise((r) => setTimeout(r, 1000))
  await appendFile(configPath, '# one change\n')
  await cluster.until(() => cluster.logged('reloaded').length === 1, 'the worker left does not reload')
  // Long enough for two retries at the watcher's back-off (2 s, then 4 s more) had it judged the change not running.
  await new Promise((r) => setTimeout(r, 5000))
  t.equal(cluster.logged('relaying a reload to the workers').length, 1, 'one change, one relayed reload')
  t.equal(cluster.logged('trying again a change that is not running yet').length, 0)
  t.equal(cluster.logged('reloaded').length, 1)
})
