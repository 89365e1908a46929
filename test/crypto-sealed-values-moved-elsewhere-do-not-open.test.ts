import { Readable, Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import t from 'tap'
import { createOpenStream, createSealStream, FieldOpener, FieldSealer, generateKeySet, parseKeySet } from '../src/crypto/index.js'
import { streamHeaderByHand } from './helpers/sealing.js'

const g = generateKeySet()
const pub = parseKeySet(g.publicJwks, { publicOnly: true })
const priv = parseKeySet(g.privateJwks, { requirePrivate: true })
const opener = new FieldOpener(priv)

t.test('a value moved to another field, record or route does not open', async (t) => {
  const sealer = new FieldSealer(pub, { route: 'accreditations' })
  const birth = sealer.seal(Buffer.from('"1985-04-12"'), { ptr: '/records/0/birthDate', rid: 'A-1' })
  t.equal(opener.open(birth, { route: 'accreditations', ptr: '/records/0/birthDate', rid: 'A-1' }).toString(), '"1985-04-12"')
  const moves = [
    { name: 'to another field of the same record', at: { route: 'accreditations', ptr: '/records/0/nationalId', rid: 'A-1' } },
    { name: 'to the same field of another record (index)', at: { route: 'accreditations', ptr: '/records/1/birthDate', rid: 'A-1' } },
    { name: 'to the same field of another record (id)', at: { route: 'accreditations', ptr: '/records/0/birthDate', rid: 'A-2' } },
    { name: 'to a place without a record id', at: { route: 'accreditations', ptr: '/records/0/birthDate' } },
    { name: 'to another route', at: { route: 'renewals', ptr: '/records/0/birthDate', rid: 'A-1' } },
    { name: 'to a prefix of its pointer', at: { route: 'accreditations', ptr: '/records/0', rid: 'A-1' } },
  ]
  for (const m of moves) {
    t.throws(() => opener.open(birth, m.at), { code: 'open_failed', status: 400 }, m.name)
  }
  const noRid = sealer.seal(Buffer.from('1'), { ptr: '/n' })
  t.throws(() => opener.open(noRid, { route: 'accreditations', ptr: '/n', rid: 'A-1' }), { code: 'open_failed' }, 'a record id is expected but was not bound')
})

t.test('a stream key cannot be opened as a field, nor a field as a stream header', async (t) => {
  const chunks: Buffer[] = []
  await pipeline(
    Readable.from([Buffer.from('%PDF-1.7 ...')]),
    createSealStream(pub, { contentType: 'application/pdf', route: 'accreditations' }),
    new Writable({ write: (c, _e, cb) => { chunks.push(c); cb() } }),
  )
  const sealed = Buffer.concat(chunks)
  const jwe = sealed.toString('latin1', 12, 12 + sealed.readUInt16BE(10))
  // Opening it as a field would release the stream key as "plaintext": the profiles forbid it.
  t.throws(() => opener.open(jwe, { route: 'accreditations', ptr: '/a' }), { code: 'open_failed', message: /ecl\.fmt.*not allowed/ })

  const field = new FieldSealer(pub, { route: 'accreditations' }).seal(Buffer.from('{"k":"x","cty":"text/plain"}'), { ptr: '/a' })
  const forged = Buffer.concat([streamHeaderByHand(field, 65536), Buffer.alloc(17)])
  await t.rejects(
    pipeline(Readable.from([forged]), createOpenStream(priv), new Writable({ write: (_c, _e, cb) => cb() })),
    { code: 'open_failed', message: /ecl\.route|ecl\.ptr|ecl\.fmt/ },
  )
})

t.test('a sealed stream bound to a route opens only there', async (t) => {
  const chunks: Buffer[] = []
  await pipeline(
    Readable.from([Buffer.from('a,b\n1,2\n')]),
    createSealStream(pub, { contentType: 'text/csv', route: 'exports' }),
    new Writable({ write: (c, _e, cb) => { chunks.push(c); cb() } }),
  )
  const sealed = Buffer.concat(chunks)
  const sink = () => new Writable({ write: (_c, _e, cb) => cb() })
  await t.rejects(pipeline(Readable.from([sealed]), createOpenStream(priv, { route: 'imports' }), sink()), { code: 'open_failed' }, 'other route')
  await t.resolves(pipeline(Readable.from([sealed]), createOpenStream(priv, { route: 'exports' }), sink()), 'its route')
  await t.resolves(pipeline(Readable.from([sealed]), createOpenStream(priv), sink()), 'no route expected (offline opening)')
})
