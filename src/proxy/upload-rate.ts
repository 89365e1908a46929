/**
 * A minimum upload rate for request bodies (`sponsor.limits.minBodyBytesPerSecond`, after
 * `bodyGraceMs`), as Apache's `RequestReadTimeout body=…,MinRate=…`: a body streams to its upstream
 * as it arrives, so it holds one of that upstream's connections from the headers on, and a client
 * sending a byte a second would hold it until `requestTimeoutMs` (300 s): 64 such clients held
 * every connection of one upstream (found by review). An idle timeout would not do: one byte within
 * each period resets it.
 *
 * An upload must have received `rate × (time − grace)` bytes, time counted while the gateway was
 * reading: a second in which the body waited on the gateway (its buffer full because the upstream,
 * or a transform, reads slowly) is not the client's, and is not counted. Checked by one timer for
 * every upload (running only while there is one), once a second.
 */

/** What the guard needs of one upload; the exchange provides it. */
export interface WatchedUpload {
  /** Body bytes received from the client so far. */
  bodyBytesReceived(): number
  /** Whether the gateway is not reading the body now (its buffer is full): time not the client's. */
  bodyHeldBack(): boolean
  /** Whether the whole body has arrived (or the exchange is over): nothing left to watch. */
  bodyDone(): boolean
  /** Called once, when the upload fell under the rate: the exchange refuses it. */
  tooSlow(bytesPerSecond: number): void
}

interface Watch {
  readonly upload: WatchedUpload
  /** Milliseconds of reading so far: the ticks at which the gateway was reading. */
  readingMs: number
}

/** How often uploads are checked; also the granularity of the reading time. */
export const UPLOAD_CHECK_MS = 1000

export class UploadRateGuard {
  readonly #bytesPerSecond: number
  readonly #graceMs: number
  readonly #checkMs: number
  readonly #watches = new Map<WatchedUpload, Watch>()
  #timer: NodeJS.Timeout | undefined

  /** `bytesPerSecond` 0 turns the guard off. */
  constructor(bytesPerSecond: number, graceMs: number, checkMs = UPLOAD_CHECK_MS) {
    this.#bytesPerSecond = bytesPerSecond
    this.#graceMs = graceMs
    this.#checkMs = checkMs
  }

  /** Start watching an upload whose body is about to be read. */
  watch(upload: WatchedUpload): void {
    if (this.#bytesPerSecond === 0) return
    this.#watches.set(upload, { upload, readingMs: 0 })
    this.#timer ??= setInterval(() => this.#check(), this.#checkMs).unref()
  }

  /** Stop watching (the exchange ended). */
  release(upload: WatchedUpload): void {
    if (this.#watches.delete(upload)) this.#stopWhenIdle()
  }

  /** Uploads watched now (tests). */
  get watching(): number {
    return this.#watches.size
  }

  #check(): void {
    for (const watch of this.#watches.values()) {
      const upload = watch.upload
      if (upload.bodyDone()) {
        this.#watches.delete(upload)
        continue
      }
      if (upload.bodyHeldBack()) continue
      watch.readingMs += this.#checkMs
      const owed = ((watch.readingMs - this.#graceMs) / 1000) * this.#bytesPerSecond
      if (owed > 0 && upload.bodyBytesReceived() < owed) {
        this.#watches.delete(upload)
        upload.tooSlow(this.#bytesPerSecond)
      }
    }
    this.#stopWhenIdle()
  }

  #stopWhenIdle(): void {
    if (this.#watches.size === 0 && this.#timer !== undefined) {
      clearInterval(this.#timer)
      this.#timer = undefined
    }
  }
}
