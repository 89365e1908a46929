import { spawn } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { stringify } from 'yaml'
import { gatewayConfig } from '../helpers/harness.js'
import { makeTestPki } from '../helpers/pki.js'

t.test('with --workers, a sponsor port already taken fails the boot with exit 1 instead of a restart loop', async (t) => {
  const pki = await makeTestPki()
  const dir = await mkdtemp(join(tmpdir(), 'ecluse-workers-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const squatter = createServer()
  await new Promise<void>((resolve) => squatter.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => squatter.close(() => resolve())))
  const taken = (squatter.address() as { port: number }).port

  const routes = [{ name: 'records', methods: ['GET'], path: '/v1/records/*', allow: ['uri:spiffe://sponsor.test/accreditation-app'], upstream: 'backend' }]
  const config = gatewayConfig(pki, 9, routes)
  config.sponsor.listen.port = taken
  const configPath = join(dir, 'gateway.yaml')
  await writeFile(configPath, stringify(config))

  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'serve', '--config', configPath, '--workers', '2'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  t.teardown(() => {
    if (child.exitCode === null) child.kill('SIGKILL')
  })
  let stdout = ''
  let stderr = ''
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d))
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d))
  const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)))

  t.equal(code, 1)
  t.match(stderr, /^ecluse: .*EADDRINUSE/m, "the worker's reason, in one line")
  t.notMatch(stderr, /\n\s+at /, 'no stack trace')
  const messages = stdout
    .split('\n')
    .filter(Boolean)
    .map((l) => (JSON.parse(l) as { msg: string }).msg)
  t.ok(messages.includes('a worker failed to start; stopping'))
  t.notOk(messages.includes('worker exited unexpectedly; restarting'), 'no restart during boot')
  t.notOk(messages.includes('écluse cluster started'))
})
