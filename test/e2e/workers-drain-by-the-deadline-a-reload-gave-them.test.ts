/**
 * `shutdown.drainTimeoutMs` applies on SIGHUP (docs/operations.md), in cluster mode too: the primary
 * kills a worker that outlives its drain deadline by KILL_GRACE_MS, and that deadline must be the one
 * the worker has after a reload, not the one the primary read at boot.
 */
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { stringify } from 'yaml'
import { KILL_GRACE_MS } from '../../src/cluster.js'
import { ClusterProcess, sponsorGet } from '../helpers/cluster.js'
import { gatewayConfig, TestUpstream } from '../helpers/harness.js'
import { makeTestPki } from '../helpers/pki.js'
import { SPONSOR_APP, tempDir } from '../helpers/sealing.js'

const BOOT_DRAIN_MS = 100
/** Longer than the boot deadline plus the kill grace: the primary's old deadline would cut it. */
const SLOW_MS = BOOT_DRAIN_MS + KILL_GRACE_MS + 1_500
const RELOADED_DRAIN_MS = SLOW_MS + 5_000

t.test('a request slower than the boot deadline finishes when a reload lengthened the drain', async (t) => {
  const pki = await makeTestPki()
  const dir = await tempDir('ecluse-workers-drain-')
  const upstream = new TestUpstream(pki, (req, res) => {
    if (req.url === '/slow') setTimeout(() => res.end('slow-done'), SLOW_MS)
    else res.end('ok')
  })
  await upstream.listen()
  t.teardown(() => upstream.close())
  const routes = [{ name: 'any', methods: ['GET'], path: '/*', allow: [SPONSOR_APP], upstream: 'backend' }]
  const configPath = join(dir, 'gateway.yaml')
  const write = (drainTimeoutMs: number) => writeFile(configPath, stringify(gatewayConfig(pki, upstream.port, routes, { shutdown: { drainTimeoutMs } })))
  await write(BOOT_DRAIN_MS)

  const cluster = new ClusterProcess(t, configPath)
  const { sponsor } = await cluster.started()

  await write(RELOADED_DRAIN_MS)
  cluster.child.kill('SIGHUP')
  await cluster.until(() => cluster.logged('reloaded').length === 2, 'both workers did not reload')
  // The workers report their new deadline over IPC right after logging the reload.
  await new Promise((r) => setTimeout(r, 500))

  const slow = sponsorGet(t, pki, `${sponsor}/slow`)
  await cluster.until(() => upstream.seen.some((s) => s.url === '/slow'), 'the slow request did not reach the upstream')
  const at = Date.now()
  cluster.child.kill('SIGTERM')
  t.same(await slow, { status: 200, body: 'slow-done' }, 'the in-flight request finished')
  t.ok(Date.now() - at > BOOT_DRAIN_MS + KILL_GRACE_MS, 'past the deadline the primary read at boot')
  t.equal(await cluster.exited, 0, 'every worker drained, none was killed')
  t.equal(cluster.logged('worker still running after its drain deadline; killing it').length, 0, 'no kill')
  t.equal(cluster.stderr, '')
})
