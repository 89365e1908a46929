import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process'
import { writeFile } from 'node:fs/promises'
import { request } from 'node:http'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { minimalServeConfig } from './helpers/cli.js'
import { makeTestPki } from './helpers/pki.js'

const root = fileURLToPath(new URL('..', import.meta.url))
const pki = await makeTestPki()

function spawnServe(config: string): ChildProcessWithoutNullStreams {
  const env = { ...process.env }
  delete env['ECLUSE_DEBUG']
  return spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'serve', '--config', config], { cwd: root, env })
}

function collect(child: ChildProcessWithoutNullStreams) {
  const out = { stdout: '', stderr: '' }
  child.stdout.setEncoding('utf8').on('data', (d: string) => (out.stdout += d))
  child.stderr.setEncoding('utf8').on('data', (d: string) => (out.stderr += d))
  const exit = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)))
  return { out, exit }
}

const config = (sponsorKey: string) => minimalServeConfig(pki, { sponsorKey })

const dir = t.testdir()

t.test('serve boots from the file, answers on the admin port, and exits 0 after SIGTERM', async (t) => {
  const file = join(dir, 'good.yaml')
  await writeFile(file, config(pki.gatewaySponsorServer.keyPath))
  const child = spawnServe(file)
  t.teardown(() => {
    if (child.exitCode === null) child.kill('SIGKILL')
  })
  const { out, exit } = collect(child)

  // The start line carries both bound ports (they were 0 in the file).
  const started = await new Promise<{ admin: string }>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no start line; stderr: ${out.stderr}`)), 20_000)
    child.stdout.on('data', () => {
      const line = out.stdout.split('\n').find((l) => l.includes('"admin":'))
      if (line !== undefined) {
        clearTimeout(timer)
        resolve(JSON.parse(line) as { admin: string })
      }
    })
    child.on('close', () => reject(new Error(`exited early; stderr: ${out.stderr}`)))
  })
  const [host, port] = started.admin.split(':') as [string, string]
  t.equal(host, '127.0.0.1')
  const status = await new Promise<number>((resolve, reject) => {
    request({ host, port: Number(port), path: '/healthz' }, (res) => {
      res.resume()
      resolve(res.statusCode ?? 0)
    })
      .on('error', reject)
      .end()
  })
  t.equal(status, 200, 'the admin listener is up')

  child.kill('SIGTERM')
  t.equal(await exit, 0, 'drained and exited 0')
  t.equal(out.stderr, '')
  const last = out.stdout.trimEnd().split('\n').at(-1)!
  t.equal((JSON.parse(last) as { msg: string }).msg, 'stopped', 'the last log line was written before the exit')
})

t.test('serve refuses broken material with one line and exit 1, before listening', async (t) => {
  const file = join(dir, 'bad.yaml')
  await writeFile(file, config(pki.sponsorClient.keyPath))
  const { out, exit } = collect(spawnServe(file))
  t.equal(await exit, 1)
  t.equal(out.stdout, '')
  t.equal(
    out.stderr,
    `ecluse: sponsor.tls.key: ${pki.sponsorClient.keyPath}: does not match the certificate in ${pki.gatewaySponsorServer.certPath}\n`,
  )
})
