/**
 * On SIGTERM the primary gives its workers their drain deadline plus KILL_GRACE_MS, then kills any
 * still running (one whose event loop is stuck never finishes draining) and exits 1, so that the
 * supervisor learns a drain was cut short. Here one worker is stopped (SIGSTOP), as stuck as a
 * process can be; the other drains and exits 0 at once; readiness says "draining" meanwhile.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { request } from 'undici'
import { stringify } from 'yaml'
import { KILL_GRACE_MS } from '../../src/cluster.js'
import { ClusterProcess, killIfStillOurs } from '../helpers/cluster.js'
import { echoHandler, gatewayConfig, TestUpstream } from '../helpers/harness.js'
import { makeTestPki } from '../helpers/pki.js'
import { SPONSOR_APP } from '../helpers/sealing.js'

const DRAIN_MS = 200

t.test('a stopped worker is killed after its deadline and the grace; the primary exits 1', { skip: process.platform !== 'linux' && 'reads /proc' }, async (t) => {
  const pki = await makeTestPki()
  const dir = await mkdtemp(join(tmpdir(), 'ecluse-workers-stuck-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const upstream = new TestUpstream(pki, echoHandler)
  await upstream.listen()
  t.teardown(() => upstream.close())
  const routes = [{ name: 'any', methods: ['GET'], path: '/*', allow: [SPONSOR_APP], upstream: 'backend' }]
  const configPath = join(dir, 'gateway.yaml')
  await writeFile(configPath, stringify(gatewayConfig(pki, upstream.port, routes, { shutdown: { drainTimeoutMs: DRAIN_MS } })))

  const cluster = new ClusterProcess(t, configPath)
  const { admin } = await cluster.started()
  const stuckPid = Number(cluster.logged('écluse gateway started')[0]!['pid'])
  process.kill(stuckPid, 'SIGSTOP')
  t.teardown(() => killIfStillOurs(stuckPid))

  const at = Date.now()
  cluster.child.kill('SIGTERM')
  await cluster.until(() => cluster.logged('worker exited').length === 1, 'the other worker did not drain')
  const drained = cluster.logged('worker exited')[0]!
  t.same([drained['code'], drained['signal']], [0, null], 'the other worker drained and exited cleanly')

  const ready = await request(`${admin}/readyz`)
  t.equal(ready.statusCode, 503, 'not ready while a worker is still draining')
  t.match(await ready.body.json(), { status: 'not_ready', checks: { shutdown: 'draining' } })

  t.equal(await cluster.exited, 1, 'a drain cut short is not a clean exit')
  t.ok(Date.now() - at >= DRAIN_MS + KILL_GRACE_MS, 'not killed before its deadline and the grace')
  await cluster.closed // the primary's last lines
  const kills = cluster.logged('worker still running after its drain deadline; killing it')
  t.equal(kills.length, 1, 'one worker killed')
  const exits = cluster.logged('worker exited')
  t.equal(exits.length, 2)
  t.same([exits[1]!['worker'], exits[1]!['signal']], [kills[0]!['worker'], 'SIGKILL'], 'the one killed is the stuck one')
  t.match(
    cluster.logged('stopped').filter((l) => l['role'] === 'primary'),
    [{ clean: false }],
    'the primary says why it exits 1',
  )
  t.throws(() => process.kill(stuckPid, 0), { code: 'ESRCH' }, 'the stuck worker is gone, reaped by the primary')
})
