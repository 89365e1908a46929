/**
 * Stdout as the loggers' destination, made so that its reader can never stop the gateway:
 *  - a reader that does not keep up costs at most {@link LOG_BUFFER_MAX_BYTES} of held lines; the
 *    lines beyond it are dropped and counted (`ecluse_log_lines_dropped_total`);
 *  - a reader that has gone (EPIPE), or any other write error, makes the log go quiet, every later
 *    line counted as dropped;
 *  - `close(deadline)` writes what is held while the event loop still runs, then drops the rest: an
 *    exit never waits on the reader longer than that.
 *
 * Two implementations, by what fd 1 is:
 *  - a pipe (a container runtime's log pipe): {@link PipeLog}, a libuv stream on a description of
 *    the pipe of its own, non-blocking;
 *  - anything else (a socket, a file, a terminal), or a pipe that cannot be opened again:
 *    {@link SonicLog}, pino's asynchronous sonic-boom on fd 1.
 *
 * Why not sonic-boom for pipes too: on a full non-blocking pipe it retries every 100 ms (a reader
 * that keeps the pipe full caps the log near 64 KiB per 100 ms), and on a blocking one its write
 * blocks a thread-pool thread in the kernel, which `process.exit` then waits for forever (Node joins
 * its thread pool at exit). And why a description of its own: the non-blocking flag belongs to the
 * description that a cluster's processes share on fd 1, and libuv clears it on fds 0–2 of every
 * child it spawns, so each fork of a worker made fd 1 blocking under the primary.
 */
import { closeSync, constants, fstatSync, openSync } from 'node:fs'
import { Socket } from 'node:net'
import pino, { type DestinationStream } from 'pino'

/** How long an exiting process waits for stdout's reader to take the last lines before it drops them. */
export const LOG_CLOSE_DEADLINE_MS = 1000

/** What stdout's log holds for a reader that does not keep up; lines beyond it are dropped and counted. */
export const LOG_BUFFER_MAX_BYTES = 8 * 1024 * 1024

/**
 * The most one write to stdout carries: POSIX's PIPE_BUF on Linux. A pipe takes a write that size or
 * smaller whole or not at all, and whole lines are packed into writes up to this size, so the lines
 * of a cluster's processes, which share the pipe, never cut into each other. A single longer line
 * is written alone and may be split; sockets make no such promise.
 */
export const STDOUT_MAX_WRITE = 4096

/** The process's log destination on stdout. */
export interface StdoutLog extends DestinationStream {
  /** Lines dropped: the buffer was full, or the log had gone quiet after a write error. */
  readonly dropped: number
  /** Why a pipe on stdout is written through fd 1 as it is (see {@link openStdoutLog}); unset otherwise. */
  readonly fallback: string | undefined
  /** Writes out what is held, at most `deadlineMs`, then drops the rest; later lines go nowhere. */
  close(deadlineMs: number): Promise<void>
}

/**
 * The stdout log for this process's fd 1. A pipe is opened again through /proc/self/fd/1 for a
 * description of its own. If that fails, fd 1 is written as it is (a reader that stops reading can
 * then block a write and hold the exit): quietly when a named pipe has no reader any more (ENXIO:
 * the log goes quiet at its first write anyway), otherwise with `fallback` saying why (a pipe owned
 * by another user, no /proc).
 */
export function openStdoutLog(): StdoutLog {
  let fd: number
  try {
    if (!fstatSync(1).isFIFO()) return new SonicLog(undefined)
    fd = openSync('/proc/self/fd/1', constants.O_WRONLY | constants.O_NONBLOCK)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    return new SonicLog(code === 'ENXIO' ? undefined : (code ?? String(err)))
  }
  try {
    return new PipeLog(fd)
  } catch (err) {
    closeSync(fd)
    return new SonicLog(`the pipe could not be written as a stream: ${String(err)}`)
  }
}

/**
 * A pipe written through a libuv stream: a full pipe is waited on (epoll), never retried on a timer
 * nor blocked on in a thread. One write in flight at a time, of whole lines up to
 * {@link STDOUT_MAX_WRITE} bytes; the lines waiting behind it are held up to
 * {@link LOG_BUFFER_MAX_BYTES}.
 */
class PipeLog implements StdoutLog {
  readonly fallback = undefined
  readonly #socket: Socket
  /** Lines not handed to the pipe yet, packed into writes of at most STDOUT_MAX_WRITE bytes. */
  readonly #writes: PendingWrite[] = []
  /** Bytes held: waiting, and the write in flight. */
  #held = 0
  /** The write in flight, if any. */
  #inFlight: PendingWrite | undefined
  #failed = false
  #open = true
  /** Closed and done with: a late write callback does nothing. */
  #settled = false
  #dropped = 0
  /** Called once nothing is held any more, or the pipe failed: what `close` waits for. */
  #onSettled: (() => void) | undefined
  #closed: Promise<void> | undefined

  constructor(fd: number) {
    this.#socket = new Socket({ fd, readable: false, writable: true })
    // The handle never holds the process open by itself (a write in flight still does): every exit
    // goes through `close`, which destroys it.
    this.#socket.unref()
    this.#socket.on('error', () => this.#fail())
  }

  get dropped(): number {
    return this.#dropped
  }

  write(line: string): void {
    if (!this.#open) return
    const bytes = Buffer.byteLength(line)
    if (this.#failed || this.#held + bytes > LOG_BUFFER_MAX_BYTES) {
      this.#dropped++
      return
    }
    this.#held += bytes
    const last = this.#writes.at(-1)
    if (last !== undefined && last.bytes + bytes <= STDOUT_MAX_WRITE) {
      last.text += line
      last.bytes += bytes
      last.lines++
    } else {
      this.#writes.push({ text: line, bytes, lines: 1 })
    }
    if (this.#inFlight === undefined) this.#writeNext()
  }

  #writeNext(): void {
    const next = this.#failed ? undefined : this.#writes.shift()
    this.#inFlight = next
    if (next === undefined) {
      this.#onSettled?.()
      return
    }
    this.#socket.write(next.text, (err) => {
      // After a deadline or a failure this write is already accounted for.
      if (this.#settled || this.#failed) return
      this.#held -= next.bytes
      if (err) this.#fail()
      else this.#writeNext()
    })
  }

  /** The reader has gone (EPIPE) or the pipe failed otherwise: every line held and later is dropped, counted. */
  #fail(): void {
    if (this.#failed) return
    this.#failed = true
    for (const lost of this.#inFlight === undefined ? this.#writes : [this.#inFlight, ...this.#writes]) this.#dropped += lost.lines
    this.#writes.length = 0
    this.#inFlight = undefined
    this.#held = 0
    this.#socket.destroy()
    this.#onSettled?.()
  }

  close(deadlineMs: number): Promise<void> {
    this.#open = false
    this.#closed ??= new Promise((resolve) => {
      const settle = () => {
        clearTimeout(timer)
        this.#settled = true
        this.#onSettled = undefined
        // A write still in flight is abandoned: libuv holds it, no thread does.
        this.#socket.destroy()
        resolve()
      }
      const timer = setTimeout(settle, deadlineMs)
      if (this.#inFlight === undefined || this.#failed) settle()
      else this.#onSettled = settle
    })
    return this.#closed
  }
}

/** Whole lines waiting to be written to a pipe as one write. */
interface PendingWrite {
  text: string
  bytes: number
  lines: number
}

/**
 * Pino's asynchronous sonic-boom on fd 1 (a line costs the event loop a buffer append; the write
 * happens in the thread pool), behind a door that `close` shuts. pino writes what is still buffered
 * at exit with sonic-boom 4's `flushSync`, which retries forever once the reader has gone (EPIPE);
 * closed first, the stream leaves it nothing to write.
 */
class SonicLog implements StdoutLog {
  readonly fallback: string | undefined
  readonly #sink = pino.destination({
    dest: 1,
    sync: false,
    maxLength: LOG_BUFFER_MAX_BYTES,
    maxWrite: STDOUT_MAX_WRITE,
    // sonic-boom retries a write that met EAGAIN every 100 ms, with no end: past the close deadline,
    // its timer would keep a process that returned (a failed boot) alive until the reader reads. It
    // gives up then instead, with an error, which makes the log quiet (below).
    retryEAGAIN: () => !this.#settled,
  })
  #open = true
  /** True once `close` has finished, flushed or not: nothing is retried after. */
  #settled = false
  #failed = false
  #closed: Promise<void> | undefined
  #dropped = 0

  constructor(fallback: string | undefined) {
    this.fallback = fallback
    this.#sink.on('drop', () => {
      this.#dropped++
    })
    // pino's own listener makes the sink's methods no-ops after EPIPE and re-emits any other error,
    // which would then end the process: a log that cannot be written goes quiet instead, counted
    // (what sonic-boom held at that moment is lost uncounted). A sink ended by anyone else (pino's
    // beforeExit hook) would throw on the next write: quiet too.
    this.#sink.on('error', () => {
      this.#failed = true
    })
    this.#sink.on('close', () => {
      this.#failed = true
    })
  }

  get dropped(): number {
    return this.#dropped
  }

  write(line: string): void {
    if (!this.#open) return
    if (this.#failed) this.#dropped++
    else this.#sink.write(line)
  }

  close(deadlineMs: number): Promise<void> {
    this.#open = false
    this.#closed ??= new Promise((resolve) => {
      const sink = this.#sink
      const settle = () => {
        this.#settled = true
        clearTimeout(timer)
        sink.off('close', settle)
        sink.off('error', settle)
        // Destroyed, the stream holds nothing for pino's exit hook (after EPIPE pino made both
        // no-ops; after 'close' it is destroyed already, which `destroy` allows).
        sink.destroy()
        resolve()
      }
      const timer = setTimeout(settle, deadlineMs)
      if (this.#failed) return settle()
      sink.once('close', settle)
      sink.once('error', settle)
      sink.end()
    })
    return this.#closed
  }
}
