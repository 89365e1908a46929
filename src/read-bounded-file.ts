/**
 * Reading a configuration, certificate or key file with its size bounded and the file checked
 * through the same open handle it is read from: a `stat` of the path followed by a `readFile` of the
 * path would read whatever sits there by then (a file swapped in between, a symlink to /dev/zero),
 * without the cap. A FIFO is opened without blocking and refused, never waited on.
 */
import { constants } from 'node:fs'
import { open } from 'node:fs/promises'

/** Why a file was not read: `not a regular file`, `larger than N bytes`, or the errno code. */
export class UnreadableFile extends Error {
  readonly reason: string
  /** A sentence of ours (`not a regular file`…) rather than an errno code from the system. */
  readonly descriptive: boolean
  /**
   * Whether the path opened at all. One that did not (ENOENT, ENAMETOOLONG…) may be no path: key
   * material pasted where a file's name belongs. Messages then name the key, not the value.
   */
  readonly opened: boolean
  constructor(reason: string, options?: { cause?: unknown; errno?: boolean; opened?: boolean }) {
    super(reason, options)
    this.name = 'UnreadableFile'
    this.reason = reason
    this.descriptive = options?.errno !== true
    this.opened = options?.opened !== false
  }
}

/** Whether `err` says the path did not open (so the path may be no path, and is not to be quoted). */
export function neverOpened(err: unknown): boolean {
  return err instanceof UnreadableFile && !err.opened
}

/**
 * The reason to put in a message: a descriptive one as is, an errno as `<verb> (ENOENT)`.
 *
 * @example
 * `${file}: ${unreadable(err, 'cannot read')}` // "x.pem: not a regular file", "x.pem: cannot read (ENOENT)"
 */
export function unreadable(err: unknown, verb: string): string {
  if (!(err instanceof UnreadableFile)) return `${verb} (error)`
  return err.descriptive ? err.reason : `${verb} (${err.reason})`
}

/** The reason of a file whose length changed while it was read (in every message that quotes it). */
export const CHANGED_WHILE_READ = 'changed while being read'

/**
 * The bytes of the regular file at `path`, at most `maxBytes` of them.
 *
 * @throws UnreadableFile whose `reason` the caller puts in its own message.
 * @example
 * const pem = await readBoundedFile('certs/gateway.crt', 1024 * 1024)
 */
export async function readBoundedFile(path: string, maxBytes: number): Promise<Buffer> {
  let fh: Awaited<ReturnType<typeof open>>
  try {
    fh = await open(path, constants.O_RDONLY | constants.O_NONBLOCK)
  } catch (err) {
    throw new UnreadableFile((err as NodeJS.ErrnoException).code ?? 'error', { cause: err, errno: true, opened: false })
  }
  try {
    const info = await fh.stat()
    if (!info.isFile()) throw new UnreadableFile('not a regular file')
    if (info.size > maxBytes) throw new UnreadableFile(`larger than ${maxBytes} bytes`)
    // One byte more than the stat said, to tell a file that grew while it was read (a writer that is
    // not atomic): refused, the next reload reads it whole.
    const buf = Buffer.alloc(info.size + 1)
    let length = 0
    for (;;) {
      const { bytesRead } = await fh.read(buf, length, buf.length - length, length)
      if (bytesRead === 0) break
      length += bytesRead
    }
    // Longer or shorter than the stat said: written meanwhile by a writer that is not atomic (`cp`,
    // `cat >`); a truncated prefix of a chain or a bundle can still parse. Refused either way, the
    // next reload reads it whole.
    if (length !== info.size) throw new UnreadableFile(CHANGED_WHILE_READ)
    return buf.subarray(0, length)
  } catch (err) {
    if (err instanceof UnreadableFile) throw err
    throw new UnreadableFile((err as NodeJS.ErrnoException).code ?? 'error', { cause: err, errno: true })
  } finally {
    await fh.close()
  }
}
