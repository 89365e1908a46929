import { subscribe, unsubscribe } from 'node:diagnostics_channel'
import { Readable, Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import t from 'tap'
import {
  ASYMMETRIC_CHANNEL,
  type AsymmetricOperation,
  FieldOpener,
  FieldSealer,
  createOpenStream,
  createSealStream,
  generateKeySet,
  parseKeySet,
} from '../src/crypto/index.js'

/** Count the asymmetric operations published on the instrumented seam while `fn` runs. */
async function count(fn: () => unknown): Promise<{ seal: number; open: number; ops: AsymmetricOperation[] }> {
  const ops: AsymmetricOperation[] = []
  const listener = (m: unknown) => ops.push(m as AsymmetricOperation)
  subscribe(ASYMMETRIC_CHANNEL, listener)
  try {
    await fn()
  } finally {
    unsubscribe(ASYMMETRIC_CHANNEL, listener)
  }
  return { seal: ops.filter((o) => o.side === 'seal').length, open: ops.filter((o) => o.side === 'open').length, ops }
}

const FIELDS = 200

function openAll(opener: FieldOpener, jwes: string[]): void {
  jwes.forEach((jwe, i) => {
    opener.open(jwe, { route: 'r', ptr: `/items/${i}` })
  })
}

for (const crv of ['X25519', 'P-256'] as const) {
  t.test(`${crv}: ${FIELDS} fields of one message cost one ECDH to seal and one to open`, async (t) => {
    const g = generateKeySet({ crv })
    const pub = parseKeySet(g.publicJwks)
    const opener = new FieldOpener(parseKeySet(g.privateJwks))
    const messages: string[][] = []
    const sealing = await count(() => {
      for (let m = 0; m < 2; m++) {
        const sealer = new FieldSealer(pub, { route: 'r' })
        const jwes: string[] = []
        for (let i = 0; i < FIELDS; i++) jwes.push(sealer.seal(Buffer.from(String(i)), { ptr: `/items/${i}` }))
        messages.push(jwes)
      }
    })
    t.same(sealing, { seal: 2, open: 0, ops: sealing.ops }, 'one agreement per message when sealing')
    t.ok(sealing.ops.every((o) => o.op === 'ecdh-es' && o.kid === pub.current.kid))
    const opening = await count(() => {
      for (const jwes of messages) openAll(opener, jwes)
    })
    t.equal(opening.open, 2, 'one agreement per message when opening (the KEK cache)')
    const again = await count(() => openAll(opener, messages[0]!))
    t.equal(again.open, 0, 'a cached KEK is reused')
    const noCache = new FieldOpener(parseKeySet(g.privateJwks), { kekCacheSize: 0 })
    const uncached = await count(() => openAll(noCache, messages[0]!.slice(0, 10)))
    t.equal(uncached.open, 10, 'without the cache every field would pay one (the cache is what saves it)')
  })
}

t.test('a bounded KEK cache evicts the oldest message and still opens everything', async (t) => {
  const g = generateKeySet()
  const pub = parseKeySet(g.publicJwks)
  const opener = new FieldOpener(parseKeySet(g.privateJwks), { kekCacheSize: 2 })
  const jwes = [0, 1, 2].map((m) => new FieldSealer(pub, { route: 'r' }).seal(Buffer.from(String(m)), { ptr: '/a' }))
  const first = await count(() => {
    for (const j of jwes) opener.open(j, { route: 'r', ptr: '/a' })
  })
  t.equal(first.open, 3)
  const second = await count(() => {
    t.equal(opener.open(jwes[2]!, { route: 'r', ptr: '/a' }).toString(), '2')
    t.equal(opener.open(jwes[0]!, { route: 'r', ptr: '/a' }).toString(), '0')
  })
  t.equal(second.open, 1, 'message 2 still cached, message 0 evicted')
})

t.test('RSA-OAEP-256 pays one RSA operation per field on each side (documented limit)', async (t) => {
  const g = generateKeySet({ alg: 'RSA-OAEP-256', modulusLength: 2048 })
  const sealer = new FieldSealer(parseKeySet(g.publicJwks), { route: 'r' })
  const opener = new FieldOpener(parseKeySet(g.privateJwks))
  const jwes: string[] = []
  const s = await count(() => { for (let i = 0; i < 5; i++) jwes.push(sealer.seal(Buffer.from('1'), { ptr: '/a' })) })
  const o = await count(() => {
    for (const j of jwes) opener.open(j, { route: 'r', ptr: '/a' })
  })
  t.same([s.seal, o.open], [5, 5])
  t.ok([...s.ops, ...o.ops].every((op) => op.op === 'rsa-oaep'))
})

t.test('a sealed stream costs one agreement to seal and one to open', async (t) => {
  const g = generateKeySet()
  const chunks: Buffer[] = []
  const data = Buffer.alloc(300_000, 7)
  const s = await count(() =>
    pipeline(
      Readable.from([data.subarray(0, 100_000), data.subarray(100_000)]),
      createSealStream(parseKeySet(g.publicJwks), { contentType: 'application/octet-stream', recordSize: 4096 }),
      new Writable({ write: (c, _e, cb) => { chunks.push(c); cb() } }),
    ),
  )
  const out: Buffer[] = []
  const o = await count(() =>
    pipeline(Readable.from(chunks), createOpenStream(parseKeySet(g.privateJwks)), new Writable({ write: (c, _e, cb) => { out.push(c); cb() } })),
  )
  t.same([s.seal, o.open], [1, 1])
  t.ok(Buffer.concat(out).equals(data))
})
