/**
 * Found by review: a client that goes away aborts the upstream call, and with it the response's
 * stages, but only while the upstream body is still coming. Once undici has handed over the whole
 * body, the abort does nothing: a stage still working on it (an opener with its stream key, a sealer
 * with its plaintext) worked on for no one until it drained or was collected. Now the response's
 * stages are destroyed when the client leaves. Shown with a stage registered for the test that takes
 * its input at once and answers only at its end, after a delay, as an opener holds its last record.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import { Transform, type TransformCallback } from 'node:stream'
import t from 'tap'
import { registerTransform } from '../../src/transform/registry.js'
import { Harness } from '../helpers/harness.js'

const HOLDS_MS = 800
const events: string[] = []

/** Takes every chunk at once; pushes them all HOLDS_MS after its input ended. */
class AnswersLate extends Transform {
  readonly #chunks: Buffer[] = []
  #timer: NodeJS.Timeout | undefined
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.#chunks.push(chunk)
    cb()
  }
  override _flush(cb: TransformCallback): void {
    events.push('input ended')
    this.#timer = setTimeout(() => {
      events.push('output')
      cb(null, Buffer.concat(this.#chunks))
    }, HOLDS_MS)
  }
  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    clearTimeout(this.#timer)
    events.push('destroyed')
    cb(err)
  }
}
registerTransform('test-answers-late', () => ({ type: 'test-answers-late', begin: () => new AnswersLate() }))

t.test('the stages of a response whose client left are destroyed, though its upstream body had ended', async (t) => {
  const h = await Harness.start({
    routes: [
      {
        name: 'late',
        methods: ['GET'],
        path: '/v1/late',
        allow: ['uri:spiffe://sponsor.test/accreditation-app'],
        upstream: 'backend',
        transforms: { response: [{ type: 'test-answers-late' }] },
      },
    ],
    handler: (_req: IncomingMessage, res: ServerResponse) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream' })
      res.end(Buffer.alloc(20_000, 1))
    },
  })
  t.teardown(() => h.close())
  // The client sends its request and leaves once the stage holds the whole upstream body.
  await h.rawSession((socket) => {
    socket.write('GET /v1/late HTTP/1.1\r\nhost: localhost\r\n\r\n')
    const leave = setInterval(() => {
      if (!events.includes('input ended')) return
      clearInterval(leave)
      socket.destroy()
    }, 10)
  })
  await new Promise((r) => setTimeout(r, HOLDS_MS + 400))
  t.strictSame(events, ['input ended', 'destroyed'], 'destroyed while it held the body, before it answered')
})
