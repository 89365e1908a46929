/**
 * Counts the bytes of a request body and stops it, with `body_too_large`, the moment it exceeds the
 * route's limit: the upstream sees an aborted request, never a truncated one passed as complete.
 */
import { Transform, type TransformCallback } from 'node:stream'
import { EcluseError } from '../errors.js'

export class BodyLimit extends Transform {
  bytes = 0
  readonly #max: number

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
    callback(null, chunk)
  }
}
