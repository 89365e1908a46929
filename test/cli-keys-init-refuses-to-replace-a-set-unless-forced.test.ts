/**
 * A second `keys init` on the same set refuses and changes nothing (neither file, no temporary file
 * left); `--force` replaces the set, and values sealed to the old key then no longer open.
 */
import { readFile, rm, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { listDir, runCli } from './helpers/cli.js'

const NAMES = ['trusted-host.private.jwks.json', 'trusted-host.public.jwks.json']

async function snapshot(dir: string): Promise<Array<{ bytes: Buffer; mtimeMs: number; mode: number }>> {
  return Promise.all(
    NAMES.map(async (n) => {
      const s = await stat(join(dir, n))
      return { bytes: await readFile(join(dir, n)), mtimeMs: s.mtimeMs, mode: s.mode & 0o777 }
    }),
  )
}

t.test('without --force a second run refuses, exit 1, and leaves both files as they were', async (t) => {
  const dir = t.testdir()
  t.equal((await runCli(['keys', 'init', '--out', dir])).code, 0)
  const before = await snapshot(dir)

  const again = await runCli(['keys', 'init', '--out', dir])
  t.equal(again.code, 1)
  t.equal(again.stdout, '')
  t.equal(
    again.stderr,
    `ecluse: ${join(dir, NAMES[0]!)} already exists: --rotate adds a new current key, --force replaces the set\n`,
  )
  t.same(await snapshot(dir), before, 'bytes, modification times and modes unchanged')
  t.same(await listDir(dir), NAMES, 'no temporary file left')

  // Half a set is still a set: with only the public file there, it refuses too.
  const privateBytes = before[0]!.bytes
  await rm(join(dir, NAMES[0]!))
  const half = await runCli(['keys', 'init', '--out', dir])
  t.equal(half.code, 1)
  t.match(half.stderr, `${join(dir, NAMES[1]!)} already exists`)
  t.same(await listDir(dir), [NAMES[1]!], 'no private file was written')
  await writeFile(join(dir, NAMES[0]!), privateBytes, { mode: 0o600 })
})

t.test('--force replaces the set: a new key, same modes, and the old values no longer open', async (t) => {
  const dir = t.testdir({ 'value.json': '{"name":"CANARY-NAME-Zoé Quintard-7731"}' })
  const keys = join(dir, 'keys')
  t.equal((await runCli(['keys', 'init', '--out', keys])).code, 0)
  const oldKid = JSON.parse(await readFile(join(keys, NAMES[1]!), 'utf8')).current as string
  const sealed = join(dir, 'sealed.json')
  const seal = await runCli([
    'seal', '--keys', join(keys, NAMES[1]!), '--context', 'accreditations', '--fields', '/name', join(dir, 'value.json'), '--out', sealed,
  ])
  t.equal(seal.code, 0, seal.stderr)
  const opensBefore = await runCli(['open', '--keys', join(keys, NAMES[0]!), '--context', 'accreditations', '--fields', '/name', sealed])
  t.equal(opensBefore.stdout, '{"name":"CANARY-NAME-Zoé Quintard-7731"}', 'control: it opens with the first set')

  const forced = await runCli(['keys', 'init', '--out', keys, '--force'])
  t.equal(forced.code, 0, forced.stderr)
  t.match(forced.stdout, /^wrote the key set "trusted-host" in /)
  const priv = JSON.parse(await readFile(join(keys, NAMES[0]!), 'utf8'))
  const pub = JSON.parse(await readFile(join(keys, NAMES[1]!), 'utf8'))
  t.not(priv.current, oldKid, 'a new kid')
  t.same(priv.keys.map((k: { kid: string }) => k.kid), [priv.current], 'the old key is gone from the private set')
  t.same(pub.keys.map((k: { kid: string }) => k.kid), [priv.current], 'and from the public set')
  t.same((await snapshot(keys)).map((s) => s.mode), [0o600, 0o644])
  t.same(await listDir(keys), NAMES)

  const opensAfter = await runCli(['open', '--keys', join(keys, NAMES[0]!), '--context', 'accreditations', '--fields', '/name', sealed])
  t.equal(opensAfter.code, 1)
  t.equal(opensAfter.stderr, 'ecluse: open_failed: /name does not open with these keys for this context (or was moved or altered)\n')
  t.notMatch(opensAfter.stdout + opensAfter.stderr, 'CANARY')
})
