/**
 * Counts the bytes of a request body and stops it, with `body_too_large`, the moment it exceeds the
 * route's limit: the upstream sees an aborted request, never a truncated one passed as complete.
 *
 * It also gathers small chunks. A chunked body's chunk sizes are the client's choice, and Node
 * hands on each one as it was sent: a body sent one byte per chunk would cost every later stage,
 * undici's writer, a TLS record and the upstream's parser one step per byte. Chunks under
 * `SMALL_CHUNK_BYTES` are copied into a staging buffer, passed on when it is full, when a larger
 * chunk or the end comes, and once the socket reads at hand have been parsed, so a read's worth of
 * small chunks leaves as one and nothing waits for more input.
 */
import { Transform, type TransformCallback } from 'node:stream'
import { EcluseError } from '../errors.js'

/** Chunks smaller than this are gathered. */
export const SMALL_CHUNK_BYTES = 4096
/** What is gathered before it is passed on: one staging buffer per body, made on first need. */
const STAGING_BYTES = 16 * 1024

export class BodyLimit extends Transform {
  bytes = 0
  readonly #max: number
  #staging: Buffer | null = null
  /** A lone small chunk, kept as it is until a second one comes: a small body costs no copy. */
  #lone: Buffer | null = null
  #staged = 0
  #flushQueued = false

  constructor(maxBytes: number) {
    super()
    this.#max = maxBytes
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.bytes += chunk.length
    if (this.bytes > this.#max) {
      callback(new EcluseError('body_too_large', `request body exceeds ${this.#max} bytes`))
      return
    }
    if (chunk.length >= SMALL_CHUNK_BYTES) {
      if (this.#staged > 0) this.push(this.#takeStaged())
      callback(null, chunk)
      return
    }
    if (this.#staged + chunk.length > STAGING_BYTES) this.push(this.#takeStaged())
    this.#stage(chunk)
    // Pushed here when the reader is behind: Transform then withholds this write's callback until
    // the reader catches up, which is the back-pressure; a later push from `flushAfterRead` would not be.
    if (this.readableLength >= this.readableHighWaterMark) this.push(this.#takeStaged())
    else if (!this.#flushQueued) {
      this.#flushQueued = true
      setImmediate(flushAfterRead, this)
    }
    callback()
  }

  override _flush(callback: TransformCallback): void {
    callback(null, this.#staged > 0 ? this.#takeStaged() : undefined)
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    this.#staging = null
    this.#lone = null
    this.#staged = 0
    callback(err)
  }

  /** @internal Passes on what was gathered from the socket reads just handled (see `flushAfterRead`). */
  flushStaged(): void {
    this.#flushQueued = false
    if (this.#staged > 0 && !this.destroyed) this.push(this.#takeStaged())
  }

  #stage(chunk: Buffer): void {
    if (this.#staged === 0) {
      this.#lone = chunk
      this.#staged = chunk.length
      return
    }
    this.#staging ??= Buffer.allocUnsafe(STAGING_BYTES)
    const staging = this.#staging
    if (this.#lone !== null) {
      this.#lone.copy(staging, 0)
      this.#lone = null
    }
    this.#staged += chunk.copy(staging, this.#staged)
  }

  /** The staged bytes as a Buffer of their own (the staging buffer itself is handed over when mostly full). */
  #takeStaged(): Buffer {
    const n = this.#staged
    this.#staged = 0
    const lone = this.#lone
    if (lone !== null) {
      this.#lone = null
      return lone
    }
    const staging = this.#staging!
    if (n >= STAGING_BYTES / 2) {
      this.#staging = null
      return staging.subarray(0, n)
    }
    return Buffer.from(staging.subarray(0, n))
  }
}

/**
 * Runs once the I/O callbacks of this loop iteration are done. Not `process.nextTick`: the HTTP
 * parser reading the socket from C++ calls into JavaScript once per body chunk, and the tick queue
 * runs after each of those calls. A named function with its stream as argument: no closure per body.
 */
function flushAfterRead(limit: BodyLimit): void {
  limit.flushStaged()
}
