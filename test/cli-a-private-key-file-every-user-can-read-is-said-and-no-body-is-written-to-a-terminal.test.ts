/**
 * The keys commands and `ecluse open` read the trusted host's private set. One that every user of
 * the host may read is said on stderr, as `serve`, `config check` and `certs init` say it: a keys
 * command rewrites the file 0600, too late for the keys it held, so it names them. And neither
 * `seal --body` nor `open --body` writes to a terminal: a sealed body is binary, an opened one holds
 * whatever bytes its sealer chose, escape sequences included.
 */
import { chmod, mkdir, readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { type CliIo, main } from '../src/cli.js'
import { runCli } from './helpers/cli.js'

const READABLE = 'private key file is readable by every user of this host; make it 0600 (or 0640, 0440 for a group)'

t.test('a keys command on a private set every user may read: said, with the kids it held, and the file made 0600', async (t) => {
  const dir = t.testdir()
  const priv = join(dir, 'trusted-host.private.jwks.json')
  t.equal((await runCli(['keys', 'init', '--out', dir, '--kid', 'k1'])).code, 0)
  t.equal((await runCli(['keys', 'init', '--out', dir, '--rotate', '--stage', '--kid', 'k2'])).stderr, '', 'control: a 0600 file is not warned of')
  await chmod(priv, 0o644)
  const r = await runCli(['keys', 'promote', '--out', dir, '--kid=k2'])
  t.equal(r.code, 0, 'said, not refused')
  t.equal(
    r.stderr,
    `warning: ${priv}: ${READABLE}\n` +
      'warning: it is 0600 now, but the keys it held (k1, k2) could be read until now: ' +
      'if other users may have read it, treat them as exposed (docs/operations.md#an-exposed-key)\n',
  )
  t.equal((await stat(priv)).mode & 0o777, 0o600, 'rewritten 0600')

  // A command that writes nothing says nothing of writing it: only the exposure.
  await chmod(priv, 0o644)
  const noop = await runCli(['keys', 'promote', '--out', dir, '--kid=k2'])
  t.equal(noop.code, 0)
  t.match(noop.stdout, /is already current .*; nothing written/)
  t.equal(noop.stderr, `warning: ${priv}: ${READABLE}\n`, 'the exposure, not a rewrite that does not happen')
  // Refused: the exposure is said all the same.
  const refusedRetire = await runCli(['keys', 'retire', '--out', dir, '--kid=k2'])
  t.equal(refusedRetire.code, 1)
  t.match(refusedRetire.stderr, `warning: ${priv}: ${READABLE}\n`)
  t.notMatch(refusedRetire.stderr, /0600 now/)
  t.equal((await stat(priv)).mode & 0o777, 0o644, 'and stays as it was')

  await chmod(priv, 0o604)
  const rotated = await runCli(['keys', 'init', '--out', dir, '--rotate', '--stage', '--kid', 'k3'])
  t.equal(rotated.code, 0)
  t.match(rotated.stderr, `the keys it held (k2, k1) could be read until now`, 'keys init --rotate too')

  // Replaced with --force: its keys still open what was sealed to them, for whoever read them.
  await chmod(priv, 0o644)
  const forced = await runCli(['keys', 'init', '--out', dir, '--force', '--kid', 'k9'])
  t.equal(forced.code, 0)
  t.match(forced.stderr, `the keys it held (k2, k3, k1) could be read until now`, 'keys init --force too')
})

t.test('open with a private set every user may read: said, and the values still open', async (t) => {
  const dir = t.testdir()
  const priv = join(dir, 'trusted-host.private.jwks.json')
  const pub = join(dir, 'trusted-host.public.jwks.json')
  t.equal((await runCli(['keys', 'init', '--out', dir])).code, 0)
  await writeFile(join(dir, 'in.json'), '{"name":"Zoé"}')
  const fields = ['--context', 'c', '--fields', '/name']
  t.equal((await runCli(['seal', '-k', pub, ...fields, join(dir, 'in.json'), '-o', join(dir, 'sealed.json')])).stderr, '', 'the public set: nothing to say')
  t.equal((await runCli(['open', '-k', priv, ...fields, join(dir, 'sealed.json')])).stderr, '', 'control: a 0600 file is not warned of')
  await chmod(priv, 0o644)
  const r = await runCli(['open', '-k', priv, ...fields, join(dir, 'sealed.json')])
  t.equal(r.code, 0)
  t.equal(r.stdout, '{"name":"Zoé"}')
  t.equal(r.stderr, `warning: ${priv}: ${READABLE}\n`)
  t.equal((await stat(priv)).mode & 0o777, 0o644, 'open changes no file')
})

t.test('neither a sealed nor an opened body is written to a terminal', async (t) => {
  const dir = t.testdir()
  t.equal((await runCli(['keys', 'init', '--out', dir])).code, 0)
  const input = join(dir, 'photo.bin')
  await writeFile(input, Buffer.from('\u001b]0;pwned\u0007\u001b[2J'))
  const sealed = join(dir, 'photo.ecls')
  t.equal((await runCli(['seal', '--body', '-k', join(dir, 'trusted-host.public.jwks.json'), '--context', 'c', input, '-o', sealed])).code, 0)
  for (const [op, keys, file] of [
    ['seal', 'trusted-host.public.jwks.json', input],
    ['open', 'trusted-host.private.jwks.json', sealed],
  ] as const) {
    let stdout = ''
    let stderr = ''
    const io = { stdout: { write: (s: string) => (stdout += s), isTTY: true }, stderr: { write: (s: string) => (stderr += s) }, env: {} } as CliIo
    const code = await main([op, '--body', '-k', join(dir, keys), '--context', 'c', file], io)
    t.equal(code, 1, `${op}: exit 1`)
    t.equal(stdout, '', `${op}: nothing on the terminal`)
    t.equal(stderr, `ecluse: refusing to write ${op === 'seal' ? 'a sealed' : 'an opened'} body to a terminal: use --out FILE or redirect stdout\n`)
  }
  const out = join(dir, 'opened.bin')
  t.equal((await runCli(['open', '--body', '-k', join(dir, 'trusted-host.private.jwks.json'), '--context', 'c', sealed, '-o', out])).code, 0)
  t.same(await readFile(out), await readFile(input), 'control: to a file it opens')
})

t.test('a set written into a folder every user may write is said: anyone could swap the public file before it is installed', async (t) => {
  const { WRITABLE_FILE_WARNING } = await import('../src/config/key-file-modes.js')
  const shared = join(t.testdir(), 'shared')
  await mkdir(shared)
  await chmod(shared, 0o777)
  const priv = join(shared, 'trusted-host.private.jwks.json')
  const pub = join(shared, 'trusted-host.public.jwks.json')
  const expected = `warning: ${priv}: ${WRITABLE_FILE_WARNING}\nwarning: ${pub}: ${WRITABLE_FILE_WARNING}\n`
  const r = await runCli(['keys', 'init', '--out', shared, '--kid', 'k1'])
  t.equal(r.code, 0, 'said, not refused')
  t.equal(r.stderr, expected)
  const staged = await runCli(['keys', 'init', '--out', shared, '--rotate', '--stage', '--kid', 'k2'])
  t.equal(staged.stderr, expected, 'keys init --rotate too')
  const promoted = await runCli(['keys', 'promote', '--out', shared, '--kid=k2'])
  t.equal(promoted.stderr, expected, 'keys promote too')
  // The sticky bit keeps others to their own files (/tmp): nothing to say.
  await chmod(shared, 0o1777)
  t.equal((await runCli(['keys', 'retire', '--out', shared, '--kid=k1'])).stderr, '', 'control: a sticky folder')
})
