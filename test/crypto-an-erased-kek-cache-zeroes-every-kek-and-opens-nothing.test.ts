/**
 * `KekCache.erase` retires an opener's cache (a reload replaced its route table): every cached KEK
 * is zeroed, the cache is emptied, and nothing opens through it afterwards, not even the value it
 * opened a moment before (the memoized last KEK is forgotten too).
 */
import { randomBytes } from 'node:crypto'
import t from 'tap'
import { FieldOpener, FieldSealer, SealWindows } from '../src/crypto/field.js'
import { KeyUnwrapper } from '../src/crypto/kdf.js'
import { generateKeySet, parseKeySet } from '../src/crypto/keys.js'

t.test('erase zeroes every cached KEK, forgets the last one and refuses to open', async (t) => {
  const { privateJwks, publicJwks } = generateKeySet()
  const recipients = parseKeySet(publicJwks, { publicOnly: true })
  const opener = new FieldOpener(parseKeySet(privateJwks, { requirePrivate: true }))
  // Three sealing windows of one value each: three KEKs in the cache.
  const windows = new SealWindows({ maxValues: 1 })
  const sealed = [0, 1, 2].map((i) => new FieldSealer(recipients, { route: 'r', windows }).seal(Buffer.from(`"v${i}"`), { ptr: '/v' }))
  for (const [i, jwe] of sealed.entries()) t.equal(opener.open(jwe, { route: 'r', ptr: '/v' }).toString(), `"v${i}"`)
  const cache = opener.kekCache
  t.equal(cache.size, 3)
  t.equal(cache.erased, false)

  let erasures = 0
  const erase = KeyUnwrapper.prototype.erase
  t.teardown(() => {
    KeyUnwrapper.prototype.erase = erase
  })
  KeyUnwrapper.prototype.erase = function (this: KeyUnwrapper) {
    erasures++
    erase.call(this)
  }
  cache.erase()
  t.equal(erasures, 3, 'each cached KEK erased (zeroed: see the next test)')
  t.equal(cache.size, 0)
  t.equal(cache.erased, true)
  for (const jwe of sealed) {
    t.throws(() => opener.open(jwe, { route: 'r', ptr: '/v' }), { code: 'open_failed', message: /erased/ }, 'opens nothing, the last value included')
  }
})

t.test('a KeyUnwrapper’s erase zeroes the KEK it was given', async (t) => {
  const kek = randomBytes(32)
  const unwrapper = new KeyUnwrapper(kek)
  unwrapper.unwrap256(randomBytes(40))
  unwrapper.erase()
  t.ok(kek.equals(Buffer.alloc(32)), 'all zero')
})
