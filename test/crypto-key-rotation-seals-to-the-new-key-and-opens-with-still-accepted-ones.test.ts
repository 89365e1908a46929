import t from 'tap'
import { FieldOpener, FieldSealer, generateKeySet, isSealedFor, parseKeySet } from '../src/crypto/index.js'

t.test('rotation: seal with the new current key, open old values while the old key is accepted, not after', async (t) => {
  const old = generateKeySet({ kid: '2024-01' })
  const next = generateKeySet({ kid: '2025-01', crv: 'P-256' })
  const at = { route: 'accreditations', ptr: '/person/nationalId' }

  // Before rotation: only the old key.
  const before = new FieldSealer(parseKeySet(old.publicJwks, { publicOnly: true }), { route: at.route })
  const sealedBefore = before.seal(Buffer.from('"A-123"'), at)

  // Rotation step 1: the trusted host accepts both; the gateway seals to the new current key.
  const bothPublic = parseKeySet({ keys: [...old.publicJwks.keys, ...next.publicJwks.keys], current: '2025-01' }, { publicOnly: true })
  const bothPrivate = parseKeySet({ keys: [...old.privateJwks.keys, ...next.privateJwks.keys] }, { requirePrivate: true })
  t.equal(bothPublic.current.kid, '2025-01')
  const during = new FieldSealer(bothPublic, { route: at.route })
  t.equal(during.kid, '2025-01')
  const sealedDuring = during.seal(Buffer.from('"B-456"'), at)
  const header = JSON.parse(Buffer.from(sealedDuring.split('.')[0]!, 'base64url').toString())
  t.equal(header.kid, '2025-01', 'new values carry the new kid')
  t.equal(header.epk.crv, 'P-256', 'and use the new key')

  const opener = new FieldOpener(bothPrivate)
  t.equal(opener.open(sealedBefore, at).toString(), '"A-123"', 'old value opens with the still-accepted old key')
  t.equal(opener.open(sealedDuring, at).toString(), '"B-456"', 'new value opens')
  t.ok(isSealedFor(sealedBefore, bothPublic, at))

  // Rotation step 2: the old key is removed; what was sealed to it no longer opens.
  const nextOnly = new FieldOpener(parseKeySet(next.privateJwks, { requirePrivate: true }))
  t.equal(nextOnly.open(sealedDuring, at).toString(), '"B-456"')
  t.throws(() => nextOnly.open(sealedBefore, at), { code: 'open_failed', message: /kid "2024-01" not accepted/ })
  t.notOk(isSealedFor(sealedBefore, parseKeySet(next.publicJwks), at), 'require-sealed refuses it too')
})
