import { spawn } from 'node:child_process'
import { writeFile } from 'node:fs/promises'
import { connect } from 'node:net'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { Agent, request } from 'undici'
import { minimalServeConfig } from './helpers/cli.js'
import { TestUpstream } from './helpers/harness.js'
import { makeTestPki } from './helpers/pki.js'

const root = fileURLToPath(new URL('..', import.meta.url))

/** Runs `script` (ESM, with tsx) in a child process; resolves with its exit code and output. */
function runScript(script: string): Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: root })
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d))
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d))
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }))
  })
}

// Real signals, sent by the process to itself: SIGHUP's default action kills, SIGTERM's skips the drain.
const BOOT = `
import { BootSignals } from './src/boot-signals.ts'
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
const calls = []
const signals = new BootSignals()
for (const s of process.env.DURING_BOOT.split(',')) { process.kill(process.pid, s); await sleep(50) }
signals.started({ reload: () => calls.push('reload'), stop: (s) => calls.push('stop:' + s), ignored: (s) => calls.push('ignored:' + s) })
for (const s of process.env.AFTER.split(',').filter(Boolean)) { process.kill(process.pid, s); await sleep(50) }
console.log(JSON.stringify(calls))
process.exit(0)
`

t.test('signals during boot wait for the start: a SIGHUP is one reload, a SIGTERM a stop', async (t) => {
  const cases: Array<[duringBoot: string, after: string, calls: string[]]> = [
    ['SIGHUP,SIGHUP', '', ['reload']],
    ['SIGTERM,SIGHUP', '', ['stop:SIGTERM']],
    ['SIGINT', '', ['stop:SIGINT']],
    ['SIGHUP', 'SIGTERM,SIGTERM,SIGHUP', ['reload', 'stop:SIGTERM', 'stop:SIGTERM', 'reload']],
    // Node's default for SIGUSR1 opens the inspector: during the boot it is dropped, then said.
    ['SIGUSR1', 'SIGUSR1,SIGHUP', ['ignored:SIGUSR1', 'reload']],
  ]
  for (const [duringBoot, after, calls] of cases) {
    process.env['DURING_BOOT'] = duringBoot
    process.env['AFTER'] = after
    const r = await runScript(BOOT)
    t.equal(r.signal, null, `${duringBoot} then ${after || 'nothing'}: not killed by a signal`)
    t.equal(r.code, 0, r.stderr)
    t.strictSame(JSON.parse(r.stdout), calls, 'handed to the started process, in order')
    t.notMatch(r.stderr, /Debugger listening/, 'no inspector was opened')
  }
  delete process.env['DURING_BOOT']
  delete process.env['AFTER']
})

t.test('a second SIGTERM during the drain neither kills the gateway nor cuts the request in flight', async (t) => {
  const pki = await makeTestPki()
  // The upstream answers after a second: the drain waits for it.
  const upstream = new TestUpstream(pki, (_req, res) => {
    setTimeout(() => res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}'), 1000)
  })
  const port = await upstream.listen()
  t.teardown(() => upstream.close())
  const dir = t.testdir()
  const file = join(dir, 'gateway.yaml')
  await writeFile(file, minimalServeConfig(pki, { drainTimeoutMs: 5000 }).replace('https://127.0.0.1:9\n', `https://127.0.0.1:${port}\n`))
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'serve', '--config', file], { cwd: root })
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  })
  let stdout = ''
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d))
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('close', (code, signal) => resolve({ code, signal })))
  const sponsor = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no start line')), 20_000)
    child.stdout.on('data', () => {
      const line = stdout.split('\n').find((l) => l.includes('"admin":'))
      if (line === undefined) return
      clearTimeout(timer)
      resolve((JSON.parse(line) as { sponsor: string }).sponsor)
    })
  })
  const agent = new Agent({ connect: { ca: pki.sponsorCa.certPem, cert: pki.sponsorClient.certPem, key: pki.sponsorClient.keyPem, servername: 'localhost' } })
  t.teardown(() => agent.destroy())
  // SIGUSR1 would open Node's inspector on 127.0.0.1:9229, reachable from the whole pod.
  let stderr = ''
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d))
  child.kill('SIGUSR1')
  while (!stdout.includes('signal ignored')) await new Promise((r) => setTimeout(r, 20))
  const answer = request(`https://127.0.0.1:${sponsor.split(':')[1]}/v1/accreditations`, { dispatcher: agent })
  while (upstream.hits === 0) await new Promise((r) => setTimeout(r, 20))
  child.kill('SIGTERM')
  await new Promise((r) => setTimeout(r, 200))
  child.kill('SIGTERM')
  const res = await answer
  t.equal(res.statusCode, 200, 'the request in flight is answered')
  t.equal(await res.body.text(), '{"ok":true}')
  t.strictSame(await exited, { code: 0, signal: null }, 'drained and exited 0, not killed')
  t.match(stdout, /shutdown already in progress/, 'the second signal is logged')
  t.match(stdout, /"signal":"SIGUSR1".*"msg":"signal ignored: it would open the Node inspector/, 'SIGUSR1 is logged as ignored')
  t.notMatch(stderr, /Debugger listening/, 'and no inspector was opened')
})

t.test('a SIGUSR1 that reaches Node before the CLI can catch it: the inspector it opened is closed once the gateway starts', async (t) => {
  const pki = await makeTestPki()
  const dir = t.testdir()
  const file = join(dir, 'gateway.yaml')
  await writeFile(file, minimalServeConfig(pki))
  // Port 0: the inspector a signal opens listens where the kernel says, not on a shared 9229.
  // The first preload says when Node runs JavaScript: its own SIGUSR1 handler is in place by then (a
  // signal before it would kill the process), and the CLI's comes only after tsx and its modules.
  const ready = 'data:text/javascript,process.stderr.write("node-running\\n")'
  const child = spawn(process.execPath, ['--inspect-port=0', '--import', ready, '--import', 'tsx', 'src/cli.ts', 'serve', '--config', file], { cwd: root })
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  })
  let stdout = ''
  let stderr = ''
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d))
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d))
  const started = () => stdout.includes('"admin":')
  while (!stderr.includes('node-running') && child.exitCode === null) await new Promise((r) => setTimeout(r, 5))
  while (!stderr.includes('Debugger listening') && !started() && child.exitCode === null) {
    child.kill('SIGUSR1')
    await new Promise((r) => setTimeout(r, 10))
  }
  t.match(stderr, /Debugger listening on ws:\/\/127\.0\.0\.1:\d+\//, "a signal reached Node's own handler during the boot")
  for (let i = 0; i < 500 && !started() && child.exitCode === null; i++) await new Promise((r) => setTimeout(r, 20))
  t.ok(started(), 'the gateway started')
  const port = Number(/ws:\/\/127\.0\.0\.1:(\d+)\//.exec(stderr)?.[1])
  const reached = await new Promise<string>((resolve) => {
    const socket = connect(port, '127.0.0.1')
    socket.on('connect', () => {
      socket.destroy()
      resolve('connected')
    })
    socket.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? 'error'))
  })
  t.equal(reached, 'ECONNREFUSED', 'the inspector is closed: nothing listens on its port')
  t.match(stdout, /"signal":"SIGUSR1".*"msg":"inspector opened by a signal during the boot; closed"/, 'and the log says so')
})
