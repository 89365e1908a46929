import { spawn } from 'node:child_process'
import { chmod, mkdir, readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import forge from 'node-forge'
import t from 'tap'
import { type CliIo, main } from '../src/cli.js'
import { loadClientTls, loadServerTls } from '../src/config/tls-material.js'

const root = fileURLToPath(new URL('..', import.meta.url))

const FILES = [
  'sponsor-ca',
  'trusted-ca',
  'gateway-sponsor',
  'sponsor-client',
  'trusted-server',
  'gateway-trusted-client',
  // The chained demo (edge gateway → trusted sidecar gateway).
  'sidecar-server',
  'edge-client',
].flatMap((base) => [`${base}.crt`, `${base}.key`])

function spawnCli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', ...args], { cwd: root })
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d))
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d))
    child.on('error', reject)
    child.on('close', (code) => resolve({ code, stdout, stderr }))
  })
}

async function runInProcess(argv: string[]) {
  let stdout = ''
  let stderr = ''
  const io: CliIo = { stdout: { write: (s: string) => (stdout += s) }, stderr: { write: (s: string) => (stderr += s) }, env: {} }
  return { code: await main(argv, io), stdout, stderr }
}

t.test('certs init writes both CAs and the demo pairs, keys private, and lists every file', async (t) => {
  const out = join(t.testdir(), 'certs')
  const r = await spawnCli(['certs', 'init', '--out', out])
  t.equal(r.code, 0)
  t.equal(r.stderr, '')
  const lines = r.stdout.trimEnd().split('\n')
  t.equal(lines[0], `wrote a development PKI in ${out}:`)
  t.same(lines.slice(1).sort(), FILES.map((f) => `  ${join(out, f)}`).sort())
  for (const f of FILES) {
    const mode = (await stat(join(out, f))).mode & 0o777
    if (f.endsWith('.key')) t.equal(mode, 0o600, `${f} is 0600`)
    else t.equal(mode & 0o022, 0, `${f} is not writable by others`)
  }
  t.equal((await stat(out)).mode & 0o777, 0o700, 'the directory it created is 0700')

  // What it wrote passes the gateway's own checks, side by side, without cross-trust.
  const sponsor = await loadServerTls({
    cert: join(out, 'gateway-sponsor.crt'),
    key: join(out, 'gateway-sponsor.key'),
    clientCa: join(out, 'sponsor-ca.crt'),
    minVersion: 'TLSv1.2',
    handshakeTimeoutMs: 5000,
  })
  const upstream = await loadClientTls({
    ca: join(out, 'trusted-ca.crt'),
    cert: join(out, 'gateway-trusted-client.crt'),
    key: join(out, 'gateway-trusted-client.key'),
    minVersion: 'TLSv1.2',
  })
  t.ok(sponsor.notAfter > new Date())
  t.notSame(sponsor.ca, upstream.ca, 'two independent CAs')
  // They issue leaves only: a CA minted with their key does not verify (pki-dev-certificates-… test).
  for (const ca of ['sponsor-ca.crt', 'trusted-ca.crt']) {
    const bc = forge.pki.certificateFromPem(await readFile(join(out, ca), 'utf8')).getExtension('basicConstraints') as { cA: boolean; pathLenConstraint?: number; critical: boolean }
    t.match(bc, { cA: true, pathLenConstraint: 0, critical: true }, `${ca}: a CA of path length 0`)
  }

  // Again without --force: nothing is rewritten, and it says so.
  const before = await readFile(join(out, 'sponsor-ca.key'))
  const again = await runInProcess(['certs', 'init', '--out', out])
  t.equal(again.code, 0)
  t.match(again.stdout, /^kept the existing development PKI in .* \(--force regenerates it\):\n/)
  t.same(await readFile(join(out, 'sponsor-ca.key')), before, 'the CA key is untouched')
  t.equal(again.stderr, '', 'its keys are 0600: no warning')

  // A CA key its owner made readable by every user is kept as it is, and said.
  await chmod(join(out, 'sponsor-ca.key'), 0o644)
  const readable = await runInProcess(['certs', 'init', '--out', out])
  t.equal(readable.code, 0, 'not a failure, as it is not one for serve')
  t.equal(
    readable.stderr,
    `warning: ${join(out, 'sponsor-ca.key')}: private key file is readable by every user of this host; make it 0600 (or 0640, 0440 for a group)\n`,
    'a warning names the file',
  )
  t.equal((await stat(join(out, 'sponsor-ca.key'))).mode & 0o777, 0o644, 'its mode is left to its owner')
  await chmod(join(out, 'sponsor-ca.key'), 0o600)

  // A set from before the chained demo (no sidecar-server, no edge-client) is completed: the output
  // lists the four files written, not the twelve it kept (it used to say "wrote" and list all 16).
  const { rm } = await import('node:fs/promises')
  const later = ['sidecar-server.crt', 'sidecar-server.key', 'edge-client.crt', 'edge-client.key'].map((f) => join(out, f))
  for (const f of later) await rm(f)
  const completed = await runInProcess(['certs', 'init', '--out', out])
  t.equal(completed.code, 0)
  const listed = completed.stdout.trimEnd().split('\n')
  t.match(listed[0], /^completed the development PKI in .* from its CAs, keeping the other files; wrote:$/)
  t.same(listed.slice(1).map((l) => l.trim()).sort(), later.sort(), 'exactly the files written')
  t.same(await readFile(join(out, 'sponsor-ca.key')), before, 'the CA key is untouched')

  // With --force: a new PKI.
  const forced = await runInProcess(['certs', 'init', '--out', out, '--force'])
  t.equal(forced.code, 0)
  t.match(forced.stdout, /^wrote a development PKI in /)
  t.notSame(await readFile(join(out, 'sponsor-ca.key')), before, 'the CA key is new')
})

t.test('an incomplete PKI directory is an error, not silently completed', async (t) => {
  const out = t.testdir({ 'sponsor-ca.crt': 'not a certificate\n' })
  const r = await runInProcess(['certs', 'init', '--out', out])
  t.equal(r.code, 1)
  t.match(r.stderr, /^ecluse: incomplete development PKI in .*; regenerate with --force\n$/)
})

t.test('a PKI written into a folder every user may write is said: anyone could swap a CA before it is installed', async (t) => {
  const { WRITABLE_FILE_WARNING } = await import('../src/config/key-file-modes.js')
  const shared = join(t.testdir(), 'shared')
  await mkdir(shared)
  await chmod(shared, 0o777)
  const r = await runInProcess(['certs', 'init', '--out', shared])
  t.equal(r.code, 0, 'said, not refused')
  const warned = r.stderr.trimEnd().split('\n')
  t.equal(warned.length, 16, 'one line for each certificate and key')
  t.ok(warned.includes(`warning: ${join(shared, 'sponsor-ca.crt')}: ${WRITABLE_FILE_WARNING}`), 'a CA certificate is named')
  t.ok(warned.includes(`warning: ${join(shared, 'trusted-ca.key')}: ${WRITABLE_FILE_WARNING}`), 'a CA key is named')
  // The sticky bit keeps others to their own files (/tmp): nothing to say.
  await chmod(shared, 0o1777)
  t.equal((await runInProcess(['certs', 'init', '--out', shared])).stderr, '', 'control: a sticky folder')
})
