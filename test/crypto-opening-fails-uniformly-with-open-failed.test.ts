import { randomBytes } from 'node:crypto'
import t from 'tap'
import { FieldOpener, FieldSealer, generateKeySet, type KeySet, parseKeySet } from '../src/crypto/index.js'
import { agree, encryptToCompact, rsaWrap } from '../src/crypto/jwe.js'
import { KeyWrapper } from '../src/crypto/kdf.js'
import { EcluseError } from '../src/errors.js'

const x = generateKeySet({ kid: 'x' })
const p = generateKeySet({ crv: 'P-256', kid: 'p' })
const r = generateKeySet({ alg: 'RSA-OAEP-256', modulusLength: 2048, kid: 'r' })
const pub = parseKeySet({ keys: [...x.publicJwks.keys, ...p.publicJwks.keys, ...r.publicJwks.keys] })
const priv = parseKeySet({ keys: [...x.privateJwks.keys, ...p.privateJwks.keys, ...r.privateJwks.keys] })
const opener = new FieldOpener(priv)
const AT = { route: 'r1', ptr: '/a' }

type Header = Record<string, unknown>

/**
 * A correctly encrypted JWE whose protected header we choose freely, so that a refusal can only
 * come from the header checks, not from a failed tag.
 */
function craft(keys: KeySet, kid: string, patch: (h: Header) => Header = (h) => h, plaintext = '"v"'): string {
  const key = keys.get(kid)!
  const cek = randomBytes(32)
  const iv = randomBytes(12)
  const base: Header = { alg: key.alg, enc: 'A256GCM', kid, crit: ['ecl.route', 'ecl.ptr'], 'ecl.route': 'r1', 'ecl.ptr': '/a' }
  let ek: Buffer
  if (key.algorithm.kind === 'rsa-oaep') {
    ek = rsaWrap(key, cek)
  } else {
    const a = agree(key)
    base.epk = a.epk
    ek = new KeyWrapper(a.kek).wrap256(cek, 1)
  }
  const h = Buffer.from(JSON.stringify(patch(base))).toString('base64url')
  return encryptToCompact(h, ek, cek, iv, Buffer.from(plaintext))
}

function refuses(t: Pick<typeof import('tap').default, 'throws'>, jwe: unknown, why: RegExp, name: string): void {
  t.throws(() => opener.open(jwe as string, AT), { name: 'EcluseError', code: 'open_failed', status: 400, message: why }, name)
}

t.test('the crafting helper itself produces values that open (control)', async (t) => {
  for (const kid of ['x', 'p', 'r']) t.equal(opener.open(craft(pub, kid), AT).toString(), '"v"', kid)
})

t.test('algorithms outside the table are refused', async (t) => {
  for (const alg of ['none', 'dir', 'ECDH-ES', 'RSA-OAEP', 'RSA1_5', 'A256KW', 'PBES2-HS256+A128KW', 'ECDH-ES+A128KW']) {
    refuses(t, craft(pub, 'x', (h) => ({ ...h, alg })), /alg .* not allowed/, `alg ${alg}`)
  }
  for (const enc of ['A128GCM', 'A256CBC-HS512', undefined]) {
    refuses(t, craft(pub, 'x', (h) => ({ ...h, enc })), /enc .* not allowed/, `enc ${enc}`)
  }
  refuses(t, craft(pub, 'x', (h) => ({ ...h, alg: 'RSA-OAEP-256' })), /does not match key/, 'alg of another key type')
})

t.test('dangerous or unknown header parameters are refused', async (t) => {
  const cases: Record<string, unknown> = {
    zip: 'DEF',
    jku: 'https://attacker.example/jwks',
    jwk: x.publicJwks.keys[0],
    x5u: 'https://attacker.example/cert',
    x5c: ['MIIB'],
    x5t: 'abc',
    p2s: 'c2FsdA',
    iv: 'AAAAAAAAAAAAAAAA',
    'ecl.other': 'x',
  }
  for (const [name, value] of Object.entries(cases)) {
    refuses(t, craft(pub, 'x', (h) => ({ ...h, [name]: value })), /not allowed/, name)
  }
  refuses(t, craft(pub, 'x', (h) => ({ ...h, typ: 7 })), /typ/, 'typ not a string')
})

t.test('crit must list exactly our claims', async (t) => {
  refuses(t, craft(pub, 'x', ({ crit: _c, ...h }) => h), /crit missing/, 'no crit')
  refuses(t, craft(pub, 'x', (h) => ({ ...h, crit: [] })), /crit missing/, 'empty crit')
  refuses(t, craft(pub, 'x', (h) => ({ ...h, crit: ['ecl.route'] })), /ecl\.ptr not listed in crit/, 'ptr not critical')
  refuses(t, craft(pub, 'x', (h) => ({ ...h, crit: ['ecl.route', 'ecl.ptr', 'ecl.ptr'] })), /duplicate/, 'duplicate')
  refuses(t, craft(pub, 'x', (h) => ({ ...h, crit: ['ecl.route', 'ecl.ptr', 'ecl.rid'] })), /crit lists/, 'absent name listed')
  refuses(t, craft(pub, 'x', (h) => ({ ...h, crit: ['ecl.route', 'ecl.ptr', 'b64'] })), /crit lists/, 'unknown name listed')
  refuses(t, craft(pub, 'x', (h) => ({ ...h, 'ecl.route': 7 })), /not a string/, 'claim not a string')
  refuses(t, craft(pub, 'x', ({ 'ecl.ptr': _p, ...h }) => ({ ...h, crit: ['ecl.route'] })), /ecl\.ptr missing/, 'no ptr')
})

t.test('keys and ephemeral keys are checked', async (t) => {
  refuses(t, craft(pub, 'x', (h) => ({ ...h, kid: 'nope' })), /kid "nope" not accepted/, 'unknown kid')
  refuses(t, craft(pub, 'x', ({ kid: _k, ...h }) => h), /kid missing/, 'no kid')
  const epkOf = (_kid: string) => (h: Header) => h.epk as Header
  refuses(t, craft(pub, 'x', (h) => ({ ...h, epk: { ...epkOf('x')(h), d: 'AAAA' } })), /epk member "d"/, 'epk with d')
  refuses(t, craft(pub, 'x', (h) => ({ ...h, epk: { ...epkOf('x')(h), crv: 'P-256', kty: 'EC' } })), /curve/, 'epk of another curve')
  refuses(t, craft(pub, 'x', ({ epk: _e, ...h }) => h), /epk missing/, 'no epk')
  refuses(t, craft(pub, 'x', (h) => ({ ...h, epk: { ...epkOf('x')(h), x: Buffer.alloc(32).toString('base64url') } })), /key agreement failed/, 'small-order X25519 point')
  refuses(t, craft(pub, 'p', (h) => ({ ...h, epk: { ...epkOf('p')(h), y: (h.epk as Header).x } })), /key agreement failed/, 'P-256 point off the curve')
  refuses(t, craft(pub, 'x', (h) => ({ ...h, apu: 'QQ', apv: 'QQ' })), /apu equals apv/, 'apu = apv')
  refuses(t, craft(pub, 'x', (h) => ({ ...h, apu: '', apv: '' })), /apu equals apv/, 'apu = apv, both present and empty (jose refuses it too)')
  refuses(t, craft(pub, 'x', (h) => ({ ...h, apu: 'Q' })), /apu/, 'apu not base64url')
  refuses(t, craft(pub, 'r', (h) => ({ ...h, epk: x.publicJwks.keys[0] })), /RSA-OAEP-256/, 'RSA with epk')
})

t.test('structure, encoding and every bit of every segment are authenticated', async (t) => {
  for (const kid of ['x', 'p', 'r']) {
    const good = craft(pub, kid)
    const segs = good.split('.')
    refuses(t, segs.slice(0, 4).join('.'), /five compact segments/, `${kid}: four segments`)
    refuses(t, `${good}.`, /five compact segments/, `${kid}: six segments`)
    refuses(t, good.replace(/\./g, '~'), /five compact segments/, `${kid}: no dots`)
    refuses(t, 42, /not a string/, 'not a string')
    refuses(t, `${segs[0]}=.${segs.slice(1).join('.')}`, /base64url/, `${kid}: padded header`)
    refuses(t, [segs[0], segs[1], `${segs[2]}+`, segs[3], segs[4]].join('.'), /iv/, `${kid}: non-alphabet char`)
    for (let s = 0; s < 5; s++) {
      const seg = Buffer.from(segs[s]!, 'base64url')
      for (const bit of [0, 7, 8 * seg.length - 1]) {
        const flipped = Buffer.from(seg)
        flipped[bit >> 3]! ^= 1 << (bit & 7)
        const copy = [...segs]
        copy[s] = flipped.toString('base64url')
        t.throws(() => opener.open(copy.join('.'), AT), { code: 'open_failed' }, `${kid}: bit ${bit} of segment ${s}`)
      }
    }
    // Dropping or adding bytes to the fixed-size segments.
    refuses(t, [segs[0], segs[1]!.slice(0, -4), ...segs.slice(2)].join('.'), /encrypted key has the wrong length/, `${kid}: short ek`)
    refuses(t, [...segs.slice(0, 4), segs[4]!.slice(0, 16)].join('.'), /tag has the wrong length/, `${kid}: truncated tag`)
  }
})

t.test('a value for the right kid but another private key fails in the same way', async (t) => {
  for (const [g, kid] of [[generateKeySet({ kid: 'x' }), 'x'], [generateKeySet({ alg: 'RSA-OAEP-256', modulusLength: 2048, kid: 'r' }), 'r']] as const) {
    const impostor = parseKeySet(g.publicJwks)
    let caught: unknown
    try {
      opener.open(craft(impostor, kid), AT)
    } catch (err) {
      caught = err
    }
    t.ok(caught instanceof EcluseError)
    t.equal((caught as EcluseError).code, 'open_failed')
    t.match((caught as EcluseError).message, /key unwrap failed|key decryption failed/, 'the reason is in the detail only')
  }
})

t.test('an oversized value is refused before it is parsed', async (t) => {
  const small = new FieldOpener(priv, { maxSealedChars: 100 })
  const jwe = new FieldSealer(pub, { route: 'r1' }).seal(Buffer.from('"v"'), { ptr: '/a' })
  t.throws(() => small.open(jwe, AT), { code: 'open_failed', message: /longer than/ })
})
