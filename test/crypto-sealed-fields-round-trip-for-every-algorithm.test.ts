import t from 'tap'
import { SEAL_WINDOW_MS, SealWindows } from '../src/crypto/field.js'
import {
  assertSealedFor,
  FieldOpener,
  FieldSealer,
  generateKeySet,
  isSealedFor,
  type KeyAlg,
  parseKeySet,
} from '../src/crypto/index.js'

const ALGS: ReadonlyArray<{ name: string; alg: KeyAlg; crv?: 'X25519' | 'P-256' }> = [
  { name: 'ECDH-ES+A256KW X25519', alg: 'ECDH-ES+A256KW', crv: 'X25519' },
  { name: 'ECDH-ES+A256KW P-256', alg: 'ECDH-ES+A256KW', crv: 'P-256' },
  { name: 'RSA-OAEP-256', alg: 'RSA-OAEP-256' },
]

const VALUES = ['"x"', '123', '{}', '""', '"é✓😀"', 'null', `"${'a'.repeat(100_000)}"`, '[1,{"b":[true]}]']
const BINDINGS = [
  { ptr: '' },
  { ptr: '/a' },
  { ptr: '/a~1b/~0c' },
  { ptr: '/items/0/birthDate', rid: 'rec-42' },
  { ptr: '/pérson/名前', rid: 'é' },
]

function header(jwe: string): Record<string, unknown> {
  return JSON.parse(Buffer.from(jwe.split('.')[0]!, 'base64url').toString('utf8'))
}

for (const { name, alg, crv } of ALGS) {
  t.test(`${name}: values round trip with their binding`, async (t) => {
    const kid = `kid-${name.replace(/[^A-Za-z0-9]/g, '')}`
    const g = generateKeySet({ alg, crv, kid, modulusLength: 2048 })
    const pub = parseKeySet(g.publicJwks, { publicOnly: true })
    const opener = new FieldOpener(parseKeySet(g.privateJwks, { requirePrivate: true }))
    const sealer = new FieldSealer(pub, { route: 'accreditations' })
    t.equal(sealer.kid, kid)
    const seen = new Set<string>()
    for (const value of VALUES) {
      for (const b of BINDINGS) {
        const jwe = sealer.seal(Buffer.from(value), b)
        t.equal(jwe.split('.').length, 5)
        const [, ek, iv] = jwe.split('.')
        t.notOk(seen.has(ek!) || seen.has(iv!), 'fresh encrypted key and IV per field')
        seen.add(ek!).add(iv!)
        const opened = opener.open(jwe, { route: 'accreditations', ...b })
        if (opened.toString('utf8') !== value) t.fail(`round trip of ${value.slice(0, 20)} at ${b.ptr}`)
        t.ok(isSealedFor(jwe, pub, { route: 'accreditations', ...b }), 'public-key check agrees')
      }
    }
    const h = header(sealer.seal(Buffer.from('1'), { ptr: '/n', rid: '7' }))
    t.match(h, {
      alg,
      enc: 'A256GCM',
      kid,
      crit: ['ecl.route', 'ecl.ptr', 'ecl.rid'],
      'ecl.route': 'accreditations',
      'ecl.ptr': '/n',
      'ecl.rid': '7',
    })
    t.same(Object.keys(h), alg === 'RSA-OAEP-256'
      ? ['alg', 'enc', 'kid', 'crit', 'ecl.route', 'ecl.ptr', 'ecl.rid']
      : ['alg', 'enc', 'kid', 'crit', 'ecl.route', 'ecl.ptr', 'ecl.rid', 'epk'], 'no other header member')
    t.same(header(sealer.seal(Buffer.from('1'), { ptr: '/n' })).crit, ['ecl.route', 'ecl.ptr'], 'rid only when given')
  })
}

// Changed meaning with the sealing window (docs/sealing.md, "One agreement per window"): this test
// used to pin "another message gets another epk". Messages sealed to the same key within one window
// now share the window's epk; a new window, or another current key (a rotation), gets another.
t.test('all fields of one message share one epk; so do the messages of one window; a new window or another key gets another', async (t) => {
  const g = generateKeySet()
  const pub = parseKeySet(g.publicJwks)
  let now = 0
  const windows = new SealWindows({ now: () => now })
  const one = new FieldSealer(pub, { route: 'r', windows })
  const a = header(one.seal(Buffer.from('1'), { ptr: '/a' })).epk
  const b = header(one.seal(Buffer.from('2'), { ptr: '/b' })).epk
  const c = header(new FieldSealer(pub, { route: 'r', windows }).seal(Buffer.from('3'), { ptr: '/a' })).epk
  t.same(a, b, 'one message')
  t.same(a, c, 'another message in the same window')
  now += SEAL_WINDOW_MS
  const d = header(new FieldSealer(pub, { route: 'r', windows }).seal(Buffer.from('4'), { ptr: '/a' })).epk
  t.notSame(a, d, 'a message after the window')
  const rotated = parseKeySet(generateKeySet().publicJwks)
  const e = header(new FieldSealer(rotated, { route: 'r', windows }).seal(Buffer.from('5'), { ptr: '/a' })).epk
  t.notSame(d, e, 'another current key')
  t.match(a, { kty: 'OKP', crv: 'X25519', x: /^[A-Za-z0-9_-]{43}$/ })
})

t.test('invalid bindings are refused before anything is sealed', async (t) => {
  const pub = parseKeySet(generateKeySet().publicJwks)
  const s = new FieldSealer(pub, { route: 'r' })
  const v = Buffer.from('1')
  for (const ptr of ['a', '/~2', '/a~', '/\ud800']) {
    t.throws(() => s.seal(v, { ptr }), { code: 'seal_failed' }, `ptr ${JSON.stringify(ptr)}`)
  }
  t.throws(() => s.seal(v, { ptr: `/${'a'.repeat(1024)}` }), { code: 'seal_failed' }, 'ptr too long')
  t.throws(() => s.seal(v, { ptr: '/a', rid: 'x'.repeat(1025) }), { code: 'seal_failed' }, 'rid too long')
  t.throws(() => s.seal('1' as unknown as Buffer, { ptr: '/a' }), { code: 'seal_failed' }, 'value must be bytes')
  t.throws(() => new FieldSealer(pub, { route: '' }), { code: 'seal_failed' }, 'empty route')
  t.throws(() => new FieldOpener(pub), { code: 'key_material_invalid' }, 'opening needs private keys')
})

t.test('claims as long as a header may carry open here and in jose; longer ones, counted escaped, are refused', async (t) => {
  // Counted in characters, claims of control characters (six bytes each once escaped) made headers
  // over what the opener parses: sealed, then refused by this opener and require-sealed alike.
  const { compactDecrypt, importJWK } = await import('jose')
  for (const { name, alg, crv } of ALGS) {
    const g = generateKeySet(crv === undefined ? { alg } : { alg, crv })
    const pub = parseKeySet(g.publicJwks)
    const opener = new FieldOpener(parseKeySet(g.privateJwks, { requirePrivate: true }))
    const route = `r${'x'.repeat(255)}`
    const s = new FieldSealer(pub, { route })
    const ptr = `/${'\u0001'.repeat(170)}${'a'.repeat(3)}`
    const rid = `${'\u0001'.repeat(170)}${'b'.repeat(3)}`
    t.equal(Buffer.byteLength(JSON.stringify(ptr)) - 2, 1024, 'the longest pointer')
    t.equal(Buffer.byteLength(JSON.stringify(rid)) - 2, 1023)
    const jwe = s.seal(Buffer.from('"v"'), { ptr, rid })
    t.ok(jwe.split('.')[0]!.length <= 8192, `${name}: the header is within what an opener parses`)
    t.equal(opener.open(jwe, { route, ptr, rid }).toString(), '"v"', `${name}: it opens`)
    t.ok(isSealedFor(jwe, pub, { route, ptr, rid }), `${name}: require-sealed accepts it`)
    const key = await importJWK(g.privateJwks.keys[0]!, alg)
    const crit = { 'ecl.route': true, 'ecl.ptr': true, 'ecl.rid': true }
    const jose = await compactDecrypt(jwe, key, { crit, keyManagementAlgorithms: [alg], contentEncryptionAlgorithms: ['A256GCM'] })
    t.equal(Buffer.from(jose.plaintext).toString(), '"v"', `${name}: jose opens it`)
    t.equal(jose.protectedHeader['ecl.ptr'], ptr)
    t.throws(() => s.seal(Buffer.from('1'), { ptr: `${ptr}a` }), { code: 'seal_failed', message: /ptr must be .* 1024 bytes/ }, 'one byte more')
    t.throws(() => s.seal(Buffer.from('1'), { ptr: '/a', rid: `${'\u0001'.repeat(1000)}` }), { code: 'seal_failed' }, 'a rid of 1000 control characters')
  }
})

t.test('the public-key check names its reason for the log', async (t) => {
  const g = generateKeySet()
  const pub = parseKeySet(g.publicJwks)
  const jwe = new FieldSealer(pub, { route: 'r' }).seal(Buffer.from('1'), { ptr: '/a' })
  t.doesNotThrow(() => assertSealedFor(jwe, pub, { route: 'r', ptr: '/a' }))
  t.throws(() => assertSealedFor(jwe, pub, { route: 'r', ptr: '/b' }), { code: 'open_failed', status: 400, message: /ecl\.ptr/ })
  t.notOk(isSealedFor('"plaintext"', pub, { route: 'r', ptr: '/a' }))
  t.notOk(isSealedFor(42, pub, { route: 'r', ptr: '/a' }))
  const other = parseKeySet(generateKeySet().publicJwks)
  t.notOk(isSealedFor(jwe, other, { route: 'r', ptr: '/a' }), 'sealed for another key')
})
