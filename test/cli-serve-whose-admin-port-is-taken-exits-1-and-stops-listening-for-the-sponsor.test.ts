/**
 * Regression (found by review): the sponsor listener binds before the admin one. When the admin port
 * could not be bound (taken, or a port below 1024 without the right), `serve` printed the error and
 * its exit code, but the sponsor listener stayed open: the process never exited, and went on
 * answering mTLS clients with no `/healthz`, `/readyz` or `/metrics` and its upstream pools closed.
 * Now it closes the sponsor listener, and exits 1.
 */
import { spawn } from 'node:child_process'
import { writeFile } from 'node:fs/promises'
import { createServer, type Server } from 'node:net'
import { join } from 'node:path'
import t from 'tap'
import { minimalServeConfig, ROOT } from './helpers/cli.js'
import { makeTestPki } from './helpers/pki.js'

const pki = await makeTestPki()
const dir = t.testdir()

function listening(port: number): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(port, '127.0.0.1', () => resolve(server))
  })
}

t.test('the admin port taken: one line on stderr, exit 1, and the sponsor port is free again', async (t) => {
  const taken = await listening(0)
  t.teardown(() => taken.close())
  const adminPort = (taken.address() as { port: number }).port
  // A sponsor port known in advance, to bind it again once the gateway has gone.
  const probe = await listening(0)
  const sponsorPort = (probe.address() as { port: number }).port
  await new Promise<void>((resolve) => probe.close(() => resolve()))

  const file = join(dir, 'admin-taken.yaml')
  const config = minimalServeConfig(pki)
    .replace('sponsor:\n  listen: { port: 0 }', `sponsor:\n  listen: { port: ${sponsorPort} }`)
    .replace('admin:\n  listen: { port: 0 }', `admin:\n  listen: { port: ${adminPort} }`)
  t.not(config, minimalServeConfig(pki))
  await writeFile(file, config)

  const env = { ...process.env }
  delete env['ECLUSE_DEBUG']
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'serve', '--config', file], { cwd: ROOT, env })
  t.teardown(() => {
    if (child.exitCode === null) child.kill('SIGKILL')
  })
  let stderr = ''
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d))
  child.stdout.resume()
  const exit = await new Promise<number | null | 'still running'>((resolve) => {
    const timer = setTimeout(() => resolve('still running'), 20_000)
    child.on('close', (code) => {
      clearTimeout(timer)
      resolve(code)
    })
  })
  t.equal(exit, 1, 'exited 1 (it used to keep running, listening for the sponsor)')
  t.equal(stderr, `ecluse: listen EADDRINUSE: address already in use 127.0.0.1:${adminPort}\n`)
  const again = await listening(sponsorPort)
  await new Promise<void>((resolve) => again.close(() => resolve()))
  t.pass('the sponsor port could be bound again')
})
