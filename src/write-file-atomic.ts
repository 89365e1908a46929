/**
 * Writing key and certificate files so that nobody ever reads half of one, or a private key with the
 * wrong mode, and so that an interrupted write leaves no temporary file behind: the temporary file of
 * a key set holds private keys, that of `ecluse open --out` plaintext. Used by `ecluse certs init`
 * (src/pki/dev-pki.ts) and `ecluse keys …`, `seal` and `open` (src/cli.ts).
 */
import { randomBytes } from 'node:crypto'
import { unlinkSync } from 'node:fs'
import { type FileHandle, lstat, open, rename, unlink } from 'node:fs/promises'
import { dirname } from 'node:path'

/**
 * Write via a fresh temporary file beside `file` (`wx`: never through a planted symlink; the mode is
 * set at creation, so a private key is never readable by others, even for a moment), flushed to disk,
 * then renamed over `file`, and the directory flushed: a reader (a gateway reloading on SIGHUP) sees
 * the old file or the new one, and after a crash the new one stays.
 * Killed by a signal it can catch (SIGINT, SIGTERM, SIGHUP, SIGQUIT, …) before the rename, the
 * process first removes the temporary file (see `removeOnInterrupt`).
 *
 * Replacing a file keeps its owner and group, and its mode where that gives nothing to others and no
 * more than `mode` plus group read (a file readable by others gets `mode`): a key set the gateway's
 * user reads through its owner or group must stay readable by it when an operator rotates keys as
 * root, or the next reload (and the next restart) fails. A caller that cannot give the new file the
 * old one's owner (not root, not the owner) is refused before the rename, and the old file stays.
 *
 * @example
 * await writeFileAtomic('keys/trusted-host.private.jwks.json', text, 0o600)
 */
export async function writeFileAtomic(file: string, data: string, mode: number): Promise<void> {
  await writeFilesAtomic([{ file, data, mode }])
}

/** One file of {@link writeFilesAtomic}. */
export interface FileToWrite {
  readonly file: string
  readonly data: string
  readonly mode: number
}

/**
 * {@link writeFileAtomic} for files that change together (the private and the public file of a key
 * set): every temporary file is written, given its owner and mode and flushed before the first
 * rename, so a file that cannot be replaced (its owner cannot be kept, the disk is full) fails the
 * call with every file left as it was. The renames then run in the order given; only a failure of a
 * rename itself (in a directory the caller could write to a moment before) can leave the first files
 * replaced and the later ones not, and the error then says which were.
 */
export async function writeFilesAtomic(files: readonly FileToWrite[]): Promise<void> {
  const prepared: Array<{ tmp: string; file: string; release: () => void }> = []
  try {
    for (const { file, data, mode } of files) {
      const tmp = temporaryPathBeside(file)
      const release = removeOnInterrupt(tmp)
      let fh: FileHandle
      try {
        fh = await open(tmp, 'wx', mode)
      } catch (err) {
        release()
        throw err // not created by us: nothing to remove
      }
      prepared.push({ tmp, file, release })
      try {
        await fh.writeFile(data)
        const replaced = await ownershipOf(file)
        if (replaced !== undefined) await keepOwner(fh, file, replaced)
        // The umask could only have removed bits; this makes the mode exact.
        await fh.chmod(keptMode(replaced?.mode, mode))
        await fh.sync()
      } finally {
        await fh.close()
      }
    }
  } catch (err) {
    for (const { tmp, release } of prepared) {
      await unlink(tmp).catch(() => {})
      release()
    }
    throw err
  }
  const renamed: string[] = []
  let notFlushed: NotFlushed | undefined
  try {
    for (const { tmp, file, release } of prepared) {
      try {
        await renameDurably(tmp, file)
      } catch (err) {
        // Renamed all the same: the files that follow go too, so the set stays whole.
        if (!(err instanceof NotFlushed)) {
          await unlink(tmp).catch(() => {})
          throw err
        }
        notFlushed ??= err
      } finally {
        release()
      }
      renamed.push(file)
    }
  } catch (err) {
    for (const { tmp, release } of prepared.slice(renamed.length + 1)) {
      await unlink(tmp).catch(() => {})
      release()
    }
    if (renamed.length === 0) throw err
    const left = prepared.slice(renamed.length).map((p) => p.file)
    throw new Error(`${renamed.join(', ')} replaced, but ${left.join(', ')} left as it was: ${(err as Error).message}`, { cause: err })
  }
  if (notFlushed !== undefined) throw notFlushed
}

/**
 * Renames `tmp` over `file`, then flushes the directory: the rename is an entry of the directory,
 * and a crash right after it could otherwise bring back the old file while the caller went on as if
 * the new one were in place (a promoted key, a sealed file whose source was deleted). The directory
 * is opened first: one that cannot be opened fails the write before anything is replaced.
 */
export async function renameDurably(tmp: string, file: string): Promise<void> {
  const dir = await open(dirname(file), 'r')
  try {
    await rename(tmp, file)
    try {
      await dir.sync()
    } catch (err) {
      throw new NotFlushed(file, err)
    }
  } finally {
    await dir.close()
  }
}

/**
 * The rename was done but the directory could not be flushed: `file` holds the new contents now,
 * and a crash could still bring the old ones back. A failure all the same, but the caller must not
 * treat the file as untouched (remove a temporary that no longer exists, say "left as it was").
 */
export class NotFlushed extends Error {
  constructor(file: string, cause: unknown) {
    super(`${file} was replaced, but its directory could not be flushed to disk (${(cause as NodeJS.ErrnoException).code ?? 'error'}): after a crash the old file may come back`, { cause })
    this.name = 'NotFlushed'
  }
}

/**
 * The mode of a file written over one of mode `old`: `asked` for a new file or one others could read
 * (a loosened key is tightened back), else the old mode, at most `asked` plus group read.
 */
function keptMode(old: number | undefined, asked: number): number {
  if (old === undefined || (old & 0o007) !== 0) return asked
  return (old & 0o777 & (asked | 0o040)) | 0o400
}

/**
 * The owner, group and mode of the regular file at `file` now, or nothing if there is none. A
 * symlink is not followed: the rename replaces the link, not its target, and the target's owner has
 * no claim on the new file (it would be handed the new private key).
 */
async function ownershipOf(file: string): Promise<{ uid: number; gid: number; mode: number } | undefined> {
  try {
    const st = await lstat(file)
    return st.isFile() ? { uid: st.uid, gid: st.gid, mode: st.mode } : undefined
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw err
  }
}

async function keepOwner(fh: FileHandle, file: string, owner: { uid: number; gid: number }): Promise<void> {
  const mine = await fh.stat()
  if (mine.uid === owner.uid && mine.gid === owner.gid) return
  try {
    await fh.chown(owner.uid, owner.gid)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code !== 'EPERM' && code !== 'EINVAL') throw err
    const who = mine.uid === owner.uid ? `uid ${mine.uid} owns it but is not in group ${owner.gid}` : `uid ${mine.uid} is neither its owner nor root`
    throw new Error(
      `${file} belongs to uid ${owner.uid}, gid ${owner.gid}, and ${who}, so its replacement cannot keep them: run the command as root or as its owner in its group; ${file} is left as it was`,
    )
  }
}

/** A name beside `file` that no other writer (another process, another call) picks. */
export function temporaryPathBeside(file: string): string {
  return `${file}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`
}

/**
 * The signals whose default action ends the process and that a handler can catch: the ones a
 * supervisor or a terminal sends, and the others (SIGQUIT from Ctrl-\\, SIGUSR2, SIGALRM). SIGKILL
 * and a crash of the process itself cannot be caught: they can leave a `*.tmp` file beside the target.
 */
const INTERRUPTS: readonly NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT', 'SIGUSR2', 'SIGALRM']

/** Temporary files written now, to remove if one of `INTERRUPTS` ends the process. */
const pending = new Set<string>()

/**
 * Until the returned release is called, a signal of `INTERRUPTS` that would end the process removes
 * `tmp` (and every other pending one) first, then ends the process by the same signal, so the caller
 * still sees why it stopped. Register before the file is created: removing a file that does not exist
 * yet is harmless, a signal between creation and registration would not be.
 */
export function removeOnInterrupt(tmp: string): () => void {
  if (pending.size === 0) for (const s of INTERRUPTS) process.on(s, onInterrupt)
  pending.add(tmp)
  let released = false
  return () => {
    if (released) return
    released = true
    pending.delete(tmp)
    if (pending.size === 0) for (const s of INTERRUPTS) process.off(s, onInterrupt)
  }
}

/**
 * For the commands that write files, which die of these signals. The gateway handles them itself
 * (SIGHUP reloads, SIGTERM drains) and never writes files, so it never registers this. Other
 * listeners (exit hooks such as signal-exit, which re-raise the signal once they are alone) see the
 * signal raised again after this one is gone.
 */
function onInterrupt(signal: NodeJS.Signals): void {
  for (const tmp of pending) {
    try {
      unlinkSync(tmp)
    } catch {
      // not created yet, or already renamed or removed
    }
  }
  pending.clear()
  for (const s of INTERRUPTS) process.off(s, onInterrupt)
  process.kill(process.pid, signal)
}
