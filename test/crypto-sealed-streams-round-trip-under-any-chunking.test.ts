import { createCipheriv, randomBytes } from 'node:crypto'
import { Readable, Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import fc from 'fast-check'
import t from 'tap'
import { createOpenStream, createSealStream, generateKeySet, type KeySet, parseKeySet, type SealedStreamInfo } from '../src/crypto/index.js'
import { TEST_SEAM } from '../src/crypto/jwe.js'
import { deriveRecordKeys, recordNonce } from '../src/crypto/stream.js'
import { splitAt } from './helpers/chunks.js'

const x = generateKeySet()
const pub = parseKeySet(x.publicJwks)
const priv = parseKeySet(x.privateJwks)

async function run(chunks: Buffer[], transform: NodeJS.ReadWriteStream): Promise<Buffer> {
  const out: Buffer[] = []
  await pipeline(Readable.from(chunks), transform, new Writable({ write: (c, _e, cb) => { out.push(c); cb() } }))
  return Buffer.concat(out)
}

async function seal(keys: KeySet, data: Buffer, cuts: number[], rs: number, contentType = 'application/octet-stream'): Promise<Buffer> {
  return run(splitAt(data, cuts), createSealStream(keys, { contentType, recordSize: rs }))
}

t.test('any body, record size and chunking round trips, with the size the format predicts', async (t) => {
  await fc.assert(
    fc.asyncProperty(
      // size 'max': fast-check's default size keeps arrays to about ten elements, under one record.
      fc.uint8Array({ minLength: 0, maxLength: 3000, size: 'max' }),
      fc.integer({ min: 16, max: 300 }),
      fc.array(fc.nat(), { maxLength: 12, size: 'max' }),
      fc.array(fc.nat(), { maxLength: 30, size: 'max' }),
      async (bytes, rs, plainCuts, wireCuts) => {
        const data = Buffer.from(bytes)
        const sealed = await seal(pub, data, plainCuts, rs)
        const jweLen = sealed.readUInt16BE(10)
        const records = Math.floor(data.length / rs) + 1
        if (sealed.length !== 12 + jweLen + data.length + 17 * records) return false
        const opened = await run(splitAt(sealed, wireCuts), createOpenStream(priv))
        return opened.equals(data)
      },
    ),
    { numRuns: 120 },
  )
  t.pass('120 random bodies, record sizes and chunkings')
})

t.test('the content type travels inside the seal and is announced before any byte', async (t) => {
  const type = 'text/csv; charset=utf-8; header="present"'
  const sealed = await seal(pub, Buffer.from('a,b\n'), [], 64, type)
  t.notOk(sealed.includes(Buffer.from('text/csv')), 'not in clear on the wire')
  const open = createOpenStream(priv)
  const events: string[] = []
  let info: SealedStreamInfo | undefined
  open.on('header', (i) => { info = i; events.push('header') })
  open.on('data', () => events.push('data'))
  await pipeline(Readable.from([sealed]), open, new Writable({ write: (_c, _e, cb) => cb() }))
  t.same(info, { kid: pub.current.kid, contentType: type, recordSize: 64, route: undefined })
  t.same(open.info, info)
  t.equal(events[0], 'header')
  for (const bad of ['text', 'text/csv\r\nx-injected: 1', 'a/b; c', `a/${'b'.repeat(300)}`]) {
    t.throws(() => createSealStream(pub, { contentType: bad }), { code: 'seal_failed' }, `content type ${JSON.stringify(bad)}`)
  }
  for (const rs of [0, 15, 16 * 1024 * 1024 + 1, 1.5]) {
    t.throws(() => createSealStream(pub, { contentType: 'a/b', recordSize: rs }), { code: 'seal_failed' }, `record size ${rs}`)
  }
})

t.test('every algorithm seals a stream key that opens', async (t) => {
  for (const g of [generateKeySet({ crv: 'P-256' }), generateKeySet({ alg: 'RSA-OAEP-256', modulusLength: 2048 })]) {
    const data = randomBytes(5000)
    const sealed = await seal(parseKeySet(g.publicJwks), data, [1000], 1024)
    t.ok((await run([sealed], createOpenStream(parseKeySet(g.privateJwks)))).equals(data))
  }
})

t.test('a last record of full size, as another sealer may write it, is accepted', async (t) => {
  // Our sealer ends with a short (possibly empty) last record; the format also allows a full one.
  const streamKey = randomBytes(32)
  const rs = 32
  const probe = await run([], createSealStream(pub, { contentType: 'a/b', recordSize: rs, [TEST_SEAM]: { streamKey: () => Buffer.from(streamKey) } }))
  const header = probe.subarray(0, 12 + probe.readUInt16BE(10))
  const { key, nonceBase } = deriveRecordKeys(streamKey, header)
  const data = randomBytes(2 * rs)
  const parts: Buffer[] = [header]
  for (let i = 0; i < 2; i++) {
    const c = createCipheriv('aes-256-gcm', key, recordNonce(nonceBase, i))
    parts.push(c.update(Buffer.concat([data.subarray(i * rs, (i + 1) * rs), Buffer.of(i === 1 ? 2 : 1)])), c.final(), c.getAuthTag())
  }
  const sealed = Buffer.concat(parts)
  t.ok((await run(splitAt(sealed, [5, 100, 130]), createOpenStream(priv))).equals(data))
})
