/**
 * `keys init --rotate`: a new current key goes first in both files, the older keys stay behind it
 * (the private ones byte for byte), so what was sealed to an old key still opens with the rotated
 * private set, while new values carry the new `kid` and need the new key. `--rotate` on a set that
 * does not exist fails and creates nothing.
 */
import { copyFile, readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { decodeProtectedHeader } from 'jose'
import t from 'tap'
import type { Jwks } from '../src/crypto/keys.js'
import { listDir, runCli } from './helpers/cli.js'
import { CANARY, leaksCanary } from './helpers/sealing.js'

const INPUT = `{"id":"A-1","name":${JSON.stringify(CANARY.name)},"passport":${JSON.stringify(CANARY.passport)}}`
const FIELDS = ['--context', 'accreditations', '--fields', '/name,/passport']

async function jwks(file: string): Promise<Jwks> {
  return JSON.parse(await readFile(file, 'utf8')) as Jwks
}

t.test('rotate twice: the newest key first and current, every older key kept, old values still open', async (t) => {
  const dir = t.testdir({ 'in.json': INPUT })
  const keys = join(dir, 'keys')
  const privateFile = join(keys, 'trusted-host.private.jwks.json')
  const publicFile = join(keys, 'trusted-host.public.jwks.json')
  t.equal((await runCli(['keys', 'init', '--out', keys, '--kid', 'k1'])).code, 0)
  const k1Private = (await jwks(privateFile)).keys[0]
  const firstPrivateSet = await readFile(privateFile)

  const sealedOld = join(dir, 'sealed-k1.json')
  t.equal((await runCli(['seal', '-k', publicFile, ...FIELDS, join(dir, 'in.json'), '-o', sealedOld])).code, 0)

  const rotated = await runCli(['keys', 'init', '--out', keys, '--rotate', '--kid', 'k2'])
  t.equal(rotated.code, 0, rotated.stderr)
  t.equal(rotated.stderr, '')
  t.equal(
    rotated.stdout,
    `rotated the key set "trusted-host" in ${keys}: new current kid k2 (ECDH-ES+A256KW, X25519); still accepted for opening: k1\n` +
      `  ${privateFile}   private, 0600: keep it on the trusted host only\n` +
      `  ${publicFile}   public: give it to every gateway that seals\n` +
      'Next: in a chain where both sides seal, install in three steps, reloading (SIGHUP) after each: the private\n' +
      'set on the trusted host (it then opens both keys and still seals to the old one), then the public set on\n' +
      'every edge, then the public set on the trusted host. Reloading either side first with both files refuses\n' +
      'traffic; keys init --rotate --stage avoids this (docs/operations.md).\n',
  )
  for (const v of ['d', 'x']) t.notOk(rotated.stdout.includes(k1Private![v] as string), `no "${v}" of the old key printed`)
  const priv = await jwks(privateFile)
  const pub = await jwks(publicFile)
  t.same(priv.keys.map((k) => k.kid), ['k2', 'k1'])
  t.same(pub.keys.map((k) => k.kid), ['k2', 'k1'])
  t.equal(priv.current, 'k2')
  t.equal(pub.current, 'k2')
  t.same(priv.keys[1], k1Private, 'the old private key is kept exactly')
  for (const k of pub.keys) t.notOk('d' in k, `public key ${k.kid} has no private half`)
  t.equal((await stat(privateFile)).mode & 0o777, 0o600)
  t.equal((await stat(publicFile)).mode & 0o777, 0o644)
  t.same(await listDir(keys), ['trusted-host.private.jwks.json', 'trusted-host.public.jwks.json'], 'no temporary file left')

  // A value sealed to k1 before the rotation opens with the rotated private set, to the exact bytes.
  const old = await runCli(['open', '-k', privateFile, ...FIELDS, sealedOld])
  t.equal(old.code, 0, old.stderr)
  t.equal(old.stdout, INPUT)

  // New values carry k2, open with the rotated set, and not with the set as it was before.
  const sealedNew = join(dir, 'sealed-k2.json')
  t.equal((await runCli(['seal', '-k', publicFile, ...FIELDS, join(dir, 'in.json'), '-o', sealedNew])).code, 0)
  const doc = JSON.parse(await readFile(sealedNew, 'utf8'))
  t.equal(decodeProtectedHeader(doc.name).kid, 'k2')
  t.equal(decodeProtectedHeader(doc.passport).kid, 'k2')
  t.equal(decodeProtectedHeader(JSON.parse(await readFile(sealedOld, 'utf8')).name).kid, 'k1', 'control: the old value carries k1')
  t.equal((await runCli(['open', '-k', privateFile, ...FIELDS, sealedNew])).stdout, INPUT)
  const previous = join(dir, 'previous.private.jwks.json')
  await writeFile(previous, firstPrivateSet, { mode: 0o600 })
  const stale = await runCli(['open', '-k', previous, ...FIELDS, sealedNew])
  t.equal(stale.code, 1, 'the pre-rotation private set cannot open what is sealed to k2')
  t.match(stale.stderr, /^ecluse: open_failed: \/name does not open/)
  t.equal(leaksCanary(stale.stdout + stale.stderr), undefined)

  // A third key: newest first, then the others in their order.
  t.equal((await runCli(['keys', 'init', '--out', keys, '--rotate', '--kid', 'k3'])).code, 0)
  t.same((await jwks(privateFile)).keys.map((k) => k.kid), ['k3', 'k2', 'k1'])
  t.same((await jwks(publicFile)).keys.map((k) => k.kid), ['k3', 'k2', 'k1'])
  t.equal((await runCli(['open', '-k', privateFile, ...FIELDS, sealedOld])).stdout, INPUT, 'k1 still opens after two rotations')
})

t.test('the current key named by "current" goes second, ahead of the others, whatever its position', async (t) => {
  const dir = t.testdir()
  const privateFile = join(dir, 'trusted-host.private.jwks.json')
  t.equal((await runCli(['keys', 'init', '--out', dir, '--kid', 'a'])).code, 0)
  t.equal((await runCli(['keys', 'init', '--out', dir, '--rotate', '--kid', 'b'])).code, 0)
  // An operator points `current` back at "a" by hand (rolled back a rotation).
  const set = await jwks(privateFile)
  set.current = 'a'
  await writeFile(privateFile, JSON.stringify(set), { mode: 0o600 })
  const r = await runCli(['keys', 'init', '--out', dir, '--rotate', '--kid', 'c'])
  t.equal(r.code, 0, r.stderr)
  t.match(r.stdout, 'still accepted for opening: a, b\n')
  t.same((await jwks(privateFile)).keys.map((k) => k.kid), ['c', 'a', 'b'])
})

t.test('--rotate refuses a missing set (creating nothing) and a kid already in the set (changing nothing)', async (t) => {
  const base = t.testdir()
  const missing = join(base, 'nowhere')
  const r = await runCli(['keys', 'init', '--out', missing, '--rotate'])
  t.equal(r.code, 1)
  t.equal(r.stdout, '')
  t.equal(
    r.stderr,
    `ecluse: cannot rotate: ${join(missing, 'trusted-host.private.jwks.json')} does not exist (without --rotate, keys init creates the set)\n`,
  )
  t.same(await listDir(base), [], 'the directory was not created')

  const dir = join(base, 'keys')
  t.equal((await runCli(['keys', 'init', '--out', dir, '--kid', 'k1'])).code, 0)
  const before = await Promise.all(['private', 'public'].map((s) => readFile(join(dir, `trusted-host.${s}.jwks.json`))))
  const dup = await runCli(['keys', 'init', '--out', dir, '--rotate', '--kid', 'k1'])
  t.equal(dup.code, 1)
  t.equal(dup.stderr, `ecluse: cannot rotate: kid "k1" is already in ${join(dir, 'trusted-host.private.jwks.json')}\n`)
  const after = await Promise.all(['private', 'public'].map((s) => readFile(join(dir, `trusted-host.${s}.jwks.json`))))
  t.same(after, before, 'both files unchanged')

  // A public set where the private one is expected is refused before anything is written.
  await copyFile(join(dir, 'trusted-host.public.jwks.json'), join(dir, 'pub-only.private.jwks.json'))
  const pubOnly = await runCli(['keys', 'init', '--out', dir, '--name', 'pub-only', '--rotate'])
  t.equal(pubOnly.code, 1)
  t.match(pubOnly.stderr, /^ecluse: .*pub-only\.private\.jwks\.json: keys\[0\] \(kid "k1"\): has no private key material\n$/)
  t.notOk((await listDir(dir)).includes('pub-only.public.jwks.json'), 'no public file written')
})

t.test('--rotate keeps the kind of the current key (RSA stays RSA, P-256 stays P-256) unless told otherwise', async (t) => {
  const dir = t.testdir()
  const privateFile = (name: string) => join(dir, `${name}.private.jwks.json`)
  t.equal((await runCli(['keys', 'init', '--out', dir, '--name', 'rsa', '--alg', 'RSA-OAEP-256', '--kid', 'r1'])).code, 0)
  const r = await runCli(['keys', 'init', '--out', dir, '--name', 'rsa', '--rotate', '--kid', 'r2'])
  t.equal(r.code, 0, r.stderr)
  t.match(r.stdout, 'new current kid r2 (RSA-OAEP-256); still accepted for opening: r1\n')
  t.match((await jwks(privateFile('rsa'))).keys[0], { kid: 'r2', kty: 'RSA', alg: 'RSA-OAEP-256' })

  t.equal((await runCli(['keys', 'init', '--out', dir, '--name', 'ec', '--crv', 'P-256', '--kid', 'e1'])).code, 0)
  t.equal((await runCli(['keys', 'init', '--out', dir, '--name', 'ec', '--rotate', '--kid', 'e2'])).code, 0)
  t.match((await jwks(privateFile('ec'))).keys[0], { kid: 'e2', kty: 'EC', crv: 'P-256', alg: 'ECDH-ES+A256KW' })

  // Told otherwise: --crv moves an RSA set to ECDH-ES, --alg an ECDH-ES set to RSA.
  t.equal((await runCli(['keys', 'init', '--out', dir, '--name', 'rsa', '--rotate', '--crv', 'X25519', '--kid', 'r3'])).code, 0)
  t.match((await jwks(privateFile('rsa'))).keys[0], { kid: 'r3', kty: 'OKP', crv: 'X25519', alg: 'ECDH-ES+A256KW' })
  t.equal((await runCli(['keys', 'init', '--out', dir, '--name', 'ec', '--rotate', '--alg', 'RSA-OAEP-256', '--kid', 'e3'])).code, 0)
  t.match((await jwks(privateFile('ec'))).keys[0], { kid: 'e3', kty: 'RSA' })
  t.same((await jwks(privateFile('ec'))).keys.map((k) => k.kid), ['e3', 'e2', 'e1'])
})
