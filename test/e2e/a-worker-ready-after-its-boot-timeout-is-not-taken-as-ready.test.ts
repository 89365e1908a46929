// Regression (review): a worker's `ready` already in the IPC pipe when its boot timer fired was
// accepted after the primary had sent SIGKILL: the first boot logged `écluse cluster started` with a
// worker being killed, then restarted it as after a crash, where the boot must fail (exit 1). The
// primary now ignores a `ready` from the worker its boot timer killed.
import { spawn } from 'node:child_process'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { stringify } from 'yaml'
import { ROOT } from '../helpers/cli.js'
import { gatewayConfig } from '../helpers/harness.js'
import { makeTestPki } from '../helpers/pki.js'

t.test('a ready that arrives with the boot timeout does not start the cluster: the boot fails', async (t) => {
  const pki = await makeTestPki()
  const dir = t.testdir({})
  const configPath = join(dir, 'gateway.yaml')
  const routes = [{ name: 'records', methods: ['GET'], path: '/v1/records/*', allow: ['uri:spiffe://sponsor.test/accreditation-app'], upstream: 'backend' }]
  await writeFile(configPath, stringify(gatewayConfig(pki, 1, routes, { shutdown: { drainTimeoutMs: 1000 } })))
  const child = spawn(process.execPath, ['--import', 'tsx', 'test/helpers/cluster-late-ready.ts', configPath], { cwd: ROOT })
  let stdout = ''
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d))
  child.stderr.resume()
  const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)))
  const lines = stdout
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>)
  const messages = lines.map((l) => l['msg'])
  t.ok(messages.includes('worker did not report ready in time; killing it'), 'the boot timer fired')
  t.notOk(messages.includes('écluse cluster started'), 'the cluster was never reported started')
  t.notOk(messages.includes('worker exited unexpectedly; restarting'), 'nor the worker restarted as after a crash')
  t.ok(messages.includes('a worker failed to start; stopping'), 'the boot failed')
  t.equal(code, 1, 'exit 1')
})
