/**
 * Holds the start of a transformed request body until the transforms have either accepted all of
 * it or produced `holdBytes` of output. Only then is the upstream contacted: a body that a transform
 * refuses within that window (the common case for single records) never reaches the upstream at all,
 * not even as an aborted request. Larger bodies then stream on with back-pressure as usual.
 */
import { Transform, type TransformCallback } from 'node:stream'

export class HoldBack extends Transform {
  readonly #holdBytes: number
  #held = 0
  #onReady: (() => void) | undefined

  constructor(holdBytes: number, onReady: () => void) {
    // The readable buffer is what is held: let it take the whole window before back-pressure.
    super({ readableHighWaterMark: holdBytes })
    this.#holdBytes = holdBytes
    this.#onReady = onReady
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.#held += chunk.length
    callback(null, chunk)
    if (this.#held >= this.#holdBytes) this.#ready()
  }

  override _flush(callback: TransformCallback): void {
    callback()
    this.#ready()
  }

  #ready(): void {
    const onReady = this.#onReady
    this.#onReady = undefined
    onReady?.()
  }
}
