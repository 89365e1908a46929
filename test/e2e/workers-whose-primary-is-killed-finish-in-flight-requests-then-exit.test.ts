/**
 * A primary that dies without relaying a signal must leave no worker serving unsupervised: each
 * sees its IPC channel close, drains like on SIGTERM (the request in flight finishes) and exits.
 * (In a container whose PID 1 is the primary, the kernel kills the workers with it instead: see
 * docs/operations.md.) The cluster runs with the image's Node options, which its workers must run
 * with too.
 */
import { readFileSync } from 'node:fs'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { stringify } from 'yaml'
import { IMAGE_NODE_ARGS } from '../../bench/lib/subjects.js'
import { ClusterProcess, hasExited, killIfStillOurs, sponsorGet } from '../helpers/cluster.js'
import { gatewayConfig, TestUpstream } from '../helpers/harness.js'
import { makeTestPki } from '../helpers/pki.js'
import { SPONSOR_APP } from '../helpers/sealing.js'

async function poll(what: () => boolean, ms: number): Promise<boolean> {
  for (const deadline = Date.now() + ms; Date.now() < deadline; await new Promise((r) => setTimeout(r, 25))) if (what()) return true
  return what()
}

t.test('a killed primary’s workers finish the request in flight, then exit', { skip: process.platform !== 'linux' && 'reads /proc' }, async (t) => {
  const pki = await makeTestPki()
  const dir = await mkdtemp(join(tmpdir(), 'ecluse-workers-orphaned-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  // The slow response is released only once both workers have begun to drain: the request is
  // still in flight when its worker learns that the primary is gone, however slow the machine.
  let release!: () => void
  const released = new Promise<void>((resolve) => {
    release = resolve
  })
  t.teardown(() => release())
  const upstream = new TestUpstream(pki, (req, res) => {
    if (req.url === '/slow') void released.then(() => res.end('slow-done'))
    else res.end('ok')
  })
  await upstream.listen()
  t.teardown(() => upstream.close())
  const routes = [{ name: 'any', methods: ['GET'], path: '/*', allow: [SPONSOR_APP], upstream: 'backend' }]
  const configPath = join(dir, 'gateway.yaml')
  await writeFile(configPath, stringify(gatewayConfig(pki, upstream.port, routes, { shutdown: { drainTimeoutMs: 20_000 } })))

  const cluster = new ClusterProcess(t, configPath, 2, IMAGE_NODE_ARGS)
  const { sponsor } = await cluster.started()
  const pids = cluster.logged('écluse gateway started').map((l) => Number(l['pid']))
  t.equal(pids.length, 2)
  t.teardown(() => {
    for (const pid of pids) killIfStillOurs(pid)
  })
  for (const pid of pids) {
    const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')
    t.ok(
      IMAGE_NODE_ARGS.every((o) => argv.includes(o)),
      'a worker runs with the Node options its primary was given',
    )
  }

  const slow = sponsorGet(t, pki, `${sponsor}/slow`)
  await cluster.until(() => upstream.seen.some((s) => s.url === '/slow'), 'the slow request did not reach the upstream')

  cluster.child.kill('SIGKILL')
  const draining = () => cluster.logged('shutdown requested').filter((l) => l['reason'] === 'primary_gone').length
  t.ok(await poll(() => draining() === 2, 15_000), 'each worker drains because its primary went away')
  t.ok(
    pids.some((pid) => !hasExited(pid)),
    'the worker holding the request is still there (the idle one may already be gone)',
  )
  release()
  t.same(await slow, { status: 200, body: 'slow-done' }, 'the request in flight finished')
  t.ok(await poll(() => pids.every(hasExited), 15_000), 'then both workers exited')
  await cluster.closed
  t.equal(cluster.logged('shutdown requested').length, 2, 'nothing else asked them to stop')
})
