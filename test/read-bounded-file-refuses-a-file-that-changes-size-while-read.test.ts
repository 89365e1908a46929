/**
 * `readBoundedFile` reads a certificate, key or configuration file through the handle it checked,
 * and refuses one whose length differs from what its stat said: a writer that is not atomic (`cp`,
 * `cat >`) may be mid-way, and a truncated prefix of a chain or a bundle can still parse. Growth is
 * real here (a /proc file stats as 0 bytes and reads as more); a truncation cannot be raced
 * deterministically, so a handle that reads fewer bytes than its stat stands in for it.
 */
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { readBoundedFile, UnreadableFile } from '../src/read-bounded-file.js'

t.test('a file that reads longer than its stat (grew while read) is refused', async (t) => {
  // /proc/self/status: a regular file whose stat size is 0 and whose read is not empty.
  await t.rejects(readBoundedFile('/proc/self/status', 1024 * 1024), new UnreadableFile('changed while being read'))
})

t.test('a file that reads shorter than its stat (truncated while read) is refused', async (t) => {
  const fakeHandle = {
    stat: async () => ({ isFile: () => true, size: 10 }),
    // Five bytes, then the end: the file lost its tail after the stat.
    read: async (buf: Buffer, offset: number) => {
      if (offset > 0) return { bytesRead: 0, buffer: buf }
      buf.write('-----', offset)
      return { bytesRead: 5, buffer: buf }
    },
    close: async () => {},
  }
  const { readBoundedFile: readWithFakeHandle } = await t.mockImport<typeof import('../src/read-bounded-file.js')>('../src/read-bounded-file.js', {
    'node:fs/promises': { open: async () => fakeHandle },
  })
  await t.rejects(readWithFakeHandle('anything.pem', 1024), { name: 'UnreadableFile', reason: 'changed while being read' })
})

t.test('a file read whole, within its cap, is returned as is; over its cap or not regular, refused', async (t) => {
  const dir = t.testdir({})
  const file = join(dir, 'chain.pem')
  await writeFile(file, 'x'.repeat(100))
  t.equal((await readBoundedFile(file, 100)).toString(), 'x'.repeat(100))
  await t.rejects(readBoundedFile(file, 99), { name: 'UnreadableFile', reason: 'larger than 99 bytes' })
  await t.rejects(readBoundedFile(dir, 1024), { name: 'UnreadableFile', reason: 'not a regular file' })
  await t.rejects(readBoundedFile(join(dir, 'missing.pem'), 1024), { name: 'UnreadableFile', reason: 'ENOENT', descriptive: false })
})
