/**
 * `reload.watchIntervalMs` with a configuration file caught mid-write at boot. Found by a review:
 * the watcher was built from a read of its own before the gateway's; that read failed, the watcher
 * was silently left out, the gateway's own read found the file whole, and the gateway ran without
 * its watcher and without a line to say so. The watcher is now built from the configuration the
 * gateway (or, with `--workers`, the primary) loaded. The first read is made to see a prefix of the
 * file by a preload (test/helpers/config-caught-mid-write.ts), on cue: the boot sees the files change
 * while it loads them and loads them again (src/config/load-settled.ts), so what it runs, and the
 * watcher's starting point, are the whole file.
 */
import { appendFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { stringify } from 'yaml'
import { LOADED_AGAIN } from '../../src/config/load-settled.js'
import { ClusterProcess } from '../helpers/cluster.js'
import { echoHandler, GatewayProcess, gatewayConfig, TestUpstream } from '../helpers/harness.js'
import { makeTestPki } from '../helpers/pki.js'
import { SPONSOR_APP, tempDir } from '../helpers/sealing.js'

const CAUGHT_MID_WRITE = ['--import', new URL('../helpers/config-caught-mid-write.ts', import.meta.url).href]
const WATCHING = 'watching the configuration files for changes'

/** A watched configuration in a new directory, and its first 40 bytes where the preload reads them. */
async function watchedConfig(t: { teardown(fn: () => unknown): void }): Promise<string> {
  const pki = await makeTestPki()
  const upstream = new TestUpstream(pki, echoHandler)
  await upstream.listen()
  t.teardown(() => upstream.close())
  const dir = await tempDir('ecluse-mid-write-')
  const configPath = join(dir, 'gateway.yaml')
  const routes = [{ name: 'records', methods: ['GET'], path: '/v1/records/*', allow: [SPONSOR_APP], upstream: 'backend' }]
  const text = stringify(gatewayConfig(pki, upstream.port, routes, { reload: { watchIntervalMs: 1000 }, shutdown: { drainTimeoutMs: 2000 } }))
  await writeFile(configPath, text)
  await writeFile(`${configPath}.mid-write`, text.slice(0, 40))
  process.env['ECLUSE_TEST_CAUGHT_MID_WRITE'] = configPath
  return configPath
}

/** Polls `lines` every 25 ms for `what`, failing after 10 s. */
async function until(what: () => boolean, label: string): Promise<void> {
  for (const deadline = Date.now() + 10_000; !what(); ) {
    if (Date.now() > deadline) throw new Error(label)
    await new Promise((r) => setTimeout(r, 25))
  }
}

t.test('ecluse serve: the gateway loads the files again, watches them, and does not reload them at its first check', async (t) => {
  const configPath = await watchedConfig(t)
  const gateway = new GatewayProcess(configPath, { nodeArgs: CAUGHT_MID_WRITE })
  t.teardown(() => gateway.kill())
  const logged = (msg: string) => gateway.lines.filter((l) => l['msg'] === msg)
  await gateway.logged('écluse gateway started')
  await until(() => logged(WATCHING).length === 1, 'the gateway runs without the watcher its configuration asks for')
  t.equal(logged(WATCHING)[0]!['watchIntervalMs'], 1000)
  // The preload did act: the digest taken before the first load saw the prefix, the one after it the whole.
  t.same(logged(LOADED_AGAIN).map((l) => l['loads']), [2], 'the first load saw the files change: they were loaded again, once')
  t.match(logged('écluse gateway started')[0]!['configDigest'], /^sha256:[0-9a-f]{64}$/)
  // What runs is the whole file, which is the watcher's starting point: its first checks find nothing.
  await new Promise((r) => setTimeout(r, 2500))
  t.equal(logged('reloaded').length, 0, 'nothing changed since the load: no reload')
  // And a change made now is seen.
  await appendFile(configPath, '# changed\n')
  await until(() => logged('reloaded').length === 1, 'a change is not reloaded')
  t.not(logged('reloaded')[0]!['configDigest'], logged('écluse gateway started')[0]!['configDigest'])
  gateway.child.kill('SIGTERM')
})

t.test('ecluse serve --workers 2: the primary watches the files it loaded', async (t) => {
  const configPath = await watchedConfig(t)
  const cluster = new ClusterProcess(t, configPath, 2, CAUGHT_MID_WRITE)
  const { admin } = await cluster.started()
  await cluster.until(() => cluster.logged(WATCHING).length === 1, 'the primary runs without the watcher its configuration asks for')
  t.equal(cluster.logged(WATCHING)[0]!['role'], 'primary')
  // The primary's first load saw the prefix and the whole: it loaded the files again.
  t.same(cluster.logged(LOADED_AGAIN).map((l) => [l['role'], l['loads']]), [['primary', 2]])
  // Its baseline is the whole file, which the workers loaded too: its first checks relay nothing.
  await new Promise((r) => setTimeout(r, 2500))
  t.equal(cluster.logged('relaying a reload to the workers').length, 0, 'nothing changed since the load: no reload')
  t.equal(await cluster.readyStatus(admin), 200)
  await appendFile(configPath, '# changed\n')
  await cluster.until(() => cluster.logged('workers reloaded').length === 1, 'a change is not reloaded')
  cluster.child.kill('SIGTERM')
  t.equal(await cluster.exited, 0)
  t.equal(cluster.stderr, '')
})
