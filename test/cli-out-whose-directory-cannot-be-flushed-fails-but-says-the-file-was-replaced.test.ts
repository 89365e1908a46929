/**
 * `seal --out FILE` and `open --out FILE` rename their output into place, then flush the directory
 * that names it. When that flush fails, FILE already holds the new output, but a crash could still
 * bring the old one back: the run fails (exit 1, so a script does not delete its source), and it
 * says that FILE was replaced rather than "cannot write" (which would read as "left as it was").
 * The failure is injected through a spy on `FileHandle.prototype.sync` that fails for directories.
 */
import { randomBytes } from 'node:crypto'
import { open, readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { COMPACT_JWE, listDir, runCli } from './helpers/cli.js'
import { writeKeyFiles } from './helpers/sealing.js'

const dir = t.testdir()
const keys = await writeKeyFiles(dir, 'th')
const BODY = randomBytes(200 * 1024)
await writeFile(join(dir, 'scan.bin'), BODY)
await writeFile(join(dir, 'record.json'), '{"id":"A-1","name":"Ada Lovelace"}\n')
const sealedBody = join(dir, 'scan.sealed')
const sealedRun = await runCli(['seal', '-k', keys.publicPath, '--context', 'documents', '--body', join(dir, 'scan.bin'), '-o', sealedBody])
if (sealedRun.code !== 0) throw new Error(sealedRun.stderr)

/** Makes every directory flush fail with EIO until the test ends; counts the failed flushes. */
async function failDirectoryFlushes(t: Test): Promise<{ failed: number }> {
  const probe = await open(join(dir, 'scan.bin'), 'r')
  const proto = Object.getPrototypeOf(probe) as { sync: () => Promise<void> }
  await probe.close()
  const sync = proto.sync
  const seen = { failed: 0 }
  proto.sync = async function (this: { stat: () => Promise<{ isDirectory(): boolean }> }) {
    if ((await this.stat()).isDirectory()) {
      seen.failed++
      throw Object.assign(new Error('EIO: i/o error, fsync'), { code: 'EIO', syscall: 'fsync' })
    }
    return sync.call(this)
  }
  t.teardown(() => {
    proto.sync = sync
  })
  return seen
}

const NOT_FLUSHED = (out: string) => `ecluse: ${out} was replaced, but its directory could not be flushed to disk (EIO): after a crash the old file may come back\n`

t.test('open --body --out: exit 1, the message says the file was replaced, and it holds the opened body', async (t) => {
  const out = join(dir, 'opened.bin')
  await writeFile(out, 'previous\n')
  const before = await listDir(dir)
  const flushes = await failDirectoryFlushes(t)
  const r = await runCli(['open', '-k', keys.privatePath, '--context', 'documents', '--body', sealedBody, '--out', out])
  t.equal(r.code, 1)
  t.equal(flushes.failed, 1, 'one directory flush, after the rename')
  t.equal(r.stderr, NOT_FLUSHED(out))
  t.equal(r.stdout, '', 'no "opened … into" line: the run failed')
  t.ok((await readFile(out)).equals(BODY), 'the file holds the opened body')
  t.equal((await stat(out)).mode & 0o777, 0o600, 'opened plaintext is readable by its owner only')
  t.same(await listDir(dir), before, 'no temporary file left')
})

t.test('seal --fields --out into a new file: exit 1, the same message, and the file holds the sealed record', async (t) => {
  const out = join(dir, 'record.sealed.json')
  const before = await listDir(dir)
  const flushes = await failDirectoryFlushes(t)
  const r = await runCli(['seal', '-k', keys.publicPath, '--context', 'records', '--fields', '/name', join(dir, 'record.json'), '--out', out])
  t.equal(r.code, 1)
  t.equal(flushes.failed, 1)
  t.equal(r.stderr, NOT_FLUSHED(out))
  t.equal(r.stdout, '')
  const sealed = JSON.parse(await readFile(out, 'utf8')) as { id: string; name: string }
  t.equal(sealed.id, 'A-1')
  t.match(sealed.name, COMPACT_JWE, 'the name was sealed')
  t.same(await listDir(dir), [...before, 'record.sealed.json'].sort(), 'the output and no temporary file')
})

t.test('with the directory flush working, the same runs succeed (the spy is what failed them)', async (t) => {
  const out = join(dir, 'opened-ok.bin')
  const r = await runCli(['open', '-k', keys.privatePath, '--context', 'documents', '--body', sealedBody, '--out', out])
  t.equal(r.code, 0, r.stderr)
  t.equal(r.stderr, '')
  t.ok((await readFile(out)).equals(BODY))
})
