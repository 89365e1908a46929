import { createHash } from 'node:crypto'
import tls from 'node:tls'
import t from 'tap'
import { Harness } from '../helpers/harness.js'

// A chunked body's chunk sizes are the client's choice. Sent one byte per chunk, each byte used to
// cross as a chunk of its own: a write, a TLS record and a chunk header upstream, and a step of the
// upstream's parser. The gateway now gathers small chunks, and the upstream receives the same bytes
// in a few pieces.

const BYTES = 256 * 1024

/** Sends a PUT whose body is `body` in one-byte chunks, in writes of 64 KiB of chunked encoding; resolves with the response. */
function putOneBytePerChunk(h: Harness, path: string, body: Buffer): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect(h.sponsorTls())
    let out = ''
    socket.setEncoding('utf8')
    socket.on('data', (d: string) => {
      out += d
      if (/\r\n\r\n[\s\S]*\}$/.test(out)) socket.end()
    })
    socket.on('close', () => resolve(out))
    socket.on('error', reject)
    socket.once('secureConnect', async () => {
      socket.write(`PUT ${path} HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/octet-stream\r\ntransfer-encoding: chunked\r\n\r\n`)
      const per = 64 * 1024 / 6
      for (let i = 0; i < body.length; i += per) {
        const part = body.subarray(i, i + per)
        let wire = ''
        for (const b of part) wire += `1\r\n${String.fromCharCode(b)}\r\n`
        if (!socket.write(Buffer.from(wire, 'latin1'))) await new Promise((r) => socket.once('drain', r))
      }
      socket.write('0\r\n\r\n')
    })
  })
}

t.test('a body sent one byte per chunk reaches the upstream intact, in a few chunks', async (t) => {
  const received: Array<{ chunks: number; bytes: number; sha256: string }> = []
  const h = await Harness.start({
    handler: (req, res) => {
      const hash = createHash('sha256')
      let chunks = 0
      let bytes = 0
      req.on('data', (c: Buffer) => {
        chunks++
        bytes += c.length
        hash.update(c)
      })
      req.on('end', () => {
        received.push({ chunks, bytes, sha256: hash.digest('hex') })
        res.writeHead(200, { 'content-type': 'application/json' }).end('{"stored":true}')
      })
    },
  })
  t.teardown(() => h.close())
  const body = Buffer.alloc(BYTES)
  for (let i = 0; i < BYTES; i++) body[i] = 0x41 + ((i * 7) % 26)

  const answer = await putOneBytePerChunk(h, '/v1/records/1', body)
  t.match(answer, /^HTTP\/1\.1 200 /, 'answered 200')
  t.equal(received.length, 1)
  const r = received[0]!
  t.equal(r.bytes, BYTES, 'every byte arrived')
  t.equal(r.sha256, createHash('sha256').update(body).digest('hex'), 'in order')
  // The chunk count depends on how the sockets split the stream; one per byte is what it was.
  t.ok(r.chunks <= BYTES / 1000, `${BYTES} one-byte chunks arrived as ${r.chunks}`)
})
