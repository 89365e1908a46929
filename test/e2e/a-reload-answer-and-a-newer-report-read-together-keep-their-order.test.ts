/**
 * Found by a re-review: a worker's reload answer and its next report (a `drain` message, after a
 * reload it was signalled for directly) can reach a busy primary in one read. Node emits both messages before
 * any promise continuation runs, and the answer's digest was noted in its question's continuation:
 * the older digest overwrote the newer one, and the primary judged the workers diverged (or agreed)
 * on what one of them no longer ran. Each answer's digest is now noted as it arrives. The primary is
 * the real one (`runCluster`); its workers are scripted (test/helpers/cluster-scripted-workers.ts).
 */
import { spawn } from 'node:child_process'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { stringify } from 'yaml'
import { closedPort, gatewayConfig } from '../helpers/harness.js'
import { makeTestPki } from '../helpers/pki.js'
import { SPONSOR_APP, tempDir } from '../helpers/sealing.js'

t.test('the newer of two reports read together is what the primary judges', async (t) => {
  const pki = await makeTestPki()
  const dir = await tempDir('ecluse-scripted-workers-')
  const configPath = join(dir, 'gateway.yaml')
  const adminPort = await closedPort()
  const routes = [{ name: 'r', methods: ['GET'], path: '/v1/*', allow: [SPONSOR_APP], upstream: 'backend' }]
  await writeFile(configPath, stringify(gatewayConfig(pki, 1, routes, { admin: { listen: { host: '127.0.0.1', port: adminPort } }, log: { level: 'warn' } })))
  for (const busyMs of [0, 200]) {
    const child = spawn(process.execPath, ['--import', 'tsx', 'test/helpers/cluster-scripted-workers.ts', configPath], {
      env: { ...process.env, BUSY_MS: String(busyMs), ADMIN_PORT: String(adminPort) },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let out = ''
    child.stdout.on('data', (c: Buffer) => {
      out += c.toString()
    })
    await new Promise((resolve) => child.once('exit', resolve))
    const line = out.split('\n').find((l) => l.startsWith('{"readyz"'))
    t.ok(line, `busy ${busyMs} ms: the script reported`)
    const { readyz, checks } = JSON.parse(line ?? '{}') as { readyz: number; checks: Record<string, string> }
    t.equal(readyz, 200, `busy ${busyMs} ms: both workers end on B, and the primary says so`)
    t.equal(checks?.['workers_diverged'], undefined)
  }
})
