/**
 * Holds the start of a transformed body until the transforms have either accepted all of it or
 * produced `holdBytes` of output, and only then lets it go on.
 *
 * On a request, the upstream is contacted only then: a body that a transform refuses within that
 * window (the common case for single records) never reaches the upstream at all, not even as an
 * aborted request. On a response, the status line waits the same way: a refusal within the window is
 * a clean 502, never an abort after a success was announced.
 *
 * A body that ended within the window is handed over whole (`onReady(body)`), so it can go on with
 * a `Content-Length` in one write instead of as a chunked stream. A larger one streams on, with
 * back-pressure as usual, from the held chunks on (`onReady(undefined)`).
 */
import { Transform, type TransformCallback } from 'node:stream'

export class HoldBack extends Transform {
  readonly #holdBytes: number
  /** What is held; `undefined` once released (streaming on). */
  #chunks: Buffer[] | undefined = []
  #held = 0
  #onReady: ((whole: Buffer | undefined) => void) | undefined

  constructor(holdBytes: number, onReady: (whole: Buffer | undefined) => void) {
    // The readable buffer takes the released window without back-pressure.
    super({ readableHighWaterMark: holdBytes })
    this.#holdBytes = holdBytes
    this.#onReady = onReady
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    const chunks = this.#chunks
    if (chunks === undefined) {
      callback(null, chunk)
      return
    }
    chunks.push(chunk)
    this.#held += chunk.length
    callback()
    if (this.#held >= this.#holdBytes) {
      this.#chunks = undefined
      for (const c of chunks) this.push(c)
      this.#ready(undefined)
    }
  }

  override _flush(callback: TransformCallback): void {
    const chunks = this.#chunks
    this.#chunks = undefined
    callback()
    if (chunks === undefined) return
    const whole = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, this.#held)
    // Nothing is left to read: let the stream end, so whatever watches it sees it complete.
    this.resume()
    this.#ready(whole)
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    this.#chunks = undefined
    this.#onReady = undefined
    callback(err)
  }

  #ready(whole: Buffer | undefined): void {
    const onReady = this.#onReady
    this.#onReady = undefined
    onReady?.(whole)
  }
}
