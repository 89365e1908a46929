/**
 * Named pipes as a container runtime gives a process its stdout: the test holds the read end
 * (non-blocking, so it can poll, stop reading, or close it), the process gets a blocking write end.
 */
import { execFileSync } from 'node:child_process'
import { closeSync, constants, openSync, readSync, writeSync } from 'node:fs'
import { join } from 'node:path'

export interface Fifo {
  readonly path: string
  /** The read end, non-blocking. */
  readonly reader: number
  /** A blocking write end, for a child's stdio; close it in the test once the child is spawned. */
  readonly writer: number
}

/** A new FIFO in `dir`, opened at both ends (the read end first, so the write end opens at once). */
export function makeFifo(dir: string, name: string): Fifo {
  const path = join(dir, name)
  execFileSync('mkfifo', [path])
  const reader = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK)
  const writer = openSync(path, constants.O_WRONLY)
  return { path, reader, writer }
}

/** Fills the pipe through a write end of the test's own until it takes no more; the bytes written. */
export function fillFifo(fifo: Fifo): number {
  const filler = openSync(fifo.path, constants.O_WRONLY | constants.O_NONBLOCK)
  let filled = 0
  try {
    for (;;) filled += writeSync(filler, Buffer.alloc(64 * 1024))
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') throw err
  } finally {
    closeSync(filler)
  }
  return filled
}

/**
 * Reads the pipe until `done(text so far)` or until every writer has closed it (end of file),
 * pausing 2 ms whenever it is empty; `check` runs before each pause and may throw to give up.
 */
export async function readFifo(fifo: Fifo, done: (text: string) => boolean = () => false, check: () => void = () => {}): Promise<string> {
  let text = ''
  const chunk = Buffer.alloc(64 * 1024)
  while (!done(text)) {
    let n: number
    try {
      n = readSync(fifo.reader, chunk)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') throw err
      check()
      await new Promise((r) => setTimeout(r, 2))
      continue
    }
    if (n === 0) break
    text += chunk.subarray(0, n).toString('utf8')
  }
  return text
}
