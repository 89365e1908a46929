/**
 * Metrics and direction-mapped failures for the whole-body transforms (`seal-body`, `open-body`,
 * `require-sealed-body`).
 * The sealed-stream transforms come from `src/crypto/stream.ts`, which knows nothing of the proxy;
 * this wraps one instance per message: its `_transform`/`_flush` callbacks (to map a failure to the
 * direction's code and count it) and `push` (to count plaintext on the opening side). The crypto
 * stream's work is synchronous, so the time measured around each call is its own.
 */
import type { Transform, TransformCallback } from 'node:stream'
import { EcluseError, foreignErrorDetail, isEcluseError } from '../errors.js'
import type { CryptoOpMetrics, CryptoRouteMetrics } from '../observability/metrics.js'
import { forResponse } from './json-fields.js'
import type { Direction } from './types.js'

export interface BodyMeterOptions {
  readonly direction: Direction
  /**
   * Which side of the stream is counted: the plaintext, the input when sealing and the output when
   * opening; the input, sealed, when checking.
   */
  readonly plaintext: 'input' | 'output'
  /** The code a failure without one of its own gets (`seal_failed` or `open_failed`). */
  readonly failure: 'seal_failed' | 'open_failed' | 'plaintext_refused'
  /** Every failure gets `failure`, its own code kept in the detail (a check's `open_failed` is `plaintext_refused`). */
  readonly recode?: boolean
  readonly opMetrics: CryptoOpMetrics | undefined
  readonly routeMetrics: CryptoRouteMetrics | undefined
}

type TransformFn = (chunk: Buffer, enc: BufferEncoding, cb: TransformCallback) => void
type FlushFn = (cb: TransformCallback) => void

/** Instruments `stream` in place for one message and returns it. */
export function meterBodyStream<T extends Transform>(stream: T, o: BodyMeterOptions): T {
  new BodyMeter(stream, o)
  return stream
}

type DestroyFn = (err: Error | null, cb: (error?: Error | null) => void) => void

/**
 * The bytes are counted as each chunk passes (`rate()` of them is the path's throughput while a long
 * body streams); the operation and its time when the message ends, and the time alone when it is
 * destroyed first (a client or upstream gone mid-body): no operation completed, its bytes counted.
 */
class BodyMeter {
  readonly #o: BodyMeterOptions
  seconds = 0
  #reported = false

  constructor(stream: Transform, o: BodyMeterOptions) {
    this.#o = o
    const transform = (stream._transform as TransformFn).bind(stream)
    const flush = (stream._flush as FlushFn).bind(stream)
    const destroy = (stream._destroy as DestroyFn).bind(stream)
    const countInput = o.plaintext === 'input'
    stream._transform = (chunk: Buffer, enc: BufferEncoding, cb: TransformCallback) => {
      const t0 = performance.now()
      transform(chunk, enc, (err, data) => {
        if (err != null) return cb(this.#fail(err))
        // Counted once taken in (sealed, or held for the record it begins), not on arrival.
        if (countInput) o.opMetrics?.progress(0, 0, chunk.length)
        cb(null, data)
      })
      this.seconds += (performance.now() - t0) / 1000
    }
    stream._destroy = (err: Error | null, cb: (error?: Error | null) => void) => {
      if (!this.#reported) {
        this.#reported = true
        if (this.seconds > 0) o.opMetrics?.duration(this.seconds)
      }
      destroy(err, cb)
    }
    stream._flush = (cb: TransformCallback) => {
      const t0 = performance.now()
      flush((err, data) => {
        this.seconds += (performance.now() - t0) / 1000
        if (err != null) {
          cb(this.#fail(err))
          return
        }
        this.#report(true, undefined)
        cb(null, data)
      })
    }
    if (!countInput) {
      const push = stream.push.bind(stream)
      stream.push = (chunk: unknown, encoding?: BufferEncoding) => {
        if (chunk instanceof Uint8Array) o.opMetrics?.progress(0, 0, chunk.length)
        return push(chunk, encoding)
      }
    }
  }

  #fail(err: Error): EcluseError {
    // Not ours: its name and code only, as its message may quote the bytes it failed on (and not as
    // a `cause`, whose message a logged error would carry along).
    const e = !isEcluseError(err)
      ? new EcluseError(this.#o.failure, foreignErrorDetail(err))
      : this.#o.recode === true && err.code !== this.#o.failure
        ? new EcluseError(this.#o.failure, `${err.code}: ${err.message}`)
        : err
    this.#report(false, e)
    return this.#o.direction === 'request' ? e : forResponse(e)
  }

  #report(ok: boolean, err: EcluseError | undefined): void {
    if (this.#reported) return
    this.#reported = true
    this.#o.opMetrics?.message(ok ? 1 : 0, ok ? 0 : 1, this.seconds)
    if (err !== undefined) this.#o.routeMetrics?.refused(err.code)
  }
}
