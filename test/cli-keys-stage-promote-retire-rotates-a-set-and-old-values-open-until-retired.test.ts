/**
 * The two-phase rotation through the CLI, step by step: `keys init --rotate --stage` adds a key
 * right behind the current one without changing `current`, `keys promote` makes it current (and
 * first), `keys retire` removes the old one. After each step both files load with the gateway's own
 * parser, the public file holds no private member, the modes are kept, the private keys are copied
 * as they were, nothing private is printed, and a value sealed before the rotation still opens with
 * the private set, until the retire, after which it is `open_failed`.
 */
import { readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { decodeProtectedHeader } from 'jose'
import t, { type Test } from 'tap'
import { FieldOpener, FieldSealer } from '../src/crypto/field.js'
import { type Jwk, type Jwks, type KeySet, parseKeySet } from '../src/crypto/keys.js'
import { EcluseError } from '../src/errors.js'
import { listDir, runCli } from './helpers/cli.js'
import { CANARY, leaksCanary } from './helpers/sealing.js'

const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k']
const CTX = { route: 'accreditations' }
const AT = { route: 'accreditations', ptr: '/passport', rid: 'A-1' }
const VALUE = Buffer.from(JSON.stringify(CANARY.passport))

interface Files {
  readonly dir: string
  readonly privateFile: string
  readonly publicFile: string
}

function files(dir: string, name = 'trusted-host'): Files {
  return { dir, privateFile: join(dir, `${name}.private.jwks.json`), publicFile: join(dir, `${name}.public.jwks.json`) }
}

async function jwks(file: string): Promise<Jwks> {
  return JSON.parse(await readFile(file, 'utf8')) as Jwks
}

/** Both files as the gateways load them, and the checks every step must pass. */
async function loadBoth(t: Test, f: Files, step: string): Promise<{ privateSet: KeySet; publicSet: KeySet; priv: Jwks; pub: Jwks }> {
  const privateSet = parseKeySet(await readFile(f.privateFile), { requirePrivate: true, source: f.privateFile })
  const publicSet = parseKeySet(await readFile(f.publicFile), { publicOnly: true, source: f.publicFile })
  const priv = await jwks(f.privateFile)
  const pub = await jwks(f.publicFile)
  for (const k of pub.keys) {
    t.same(PRIVATE_MEMBERS.filter((m) => m in k), [], `${step}: public key ${String(k.kid)} holds no private member`)
  }
  t.same(publicSet.kids, privateSet.kids, `${step}: the public file lists the same keys, in the same order`)
  t.equal((await stat(f.privateFile)).mode & 0o777, 0o600, `${step}: the private file stays 0600`)
  t.equal((await stat(f.publicFile)).mode & 0o777, 0o644, `${step}: the public file stays 0644`)
  t.same(await listDir(f.dir), ['trusted-host.private.jwks.json', 'trusted-host.public.jwks.json'], `${step}: no temporary file left`)
  return { privateSet, publicSet, priv, pub }
}

/** No private member of any key ever seen appears in the command's output. */
function printsNoSecret(t: Test, out: string, keys: readonly Jwk[], step: string): void {
  const secrets = keys.flatMap((k) => PRIVATE_MEMBERS.map((m) => k[m]).filter((v): v is string => typeof v === 'string'))
  t.ok(secrets.length > 0, `${step}: there are private members to look for`)
  t.equal(secrets.filter((s) => out.includes(s)).length, 0, `${step}: no private value printed`)
}

function openFails(t: Test, opener: FieldOpener, jwe: string, message: string): void {
  try {
    opener.open(jwe, AT)
    t.fail(message)
  } catch (err) {
    t.ok(err instanceof EcluseError, `${message}: an EcluseError`)
    t.equal((err as EcluseError).code, 'open_failed', message)
  }
}

t.test('stage, promote, retire: current moves only at promote, old values open until retire', async (t) => {
  const f = files(join(t.testdir(), 'keys'))
  const init = await runCli(['keys', 'init', '--out', f.dir, '--kid', 'k1'])
  t.equal(init.code, 0, init.stderr)
  const initial = await loadBoth(t, f, 'init')
  const k1Private = initial.priv.keys[0]!

  // Sealed before any rotation, as the edge seals: to the public set's current key.
  const sealedBefore = new FieldSealer(initial.publicSet, CTX).seal(VALUE, AT)
  t.equal(decodeProtectedHeader(sealedBefore).kid, 'k1')

  // 1. Stage: k2 in both files, right behind k1, which stays current (and first).
  const staged = await runCli(['keys', 'init', '--out', f.dir, '--rotate', '--stage', '--kid', 'k2'])
  t.equal(staged.code, 0, staged.stderr)
  t.equal(staged.stderr, '')
  t.equal(
    staged.stdout,
    `staged kid k2 (ECDH-ES+A256KW, X25519) in the key set "trusted-host" in ${f.dir}: the current kid stays k1; accepted for opening: k1, k2\n` +
      `  ${f.privateFile}   private, 0600: keep it on the trusted host only\n` +
      `  ${f.publicFile}   public: give it to every gateway that seals\n` +
      'Next: install the public set wherever it is used (every edge, and the trusted sidecar), reload (SIGHUP)\n' +
      'every gateway, in any order: each then accepts both keys and still seals to the current one. Then:\n' +
      `  ecluse keys promote --out=${f.dir} --kid=k2\n`,
  )
  const s = await loadBoth(t, f, 'stage')
  t.same(s.privateSet.kids, ['k1', 'k2'], 'stage: the staged key right behind the current one')
  t.equal(s.privateSet.current.kid, 'k1', 'stage: the private set still names k1 current')
  t.equal(s.publicSet.current.kid, 'k1', 'stage: the public set still names k1 current')
  t.equal(s.priv.current, 'k1')
  t.equal(s.pub.current, 'k1')
  t.same(s.priv.keys[0], k1Private, 'stage: the current private key is copied as it was')
  t.match(s.priv.keys[1], { kid: 'k2', kty: 'OKP', crv: 'X25519', alg: 'ECDH-ES+A256KW', use: 'enc' }, 'stage: same kind as k1')
  const k2Private = s.priv.keys[1]!
  printsNoSecret(t, staged.stdout + staged.stderr, [k1Private, k2Private], 'stage')

  // Staged: sealers still seal to k1; the private set opens k1 and k2 alike.
  const sealedStaged = new FieldSealer(s.publicSet, CTX).seal(VALUE, AT)
  t.equal(decodeProtectedHeader(sealedStaged).kid, 'k1', 'stage: new values are still sealed to k1')
  const toK2 = new FieldSealer(parseKeySet(await readFile(f.publicFile), { publicOnly: true, current: 'k2' }), CTX).seal(VALUE, AT)
  t.equal(decodeProtectedHeader(toK2).kid, 'k2')
  const stagedOpener = new FieldOpener(s.privateSet)
  t.same(stagedOpener.open(sealedBefore, AT), VALUE, 'stage: a value sealed before the rotation opens')
  t.same(stagedOpener.open(toK2, AT), VALUE, 'stage: a value sealed to the staged key opens too (whoever promotes first)')

  // 2. Promote: k2 current and first in both files, k1 kept behind it.
  const promoted = await runCli(['keys', 'promote', '--out', f.dir, '--kid', 'k2'])
  t.equal(promoted.code, 0, promoted.stderr)
  t.equal(promoted.stderr, '')
  t.equal(
    promoted.stdout,
    `promoted kid k2 in the key set "trusted-host" in ${f.dir}: new values are sealed to it; still accepted for opening: k1\n` +
      `  ${f.privateFile}   private, 0600: keep it on the trusted host only\n` +
      `  ${f.publicFile}   public: install it wherever the previous one is used\n` +
      'Next: install the public set wherever it is used and reload (SIGHUP) every gateway, in any order\n' +
      '(each already accepts both keys since the staged set was reloaded). Once nothing sealed to the old key\n' +
      'can still arrive:\n' +
      `  ecluse keys retire --out=${f.dir} --kid=k1\n`,
  )
  const p = await loadBoth(t, f, 'promote')
  t.same(p.privateSet.kids, ['k2', 'k1'], 'promote: the promoted key first')
  t.equal(p.privateSet.current.kid, 'k2')
  t.equal(p.publicSet.current.kid, 'k2')
  t.equal(p.priv.current, 'k2')
  t.equal(p.pub.current, 'k2')
  t.same(p.priv.keys, [k2Private, k1Private], 'promote: both private keys copied as they were')
  printsNoSecret(t, promoted.stdout, [k1Private, k2Private], 'promote')
  const sealedAfter = new FieldSealer(p.publicSet, CTX).seal(VALUE, AT)
  t.equal(decodeProtectedHeader(sealedAfter).kid, 'k2', 'promote: new values are sealed to k2')
  const promotedOpener = new FieldOpener(p.privateSet)
  for (const [jwe, what] of [[sealedBefore, 'before the rotation'], [sealedStaged, 'while staged'], [sealedAfter, 'after the promote']] as const) {
    t.same(promotedOpener.open(jwe, AT), VALUE, `promote: a value sealed ${what} opens`)
  }

  // Promoting the current key again: a no-op, said so, nothing rewritten.
  const bytes = await Promise.all([readFile(f.privateFile), readFile(f.publicFile)])
  const again = await runCli(['keys', 'promote', '--out', f.dir, '--kid', 'k2'])
  t.equal(again.code, 0, again.stderr)
  t.equal(again.stdout, `kid k2 is already current in the key set "trusted-host" in ${f.dir}; nothing written\n`)
  t.same(await Promise.all([readFile(f.privateFile), readFile(f.publicFile)]), bytes, 'the no-op promote left both files byte for byte')

  // 3. Retire k1: gone from both files, with a warning; what was sealed to it no longer opens.
  const retired = await runCli(['keys', 'retire', '--out', f.dir, '--kid', 'k1'])
  t.equal(retired.code, 0, retired.stderr)
  t.equal(retired.stderr, '')
  t.equal(
    retired.stdout,
    `retired kid k1 from the key set "trusted-host" in ${f.dir}: current kid k2; still accepted for opening: k2\n` +
      'warning: a value sealed to k1 no longer opens with this set (open_failed), and require-sealed refuses it\n' +
      'once the gateways reload; retire a key only when nothing sealed to it can still arrive.\n' +
      `  ${f.privateFile}   private, 0600: keep it on the trusted host only\n` +
      `  ${f.publicFile}   public: install it wherever the previous one is used\n` +
      'Next: install the public set wherever it is used and reload (SIGHUP) every gateway, in any order.\n',
  )
  const r = await loadBoth(t, f, 'retire')
  t.same(r.privateSet.kids, ['k2'])
  t.equal(r.privateSet.current.kid, 'k2')
  t.equal(r.publicSet.current.kid, 'k2')
  t.same(r.priv.keys, [k2Private], 'retire: the remaining private key copied as it was')
  printsNoSecret(t, retired.stdout, [k1Private, k2Private], 'retire')
  const retiredOpener = new FieldOpener(r.privateSet)
  t.same(retiredOpener.open(sealedAfter, AT), VALUE, 'retire: a value sealed to k2 opens')
  openFails(t, retiredOpener, sealedBefore, 'retire: a value sealed to k1 before the rotation is open_failed')
  openFails(t, retiredOpener, sealedStaged, 'retire: a value sealed to k1 while staged is open_failed')
  t.same(stagedOpener.open(sealedBefore, AT), VALUE, 'control: the same value still opens with the set from before the retire')
})

t.test('through ecluse seal and open: a file sealed before the rotation opens until retire, then exits 1 open_failed', async (t) => {
  const input = `{"id":"A-1","passport":${JSON.stringify(CANARY.passport)}}`
  const base = t.testdir({ 'in.json': input })
  const f = files(join(base, 'keys'), 'host')
  const set = ['--out', f.dir, '--name', 'host']
  const fields = ['--context', 'accreditations', '--fields', '/passport', '--records', ':id']
  t.equal((await runCli(['keys', 'init', ...set, '--kid', 'old'])).code, 0)
  const sealed = join(base, 'sealed.json')
  t.equal((await runCli(['seal', '-k', f.publicFile, ...fields, join(base, 'in.json'), '-o', sealed])).code, 0)
  t.equal(decodeProtectedHeader((JSON.parse(await readFile(sealed, 'utf8')) as { passport: string }).passport).kid, 'old')

  const staged = await runCli(['keys', 'init', ...set, '--rotate', '--stage', '--kid', 'new'])
  t.equal(staged.code, 0, staged.stderr)
  t.match(staged.stdout, `\n  ecluse keys promote --out=${f.dir} --name=host --kid=new\n`, 'the printed command names the set')
  const open = () => runCli(['open', '-k', f.privateFile, ...fields, sealed])
  t.same(await open(), { code: 0, stdout: input, stderr: '' }, 'opens with the staged set')
  const promoted = await runCli(['keys', 'promote', ...set, '--kid', 'new'])
  t.equal(promoted.code, 0, promoted.stderr)
  t.match(promoted.stdout, `\n  ecluse keys retire --out=${f.dir} --name=host --kid=old\n`)
  t.same(await open(), { code: 0, stdout: input, stderr: '' }, 'opens with the promoted set')
  const resealed = join(base, 'resealed.json')
  t.equal((await runCli(['seal', '-k', f.publicFile, ...fields, join(base, 'in.json'), '-o', resealed])).code, 0)
  t.equal(decodeProtectedHeader((JSON.parse(await readFile(resealed, 'utf8')) as { passport: string }).passport).kid, 'new')

  t.equal((await runCli(['keys', 'retire', ...set, '--kid', 'old'])).code, 0)
  const failed = await open()
  t.equal(failed.code, 1, 'after the retire, the old value does not open')
  t.equal(failed.stderr, 'ecluse: open_failed: /passport does not open with these keys for this context (or was moved or altered)\n')
  t.equal(leaksCanary(failed.stdout + failed.stderr), undefined)
  t.same(await runCli(['open', '-k', f.privateFile, ...fields, resealed]), { code: 0, stdout: input, stderr: '' }, 'the re-sealed one does')
})

t.test('an RSA set stays RSA when staged, and the whole rotation keeps its private members unprinted', async (t) => {
  const f = files(t.testdir())
  t.equal((await runCli(['keys', 'init', '--out', f.dir, '--alg', 'RSA-OAEP-256', '--kid', 'r1'])).code, 0)
  const sealedBefore = new FieldSealer(parseKeySet(await readFile(f.publicFile), { publicOnly: true }), CTX).seal(VALUE, AT)
  const outputs: string[] = []
  const step = async (argv: string[]) => {
    const r = await runCli(argv)
    t.equal(r.code, 0, `${argv.join(' ')}: ${r.stderr}`)
    outputs.push(r.stdout, r.stderr)
  }
  await step(['keys', 'init', '--out', f.dir, '--rotate', '--stage', '--kid', 'r2'])
  t.match(outputs[0], 'staged kid r2 (RSA-OAEP-256) in the key set')
  const s = await loadBoth(t, f, 'stage')
  t.same(s.privateSet.kids, ['r1', 'r2'])
  t.equal(s.publicSet.current.kid, 'r1')
  t.match(s.priv.keys[1], { kid: 'r2', kty: 'RSA', alg: 'RSA-OAEP-256' })
  const privateKeys = s.priv.keys
  await step(['keys', 'promote', '--out', f.dir, '--kid', 'r2'])
  const p = await loadBoth(t, f, 'promote')
  t.same([p.privateSet.current.kid, p.publicSet.current.kid, ...p.publicSet.kids], ['r2', 'r2', 'r2', 'r1'])
  t.same(new FieldOpener(p.privateSet).open(sealedBefore, AT), VALUE, 'promote: the RSA value sealed before opens')
  await step(['keys', 'retire', '--out', f.dir, '--kid', 'r1'])
  const r = await loadBoth(t, f, 'retire')
  t.same(r.publicSet.kids, ['r2'])
  openFails(t, new FieldOpener(r.privateSet), sealedBefore, 'retire: the RSA value sealed to r1 is open_failed')
  printsNoSecret(t, outputs.join(''), privateKeys, 'rsa rotation')
})
