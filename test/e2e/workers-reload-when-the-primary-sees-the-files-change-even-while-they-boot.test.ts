/**
 * `serve --workers N` with `reload.watchIntervalMs`: the primary watches the files and relays a
 * change as SIGHUP. A SIGHUP relayed while the workers still booted reached them before they had a
 * handler, SIGHUP's default action killed them, and the whole gateway stopped (found by a review).
 * The primary now keeps it for a booting worker and sends it once that worker reports ready.
 */
import { appendFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { stringify } from 'yaml'
import { ClusterProcess } from '../helpers/cluster.js'
import { echoHandler, gatewayConfig, TestUpstream } from '../helpers/harness.js'
import { makeTestPki } from '../helpers/pki.js'
import { SPONSOR_APP, tempDir } from '../helpers/sealing.js'

t.test('a SIGHUP or a change while the workers boot is reloaded by each of them once started, and nothing stops', async (t) => {
  const pki = await makeTestPki()
  const dir = await tempDir('ecluse-workers-watch-')
  const upstream = new TestUpstream(pki, echoHandler)
  await upstream.listen()
  t.teardown(() => upstream.close())
  const configPath = join(dir, 'gateway.yaml')
  const routes = [{ name: 'records', methods: ['GET'], path: '/v1/records/*', allow: [SPONSOR_APP], upstream: 'backend' }]
  await writeFile(configPath, stringify(gatewayConfig(pki, upstream.port, routes, { reload: { watchIntervalMs: 1000 } })))

  const cluster = new ClusterProcess(t, configPath)
  // The watcher starts once the workers are forked, long before they have started.
  await cluster.until(() => cluster.logged('watching the configuration files for changes').length > 0, 'the primary does not watch')
  t.equal(cluster.logged('écluse cluster started').length, 0, 'the workers are still booting')
  // The file changes now; the watcher's next check (within its second) may still find the workers
  // booting or not: a SIGHUP sent now, as an operator could, reaches them booting for certain.
  await appendFile(configPath, '# changed while the workers boot\n')
  cluster.child.kill('SIGHUP')
  await cluster.until(() => cluster.logged('relaying to workers').length > 0, 'the signal was not relayed')
  await cluster.started()
  await cluster.until(() => cluster.logged('reloaded').length >= 2, 'each worker reloads once started')
  t.equal(cluster.logged('a worker failed to start; stopping').length, 0, 'no worker died of the signal')
  t.equal(cluster.child.exitCode, null, 'the gateway runs on')
})
