import { Readable, Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import t from 'tap'
import { SEAL_WINDOW_KEYS, SEAL_WINDOW_MS, SEAL_WINDOW_VALUES, SealWindows } from '../src/crypto/field.js'
import {
  createOpenStream,
  createSealStream,
  FieldOpener,
  FieldSealer,
  generateKeySet,
  KekCache,
  type KeySet,
  parseKeySet,
} from '../src/crypto/index.js'
import { countAsymmetric as count } from './helpers/asymmetric.js'


// This test was `crypto-one-key-agreement-per-message-on-each-side`: each message paid one ECDH to
// seal. With the sealing window (docs/sealing.md, "One agreement per window") the rule it pins is
// now *at most one agreement per window and recipient key* on the sealing side (a window is at most
// SEAL_WINDOW_MS and SEAL_WINDOW_VALUES; a new window, or another current key, makes a new one), and
// one per distinct epk, i.e. per sealing window, on the opening side (the KEK cache). Counted through
// the diagnostics channel, never by timing: every window here runs on a clock of the test's own.

const FIELDS = 200

function openAll(opener: FieldOpener, jwes: string[]): void {
  jwes.forEach((jwe, i) => {
    opener.open(jwe, { route: 'r', ptr: `/items/${i}` })
  })
}

function sealMessage(pub: KeySet, windows: SealWindows, fields = FIELDS): string[] {
  const sealer = new FieldSealer(pub, { route: 'r', windows })
  const jwes: string[] = []
  for (let i = 0; i < fields; i++) jwes.push(sealer.seal(Buffer.from(String(i)), { ptr: `/items/${i}` }))
  return jwes
}

function epkOf(jwe: string): string {
  return JSON.parse(Buffer.from(jwe.slice(0, jwe.indexOf('.')), 'base64url').toString()).epk.x
}

for (const crv of ['X25519', 'P-256'] as const) {
  t.test(`${crv}: two messages of ${FIELDS} fields in one window cost one ECDH to seal and one to open`, async (t) => {
    const g = generateKeySet({ crv })
    const pub = parseKeySet(g.publicJwks)
    const opener = new FieldOpener(parseKeySet(g.privateJwks))
    const windows = new SealWindows({ now: () => 0 })
    const messages: string[][] = []
    const sealing = await count(() => {
      for (let m = 0; m < 2; m++) messages.push(sealMessage(pub, windows))
    })
    t.same(sealing, { seal: 1, open: 0, ops: sealing.ops }, 'one agreement for the window (was: one per message)')
    t.ok(sealing.ops.every((o) => o.op === 'ecdh-es' && o.kid === pub.current.kid))
    t.equal(new Set(messages.flat().map(epkOf)).size, 1, 'every value of the window carries its epk')
    const opening = await count(() => {
      for (const jwes of messages) openAll(opener, jwes)
    })
    t.equal(opening.open, 1, 'one agreement for the window when opening (the KEK cache)')
    const again = await count(() => openAll(opener, messages[0]!))
    t.equal(again.open, 0, 'a cached KEK is reused')
    const noCache = new FieldOpener(parseKeySet(g.privateJwks), { kekCacheSize: 0 })
    const uncached = await count(() => openAll(noCache, messages[0]!.slice(0, 10)))
    t.equal(uncached.open, 10, 'without the cache every field would pay one (the cache is what saves it)')
  })
}

t.test('a window ends after SEAL_WINDOW_MS: the next value makes a new agreement, and values on both sides of the boundary open', async (t) => {
  const g = generateKeySet()
  const pub = parseKeySet(g.publicJwks)
  const opener = new FieldOpener(parseKeySet(g.privateJwks))
  let now = 1000
  const windows = new SealWindows({ now: () => now })
  const sealer = new FieldSealer(pub, { route: 'r', windows })
  const jwes: string[] = []
  const sealing = await count(() => {
    jwes.push(sealer.seal(Buffer.from('0'), { ptr: '/items/0' }))
    now += SEAL_WINDOW_MS - 1
    jwes.push(sealer.seal(Buffer.from('1'), { ptr: '/items/1' }))
    now += 1 // the window's last millisecond is over, in the middle of the message
    jwes.push(sealer.seal(Buffer.from('2'), { ptr: '/items/2' }))
    jwes.push(new FieldSealer(pub, { route: 'r', windows }).seal(Buffer.from('3'), { ptr: '/items/3' }))
  })
  t.equal(sealing.seal, 2, 'one agreement per window')
  t.equal(epkOf(jwes[0]!), epkOf(jwes[1]!))
  t.not(epkOf(jwes[1]!), epkOf(jwes[2]!), 'a new epk after the boundary')
  t.equal(epkOf(jwes[2]!), epkOf(jwes[3]!), 'shared again by the next message')
  const opening = await count(() => openAll(opener, jwes))
  t.equal(opening.open, 2, 'one agreement per window when opening')
})

t.test(`a window seals at most its number of values (SEAL_WINDOW_VALUES = ${SEAL_WINDOW_VALUES} by default)`, async (t) => {
  const g = generateKeySet()
  const pub = parseKeySet(g.publicJwks)
  const opener = new FieldOpener(parseKeySet(g.privateJwks))
  const windows = new SealWindows({ maxValues: 10, now: () => 0 })
  let jwes: string[] = []
  const sealing = await count(() => {
    jwes = sealMessage(pub, windows, 25)
  })
  t.equal(sealing.seal, 3, '25 values, 10 per window: three agreements')
  t.same([...new Set(jwes.map(epkOf))].length, 3)
  t.same(jwes.map(epkOf).map((x, i, all) => all.indexOf(x) === i), [true, ...Array(9).fill(false), true, ...Array(9).fill(false), true, ...Array(4).fill(false)])
  const opening = await count(() => openAll(opener, jwes))
  t.equal(opening.open, 3)
})

t.test('a key rotation takes effect at once: a new current key makes a new agreement inside the window', async (t) => {
  const old = generateKeySet({ kid: 'old' })
  const next = generateKeySet({ kid: 'new' })
  const before = parseKeySet(old.publicJwks)
  // The rotated set holds both keys, the new one current.
  const after = parseKeySet({ keys: [...next.publicJwks.keys, ...old.publicJwks.keys], current: 'new' })
  const windows = new SealWindows({ now: () => 0 })
  let a = ''
  let b = ''
  let c = ''
  const sealing = await count(() => {
    a = new FieldSealer(before, { route: 'r', windows }).seal(Buffer.from('1'), { ptr: '/a' })
    b = new FieldSealer(after, { route: 'r', windows }).seal(Buffer.from('2'), { ptr: '/a' })
    c = new FieldSealer(after, { route: 'r', windows }).seal(Buffer.from('3'), { ptr: '/a' })
  })
  t.same(sealing.ops.map((o) => o.kid), ['old', 'new'], 'the first message after the rotation pays the new key’s agreement')
  t.not(epkOf(a), epkOf(b))
  t.equal(epkOf(b), epkOf(c))
  const privateAfter = parseKeySet({ keys: [...next.privateJwks.keys, ...old.privateJwks.keys], current: 'new' })
  const opener = new FieldOpener(privateAfter)
  t.same([a, b, c].map((j) => opener.open(j, { route: 'r', ptr: '/a' }).toString()), ['1', '2', '3'])
})

t.test('the windows are bounded: beyond maxKeys recipient keys the oldest window is retired', async (t) => {
  const sets = [0, 1, 2].map(() => parseKeySet(generateKeySet().publicJwks))
  const windows = new SealWindows({ maxKeys: 2, now: () => 0 })
  const first = await count(() => {
    for (const set of sets) new FieldSealer(set, { route: 'r', windows }).seal(Buffer.from('1'), { ptr: '/a' })
  })
  t.equal(first.seal, 3)
  t.equal(windows.size, 2, 'never more live windows than maxKeys')
  const again = await count(() => {
    new FieldSealer(sets[2]!, { route: 'r', windows }).seal(Buffer.from('1'), { ptr: '/a' })
    new FieldSealer(sets[0]!, { route: 'r', windows }).seal(Buffer.from('1'), { ptr: '/a' })
  })
  t.same(again.ops.map((o) => o.kid), [sets[0]!.current.kid], 'the newest window is reused; the evicted one is made again')
  t.equal(windows.size, 2)
  t.equal(SEAL_WINDOW_KEYS, 64)
  t.throws(() => new SealWindows({ maxValues: 0 }), { code: 'config_invalid' })
})

t.test('a retired or spent window seals nothing: its unused CEKs are zeroed, so it fails closed', async (t) => {
  // Every caller checks usable() first; the window refuses on its own too, where it used to hand out
  // an erased slot and seal under an all-zero CEK (found by a review).
  const windows = new SealWindows({ maxValues: 2, now: () => 0 })
  const key = parseKeySet(generateKeySet().publicJwks).current
  const retired = windows.acquire(key, 0)
  retired.sealCompact([['ecl.fmt', 'x']], Buffer.from('first'))
  retired.retire()
  t.throws(() => retired.sealCompact([['ecl.fmt', 'x']], Buffer.from('after retire')), { code: 'seal_failed', message: /retired or spent/ })
  windows.clear()
  const spent = windows.acquire(key, 0)
  spent.sealCompact([['ecl.fmt', 'x']], Buffer.from('1'))
  spent.sealCompact([['ecl.fmt', 'x']], Buffer.from('2'))
  t.throws(() => spent.sealCompact([['ecl.fmt', 'x']], Buffer.from('3')), { code: 'seal_failed' }, 'past maxValues')
})

t.test('an idle window is dropped when it expires, so no KEK outlives its window', async (t) => {
  let now = 0
  const windows = new SealWindows({ maxAgeMs: 1, now: () => now })
  new FieldSealer(parseKeySet(generateKeySet().publicJwks), { route: 'r', windows }).seal(Buffer.from('1'), { ptr: '/a' })
  t.equal(windows.size, 1)
  now = 5
  // The expiry timer (maxAgeMs + 1 = 2 ms, unref'd) fires before this later one: no timing is asserted.
  await new Promise((resolve) => setTimeout(resolve, 50))
  t.equal(windows.size, 0)
})

t.test('a bounded KEK cache evicts the oldest epk and still opens everything', async (t) => {
  const g = generateKeySet()
  const pub = parseKeySet(g.publicJwks)
  const opener = new FieldOpener(parseKeySet(g.privateJwks), { kekCacheSize: 2 })
  // Three windows of their own: three epks.
  const jwes = [0, 1, 2].map((m) => new FieldSealer(pub, { route: 'r', windows: new SealWindows() }).seal(Buffer.from(String(m)), { ptr: '/a' }))
  const first = await count(() => {
    for (const j of jwes) opener.open(j, { route: 'r', ptr: '/a' })
  })
  t.equal(first.open, 3)
  const second = await count(() => {
    t.equal(opener.open(jwes[2]!, { route: 'r', ptr: '/a' }).toString(), '2')
    t.equal(opener.open(jwes[0]!, { route: 'r', ptr: '/a' }).toString(), '0')
  })
  t.equal(second.open, 1, 'epk 2 still cached, epk 0 evicted')
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

async function sealStream(pub: KeySet, data: Buffer, windows: SealWindows): Promise<Buffer> {
  const chunks: Buffer[] = []
  await pipeline(
    Readable.from([data.subarray(0, 100_000), data.subarray(100_000)]),
    createSealStream(pub, { contentType: 'application/octet-stream', recordSize: 4096, windows }),
    new Writable({ write: (c, _e, cb) => { chunks.push(c); cb() } }),
  )
  return Buffer.concat(chunks)
}

async function openStream(priv: KeySet, sealed: Buffer, kekCache?: KekCache): Promise<Buffer> {
  const out: Buffer[] = []
  await pipeline(
    Readable.from([sealed.subarray(0, 50), sealed.subarray(50)]),
    createOpenStream(priv, kekCache === undefined ? {} : { kekCache }),
    new Writable({ write: (c, _e, cb) => { out.push(c); cb() } }),
  )
  return Buffer.concat(out)
}

/** The key JWE in a sealed stream's header (docs/sealed-stream-format.md). */
function keyJweOf(sealed: Buffer): string {
  return sealed.toString('latin1', 12, 12 + sealed.readUInt16BE(10))
}

t.test('sealed streams take their agreement from the sealing window, shared with fields; a shared KekCache opens them with one', async (t) => {
  const g = generateKeySet()
  const pub = parseKeySet(g.publicJwks)
  const priv = parseKeySet(g.privateJwks)
  const windows = new SealWindows({ now: () => 0 })
  const data = Buffer.alloc(300_000, 7)
  const streams: Buffer[] = []
  let jwes: string[] = []
  const s = await count(async () => {
    for (let i = 0; i < 5; i++) streams.push(await sealStream(pub, data, windows))
    jwes = sealMessage(pub, windows, 10)
  })
  t.equal(s.seal, 1, 'five streams and a message of ten fields in one window: one ECDH')
  const keyJwes = streams.map(keyJweOf)
  t.same(new Set([...keyJwes, ...jwes].map(epkOf)).size, 1, 'one epk for all of them')
  t.equal(new Set(keyJwes.map((j) => j.split('.')[1])).size, 5, 'but each stream has a CEK of its own')

  const cache = new KekCache(priv)
  const o = await count(async () => {
    for (const sealed of streams) t.ok((await openStream(priv, sealed, cache)).equals(data))
  })
  t.equal(o.open, 1, 'opened through one KekCache: one ECDH for the five')
  const fields = await count(() => openAll(new FieldOpener(priv), jwes))
  t.equal(fields.open, 1)
  const alone = await count(async () => {
    for (const sealed of streams) t.ok((await openStream(priv, sealed)).equals(data))
  })
  t.equal(alone.open, 5, 'without a cache, one ECDH per stream')

  // A new window is a new agreement for streams as for fields.
  const later = await count(() => sealStream(pub, data, new SealWindows()))
  t.equal(later.seal, 1)
})

t.test('a stream whose key JWE fails to open leaves no KEK in the cache', async (t) => {
  const g = generateKeySet()
  const pub = parseKeySet(g.publicJwks)
  const priv = parseKeySet(g.privateJwks)
  const data = Buffer.alloc(10_000, 1)
  const good = await sealStream(pub, data, new SealWindows())
  const bad = Buffer.from(good)
  // The first character of the key JWE's tag (its last character carries only 2 bits, and most
  // changes to it are refused as non-canonical before any agreement): same epk and wrapped key, a
  // well-formed tag that cannot verify.
  const at = good.lastIndexOf(0x2e, 12 + good.readUInt16BE(10) - 1) + 1
  bad[at] = bad[at] === 0x41 ? 0x42 : 0x41
  const cache = new KekCache(priv)
  for (let i = 0; i < 2; i++) {
    const failed = await count(async () => {
      await t.rejects(openStream(priv, bad, cache), { code: 'open_failed' })
    })
    t.equal(failed.open, 1, `attempt ${i + 1}: the agreement is made again, nothing was cached`)
  }
  const first = await count(async () => t.ok((await openStream(priv, good, cache)).equals(data)))
  const again = await count(async () => t.ok((await openStream(priv, good, cache)).equals(data)))
  t.same([first.open, again.open], [1, 0], 'the KEK enters the cache once it has opened a stream')
  const replayed = await count(async () => {
    await t.rejects(openStream(priv, bad, cache), { code: 'open_failed' })
  })
  t.equal(replayed.open, 0, 'a cached KEK does not make a forged key JWE open')
})

t.test('a KekCache serves only the key set it was made for', async (t) => {
  const a = parseKeySet(generateKeySet().privateJwks)
  const b = parseKeySet(generateKeySet().privateJwks)
  t.throws(() => createOpenStream(a, { kekCache: new KekCache(b) }), { code: 'config_invalid' })
  t.throws(() => new KekCache(parseKeySet(generateKeySet().publicJwks)), { code: 'key_material_invalid' })
  t.throws(() => new KekCache(a, -1), { code: 'config_invalid' })
})
