/**
 * `keys promote` and `keys retire` refuse, with exit 1 and one line `ecluse: …`, whatever would
 * leave the sealers and the openers out of step, and then change nothing (both files byte for byte,
 * no temporary file): an unknown kid, the current key or the last key retired, a key promoted that
 * the public file does not hold (never staged there), a public file that holds private keys, missing
 * files, and two files that name different current keys (an interrupted promote: running the promote
 * again completes it, and until then retire and stage refuse to rewrite the public file).
 */
import { execFileSync } from 'node:child_process'
import { copyFile, cp, readFile, rm, symlink, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { parseKeySet } from '../src/crypto/keys.js'
import { type CliResult, listDir, runCli } from './helpers/cli.js'

const NAMES = ['trusted-host.private.jwks.json', 'trusted-host.public.jwks.json']

async function snapshot(dir: string): Promise<Buffer[]> {
  return Promise.all(NAMES.map((n) => readFile(join(dir, n))))
}

async function kids(dir: string): Promise<{ private: string[]; public: string[]; current: [string, string] }> {
  const priv = parseKeySet(await readFile(join(dir, NAMES[0]!)), { requirePrivate: true })
  const pub = parseKeySet(await readFile(join(dir, NAMES[1]!)), { publicOnly: true })
  return { private: priv.kids, public: pub.kids, current: [priv.current.kid, pub.current.kid] }
}

/** Exit 1, exactly this one line on stderr, nothing on stdout, and the set left as it was. */
async function refused(t: Test, dir: string, argv: string[], message: string): Promise<void> {
  const before = await snapshot(dir)
  const listing = await listDir(dir)
  const r: CliResult = await runCli(argv)
  const what = argv.slice(0, 2).join(' ') + ' ' + argv.slice(-2).join(' ')
  t.equal(r.code, 1, `${what}: exit 1`)
  t.equal(r.stdout, '', `${what}: nothing on stdout`)
  t.equal(r.stderr, `ecluse: ${message}\n`, `${what}: one line`)
  t.same(await snapshot(dir), before, `${what}: both files byte for byte`)
  t.same(await listDir(dir), listing, `${what}: no file added`)
}

async function ok(t: Test, argv: string[]): Promise<CliResult> {
  const r = await runCli(argv)
  t.equal(r.code, 0, `${argv.join(' ')}: ${r.stderr}`)
  return r
}

t.test('an unknown kid, the current key and the last key are refused', async (t) => {
  const dir = t.testdir()
  const priv = join(dir, NAMES[0]!)
  await ok(t, ['keys', 'init', '--out', dir, '--kid', 'k1'])
  await ok(t, ['keys', 'init', '--out', dir, '--rotate', '--stage', '--kid', 'k2'])

  await refused(t, dir, ['keys', 'promote', '--out', dir, '--kid', 'k9'], `cannot promote: kid "k9" is not in ${priv} (it holds k1, k2)`)
  await refused(t, dir, ['keys', 'retire', '--out', dir, '--kid', 'k9'], `cannot retire: kid "k9" is not in ${priv} (it holds k1, k2)`)
  const current = 'cannot retire kid "k1": it is the current key (values are sealed to it); promote another key first'
  await refused(t, dir, ['keys', 'retire', '--out', dir, '--kid', 'k1'], current)

  await ok(t, ['keys', 'promote', '--out', dir, '--kid', 'k2'])
  await refused(
    t,
    dir,
    ['keys', 'retire', '--out', dir, '--kid', 'k2'],
    'cannot retire kid "k2": it is the current key (values are sealed to it); promote another key first',
  )
  await ok(t, ['keys', 'retire', '--out', dir, '--kid', 'k1'])
  await refused(t, dir, ['keys', 'retire', '--out', dir, '--kid', 'k2'], `cannot retire kid "k2": it is the only key in ${priv}`)
  await refused(t, dir, ['keys', 'retire', '--out', dir, '--kid', 'k1'], `cannot retire: kid "k1" is not in ${priv} (it holds k2)`)
  t.same(await kids(dir), { private: ['k2'], public: ['k2'], current: ['k2', 'k2'] })
})

t.test('a key that is not in the public file is not promoted: the gateways loading it would refuse it', async (t) => {
  const dir = t.testdir()
  const pub = join(dir, NAMES[1]!)
  await ok(t, ['keys', 'init', '--out', dir, '--kid', 'k1'])
  const published = await readFile(pub)
  await ok(t, ['keys', 'init', '--out', dir, '--rotate', '--stage', '--kid', 'k2'])
  // The public file as it was before the stage: k2 was never published.
  await writeFile(pub, published, { mode: 0o644 })
  await refused(
    t,
    dir,
    ['keys', 'promote', '--out', dir, '--kid', 'k2'],
    `cannot promote: kid "k2" is not in ${pub}, so the gateways that load it would refuse what is sealed to it; ` +
      'stage it (keys init --rotate --stage) and reload every gateway first',
  )
  t.same(await kids(dir), { private: ['k1', 'k2'], public: ['k1'], current: ['k1', 'k1'] })
})

t.test('a public file that holds private keys is refused, by promote and by retire', async (t) => {
  const dir = t.testdir()
  const pub = join(dir, NAMES[1]!)
  await ok(t, ['keys', 'init', '--out', dir, '--kid', 'k1'])
  await ok(t, ['keys', 'init', '--out', dir, '--rotate', '--stage', '--kid', 'k2'])
  await copyFile(join(dir, NAMES[0]!), pub)
  const message = `${pub}: keys[0] (kid "k1"): holds private key material where only public keys are allowed`
  await refused(t, dir, ['keys', 'promote', '--out', dir, '--kid', 'k2'], message)
  await refused(t, dir, ['keys', 'retire', '--out', dir, '--kid', 'k2'], message)
  t.notMatch(message, /"d"/, 'the message names the key, not its members')
})

t.test('a public file of another set is refused by every command that would rewrite it, even under the same kids', async (t) => {
  const base = t.testdir()
  const dir = join(base, 'keys')
  const other = join(base, 'other')
  const priv = join(dir, NAMES[0]!)
  const pub = join(dir, NAMES[1]!)
  // Two sets whose kids were chosen by hand, the same in both: the wrong public file installed.
  for (const d of [dir, other]) {
    await ok(t, ['keys', 'init', '--out', d, '--kid', 'k1'])
    await ok(t, ['keys', 'init', '--out', d, '--rotate', '--stage', '--kid', 'k2'])
  }
  await copyFile(join(other, NAMES[1]!), pub)
  const mismatch = `${pub} is not the public half of ${priv}: kid "k1" is another key in each; find which public file the gateways load, and what sealed to it, before changing either`
  await refused(t, dir, ['keys', 'promote', '--out', dir, '--kid', 'k2'], `cannot promote: ${mismatch}`)
  await refused(t, dir, ['keys', 'retire', '--out', dir, '--kid', 'k2'], `cannot retire: ${mismatch}`)
  await refused(t, dir, ['keys', 'init', '--out', dir, '--rotate', '--stage', '--kid', 'k3'], `cannot stage: ${mismatch}`)
  await refused(t, dir, ['keys', 'init', '--out', dir, '--rotate', '--kid', 'k3'], `cannot rotate: ${mismatch}`)

  // A public file holding a kid the private one lacks: no keys command writes one.
  await ok(t, ['keys', 'init', '--out', other, '--rotate', '--stage', '--kid', 'k9'])
  const lacking = join(base, 'lacking')
  await cp(other, lacking, { recursive: true })
  // k9 removed from the private file only, as by hand.
  const privateDoc = JSON.parse((await readFile(join(lacking, NAMES[0]!))).toString()) as { keys: Array<{ kid: string }> }
  privateDoc.keys = privateDoc.keys.filter((k) => k.kid !== 'k9')
  await writeFile(join(lacking, NAMES[0]!), JSON.stringify(privateDoc), { mode: 0o600 })
  await refused(
    t,
    lacking,
    ['keys', 'promote', '--out', lacking, '--kid', 'k2'],
    `cannot promote: ${join(lacking, NAMES[1]!)} is not the public half of ${join(lacking, NAMES[0]!)}: it holds kid "k9", which ${join(lacking, NAMES[0]!)} lacks; find which public file the gateways load, and what sealed to it, before changing either`,
  )
})

t.test('missing files: nothing is created', async (t) => {
  const base = t.testdir()
  const nowhere = join(base, 'nowhere')
  for (const op of ['promote', 'retire']) {
    const r = await runCli(['keys', op, '--out', nowhere, '--kid', 'k1'])
    t.equal(r.code, 1)
    t.equal(r.stderr, `ecluse: cannot ${op}: ${join(nowhere, NAMES[0]!)} does not exist\n`)
  }
  t.same(await listDir(base), [], 'not even the directory')

  const dir = join(base, 'keys')
  await ok(t, ['keys', 'init', '--out', dir, '--kid', 'k1'])
  await ok(t, ['keys', 'init', '--out', dir, '--rotate', '--stage', '--kid', 'k2'])
  const privateOnly = join(base, 'private-only')
  await cp(dir, privateOnly, { recursive: true })
  await rm(join(privateOnly, NAMES[1]!))
  for (const op of ['promote', 'retire']) {
    const r = await runCli(['keys', op, '--out', privateOnly, '--kid', 'k2'])
    t.equal(r.code, 1)
    t.equal(r.stderr, `ecluse: cannot ${op}: ${join(privateOnly, NAMES[1]!)} does not exist\n`)
  }
  t.same(await listDir(privateOnly), [NAMES[0]], 'no public file made up')

  // A public set where the private one is expected.
  const swapped = join(base, 'swapped')
  await cp(dir, swapped, { recursive: true })
  await copyFile(join(swapped, NAMES[1]!), join(swapped, NAMES[0]!))
  await refused(
    t,
    swapped,
    ['keys', 'promote', '--out', swapped, '--kid', 'k2'],
    `${join(swapped, NAMES[0]!)}: keys[0] (kid "k1"): has no private key material`,
  )
})

t.test('an interrupted promote (private file written, public not): promote again completes it; retire and stage refuse until then', async (t) => {
  const base = t.testdir()
  const dir = join(base, 'keys')
  const priv = join(dir, NAMES[0]!)
  const pub = join(dir, NAMES[1]!)
  await ok(t, ['keys', 'init', '--out', dir, '--kid', 'k1'])
  await ok(t, ['keys', 'init', '--out', dir, '--rotate', '--stage', '--kid', 'k2'])
  await ok(t, ['keys', 'init', '--out', dir, '--rotate', '--stage', '--kid', 'k3'])
  t.same(await kids(dir), { private: ['k1', 'k3', 'k2'], public: ['k1', 'k3', 'k2'], current: ['k1', 'k1'] }, 'two staged keys')
  // The promote of k2 as far as its first rename: done in a copy, its private file copied back.
  const copy = join(base, 'copy')
  await cp(dir, copy, { recursive: true })
  await ok(t, ['keys', 'promote', '--out', copy, '--kid', 'k2'])
  await copyFile(join(copy, NAMES[0]!), priv)
  t.same((await kids(dir)).current, ['k2', 'k1'], 'the private file promoted, the public one not')

  const mismatch = `${priv} has current kid "k2" but ${pub} has "k1" (an interrupted promote? run keys promote --out=${dir} --kid=k2 first)`
  await refused(t, dir, ['keys', 'retire', '--out', dir, '--kid', 'k3'], `cannot retire: ${mismatch}`)
  await refused(t, dir, ['keys', 'init', '--out', dir, '--rotate', '--stage', '--kid', 'k4'], `cannot stage: ${mismatch}`)
  await refused(
    t,
    dir,
    ['keys', 'retire', '--out', dir, '--kid', 'k1'],
    'cannot retire kid "k1": it is the current key (values are sealed to it); promote another key first',
  )

  const again = await ok(t, ['keys', 'promote', '--out', dir, '--kid', 'k2'])
  t.match(again.stdout, /^promoted kid k2 in the key set "trusted-host" in .*: new values are sealed to it; still accepted for opening: k1, k3\n/)
  t.match(again.stdout, `\n  ecluse keys retire --out=${dir} --kid=k1\n`, 'the key to retire is the one the public file had')
  t.same(await kids(dir), { private: ['k2', 'k1', 'k3'], public: ['k2', 'k1', 'k3'], current: ['k2', 'k2'] }, 'completed')
  t.same(await snapshot(dir), await snapshot(copy), 'the same files as an uninterrupted promote')
  await ok(t, ['keys', 'retire', '--out', dir, '--kid', 'k3'])
  t.same(await kids(dir), { private: ['k2', 'k1'], public: ['k2', 'k1'], current: ['k2', 'k2'] }, 'the abandoned staged key retired')
})

t.test('an interrupted retire (public file written, private not): retire again completes it', async (t) => {
  const base = t.testdir()
  const dir = join(base, 'keys')
  await ok(t, ['keys', 'init', '--out', dir, '--kid', 'k1'])
  await ok(t, ['keys', 'init', '--out', dir, '--rotate', '--stage', '--kid', 'k2'])
  await ok(t, ['keys', 'promote', '--out', dir, '--kid', 'k2'])
  const copy = join(base, 'copy')
  await cp(dir, copy, { recursive: true })
  await ok(t, ['keys', 'retire', '--out', copy, '--kid', 'k1'])
  await copyFile(join(copy, NAMES[1]!), join(dir, NAMES[1]!))
  t.same(await kids(dir), { private: ['k2', 'k1'], public: ['k2'], current: ['k2', 'k2'] }, 'the private file still opens k1')
  await ok(t, ['keys', 'retire', '--out', dir, '--kid', 'k1'])
  t.same(await snapshot(dir), await snapshot(copy), 'the same files as an uninterrupted retire')
})

t.test('a private file that is a device or a FIFO is refused at once, read as the gateway reads key files', async (t) => {
  const dir = t.testdir()
  await ok(t, ['keys', 'init', '--out', dir, '--kid', 'k1'])
  await ok(t, ['keys', 'init', '--out', dir, '--rotate', '--stage', '--kid', 'k2'])
  const priv = join(dir, NAMES[0]!)
  const publicBefore = await readFile(join(dir, NAMES[1]!))
  await rm(priv)
  await symlink('/dev/zero', priv)
  for (const argv of [
    ['keys', 'promote', '--out', dir, '--kid', 'k2'],
    ['keys', 'retire', '--out', dir, '--kid', 'k1'],
    ['keys', 'init', '--out', dir, '--rotate', '--kid', 'k3'],
  ]) {
    const r = await runCli(argv)
    t.equal(r.code, 1, `${argv[1]}, /dev/zero: exit 1`)
    t.equal(r.stderr, `ecluse: ${priv}: not a regular file\n`, `${argv[1]}, /dev/zero: named, without reading it`)
  }
  await rm(priv)
  execFileSync('mkfifo', [priv])
  const r = await runCli(['keys', 'promote', '--out', dir, '--kid', 'k2'])
  t.equal(r.code, 1, 'a FIFO: exit 1, not a wait for a writer')
  t.equal(r.stderr, `ecluse: ${priv}: not a regular file\n`)
  t.same(await readFile(join(dir, NAMES[1]!)), publicBefore, 'the public file unchanged')
})

t.test('an interrupted keys init --rotate is refused on a re-run, not topped with another key, and the way out works', async (t) => {
  for (const stage of [true, false]) {
    const dir = t.testdir()
    const priv = join(dir, NAMES[0]!)
    const pub = join(dir, NAMES[1]!)
    await ok(t, ['keys', 'init', '--out', dir, '--kid', 'k1'])
    const publicBefore = await readFile(pub)
    await ok(t, ['keys', 'init', '--out', dir, '--rotate', ...(stage ? ['--stage'] : []), '--kid', 'k2'])
    // Killed between its two renames: the private file has k2, the public one does not.
    await writeFile(pub, publicBefore)
    await refused(
      t,
      dir,
      ['keys', 'init', '--out', dir, '--rotate', ...(stage ? ['--stage'] : []), '--kid', 'k3'],
      `cannot rotate: ${priv} holds "k2" that ${pub} lacks (an interrupted keys init --rotate or keys retire): run an interrupted retire again; after an interrupted rotation, remove the key that was never published with keys retire --out=${dir} --kid=…, promoting --kid=k1 first if it is current`,
    )
    // The way out the message gives.
    if (!stage) await ok(t, ['keys', 'promote', '--out', dir, '--kid', 'k1'])
    await ok(t, ['keys', 'retire', '--out', dir, '--kid', 'k2'])
    t.same(await kids(dir), { private: ['k1'], public: ['k1'], current: ['k1', 'k1'] }, `stage ${stage}: back to k1 alone`)
    await ok(t, ['keys', 'init', '--out', dir, '--rotate', ...(stage ? ['--stage'] : []), '--kid', 'k3'])
    const after = await kids(dir)
    t.same([after.private.sort(), after.public.sort()], [['k1', 'k3'], ['k1', 'k3']], `stage ${stage}: then the rotation runs`)
  }
})
