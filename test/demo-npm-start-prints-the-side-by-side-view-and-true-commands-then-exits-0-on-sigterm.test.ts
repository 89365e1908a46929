/**
 * `npm start`'s process (src/demo/start.ts) as a user runs it, with the test hook ECLUSE_DEMO_DIR
 * (port 0, certificates and keys in a temporary folder): it prints the sample record sealed on the
 * sponsor's side and in plaintext on the service's, then curl commands that do what their comments
 * say when pasted into a shell (run here with bash and curl, when curl is installed), reloads on
 * SIGHUP, and drains and exits 0 on SIGTERM.
 */
import { type ChildProcessWithoutNullStreams, spawn, spawnSync } from 'node:child_process'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { decodeProtectedHeader } from 'jose'
import t from 'tap'
import { REPO_ROOT, SAMPLE_PHOTO, SAMPLE_RECORD, SENSITIVE_FIELDS } from '../src/demo/chain.js'

const work = await mkdtemp(path.join(tmpdir(), 'ecluse-npm-start-'))
t.teardown(() => rm(work, { recursive: true, force: true }))

const env: NodeJS.ProcessEnv = { ...process.env, ECLUSE_DEMO_DIR: work }
delete env['ECLUSE_DEBUG']
// As `npm start` runs it: from the package root.
const child: ChildProcessWithoutNullStreams = spawn(process.execPath, ['--import', 'tsx', 'src/demo/start.ts'], {
  cwd: REPO_ROOT,
  env,
})
t.teardown(() => {
  if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
})
const out = { stdout: '', stderr: '' }
child.stdout.setEncoding('utf8').on('data', (d: string) => (out.stdout += d))
child.stderr.setEncoding('utf8').on('data', (d: string) => (out.stderr += d))
const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
  child.on('close', (code, signal) => resolve({ code, signal })),
)

/** Resolves once stdout matches `re`; rejects if the process exits first or nothing comes in time. */
function waitFor(re: RegExp, ms = 180_000): Promise<void> {
  return new Promise((resolve, reject) => {
    const check = () => {
      if (re.test(out.stdout)) {
        clearInterval(timer)
        clearTimeout(deadline)
        resolve()
      }
    }
    const timer = setInterval(check, 50)
    const deadline = setTimeout(() => {
      clearInterval(timer)
      reject(new Error(`no ${re} on stdout; stdout: ${out.stdout}\nstderr: ${out.stderr.slice(-2000)}`))
    }, ms)
    void exited.then(() => {
      check()
      clearInterval(timer)
      clearTimeout(deadline)
      reject(new Error(`exited early; stdout: ${out.stdout}\nstderr: ${out.stderr.slice(-2000)}`))
    })
  })
}

await waitFor(/^Stop: Ctrl-C .*$/m)
const lines = out.stdout.split('\n')
const row = (name: string) => lines.find((l) => new RegExp(`^  ${name}\\s`).test(l))

t.test('the side-by-side view shows sealed values for the sponsor and plaintext for the service', async (t) => {
  t.match(out.stdout, /the sponsor sees \(through the edge\)\s+the trusted service stores/)
  for (const f of SENSITIVE_FIELDS) {
    const line = row(f)
    t.ok(line, `a row for ${f}`)
    const [, sponsor, service] = /^ {2}\S+\s+(eyJ[A-Za-z0-9_-]+… \(JWE, \d+ chars\))\s+(.*)$/.exec(line ?? '') ?? []
    t.ok(sponsor, `${f}: the sponsor's cell is a JWE`)
    t.equal(service, JSON.stringify(SAMPLE_RECORD[f]), `${f}: the service's cell is the plaintext`)
    t.notOk(sponsor?.includes(String(SAMPLE_RECORD[f])), `${f}: the sponsor's cell does not hold the value`)
  }
  t.match(row('outlet'), /^ {2}outlet\s+"The Analytical Review"\s+"The Analytical Review"$/, 'a member not listed passes in clear')
  t.match(row('vetting'), /^ {2}vetting\s+—\s+\{"reference":"VET-/, 'the vetting notes stay with the service')
  t.match(out.stdout, /photo: the sponsor gets application\/vnd\.ecluse\.sealed, \d+ bytes, starting "ECLS"/)
  t.match(out.stdout, new RegExp(`the service stores image/png, ${SAMPLE_PHOTO.length} bytes, starting "\\.PNG"`))
})

t.test('the gateways log to stderr, tagged, and never a sample value', async (t) => {
  const logLines = out.stderr
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>)
  t.same([...new Set(logLines.map((l) => l['gateway']))].sort(), ['edge', 'sidecar'])
  t.ok(logLines.some((l) => l['gateway'] === 'edge' && l['route'] === 'create-accreditation' && l['status'] === 201))
  for (const f of SENSITIVE_FIELDS) t.notOk(out.stderr.includes(String(SAMPLE_RECORD[f])), `no ${f} value in the logs`)
  t.notOk(out.stdout.includes('"level"'), 'no log line on stdout')
})

const hasCurl = spawnSync('curl', ['--version']).status === 0
t.test('every printed command does what its comment says', { skip: hasCurl ? false : 'curl is not installed' }, async (t) => {
  const block = lines.slice(lines.findIndex((l) => l.startsWith('Try, from ')) + 1)
  const tLine = block.find((l) => l.startsWith("  T='"))!.trim()
  const commands = block.filter((l) => /^ {2}(curl|echo|node) /.test(l)).map((l) => l.trim())
  t.equal(commands.length, 15, 'the commands this test knows about')
  const run = (command: string) => {
    const r = spawnSync('bash', ['-c', `${tLine}\n${command}`], { cwd: REPO_ROOT, encoding: 'utf8', timeout: 120_000 })
    return { status: r.status, stdout: r.stdout, stderr: r.stderr }
  }
  const pick = (re: RegExp) => {
    const c = commands.find((l) => re.test(l))
    if (c === undefined) throw new Error(`no printed command matches ${re}`)
    return run(c)
  }
  const id = /id ([0-9a-f-]{36}):$/m.exec(out.stdout)?.[1]
  t.ok(id, 'the sample id is printed')

  const created = pick(/^curl \$T -H 'content-type: application\/json' -d .* https:\/\/localhost:\d+\/v1\/accreditations$/)
  t.equal(created.status, 0, created.stderr)
  const record = JSON.parse(created.stdout) as Record<string, unknown>
  t.match(record, { category: 'journalist', status: 'pending', name: /^eyJ/, passportNumber: /^eyJ/ }, 'create: sealed fields back')
  t.notOk('vetting' in record)

  const got = pick(new RegExp(`^curl \\$T https://localhost:\\d+/v1/accreditations/${id}$`))
  t.match(JSON.parse(got.stdout), { id, name: /^eyJ/, email: /^eyJ/, outlet: 'The Analytical Review' }, 'get by id: sealed fields')
  const listed = JSON.parse(pick(/^curl \$T https:\/\/localhost:\d+\/v1\/accreditations$/).stdout) as { records: unknown[] }
  t.equal(listed.records.length, 2, 'the list has the sample and the record just created')

  const upload = pick(/\| base64 -d \| curl \$T -X PUT -H 'content-type: image\/png' --data-binary @- /)
  t.same([upload.status, upload.stdout], [0, ''], 'photo upload: 204, no body')
  const download = pick(/^curl \$T -o \S+\.sealed -w /)
  t.match(download.stdout, /^200 application\/vnd\.ecluse\.sealed \d+ bytes\n$/)
  const opened = pick(/^node --import tsx src\/cli\.ts open .* --body /)
  t.equal(opened.status, 0, opened.stderr)
  t.same(await readFile(path.join(work, 'ecluse-demo-photo.png')), SAMPLE_PHOTO, 'the private set opens the sealed photo to the PNG')
  const openedFields = pick(/^curl -s \$T .* \| node --import tsx src\/cli\.ts open /)
  t.equal(openedFields.status, 0, openedFields.stderr)
  t.match(JSON.parse(openedFields.stdout), { id, name: SAMPLE_RECORD.name, passportNumber: SAMPLE_RECORD.passportNumber })

  t.match(JSON.parse(pick(/\/v1\/does-not-exist$/).stdout), { error: 'route_not_found' })
  const noCert = pick(/^curl --cacert \S+ https:\/\/localhost:\d+\/v1\/accreditations$/)
  t.not(noCert.status, 0, 'no client certificate: curl fails')
  t.equal(noCert.stdout, '', 'and gets no HTTP answer')
  const plaintext = pick(/edge-client\.key -H 'content-type: application\/json' -d /)
  t.match(JSON.parse(plaintext.stdout), { error: 'open_failed' }, 'plaintext past the seal: refused by the sidecar')
  const afterRefusal = JSON.parse(pick(/^curl \$T https:\/\/localhost:\d+\/v1\/accreditations$/).stdout) as { records: unknown[] }
  t.equal(afterRefusal.records.length, 2, 'the refused record never reached the service')
  const jwks = JSON.parse(pick(/\/\.well-known\/jwks\.json$/).stdout) as { keys: Array<Record<string, unknown>>; current: string }
  t.ok(jwks.keys.length >= 1 && jwks.keys.every((k) => !('d' in k)), 'the sidecar publishes public keys only')
  const metrics = commands.filter((c) => /^curl http:\/\/127\.0\.0\.1:\d+\/metrics$/.test(c)).map(run)
  t.equal(metrics.length, 2)
  for (const m of metrics) t.match(m.stdout, /^ecluse_requests_total\{/m, 'an admin /metrics answers')

  // The rotation lines: stage (SIGHUP: both accept the new key, neither uses it), then promote the
  // staged kid that step 1 printed (SIGHUP: values are sealed to it).
  const reloads = () => out.stdout.split('\n').filter((l) => l === 'SIGHUP: sidecar reloaded, edge reloaded').length
  const publicFile = path.join(work, 'keys/trusted-host.public.jwks.json')
  const staged = pick(/keys init --out \S+ --rotate --stage && kill -HUP \d+$/)
  t.equal(staged.status, 0, staged.stderr)
  await waitFor(/^SIGHUP: sidecar reloaded, edge reloaded$/m)
  const stagedKid = /^staged kid (\S+) /m.exec(staged.stdout)?.[1]
  t.ok(stagedKid, 'step 1 names the staged kid')
  const afterStage = JSON.parse(await readFile(publicFile, 'utf8')) as { current: string; keys: Array<{ kid: string }> }
  t.equal(afterStage.current, jwks.current, 'staging keeps the current key')
  t.ok(afterStage.keys.some((k) => k.kid === stagedKid), 'and adds the staged one')
  const promoteLine = commands.find((c) => /keys promote --out \S+ --kid=<the staged kid> && kill -HUP \d+$/.test(c))
  t.ok(promoteLine, 'the promote line is printed')
  const promoted = run(promoteLine!.replace('<the staged kid>', stagedKid!))
  t.equal(promoted.status, 0, promoted.stderr)
  for (let i = 0; i < 600 && reloads() < 2; i++) await new Promise((r) => setTimeout(r, 100))
  t.equal(reloads(), 2, 'the second SIGHUP reloaded both gateways')
  const current = (JSON.parse(await readFile(publicFile, 'utf8')) as { current: string }).current
  t.equal(current, stagedKid, 'the promotion made the staged key current')
  const after = JSON.parse(pick(new RegExp(`^curl \\$T https://localhost:\\d+/v1/accreditations/${id}$`)).stdout) as Record<string, string>
  t.equal(decodeProtectedHeader(after['name']!).kid, current, 'after the reload, values are sealed to the new key')
  const reopened = pick(/^curl -s \$T .* \| node --import tsx src\/cli\.ts open /)
  t.match(JSON.parse(reopened.stdout), { name: SAMPLE_RECORD.name }, 'and the sidecar (and the private set) opens them')
})

t.test('SIGTERM drains both gateways and exits 0', async (t) => {
  child.kill('SIGTERM')
  const { code, signal } = await exited
  t.same({ code, signal }, { code: 0, signal: null })
  t.match(out.stderr, /"gateway":"edge".*"msg":"stopped"/)
  t.match(out.stderr, /"gateway":"sidecar".*"msg":"stopped"/)
})
