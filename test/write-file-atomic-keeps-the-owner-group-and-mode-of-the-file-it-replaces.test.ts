/**
 * `ecluse keys stage/promote/retire` replace key set files with `writeFileAtomic`. The gateway reads
 * them as its own user (uid 1000 in the image), through the file's owner or group. An operator who
 * rotated as root used to leave a root-owned 0600 file: the next reload failed (EACCES) and the
 * gateway kept the old keys, and the next restart could not boot (found by a review). Replacing a
 * file now keeps its owner and group, and its mode up to the requested one plus group read (a mode
 * that lets others read is replaced by the requested one); a caller
 * that cannot keep the owner is refused and the old file stays as it was.
 */
import { execFile } from 'node:child_process'
import { chmod, chown, lstat, readdir, readFile, stat } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { promisify } from 'node:util'
import t from 'tap'
import { writeFileAtomic, writeFilesAtomic } from '../src/write-file-atomic.js'

const NOBODY = 65534
const root = process.getuid?.() === 0

/** `writeFileAtomic(file, 'new', 0o600)` in a child running as uid and gid 65534: what it printed. */
async function writeAsNobody(file: string): Promise<string> {
  const script = `import { writeFileAtomic } from ${JSON.stringify(resolve('src/write-file-atomic.ts'))}
try { await writeFileAtomic(${JSON.stringify(file)}, 'new', 0o600); console.log('written') } catch (err) { console.log('refused: ' + err.message) }`
  const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { uid: NOBODY, gid: NOBODY, cwd: resolve('.') })
  return stdout
}

t.test('a new file gets exactly the requested mode, whatever the umask', async (t) => {
  const dir = t.testdir({})
  const old = process.umask(0o077)
  t.teardown(() => process.umask(old))
  await writeFileAtomic(join(dir, 'public.json'), '{}', 0o644)
  await writeFileAtomic(join(dir, 'private.json'), '{}', 0o600)
  t.equal((await stat(join(dir, 'public.json'))).mode & 0o777, 0o644)
  t.equal((await stat(join(dir, 'private.json'))).mode & 0o777, 0o600)
})

t.test('a replaced file keeps its mode, no looser than the requested one plus group read, unless others could read it', async (t) => {
  const dir = t.testdir({ 'a.json': 'old', 'b.json': 'old', 'c.json': 'old', 'd.json': 'old', 'e.json': 'old' })
  const cases: Array<[string, number, number, number]> = [
    // file, its mode, the mode asked for, the mode it ends with
    ['a.json', 0o440, 0o600, 0o440], // the README's group-readable key files stay so
    ['b.json', 0o640, 0o600, 0o640],
    ['c.json', 0o666, 0o600, 0o600], // a private set others could read is tightened back
    ['e.json', 0o604, 0o600, 0o600],
    ['d.json', 0o600, 0o644, 0o600], // an operator's tighter public file stays tight
  ]
  for (const [name, before, asked, after] of cases) {
    await chmod(join(dir, name), before)
    await writeFileAtomic(join(dir, name), 'new', asked)
    t.equal((await stat(join(dir, name))).mode & 0o777, after, `${before.toString(8)} asked ${asked.toString(8)} → ${after.toString(8)}`)
    t.equal(await readFile(join(dir, name), 'utf8'), 'new')
  }
})

t.test('root replacing a file owned by the gateway user keeps its owner and group', { skip: root ? false : 'needs root to own a file as another user' }, async (t) => {
  const dir = t.testdir({ 'trusted-host.private.jwks.json': 'old' })
  const file = join(dir, 'trusted-host.private.jwks.json')
  await chown(file, NOBODY, NOBODY)
  await chmod(file, 0o600)
  await writeFileAtomic(file, 'new', 0o600)
  const st = await stat(file)
  t.same({ uid: st.uid, gid: st.gid, mode: st.mode & 0o777 }, { uid: NOBODY, gid: NOBODY, mode: 0o600 }, 'still the gateway user’s, and readable by it only')
  t.equal(await readFile(file, 'utf8'), 'new')
})

t.test('another user who cannot keep the owner is refused, and the file stays as it was', { skip: root ? false : 'needs root to run a child as another user' }, async (t) => {
  const dir = t.testdir({ 'set.json': 'old' })
  await chmod(dir, 0o777) // the other user may create and rename entries here: only the owner check stops it
  const file = join(dir, 'set.json')
  await chmod(file, 0o644)
  const stdout = await writeAsNobody(file)
  t.match(stdout, /^refused: .*set\.json belongs to uid 0, gid 0, and uid 65534 is neither its owner nor root/, 'refused with the reason')
  t.equal(await readFile(file, 'utf8'), 'old', 'the old contents stay')
  const st = await stat(file)
  t.same({ uid: st.uid, mode: st.mode & 0o777 }, { uid: 0, mode: 0o644 }, 'and its owner and mode')
  t.same(await readdir(dir), ['set.json'], 'no temporary file is left')
})

t.test('a symlink is replaced by a file of the caller’s: its target’s owner gets nothing', { skip: root ? false : 'needs root to own a file as another user' }, async (t) => {
  const dir = t.testdir({ 'elsewhere.json': 'theirs', 'set.json': t.fixture('symlink', 'elsewhere.json') })
  await chown(join(dir, 'elsewhere.json'), NOBODY, NOBODY)
  await chmod(join(dir, 'elsewhere.json'), 0o640)
  await writeFileAtomic(join(dir, 'set.json'), 'new private key', 0o600)
  const st = await lstat(join(dir, 'set.json'))
  t.ok(st.isFile(), 'a regular file now')
  t.same({ uid: st.uid, mode: st.mode & 0o777 }, { uid: 0, mode: 0o600 }, 'the caller’s, with the mode asked for')
  t.equal(await readFile(join(dir, 'elsewhere.json'), 'utf8'), 'theirs', 'the target is untouched')
})

t.test('an owner outside the file’s group is told so', { skip: root ? false : 'needs root to run a child as another user' }, async (t) => {
  const dir = t.testdir({ 'set.json': 'old' })
  await chmod(dir, 0o777)
  const file = join(dir, 'set.json')
  await chown(file, NOBODY, 0)
  await chmod(file, 0o640)
  const stdout = await writeAsNobody(file)
  t.match(stdout, /^refused: .*uid 65534 owns it but is not in group 0/, 'the reason names the group')
  t.equal(await readFile(file, 'utf8'), 'old')
})

t.test('two files that change together: when the second cannot be replaced, neither is', { skip: root ? false : 'needs root to run a child as another user' }, async (t) => {
  // The private and public files of a key set: a `keys promote` by a user who owns the first file
  // but not the second used to replace the first and then report failure, leaving the two files
  // naming different current keys (found by a review).
  const dir = t.testdir({ 'first.json': 'old first', 'second.json': 'old second' })
  await chmod(dir, 0o777)
  const [first, second] = [join(dir, 'first.json'), join(dir, 'second.json')]
  await chown(first, NOBODY, NOBODY)
  const script = `import { writeFilesAtomic } from ${JSON.stringify(resolve('src/write-file-atomic.ts'))}
try { await writeFilesAtomic([{ file: ${JSON.stringify(first)}, data: 'new first', mode: 0o600 }, { file: ${JSON.stringify(second)}, data: 'new second', mode: 0o644 }]); console.log('written') } catch (err) { console.log('refused: ' + err.message) }`
  const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { uid: NOBODY, gid: NOBODY, cwd: resolve('.') })
  t.match(stdout, /^refused: .*second\.json belongs to uid 0, gid 0, and uid 65534 is neither its owner nor root/, 'refused for the second file')
  t.equal(await readFile(first, 'utf8'), 'old first', 'the first file, which could be replaced, stays as it was')
  t.equal(await readFile(second, 'utf8'), 'old second', 'and the second')
  t.same((await readdir(dir)).sort(), ['first.json', 'second.json'], 'no temporary file is left')
})

t.test('two files that change together are both replaced', async (t) => {
  const dir = t.testdir({ 'first.json': 'old first' })
  const [first, second] = [join(dir, 'first.json'), join(dir, 'second.json')]
  await writeFilesAtomic([
    { file: first, data: 'new first', mode: 0o600 },
    { file: second, data: 'new second', mode: 0o644 },
  ])
  t.equal(await readFile(first, 'utf8'), 'new first')
  t.equal(await readFile(second, 'utf8'), 'new second')
  t.equal((await stat(first)).mode & 0o777, 0o600)
  t.equal((await stat(second)).mode & 0o777, 0o644)
})

t.test('a directory that cannot be flushed after the rename: the failure says the files were replaced', async (t) => {
  // The rename is done when the directory's fsync fails: the files hold the new contents, and the
  // error must not say "left as it was" (nor a caller remove what is now the file).
  const fs = await import('node:fs/promises')
  const { writeFilesAtomic: writeWithFailingDirectorySync } = await t.mockImport<typeof import('../src/write-file-atomic.js')>('../src/write-file-atomic.js', {
    'node:fs/promises': {
      ...fs,
      open: async (path: string, flags: string, mode?: number) => {
        const fh = await fs.open(path, flags, mode)
        if (flags !== 'r') return fh
        return { sync: async () => Promise.reject(Object.assign(new Error('EIO: i/o error, fsync'), { code: 'EIO' })), close: () => fh.close() }
      },
    },
  })
  const dir = t.testdir({ 'first.json': 'old first', 'second.json': 'old second' })
  const [first, second] = [join(dir, 'first.json'), join(dir, 'second.json')]
  await t.rejects(
    writeWithFailingDirectorySync([
      { file: first, data: 'new first', mode: 0o600 },
      { file: second, data: 'new second', mode: 0o644 },
    ]),
    { name: 'NotFlushed', message: `${first} was replaced, but its directory could not be flushed to disk (EIO): after a crash the old file may come back` },
  )
  t.equal(await readFile(first, 'utf8'), 'new first', 'the first file is the new one')
  t.equal(await readFile(second, 'utf8'), 'new second', 'and the second was renamed too: the set stays whole')
  t.same((await readdir(dir)).sort(), ['first.json', 'second.json'], 'no temporary file is left')
})
