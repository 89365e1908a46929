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

/**
 * Found by review: zeroing our copy of a KEK left OpenSSL's (the key schedule in the cipher
 * context) in memory until a garbage collection. An erase now ends the context (`final()`), which
 * frees it and makes OpenSSL cleanse the key: it can do nothing more.
 */
t.test('an erase ends the cipher context that holds the KEK: the wrapper or unwrapper can do nothing more', async (t) => {
  const { KeyWrapper } = await import('../src/crypto/kdf.js')
  const wrapper = new KeyWrapper(randomBytes(32))
  t.equal(wrapper.wrap256(randomBytes(32), 1).length, 40, 'wraps before')
  wrapper.erase()
  t.throws(() => wrapper.wrap256(randomBytes(32), 1), 'its context is gone')

  // An unwrapper's context is reached through the Decipher prototype: each `final()` is counted.
  const { createDecipheriv } = await import('node:crypto')
  const proto = Object.getPrototypeOf(createDecipheriv('id-aes256-wrap', randomBytes(32), Buffer.alloc(8, 0xa6))) as { final: (...a: unknown[]) => unknown }
  const final = proto.final
  let ended = 0
  proto.final = function (this: unknown, ...a: unknown[]) {
    ended++
    return final.apply(this, a)
  }
  t.teardown(() => {
    proto.final = final
  })
  const unwrapper = new KeyUnwrapper(randomBytes(32))
  t.equal(unwrapper.unwrap256(randomBytes(40)), undefined, 'a wrong key: refused, its context ended and replaced')
  t.equal(ended, 1)
  unwrapper.unwrap256(randomBytes(40))
  t.equal(ended, 2)
  const kept = new KeyUnwrapper(randomBytes(32))
  kept.unwrap256(Buffer.alloc(39))
  kept.erase()
  t.equal(ended, 2, 'no context made, none to end')
  // One that unwrapped: a real wrap of a key under its KEK.
  const kek = randomBytes(32)
  const wrapped = new KeyWrapper(kek).wrap256(randomBytes(32), 1)
  const used = new KeyUnwrapper(Buffer.from(kek))
  t.equal(used.unwrap256(wrapped)?.length, 32)
  used.erase()
  t.equal(ended, 3, 'its erase ends its context')
})
