/**
 * Writing key and certificate files so that nobody ever reads half of one, or a private key with the
 * wrong mode. Used by `ecluse certs init` (src/pki/dev-pki.ts) and `ecluse keys …` (src/cli.ts).
 */
import { randomBytes } from 'node:crypto'
import { open, rename, unlink } from 'node:fs/promises'

/**
 * Write via a fresh temporary file beside `file` (`wx`: never through a planted symlink; the mode is
 * set at creation, so a private key is never readable by others, even for a moment), flushed to disk,
 * then renamed over `file`: a reader (a gateway reloading on SIGHUP) sees the old file or the new one.
 *
 * @example
 * await writeFileAtomic('keys/trusted-host.private.jwks.json', text, 0o600)
 */
export async function writeFileAtomic(file: string, data: string, mode: number): Promise<void> {
  const tmp = `${file}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`
  const fh = await open(tmp, 'wx', mode)
  try {
    try {
      await fh.writeFile(data)
      await fh.chmod(mode) // the umask could only have removed bits; this makes the mode exact
      await fh.sync()
    } finally {
      await fh.close()
    }
    await rename(tmp, file)
  } catch (err) {
    await unlink(tmp).catch(() => {})
    throw err
  }
}
