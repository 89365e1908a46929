import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { inspect } from 'node:util'
import tap from 'tap'
import { generateKeySet, type Jwk, jwkThumbprint, parseKeySet, readKeySetFile } from '../src/crypto/index.js'
import { EcluseError } from '../src/errors.js'

const t = tap

const x25519 = generateKeySet({ kid: 'k-x' })
const p256 = generateKeySet({ crv: 'P-256', kid: 'k-p' })
const rsa = generateKeySet({ alg: 'RSA-OAEP-256', modulusLength: 2048, kid: 'k-r' })

function refused(t: Pick<typeof tap, 'throws'>, fn: () => unknown, why: RegExp, name: string): void {
  t.throws(fn, { code: 'key_material_invalid', message: why }, name)
}

t.test('generated key sets load for every algorithm, public and private', async (t) => {
  for (const [name, g] of [['X25519', x25519], ['P-256', p256], ['RSA', rsa]] as const) {
    const pub = parseKeySet(g.publicJwks, { publicOnly: true })
    const priv = parseKeySet(g.privateJwks, { requirePrivate: true })
    t.equal(pub.hasPrivateKeys, false, `${name} public set has no private key`)
    t.equal(priv.hasPrivateKeys, true, `${name} private set has private keys`)
    t.same(pub.kids, priv.kids)
    t.equal(pub.current.kid, priv.current.kid)
    t.same(priv.publicJwks().keys, g.publicJwks.keys, `${name} private set exports exactly the public JWKS`)
    t.equal(g.publicJwks.keys[0]!.use, 'enc')
  }
  const thumb = generateKeySet()
  t.equal(thumb.publicJwks.keys[0]!.kid, jwkThumbprint(thumb.publicJwks.keys[0]!), 'default kid is the RFC 7638 thumbprint')
  t.equal(thumb.publicJwks.keys[0]!.alg, 'ECDH-ES+A256KW', 'default alg')
  t.equal(thumb.publicJwks.keys[0]!.crv, 'X25519', 'default curve')
})

t.test('RFC 7638 thumbprint matches the RFC example', async (t) => {
  // RFC 7638 §3.1
  const jwk = {
    kty: 'RSA',
    n: '0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw',
    e: 'AQAB',
    alg: 'RS256',
    kid: '2011-04-29',
  }
  t.equal(jwkThumbprint(jwk), 'NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs')
})

t.test('a seal-only profile refuses private key material', async (t) => {
  refused(t, () => parseKeySet(x25519.privateJwks, { publicOnly: true }), /private key material/, 'X25519 private in public set')
  refused(t, () => parseKeySet(rsa.privateJwks, { publicOnly: true }), /private key material/, 'RSA private in public set')
  refused(t, () => parseKeySet(x25519.publicJwks, { requirePrivate: true }), /no private key/, 'public in private set')
  const mixed = { keys: [x25519.privateJwks.keys[0]!, p256.publicJwks.keys[0]!] }
  refused(t, () => parseKeySet(mixed), /mixes public and private/, 'mixed set')
})

t.test('shapes are validated and duplicate kids refused', async (t) => {
  const pub = x25519.publicJwks.keys[0]!
  const with_ = (patch: Jwk): Jwk => ({ ...pub, ...patch })
  const without = (name: string): Jwk => {
    const copy = { ...pub }
    delete copy[name]
    return copy
  }
  refused(t, () => parseKeySet({ keys: [pub, { ...p256.publicJwks.keys[0]!, kid: 'k-x' }] }), /duplicate kid "k-x"/, 'duplicate kid')
  refused(t, () => parseKeySet({ keys: [without('kid')] }), /"kid" is required/, 'missing kid')
  refused(t, () => parseKeySet({ keys: [with_({ kid: 'has space' })] }), /"kid" is required/, 'kid with space')
  refused(t, () => parseKeySet({ keys: [without('alg')] }), /"alg" is required/, 'missing alg')
  refused(t, () => parseKeySet({ keys: [with_({ alg: 'ECDH-ES' })] }), /"alg" is required/, 'direct ECDH-ES not allowed')
  refused(t, () => parseKeySet({ keys: [with_({ alg: 'dir' })] }), /"alg" is required/, 'dir not allowed')
  refused(t, () => parseKeySet({ keys: [with_({ alg: 'RSA-OAEP-256' })] }), /"kty" must be "RSA"/, 'alg does not fit kty')
  refused(t, () => parseKeySet({ keys: [with_({ use: 'sig' })] }), /"use" must be "enc"/, 'use sig')
  refused(t, () => parseKeySet({ keys: [with_({ key_ops: ['sign'] })] }), /"key_ops"/, 'key_ops sign')
  // Found by review: key_ops was checked against the key type only, and a key was used against it.
  refused(t, () => parseKeySet({ keys: [with_({ key_ops: [] })] }), /"key_ops" must allow deriveKey or deriveBits/, 'key_ops that allow nothing')
  refused(t, () => parseKeySet({ keys: [with_({ key_ops: ['deriveBits', 'deriveBits'] })] }), /"key_ops" lists an operation twice/, 'a duplicate operation')
  t.ok(parseKeySet({ keys: [with_({ key_ops: ['deriveKey'] })] }), 'an X25519 key that may derive')
  const rsaPublic = rsa.publicJwks.keys[0]!
  const rsaPrivate = rsa.privateJwks.keys[0]!
  refused(t, () => parseKeySet({ keys: [{ ...rsaPublic, key_ops: ['decrypt', 'unwrapKey'] }] }), /"key_ops" must allow encrypt or wrapKey: the gateway seals to a public key/, 'a public RSA key that may only decrypt')
  refused(t, () => parseKeySet({ keys: [{ ...rsaPrivate, key_ops: ['encrypt', 'wrapKey'] }] }), /"key_ops" must allow decrypt or unwrapKey: the gateway opens with a private key/, 'a private RSA key that may only encrypt')
  t.ok(parseKeySet({ keys: [{ ...rsaPublic, key_ops: ['wrapKey'] }] }), 'a public RSA key that may wrap')
  t.ok(parseKeySet({ keys: [{ ...rsaPrivate, key_ops: ['unwrapKey', 'decrypt'] }] }), 'a private RSA key that may unwrap')
  refused(t, () => parseKeySet({ keys: [with_({ crv: 'X448' })] }), /"crv" must be one of/, 'X448')
  refused(t, () => parseKeySet({ keys: [with_({ x: 'AAAA' })] }), /"x" must be 32 bytes/, 'short x')
  refused(t, () => parseKeySet({ keys: [with_({ x: `${String(pub.x).slice(0, 42)}B` })] }), /canonical base64url/, 'non-canonical x')
  refused(t, () => parseKeySet({ keys: [with_({ kty: 'oct', k: 'AAAA' })] }), /kty|symmetric/, 'symmetric key')
  const ec = p256.publicJwks.keys[0]!
  refused(
    t,
    () => parseKeySet({ keys: [{ ...ec, y: ec.x }] }),
    /cannot be imported/,
    'P-256 point not on the curve',
  )
  // X25519 points of small order import, and every agreement with them is the all-zero secret that
  // OpenSSL refuses: such a set used to load and then fail every seal (a 502 on every request).
  const u = (n: bigint) => Buffer.from(n.toString(16).padStart(64, '0'), 'hex').reverse().toString('base64url')
  const p25519 = 2n ** 255n - 19n
  const smallOrder: Array<[string, bigint]> = [
    ['u = 0', 0n],
    ['u = 1', 1n],
    ['the order-8 point 325606…', 325606250916557431795983626356110631294008115727848805560023387167927233504n],
    ['the order-8 point 395837…', 39382357235489614581723060781553021112529911719440698176882885853963445705823n],
    ['u = p − 1', p25519 - 1n],
  ]
  for (const [what, point] of smallOrder) {
    refused(t, () => parseKeySet({ keys: [with_({ x: u(point) })] }, { publicOnly: true }), /is a point of small order/, `X25519 public key of small order: ${what}`)
  }
  t.equal(parseKeySet({ keys: [pub] }, { publicOnly: true }).current.kid, pub.kid, 'a real X25519 key still loads')
  const weak = generateKeySet({ alg: 'RSA-OAEP-256', modulusLength: 2048 }).publicJwks.keys[0]!
  refused(t, () => parseKeySet({ keys: [{ ...weak, n: Buffer.from(String(weak.n), 'base64url').subarray(0, 128).toString('base64url') }] }), /modulus must be 2048/, 'RSA 1024-bit')
  // e = 1: the "encrypted" CEK is its OAEP padding in clear, which anyone can undo; e = 3 invites
  // the small-exponent attacks. A public set is trusted whole by a seal-only edge: refused at load.
  for (const e of [1, 3, 17, 65535]) {
    refused(t, () => parseKeySet({ keys: [{ ...weak, e: Buffer.of(e >> 8, e & 0xff).subarray(e > 255 ? 0 : 1).toString('base64url') }] }), /"e" must be an odd public exponent from 65537/, `RSA e = ${e}`)
  }
  refused(t, () => parseKeySet({ keys: [{ ...weak, e: 'AQAA' }] }), /"e" must be an odd/, 'RSA e even')
  t.equal(parseKeySet({ keys: [{ ...weak, e: 'AQAB' }] }).current.kid, weak.kid, 'e = 65537 is accepted')
  t.equal(parseKeySet({ keys: [{ ...weak, e: 'AQAD' }] }).current.kid, weak.kid, 'a larger odd e (65539) is accepted: the strength is the modulus')
  refused(t, () => parseKeySet({ keys: [] }), /holds no key/, 'empty set')
  refused(t, () => parseKeySet('{"keys": [', {}), /not valid JSON/, 'bad JSON')
  refused(t, () => parseKeySet([pub]), /JWK Set object/, 'array')
  t.throws(() => generateKeySet({ alg: 'RSA-OAEP-256', modulusLength: 1024 }), { code: 'key_material_invalid' })
})

t.test('a private key that does not match its public members is refused', async (t) => {
  const other = generateKeySet().privateJwks.keys[0]!
  const priv = x25519.privateJwks.keys[0]!
  refused(t, () => parseKeySet({ keys: [{ ...priv, x: other.x }] }), /does not match/, 'X25519 d/x mismatch')
  const p = p256.privateJwks.keys[0]!
  const q = generateKeySet({ crv: 'P-256' }).privateJwks.keys[0]!
  t.throws(() => parseKeySet({ keys: [{ ...p, x: q.x, y: q.y }] }), { code: 'key_material_invalid' }, 'P-256 d/xy mismatch')
})

t.test('the current key is the first, the one named in the file, or the one asked for', async (t) => {
  const a = generateKeySet({ kid: 'a' }).publicJwks.keys[0]!
  const b = generateKeySet({ kid: 'b', crv: 'P-256' }).publicJwks.keys[0]!
  t.equal(parseKeySet({ keys: [a, b] }).current.kid, 'a')
  t.equal(parseKeySet({ keys: [a, b], current: 'b' }).current.kid, 'b')
  t.equal(parseKeySet({ keys: [a, b], current: 'b' }, { current: 'a' }).current.kid, 'a')
  t.equal(parseKeySet(a).current.kid, 'a', 'a single JWK is a set of one')
  refused(t, () => parseKeySet({ keys: [a, b], current: 'c' }), /current kid "c" is not in the set/, 'unknown current')
  // The file may come from another host, and the message reaches a terminal: never quoted raw.
  for (const current of ['\u001b]0;pwned\u0007\u001b[2Jx', 'two\nlines', 'x'.repeat(129)]) {
    refused(t, () => parseKeySet({ keys: [a, b], current }), /^[^"\u001b\n]*current is not a kid of the set$/, `current ${JSON.stringify(current).slice(0, 20)}: not echoed`)
  }
})

t.test('private keys never appear in inspect, JSON or error details', async (t) => {
  for (const g of [x25519, p256, rsa]) {
    const jwk = g.privateJwks.keys[0]!
    const secrets = ['d', 'p', 'q', 'dp', 'dq', 'qi'].map((m) => jwk[m]).filter((v): v is string => typeof v === 'string')
    const set = parseKeySet(g.privateJwks)
    const shown = [
      inspect(set, { depth: Number.POSITIVE_INFINITY, showHidden: true }),
      inspect(set.current, { depth: Number.POSITIVE_INFINITY, showHidden: true }),
      JSON.stringify(set),
      JSON.stringify(set.current),
      JSON.stringify(set.publicJwks()),
      `${set}`,
    ].join('\n')
    for (const s of secrets) t.notOk(shown.includes(s), 'no private member value is shown')
    t.match(JSON.parse(JSON.stringify(set)), { private: true, current: jwk.kid })
    // An error about a private key must not quote it either.
    let caught: unknown
    try {
      parseKeySet({ keys: [{ ...jwk, use: 'sig' }] })
    } catch (err) {
      caught = err
    }
    t.ok(caught instanceof EcluseError)
    const text = `${(caught as Error).message} ${inspect(caught)}`
    for (const s of secrets) t.notOk(text.includes(s), 'error does not quote the key')
  }
  // JSON.parse errors quote the input; ours must not.
  const leaky = `{"keys":[{"d":"${x25519.privateJwks.keys[0]!.d}"`
  try {
    parseKeySet(leaky)
  } catch (err) {
    t.notOk((err as Error).message.includes(String(x25519.privateJwks.keys[0]!.d)))
  }
})

t.test('key set files are read with bounded size and clear errors', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'ecluse-keys-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const file = join(dir, 'trusted.pub.jwks')
  await writeFile(file, JSON.stringify(p256.publicJwks))
  const set = await readKeySetFile(file, { publicOnly: true })
  t.equal(set.current.kid, 'k-p')
  await t.rejects(readKeySetFile(join(dir, 'missing.jwks')), { code: 'key_material_invalid', message: 'the key set file: cannot be read (ENOENT)' })
  await t.rejects(readKeySetFile(dir), { code: 'key_material_invalid', message: /not a regular file/ })
  const big = join(dir, 'big.jwks')
  await writeFile(big, Buffer.alloc(1024 * 1024 + 1, 0x20))
  await t.rejects(readKeySetFile(big), { code: 'key_material_invalid', message: /larger than/ })
  const priv = join(dir, 'trusted.jwks')
  await writeFile(priv, JSON.stringify(p256.privateJwks))
  await t.rejects(readKeySetFile(priv, { publicOnly: true }), { code: 'key_material_invalid', message: new RegExp(`^${priv.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`) })
})
