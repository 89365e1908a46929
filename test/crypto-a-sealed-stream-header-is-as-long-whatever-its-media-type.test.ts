/**
 * Regression (found by review): a sealed stream's header showed the length of its encrypted media
 * type, since AES-GCM keeps lengths and the key JWE's ciphertext is plain base64url on the wire, so
 * whoever stored sealed photos could tell a PNG (`image/png`) from a JPEG (`image/jpeg`) or a PDF.
 * The key JWE's plaintext is now padded with spaces to 570 bytes: every header for one recipient and
 * route has one length, and the plaintext any JOSE library recovers is that JSON object, padded.
 */
import { createCipheriv, randomBytes } from 'node:crypto'
import { Readable, Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { CompactEncrypt, compactDecrypt, importJWK } from 'jose'
import t from 'tap'
import { createOpenStream, createSealStream, generateKeySet, parseKeySet, type SealedStreamInfo } from '../src/crypto/index.js'
import { deriveRecordKeys, recordNonce } from '../src/crypto/stream.js'
import { streamHeaderByHand } from './helpers/sealing.js'

const x = generateKeySet()
const pub = parseKeySet(x.publicJwks)
const priv = parseKeySet(x.privateJwks)

async function run(input: Buffer, transform: NodeJS.ReadWriteStream): Promise<Buffer> {
  const out: Buffer[] = []
  await pipeline(Readable.from([input]), transform, new Writable({ write: (c, _e, cb) => { out.push(c); cb() } }))
  return Buffer.concat(out)
}

// The shortest media type there is, common ones, and the longest one whose JSON escapes every
// character but the ten of `a/b; p="` and the closing quote (a quoted `"` is `\"` in JSON).
const LONGEST = `a/b; p="${'\\"'.repeat(123)}"`
const TYPES = ['a/b', 'image/png', 'image/jpeg', 'application/pdf', 'text/csv; charset=utf-8', LONGEST]

t.test('the header has one length whatever the media type, and each body opens to its own type', async (t) => {
  t.equal(LONGEST.length, 255, 'the longest media type a stream may carry')
  const body = Buffer.from('%PDF-1.7 or a photo, the same bytes for every type\n')
  const headerLengths = new Set<number>()
  for (const contentType of TYPES) {
    const sealed = await run(body, createSealStream(pub, { contentType, route: 'photos-in/A-1' }))
    const jwe = sealed.toString('latin1', 12, 12 + sealed.readUInt16BE(10))
    headerLengths.add(12 + jwe.length)

    const { plaintext } = await compactDecrypt(jwe, await importJWK(x.privateJwks.keys[0]!, 'ECDH-ES+A256KW'), {
      crit: { 'ecl.fmt': true, 'ecl.route': true },
    })
    t.equal(plaintext.length, 570, `${contentType.slice(0, 24)}: the key payload is padded to 570 bytes`)
    const text = Buffer.from(plaintext).toString('utf8')
    t.match(text, /^\{"k":"[A-Za-z0-9_-]{43}","cty":".*"\} *$/, 'the JSON object, then spaces only')
    t.equal((JSON.parse(text) as { cty: string }).cty, contentType)

    const open = createOpenStream(priv, { route: 'photos-in/A-1' })
    let info: SealedStreamInfo | undefined
    open.on('header', (i: SealedStreamInfo) => (info = i))
    t.same(await run(sealed, open), body)
    t.equal(info?.contentType, contentType, 'the opener gives back the media type, not its padding')
  }
  t.equal(headerLengths.size, 1, `one header length for ${TYPES.length} media types: ${[...headerLengths].join(', ')}`)
})

t.test('a stream sealed before the padding, with a key payload of its JSON alone, still opens', async (t) => {
  // Built by hand as the sealer wrote it until this change: the same header, an unpadded payload.
  const k = randomBytes(32)
  const jwk = x.publicJwks.keys[0]!
  const jwe = await new CompactEncrypt(Buffer.from(JSON.stringify({ k: k.toString('base64url'), cty: 'image/png' })))
    .setProtectedHeader({ alg: 'ECDH-ES+A256KW', enc: 'A256GCM', kid: String(jwk.kid), crit: ['ecl.fmt'], 'ecl.fmt': 'ecls/1' })
    .encrypt(await importJWK(jwk, 'ECDH-ES+A256KW'), { crit: { 'ecl.fmt': true } })
  const header = streamHeaderByHand(jwe, 4096)
  const { key, nonceBase } = deriveRecordKeys(k, header)
  const body = Buffer.from('an old photo')
  const cipher = createCipheriv('aes-256-gcm', key, recordNonce(nonceBase, 0))
  const record = Buffer.concat([cipher.update(Buffer.concat([body, Buffer.of(0x02)])), cipher.final(), cipher.getAuthTag()])
  const open = createOpenStream(priv)
  let info: SealedStreamInfo | undefined
  open.on('header', (i: SealedStreamInfo) => (info = i))
  t.same(await run(Buffer.concat([header, record]), open), body)
  t.equal(info?.contentType, 'image/png')
})
