/**
 * A key file written by `writeFileAtomic` survives a crash right after the call returns: the data
 * is flushed before the rename, and the directory entry the rename changed is flushed after it.
 * Without the second flush, a power cut could bring back the old key set after `keys promote`
 * reported success. Observed through a spy on `FileHandle.prototype.sync`.
 */
import { open, readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { writeFileAtomic } from '../src/write-file-atomic.js'

t.test('the file is synced before the rename, its directory after', async (t) => {
  const dir = t.testdir({ 'set.json': 'old\n' })
  const target = join(dir, 'set.json')
  const probe = await open(target, 'r')
  const proto = Object.getPrototypeOf(probe) as { sync: () => Promise<void> }
  await probe.close()
  const sync = proto.sync
  const synced: Array<{ directory: boolean; targetHolds: string }> = []
  proto.sync = async function (this: { stat: () => Promise<{ isDirectory(): boolean }> }) {
    const directory = (await this.stat()).isDirectory()
    synced.push({ directory, targetHolds: await readFile(target, 'utf8') })
    return sync.call(this)
  }
  t.teardown(() => {
    proto.sync = sync
  })

  await writeFileAtomic(target, 'new\n', 0o600)
  t.same(synced, [
    { directory: false, targetHolds: 'old\n' },
    { directory: true, targetHolds: 'new\n' },
  ])
  t.equal((await stat(target)).mode & 0o777, 0o600)
})
