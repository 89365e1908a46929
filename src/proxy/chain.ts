/**
 * Body chains of the exchange: `a.pipe(b).pipe(c)…` with `stream.pipeline()`'s failure semantics —
 * the first error or premature close of any stream destroys every stream with it and is reported
 * once — and nothing else.
 *
 * Why not `stream.pipeline`: on Node 20 every pipeline, even one that succeeds, aborts an internal
 * AbortController and destroys its streams with fresh errors when it finishes, so each request built
 * a DOMException and NodeErrors with captured stack traces: about 6 % of the gateway's CPU on a small
 * POST (docs/benchmarks.md). Success here costs one `finished()` listener set per stream.
 */
import { IncomingMessage } from 'node:http'
import { type Duplex, finished, type Readable } from 'node:stream'

export type ChainStreams = readonly [Readable, ...Duplex[]]
export type ChainErrorHandler = (err: Error, origin: Readable | undefined) => void

/**
 * Pipes `streams` in order, with back-pressure, and returns the last one (to be read, or piped on).
 * `onError` is called once, after every stream has been destroyed with the error, with the stream
 * that failed first (`origin`; undefined for a premature close): whose fault it was, the upstream's
 * body or a stage's.
 *
 * @example
 * const body = chain([req, new BodyLimit(max), ...stages], (err) => refuse(err))
 */
export function chain(streams: ChainStreams, onError: ChainErrorHandler): Readable {
  new Chain(streams, onError)
  return streams[streams.length - 1]!
}

class Chain {
  readonly #streams: ChainStreams
  readonly #onError: ChainErrorHandler
  #failed = false
  /** Bound once per chain: the only closure `finished()` gets. */
  readonly #onFinished = (err?: Error | null): void => {
    if (err) this.#fail(err)
  }

  constructor(streams: ChainStreams, onError: ChainErrorHandler) {
    this.#streams = streams
    this.#onError = onError
    for (let i = 0; i < streams.length; i++) {
      const s = streams[i]!
      finished(s, this.#onFinished)
      if (i > 0) streams[i - 1]!.pipe(s as Duplex)
    }
  }

  #fail(err: Error): void {
    if (this.#failed) return
    this.#failed = true
    // Before the others are destroyed with it: only the stream that failed holds the error yet.
    const origin = this.#streams.find((s) => s.errored === err)
    // As pipeline does: every stream goes, so a half-read body can never be taken as complete.
    for (const s of this.#streams) {
      if (s.destroyed) continue
      if (s instanceof IncomingMessage) {
        // Destroying a server request destroys its socket, and with it the refusal the exchange is
        // about to send (pipeline detaches the socket first, with internals). Detach and drain
        // instead: the refusal carries `connection: close` whenever a body was left unread.
        s.unpipe()
        s.resume()
        continue
      }
      s.destroy(err)
    }
    this.#onError(err, origin)
  }
}
