/**
 * A primary that dies without relaying a signal (SIGKILL, a crash, the OOM killer) must leave no
 * worker serving unsupervised: each sees its IPC channel close, drains like on SIGTERM (the request
 * in flight finishes) and exits, and the port stops answering. The cluster runs with the image's
 * Node options, which its workers must run with too.
 */
import { readFileSync } from 'node:fs'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { Agent, request } from 'undici'
import { stringify } from 'yaml'
import { IMAGE_NODE_ARGS } from '../../bench/lib/subjects.js'
import { ClusterProcess } from '../helpers/cluster.js'
import { gatewayConfig, TestUpstream } from '../helpers/harness.js'
import { makeTestPki } from '../helpers/pki.js'
import { SPONSOR_APP } from '../helpers/sealing.js'

const SLOW_MS = 1_500

/** Whether `pid` has exited: gone, or a zombie no one has reaped yet (its parent was killed). */
function exited(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z')
  } catch {
    return true
  }
}

async function poll(what: () => boolean, ms: number): Promise<boolean> {
  for (const deadline = Date.now() + ms; Date.now() < deadline; await new Promise((r) => setTimeout(r, 25))) if (what()) return true
  return what()
}

/** Whether a TCP connection to `port` on loopback is accepted. */
function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1')
    socket.once('connect', () => {
      socket.destroy()
      resolve(true)
    })
    socket.once('error', () => resolve(false))
  })
}

t.test('a killed primary’s workers finish the request in flight, then exit', { skip: process.platform !== 'linux' && 'reads /proc' }, async (t) => {
  const pki = await makeTestPki()
  const dir = await mkdtemp(join(tmpdir(), 'ecluse-workers-orphaned-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const upstream = new TestUpstream(pki, (req, res) => {
    if (req.url === '/slow') setTimeout(() => res.end('slow-done'), SLOW_MS)
    else res.end('ok')
  })
  await upstream.listen()
  t.teardown(() => upstream.close())
  const routes = [{ name: 'any', methods: ['GET'], path: '/*', allow: [SPONSOR_APP], upstream: 'backend' }]
  const configPath = join(dir, 'gateway.yaml')
  await writeFile(configPath, stringify(gatewayConfig(pki, upstream.port, routes, { shutdown: { drainTimeoutMs: 10_000 } })))

  const cluster = new ClusterProcess(t, configPath, 2, IMAGE_NODE_ARGS)
  const { sponsor } = await cluster.started()
  const port = Number(new URL(sponsor).port)
  const pids = cluster.logged('écluse gateway started').map((l) => Number(l['pid']))
  t.equal(pids.length, 2)
  for (const pid of pids) {
    const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')
    t.ok(
      IMAGE_NODE_ARGS.every((o) => argv.includes(o)),
      'a worker runs with the Node options its primary was given',
    )
  }
  t.teardown(() => {
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL')
      } catch {
        // gone, as they should be
      }
    }
  })

  const agent = new Agent({
    connect: { ca: pki.sponsorCa.certPem, cert: pki.sponsorClient.certPem, key: pki.sponsorClient.keyPem, servername: 'localhost' },
  })
  t.teardown(() => agent.destroy())
  const slow = request(`${sponsor}/slow`, { dispatcher: agent }).then(
    async (res) => ({ status: res.statusCode, body: await res.body.text() }),
    (err: Error) => ({ status: 0, body: err.message }),
  )
  await cluster.until(() => upstream.seen.some((s) => s.url === '/slow'), 'the slow request did not reach the upstream')
  t.ok(await accepts(port), 'the port answers before')

  cluster.child.kill('SIGKILL')
  t.same(await slow, { status: 200, body: 'slow-done' }, 'the request in flight finished')
  t.ok(await poll(() => pids.every(exited), 15_000), 'both workers exited')
  const reasons = cluster.logged('shutdown requested').map((l) => l['reason'])
  t.same(reasons, ['primary_gone', 'primary_gone'], 'each drained because its primary went away')
  t.notOk(await accepts(port), 'nothing answers on the port any more')
})
