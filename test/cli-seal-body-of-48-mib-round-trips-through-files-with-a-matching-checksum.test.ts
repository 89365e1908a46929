/**
 * A 48 MiB body (generated per run, never committed) sealed and opened by the real CLI processes,
 * file to file: the opened file has the input's SHA-256, the sealed one is a little larger, and
 * nothing but the three files is left in the directory.
 */
import { createCipheriv, createHash, randomBytes } from 'node:crypto'
import { createReadStream, createWriteStream } from 'node:fs'
import { stat } from 'node:fs/promises'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import t from 'tap'
import { listDir, spawnCli } from './helpers/cli.js'
import { writeKeyFiles } from './helpers/sealing.js'

const SIZE = 48 * 1024 * 1024
const CHUNK = 1024 * 1024

/** Writes SIZE pseudo-random bytes (an AES-CTR key stream) to `file` and resolves to their SHA-256. */
async function generate(file: string): Promise<string> {
  const cipher = createCipheriv('aes-256-ctr', randomBytes(32), randomBytes(16))
  const hash = createHash('sha256')
  const zeros = Buffer.alloc(CHUNK)
  async function* chunks() {
    for (let n = 0; n < SIZE; n += CHUNK) {
      const c = cipher.update(zeros)
      hash.update(c)
      yield c
    }
  }
  await pipeline(Readable.from(chunks()), createWriteStream(file))
  return hash.digest('hex')
}

async function sha256(file: string): Promise<string> {
  const hash = createHash('sha256')
  await pipeline(createReadStream(file), hash)
  return hash.digest('hex')
}

t.test('48 MiB: seal --body then open --body, file to file, the checksums match', async (t) => {
  const dir = t.testdir()
  const keys = await writeKeyFiles(dir, 'th')
  const input = join(dir, 'big.bin')
  const digest = await generate(input)
  t.equal((await stat(input)).size, SIZE)

  const sealedFile = join(dir, 'big.sealed')
  const s = await spawnCli(['seal', '-k', keys.publicPath, '--context', 'archive', '--body', '--content-type', 'application/zip', input, '-o', sealedFile])
  t.equal(s.code, 0, s.stderr)
  const sealedSize = (await stat(sealedFile)).size
  t.ok(sealedSize > SIZE && sealedSize < SIZE * 1.01, `sealed size ${sealedSize}: the plaintext plus framing`)
  t.not(await sha256(sealedFile), digest)

  const openedFile = join(dir, 'big.opened')
  const o = await spawnCli(['open', '-k', keys.privatePath, '--context', 'archive', '--body', sealedFile, '-o', openedFile])
  t.equal(o.code, 0, o.stderr)
  t.equal(o.stdout.toString('utf8'), `opened ${sealedFile} (application/zip) into ${openedFile}\n`)
  t.equal((await stat(openedFile)).size, SIZE)
  t.equal(await sha256(openedFile), digest, 'SHA-256 of the opened file is the input\'s')
  t.same(await listDir(dir), ['big.bin', 'big.opened', 'big.sealed', 'th.private.jwks.json', 'th.public.jwks.json'])
})
