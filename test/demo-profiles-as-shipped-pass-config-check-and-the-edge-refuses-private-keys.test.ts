/**
 * The reference profiles load as shipped: a copy of config/ with certs/ and keys/ beside it, made the
 * way a user makes them (`ecluse certs init`, `ecluse keys init`), passes `ecluse config check` for
 * both. The edge is a sealing profile: pointed at the private key file, or told that file is private,
 * it is refused, and the refusal never prints a key value.
 */
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import t from 'tap'
import { type CliIo, main } from '../src/cli.js'
import { REPO_ROOT } from '../src/demo/chain.js'

const root = await mkdtemp(path.join(tmpdir(), 'ecluse-profiles-'))
t.teardown(() => rm(root, { recursive: true, force: true }))
const configDir = path.join(root, 'config')
await mkdir(configDir)
for (const f of ['edge.yaml', 'trusted-sidecar.yaml']) {
  await copyFile(path.join(REPO_ROOT, 'config', f), path.join(configDir, f))
}

async function cli(...argv: string[]) {
  let stdout = ''
  let stderr = ''
  const io: CliIo = { stdout: { write: (s: string) => (stdout += s) }, stderr: { write: (s: string) => (stderr += s) }, env: {} }
  const code = await main(argv, io)
  return { code, stdout, stderr }
}

const certs = await cli('certs', 'init', '--out', path.join(root, 'certs'))
const keys = await cli('keys', 'init', '--out', path.join(root, 'keys'))
const privateFile = path.join(root, 'keys/trusted-host.private.jwks.json')
const privateValues = (JSON.parse(await readFile(privateFile, 'utf8')) as { keys: Array<Record<string, unknown>> }).keys.flatMap(
  (k) => ['d', 'p', 'q', 'dp', 'dq', 'qi'].map((m) => k[m]).filter((v): v is string => typeof v === 'string'),
)

t.test('the PKI and the key set are made by the CLI', async (t) => {
  t.equal(certs.code, 0, certs.stderr)
  t.equal(keys.code, 0, keys.stderr)
  t.ok(privateValues.length > 0, 'the private set holds private members (the checks below are not vacuous)')
})

t.test('config check accepts the edge profile as shipped', async (t) => {
  const r = await cli('config', 'check', path.join(configDir, 'edge.yaml'))
  t.equal(r.code, 0, r.stderr)
  t.equal(r.stdout, 'ok: 5 routes, 1 upstreams\n')
  t.equal(r.stderr, '', 'no warning')
})

t.test('config check accepts the trusted-sidecar profile as shipped', async (t) => {
  const r = await cli('config', 'check', path.join(configDir, 'trusted-sidecar.yaml'))
  t.equal(r.code, 0, r.stderr)
  t.equal(r.stdout, 'ok: 6 routes, 1 upstreams\n')
  t.equal(r.stderr, '', 'no warning')
})

const edgeText = await readFile(path.join(configDir, 'edge.yaml'), 'utf8')
const publicLine = '    file: ../keys/trusted-host.public.jwks.json\n'

t.test('the edge profile pointed at the private file is refused as key material', async (t) => {
  t.ok(edgeText.includes(publicLine), 'the shipped edge names the public file')
  const file = path.join(configDir, 'edge-with-private-file.yaml')
  await writeFile(file, edgeText.replace(publicLine, '    file: ../keys/trusted-host.private.jwks.json\n'))
  const r = await cli('config', 'check', file)
  t.equal(r.code, 1)
  t.equal(r.stdout, '', 'no "ok"')
  t.match(
    r.stderr,
    /^ecluse: keys\.trusted-host\.file \(.*trusted-host\.private\.jwks\.json\): keys\[0\] \(kid "[^"]+"\): holds private key material where only public keys are allowed\n$/,
    'names the key set, the file and the reason',
  )
  t.equal(privateValues.find((v) => (r.stdout + r.stderr).includes(v)), undefined, 'no private key value in the output')
})

t.test('the edge profile told its private file is private is refused: nothing in it opens', async (t) => {
  const file = path.join(configDir, 'edge-with-private-set.yaml')
  await writeFile(file, edgeText.replace(publicLine, '    file: ../keys/trusted-host.private.jwks.json\n    private: true\n'))
  const r = await cli('config', 'check', file)
  t.equal(r.code, 1)
  t.equal(r.stdout, '')
  t.match(r.stderr, /keys\.trusted-host\.private: a private key set that no open or open-body step uses/)
  t.equal(privateValues.find((v) => (r.stdout + r.stderr).includes(v)), undefined, 'no private key value in the output')
})
