/**
 * `ecluse keys init` writes NAME.private.jwks.json (0600) and NAME.public.jwks.json (0644) in a
 * directory it creates 0700, prints no private key material, and what it writes loads with the
 * gateway's own parser and passes `ecluse config check` in an opening profile.
 */
import { readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { calculateJwkThumbprint } from 'jose'
import t from 'tap'
import { type Jwk, type Jwks, readKeySetFile } from '../src/crypto/keys.js'
import { listDir, minimalServeConfig, runCli, spawnCli } from './helpers/cli.js'
import { makeTestPki } from './helpers/pki.js'

const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'k', 'oth']

const pki = await makeTestPki()

async function readJwks(file: string): Promise<Jwks> {
  return JSON.parse(await readFile(file, 'utf8')) as Jwks
}

async function mode(file: string): Promise<number> {
  return (await stat(file)).mode & 0o777
}

/** Every private member value of `jwks`, each of which must never be printed. */
function privateValues(jwks: Jwks): string[] {
  return jwks.keys.flatMap((k) => PRIVATE_MEMBERS.filter((m) => typeof k[m] === 'string').map((m) => k[m] as string))
}

/** A configuration with an opening route (private set) and a sealing one (public set). */
function configText(publicFile: string, privateFile: string, swap = false): string {
  const q = JSON.stringify
  return minimalServeConfig(pki, {
    keys: `  trusted-host:
    file: ${q(swap ? privateFile : publicFile)}
  trusted-host-private:
    file: ${q(swap ? publicFile : privateFile)}
    private: true
`,
    routes: `  - name: create
    methods: [POST]
    path: /v1/accreditations
    allow: [uri:spiffe://sponsor.test/accreditation-app]
    upstream: accreditation
    transforms:
      request:
        - { type: open, keys: trusted-host-private, context: accreditations, fields: [/name, /passport] }
      response:
        - { type: seal, recipients: trusted-host, context: accreditations, fields: [/name, /passport], records: { pattern: '', id: id } }
`,
  })
}

t.test('the default set: X25519 for ECDH-ES+A256KW, modes, no private material printed, loads and passes config check', async (t) => {
  const base = t.testdir()
  const out = join(base, 'fresh', 'keys')
  const r = await spawnCli(['keys', 'init', '--out', out])
  const stdout = r.stdout.toString('utf8')
  t.equal(r.code, 0, r.stderr)
  t.equal(r.stderr, '')
  const privateFile = join(out, 'trusted-host.private.jwks.json')
  const publicFile = join(out, 'trusted-host.public.jwks.json')
  t.same(await listDir(out), ['trusted-host.private.jwks.json', 'trusted-host.public.jwks.json'], 'two files, no temporary left')
  t.equal(await mode(privateFile), 0o600, 'private set is 0600')
  t.equal(await mode(publicFile), 0o644, 'public set is 0644')
  t.equal(await mode(out), 0o700, 'the directory it created is 0700')
  t.equal(await mode(join(base, 'fresh')), 0o700, 'and so is the missing parent it created')

  const priv = await readJwks(privateFile)
  const pub = await readJwks(publicFile)
  t.equal(priv.keys.length, 1)
  const key = priv.keys[0]!
  t.match(key, { kty: 'OKP', crv: 'X25519', alg: 'ECDH-ES+A256KW', use: 'enc' })
  t.type(key['d'], 'string', 'the private file holds the private half')
  // The default kid is the RFC 7638 thumbprint, as computed by an independent implementation.
  const kid = key['kid'] as string
  t.equal(kid, await calculateJwkThumbprint({ kty: 'OKP', crv: 'X25519', x: key['x'] as string }, 'sha256'))
  t.equal(priv.current, kid)
  t.equal(pub.current, kid)

  for (const k of pub.keys) for (const m of PRIVATE_MEMBERS) t.notOk(m in k, `the public file has no "${m}"`)
  t.same(pub.keys, [{ kid, use: 'enc', alg: 'ECDH-ES+A256KW', kty: 'OKP', crv: 'X25519', x: key['x'] }])

  const secrets = privateValues(priv)
  t.ok(secrets.length > 0)
  for (const s of secrets) t.notOk(stdout.includes(s), 'stdout shows no private member value')
  t.equal(
    stdout,
    `wrote the key set "trusted-host" in ${out}: current kid ${kid} (ECDH-ES+A256KW, X25519)\n` +
      `  ${privateFile}   private, 0600: keep it on the trusted host only\n` +
      `  ${publicFile}   public: give it to every gateway that seals\n`,
  )

  // The gateway's own parser, each file as its profile loads it.
  const opening = await readKeySetFile(privateFile, { requirePrivate: true })
  const sealing = await readKeySetFile(publicFile, { publicOnly: true })
  t.same(opening.kids, [kid])
  t.equal(sealing.current.kid, kid)
  t.same(opening.publicJwks(), pub, 'the public file is exactly the public half of the private one')

  const good = join(base, 'sidecar.yaml')
  await writeFile(good, configText(publicFile, privateFile))
  const check = await spawnCli(['config', 'check', good])
  t.equal(check.code, 0, check.stderr)
  t.equal(check.stdout.toString('utf8'), 'ok: 1 routes, 1 upstreams\n')

  // The check reads the files: the same config with the two sets swapped is refused.
  const swapped = join(base, 'swapped.yaml')
  await writeFile(swapped, configText(publicFile, privateFile, true))
  const bad = await runCli(['config', 'check', swapped])
  t.equal(bad.code, 1)
  t.match(bad.stderr, /^ecluse: keys\.trusted-host\.file \(.*\): keys\[0\] \(kid ".*"\): holds private key material where only public keys are allowed\n/)
  for (const s of secrets) t.notOk(bad.stderr.includes(s), 'the refusal shows no key material')
})

t.test('--alg RSA-OAEP-256 --kid and --crv P-256 --name: the chosen key, nothing private printed', async (t) => {
  const out = t.testdir()
  const rsa = await runCli(['keys', 'init', '--out', out, '--alg', 'RSA-OAEP-256', '--kid', 'rsa-2025'])
  t.equal(rsa.code, 0, rsa.stderr)
  const rsaPriv = await readJwks(join(out, 'trusted-host.private.jwks.json'))
  const rsaPub = await readJwks(join(out, 'trusted-host.public.jwks.json'))
  const rk = rsaPriv.keys[0]!
  t.match(rk, { kid: 'rsa-2025', kty: 'RSA', alg: 'RSA-OAEP-256', use: 'enc', e: 'AQAB' })
  for (const m of ['d', 'p', 'q', 'dp', 'dq', 'qi']) t.type(rk[m], 'string', `private RSA key has "${m}"`)
  t.equal(Buffer.from(rk['n'] as string, 'base64url').length * 8, 3072, 'a 3072-bit modulus')
  t.same(rsaPub.keys, [{ kid: 'rsa-2025', use: 'enc', alg: 'RSA-OAEP-256', kty: 'RSA', n: rk['n'], e: 'AQAB' }])
  t.equal(rsaPub.current, 'rsa-2025')
  for (const s of privateValues(rsaPriv)) t.notOk(rsa.stdout.includes(s), 'stdout shows no RSA private member')
  t.match(rsa.stdout, /^wrote the key set "trusted-host" in .*: current kid rsa-2025 \(RSA-OAEP-256\)\n/)
  t.equal(await mode(join(out, 'trusted-host.private.jwks.json')), 0o600)

  const p256 = await runCli(['keys', 'init', '--out', out, '--crv', 'P-256', '--name', 'edge-2'])
  t.equal(p256.code, 0, p256.stderr)
  const pk = (await readJwks(join(out, 'edge-2.private.jwks.json'))).keys[0]! as Jwk
  t.match(pk, { kty: 'EC', crv: 'P-256', alg: 'ECDH-ES+A256KW' })
  t.equal(pk['kid'], await calculateJwkThumbprint({ kty: 'EC', crv: 'P-256', x: pk['x'] as string, y: pk['y'] as string }, 'sha256'))
  t.notOk(p256.stdout.includes(pk['d'] as string))
  t.match(p256.stdout, /\(ECDH-ES\+A256KW, P-256\)\n/)
  await readKeySetFile(join(out, 'edge-2.private.jwks.json'), { requirePrivate: true })
  await readKeySetFile(join(out, 'edge-2.public.jwks.json'), { publicOnly: true })
  t.same(
    await listDir(out),
    ['edge-2.private.jwks.json', 'edge-2.public.jwks.json', 'trusted-host.private.jwks.json', 'trusted-host.public.jwks.json'],
    'a second name is a second set beside the first',
  )
})
