/**
 * `npm run build` writes what the Docker image ships (`dist/`, run by `bin/ecluse.js`). Nothing else
 * compiles it, so a build that no longer ran would only show in the image. The image carries the
 * gateway and its CLI, not the demo (it runs from source with `npm start`) nor source maps (they
 * would point at sources the image does not have).
 */
import { execFile, spawn } from 'node:child_process'
import { closeSync, openSync } from 'node:fs'
import { copyFile, mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import t from 'tap'
import { ROOT } from './helpers/cli.js'

const run = promisify(execFile)

t.test('the build runs as the image runs it, and holds no demo and no source map', async (t) => {
  // Inside the checkout, so that the compiled modules find node_modules as /app/dist finds /app's.
  const app = join(ROOT, '.tap', `build-${process.pid}`)
  t.teardown(() => rm(app, { recursive: true, force: true }))
  await mkdir(join(app, 'bin'), { recursive: true })
  await run(process.execPath, [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(ROOT, 'tsconfig.build.json'), '--outDir', join(app, 'dist')], { cwd: ROOT })
  // The image's layout: /app/bin/ecluse.js, /app/dist, /app/package.json.
  await copyFile(join(ROOT, 'bin', 'ecluse.js'), join(app, 'bin', 'ecluse.js'))
  await copyFile(join(ROOT, 'package.json'), join(app, 'package.json'))

  const files = (await readdir(join(app, 'dist'), { recursive: true })).map(String)
  t.ok(files.includes('cli.js') && files.includes('main.js'), 'the CLI and the gateway are built')
  t.same(files.filter((f) => f.startsWith('demo')), [], 'no demo')
  t.same(files.filter((f) => f.endsWith('.map')), [], 'no source map')

  const ecluse = (...args: string[]) => run(process.execPath, [join(app, 'bin', 'ecluse.js'), ...args], { cwd: app })
  const { version } = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as { version: string }
  t.equal((await ecluse('--version')).stdout, `ecluse ${version}\n`, 'the built CLI runs and knows its version')
  const keys = join(app, 'keys')
  await ecluse('keys', 'init', '--out', keys, '--name', 'trusted-host')
  t.equal((await stat(join(keys, 'trusted-host.private.jwks.json'))).mode & 0o777, 0o600, 'and writes a key set')
  await writeFile(join(app, 'in.json'), '{"name":"Zoé"}')
  const sealed = await ecluse('seal', '--keys', join(keys, 'trusted-host.public.jwks.json'), '--context', 'c', '--fields', '/name', join(app, 'in.json'))
  t.match(sealed.stdout, /^\{"name":"ey[\w-]+\.[\w-]+\.[\w-]+\.[\w-]+\.[\w-]+"\}/, 'and seals a field with it')

  // Standard output on a full disk: the command's report is lost, so it must not exit 0.
  const devFull = openSync('/dev/full', 'w')
  const full = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
    const child = spawn(process.execPath, [join(app, 'bin', 'ecluse.js'), 'keys', 'init', '--out', join(app, 'keys-full')], {
      cwd: app,
      stdio: ['ignore', devFull, 'pipe'],
    })
    closeSync(devFull)
    let stderr = ''
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d))
    child.on('close', (code) => resolve({ code, stderr }))
  })
  t.equal(full.code, 1, 'stdout on /dev/full: exit 1')
  t.equal(full.stderr, 'ecluse: cannot write to standard output (ENOSPC)\n')
})
