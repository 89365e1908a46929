/**
 * Every `keys` command reads both files of a set, decides, then writes both. Two at once (two
 * operators, a script run twice) each wrote a set built from what it had read, and the later one
 * silently dropped the earlier one's key: in a review, 4 of 8 pairs of concurrent `--stage` runs
 * lost a staged key that both had reported. A command now holds `NAME.jwks.lock` in the set's
 * directory while it works, and another refuses to start meanwhile. And `promote`/`retire` never
 * publish a key that the public file lacks: after a `retire` interrupted between its two renames
 * (the public file is written first), a `promote` of another key used to put the retired key back
 * into the public file.
 */
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { parseKeySet } from '../src/crypto/keys.js'
import { listDir, runCli } from './helpers/cli.js'

const PRIVATE = 'trusted-host.private.jwks.json'
const PUBLIC = 'trusted-host.public.jwks.json'

async function kids(dir: string): Promise<{ private: string[]; public: string[] }> {
  const priv = parseKeySet(await readFile(join(dir, PRIVATE)), { requirePrivate: true })
  const pub = parseKeySet(await readFile(join(dir, PUBLIC)), { publicOnly: true })
  return { private: priv.kids, public: pub.kids }
}

t.test('a command that finds the set locked refuses, names the lock and changes nothing', async (t) => {
  const dir = t.testdir()
  t.equal((await runCli(['keys', 'init', '--out', dir, '--kid', 'k1'])).code, 0)
  t.equal((await runCli(['keys', 'init', '--out', dir, '--rotate', '--stage', '--kid', 'k2'])).code, 0)
  t.same(await listDir(dir), [PRIVATE, PUBLIC], 'no lock is left after a command')
  const lock = join(dir, 'trusted-host.jwks.lock')
  await writeFile(lock, '12345\n')
  const before = await Promise.all([PRIVATE, PUBLIC].map((n) => readFile(join(dir, n))))
  for (const argv of [
    ['keys', 'init', '--out', dir, '--rotate', '--stage', '--kid', 'k3'],
    ['keys', 'init', '--out', dir, '--force'],
    ['keys', 'promote', '--out', dir, '--kid', 'k2'],
    ['keys', 'retire', '--out', dir, '--kid', 'k2'],
  ]) {
    const r = await runCli(argv)
    t.equal(r.code, 1, `${argv[1]}: exit 1`)
    t.equal(r.stderr, `ecluse: ${lock} exists: another keys command is changing the set "trusted-host"; run this one when it has finished (if none is running, one was killed before it could remove the lock: check both files, delete any trusted-host.*.jwks.json.*.tmp beside them, which may hold private keys, then remove the lock)\n`)
    t.same(await Promise.all([PRIVATE, PUBLIC].map((n) => readFile(join(dir, n)))), before, `${argv[1]} ${argv.at(-1)}: both files as they were`)
  }
  t.equal(await readFile(lock, 'utf8'), '12345\n', 'the other command’s lock is not taken away')
  // Another set in the same directory has a lock of its own.
  t.equal((await runCli(['keys', 'init', '--out', dir, '--name', 'other'])).code, 0)
})

t.test('commands started together: every key one of them reports is in both files', async (t) => {
  const dir = t.testdir()
  t.equal((await runCli(['keys', 'init', '--out', dir, '--kid', 'k1'])).code, 0)
  const runs = await Promise.all(['a', 'b', 'c', 'd'].map((k) => runCli(['keys', 'init', '--out', dir, '--rotate', '--stage', '--kid', k])))
  const staged = ['a', 'b', 'c', 'd'].filter((_, i) => runs[i]!.code === 0)
  t.ok(staged.length >= 1, 'at least one ran')
  for (const [i, r] of runs.entries()) if (r.code !== 0) t.match(r.stderr, /jwks\.lock exists: another keys command/, `run ${i} refused for the lock`)
  const after = await kids(dir)
  for (const k of staged) {
    t.ok(after.private.includes(k), `${k}, reported staged, is in the private file`)
    t.ok(after.public.includes(k), `${k}, reported staged, is in the public file`)
  }
  t.same(await listDir(dir), [PRIVATE, PUBLIC], 'no lock and no temporary file is left')
})

t.test('new sets started together in a new directory: one is written, and its two files agree', async (t) => {
  // Without a lock on a directory that did not exist yet, all four reported "wrote", and one round
  // left a private file with one kid beside a public file with another (found by a review).
  const dir = join(t.testdir(), 'new', 'keys')
  const runs = await Promise.all(['a', 'b', 'c', 'd'].map((k) => runCli(['keys', 'init', '--out', dir, '--kid', k])))
  const wrote = ['a', 'b', 'c', 'd'].filter((_, i) => runs[i]!.code === 0)
  t.equal(wrote.length, 1, `exactly one wrote the set (${wrote.join(', ')})`)
  for (const r of runs) if (r.code !== 0) t.match(r.stderr, /jwks\.lock exists: another keys command|already exists: --rotate adds/, 'the others are refused')
  t.same(await kids(dir), { private: wrote, public: wrote }, 'the private and the public file hold the same key')
  t.same(await listDir(dir), [PRIVATE, PUBLIC], 'no lock is left')
})

t.test('promote and retire never publish a key the public file lacks', async (t) => {
  // A `retire k3` killed between its two renames leaves a private file with k1, k2, k3 beside a
  // public one with k1, k2.
  const fresh = t.testdir()
  for (const argv of [
    ['keys', 'init', '--out', fresh, '--kid', 'k1'],
    ['keys', 'init', '--out', fresh, '--rotate', '--stage', '--kid', 'k2'],
  ]) t.equal((await runCli(argv)).code, 0)
  const twoKeysPublic = await readFile(join(fresh, PUBLIC))
  t.equal((await runCli(['keys', 'init', '--out', fresh, '--rotate', '--stage', '--kid', 'k3'])).code, 0)
  await writeFile(join(fresh, PUBLIC), twoKeysPublic)
  t.same(await kids(fresh), { private: ['k1', 'k3', 'k2'], public: ['k1', 'k2'] }, 'as an interrupted retire of k3 leaves it')

  const promoted = await runCli(['keys', 'promote', '--out', fresh, '--kid', 'k2'])
  t.equal(promoted.code, 0, promoted.stderr)
  t.same(await kids(fresh), { private: ['k2', 'k1', 'k3'], public: ['k2', 'k1'] }, 'promote moved current and did not publish k3 again')
  const retired = await runCli(['keys', 'retire', '--out', fresh, '--kid', 'k1'])
  t.equal(retired.code, 0, retired.stderr)
  t.same(await kids(fresh), { private: ['k2', 'k3'], public: ['k2'] }, 'retire of another key did not publish k3 either')
  const completed = await runCli(['keys', 'retire', '--out', fresh, '--kid', 'k3'])
  t.equal(completed.code, 0, completed.stderr)
  t.same(await kids(fresh), { private: ['k2'], public: ['k2'] }, 'and the interrupted retire, run again, completes')
})
