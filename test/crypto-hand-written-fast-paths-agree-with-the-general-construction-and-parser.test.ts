/**
 * The sealing hot path is written by hand (docs/sealing.md, "Performance"): base64url into one
 * buffer, pre-encoded header templates, and on opening a byte-for-byte recognizer of our own headers
 * in front of the general parser. Each is checked here against the straightforward construction it
 * replaces, on arbitrary inputs (fast-check), so that the bytes and the decisions cannot drift:
 *  - `b64uWrite` / `b64uDecodeInto` against Node's encoder and the strict `b64uDecode`;
 *  - the sealed value against header string → UTF-8 → base64url → `encryptToCompact`, with the same
 *    ephemeral key, CEK and IV, and against jose's `compactDecrypt`;
 *  - `CanonicalHeaders.parse` against `parseCompact`: whenever the fast path answers, the general
 *    parser accepts the value and returns the same parts; whenever the general parser refuses, the
 *    fast path does not answer.
 */
import { randomBytes } from 'node:crypto'
import fc from 'fast-check'
import { compactDecrypt, importJWK } from 'jose'
import t from 'tap'
import { b64uDecode, b64uDecodedLength, b64uDecodeInto, b64uLength, b64uWrite } from '../src/crypto/base64url.js'
import { CanonicalHeaders, FieldOpener, FieldSealer, isSealedFor, type OpenExpectation } from '../src/crypto/field.js'
import {
  agree,
  type CompactParts,
  encryptToCompact,
  FIELD_PROFILE,
  headerEnd,
  headerStart,
  parseCompact,
  TEST_SEAM,
} from '../src/crypto/jwe.js'
import { KeyWrapper } from '../src/crypto/kdf.js'
import { generateKeySet, type KeySet, parseKeySet } from '../src/crypto/keys.js'
import { randomEphemeral } from './vectors/deterministic.js'

const CRIT = { 'ecl.route': true, 'ecl.ptr': true, 'ecl.rid': true }

t.test('b64uWrite writes exactly Buffer#toString("base64url"), at any offset', async () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 200 }), fc.nat(50), fc.nat(7), (bytes, start, at) => {
      const from = Math.min(start, bytes.length)
      const out = new Uint8Array(at + b64uLength(bytes.length - from) + 3).fill(0x21)
      const end = b64uWrite(bytes, from, bytes.length, out, at)
      const want = Buffer.from(bytes.subarray(from)).toString('base64url')
      return end - at === want.length && Buffer.from(out.subarray(at, end)).toString('latin1') === want && out[end] === 0x21
    }),
    { numRuns: 500 },
  )
})

const b64Char = fc.constantFrom(...'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'.split(''))
const oddChar = fc.constantFrom('+', '/', '=', ' ', '.', '\n', 'é', '\u0000', '\u0100', '😀', 'A', 'Q', 'g', 'w')
/** Canonical encodings, and the same with one character replaced, dropped or added. */
const candidate = fc.oneof(
  fc.uint8Array({ maxLength: 64 }).map((b) => Buffer.from(b).toString('base64url')),
  fc.tuple(fc.uint8Array({ minLength: 1, maxLength: 64 }), fc.nat(), oddChar, fc.constantFrom('replace', 'drop', 'add')).map(([b, i, c, how]) => {
    const s = Buffer.from(b).toString('base64url')
    const k = i % s.length
    return how === 'replace' ? s.slice(0, k) + c + s.slice(k + 1) : how === 'drop' ? s.slice(0, k) + s.slice(k + 1) : s.slice(0, k) + c + s.slice(k)
  }),
  fc.array(fc.oneof(b64Char, oddChar), { maxLength: 40 }).map((cs) => cs.join('')),
)

t.test('b64uDecodeInto accepts exactly what the strict b64uDecode accepts, with the same bytes', async () => {
  fc.assert(
    fc.property(candidate, (s) => {
      const strict = b64uDecode(s)
      const out = new Uint8Array(b64uDecodedLength(s.length) + 4)
      const n = b64uDecodeInto(s, 0, s.length, out, 0)
      if (strict === undefined) return n === -1
      return n === strict.length && Buffer.from(out.subarray(0, n)).equals(strict)
    }),
    { numRuns: 3000 },
  )
})

/** Claims as an application may have them: any well-formed Unicode, quotes, backslashes, controls. */
const text = (max: number) => fc.string({ unit: fc.oneof(fc.constantFrom('"', '\\', '/', '~', '\u0000', '\u001f', '\u007f', '\u2028', 'é', '😀'), fc.string({ unit: 'binary', minLength: 1, maxLength: 1 })), maxLength: max })
const pointer = fc.array(text(12), { maxLength: 4 }).map((segs) => segs.map((s) => `/${s.replace(/~/g, '~0').replace(/\//g, '~1')}`).join(''))
const claims = fc.record({ route: text(20).filter((r) => r.length > 0), ptr: pointer, rid: fc.option(text(16), { nil: undefined }) })

for (const crv of ['X25519', 'P-256'] as const) {
  const g = generateKeySet({ crv, kid: `fast-${crv}` })
  const pub = parseKeySet(g.publicJwks)

  t.test(`${crv}: a sealed value is byte for byte the straightforward construction, for any claims and value`, async () => {
    fc.assert(
      fc.property(claims, fc.uint8Array({ maxLength: 300 }), ({ route, ptr, rid }, value) => {
        const eph = randomEphemeral(crv)
        const cek = randomBytes(32)
        const iv = randomBytes(12)
        const sealer = new FieldSealer(pub, { route, [TEST_SEAM]: { ephemeral: eph, cek: () => Buffer.from(cek), iv: () => Buffer.from(iv) } })
        const ours = sealer.seal(value, { ptr, rid })
        const json = sealer.sealJson(value, { ptr, rid })
        // The reference: the header as one string, then UTF-8, base64url, AES-KW and AES-GCM.
        const key = pub.current
        const a = agree(key, eph)
        let header = headerStart(key, rid === undefined ? ['ecl.route', 'ecl.ptr'] : ['ecl.route', 'ecl.ptr', 'ecl.rid'])
        header += `,"ecl.route":${JSON.stringify(route)},"ecl.ptr":${JSON.stringify(ptr)}`
        if (rid !== undefined) header += `,"ecl.rid":${JSON.stringify(rid)}`
        header += headerEnd(a.epk)
        const ref = encryptToCompact(Buffer.from(header, 'utf8').toString('base64url'), new KeyWrapper(a.kek).wrap256(cek, 1), cek, iv, value)
        return ours === ref && json.toString('latin1') === `"${ref}"`
      }),
      { numRuns: crv === 'X25519' ? 150 : 60 },
    )
  })

  t.test(`${crv}: values sealed for any claims open with jose and with our opener`, async () => {
    const privateKey = await importJWK(g.privateJwks.keys[0]!, 'ECDH-ES+A256KW')
    const opener = new FieldOpener(parseKeySet(g.privateJwks))
    await fc.assert(
      fc.asyncProperty(claims, fc.uint8Array({ maxLength: 64 }), async ({ route, ptr, rid }, value) => {
        const jwe = new FieldSealer(pub, { route }).seal(value, { ptr, rid })
        const out = await compactDecrypt(jwe, privateKey, { crit: CRIT, keyManagementAlgorithms: ['ECDH-ES+A256KW'], contentEncryptionAlgorithms: ['A256GCM'] })
        const h = out.protectedHeader as Record<string, unknown>
        return (
          Buffer.from(out.plaintext).equals(value) &&
          h['ecl.route'] === route &&
          h['ecl.ptr'] === ptr &&
          h['ecl.rid'] === rid &&
          opener.open(jwe, { route, ptr, rid }).equals(value)
        )
      }),
      { numRuns: 40 },
    )
  })
}

/** The parts, comparable with t.same (bytes as hex). */
function shape(p: CompactParts): Record<string, unknown> {
  const hex = (b: Uint8Array) => Buffer.from(b).toString('hex')
  return { protectedB64: p.protectedB64, kid: p.key.kid, epk: { ...p.epk }, apu: p.apu, apv: p.apv, ek: hex(p.ek), iv: hex(p.iv), ct: hex(p.ct), tag: hex(p.tag) }
}

function dotsOf(jwe: string): [number, number, number, number] | undefined {
  const d = [jwe.indexOf('.')]
  for (let i = 0; i < 3; i++) d.push(jwe.indexOf('.', d[i]! + 1))
  if (d.some((x) => x <= 0) || jwe.indexOf('.', d[3]! + 1) >= 0) return undefined
  return d as [number, number, number, number]
}

/** What the general parser says: the parts, or the refusal's detail. */
function general(jwe: string, keys: KeySet, e: OpenExpectation): { parts?: Record<string, unknown>; refused?: string } {
  try {
    return { parts: shape(parseCompact(jwe, keys, FIELD_PROFILE, { 'ecl.route': e.route, 'ecl.ptr': e.ptr, 'ecl.rid': e.rid }, 1 << 22)) }
  } catch (err) {
    return { refused: (err as Error).message }
  }
}

t.test('the canonical-header fast path answers only where parseCompact accepts, with the same parts', async (t) => {
  const x = generateKeySet({ kid: 'x' })
  const p = generateKeySet({ crv: 'P-256', kid: 'p' })
  const r = generateKeySet({ alg: 'RSA-OAEP-256', modulusLength: 2048, kid: 'r' })
  const keys = parseKeySet({ keys: [...x.publicJwks.keys, ...p.publicJwks.keys, ...r.publicJwks.keys] })
  const only = (kid: string) => parseKeySet({ keys: keys.publicJwks().keys.filter((k) => k.kid === kid) })
  const canonical = new CanonicalHeaders(keys)
  let answered = 0
  /** Mutations of a sealed value: another expectation, a changed character, a re-spelled header. */
  const mutation = fc.oneof(
    fc.constant({ kind: 'none' as const }),
    fc.record({ kind: fc.constant('expect' as const), which: fc.constantFrom('route', 'ptr', 'rid'), to: fc.option(text(6), { nil: undefined }) }),
    fc.record({ kind: fc.constant('char' as const), at: fc.nat(), c: fc.oneof(b64Char, oddChar) }),
    fc.record({ kind: fc.constant('header' as const), how: fc.constantFrom('spaces', 'reorder', 'escape', 'extra', 'drop-epk-member', 'apu') }),
    // Spellings of the same bytes that only a strict decoder refuses.
    fc.record({ kind: fc.constant('respell' as const), how: fc.constantFrom('plus', 'slash', 'space', 'pad', 'bits'), at: fc.nat() }),
  )
  fc.assert(
    fc.property(claims, fc.constantFrom('x', 'p', 'r'), fc.uint8Array({ maxLength: 40 }), mutation, ({ route, ptr, rid }, kid, value, m) => {
      let jwe = new FieldSealer(only(kid), { route }).seal(value, { ptr, rid })
      const expected: { route: string; ptr: string; rid?: string | undefined } = { route, ptr, rid }
      if (m.kind === 'expect') {
        if (m.which === 'rid') expected.rid = m.to
        else expected[m.which] = m.to ?? ''
      }
      if (m.kind === 'char') {
        const i = m.at % jwe.length
        jwe = jwe.slice(0, i) + m.c + jwe.slice(i + 1)
      }
      if (m.kind === 'header') {
        const d1 = jwe.indexOf('.')
        const h = JSON.parse(Buffer.from(jwe.slice(0, d1), 'base64url').toString('utf8')) as Record<string, unknown>
        let text: string
        if (m.how === 'spaces') text = JSON.stringify(h, null, 1)
        else if (m.how === 'reorder') text = JSON.stringify(Object.fromEntries(Object.entries(h).reverse()))
        else if (m.how === 'escape') text = JSON.stringify(h).replace('"enc"', '"\\u0065nc"')
        else if (m.how === 'extra') text = JSON.stringify({ ...h, typ: 'JOSE' })
        else if (m.how === 'apu') text = JSON.stringify({ ...h, apu: 'QWxpY2U' })
        else {
          const epk = { ...(h.epk as Record<string, unknown>) }
          delete epk.kty
          text = JSON.stringify({ ...h, epk })
        }
        jwe = Buffer.from(text, 'utf8').toString('base64url') + jwe.slice(d1)
      }
      if (m.kind === 'respell') {
        const d1 = jwe.indexOf('.')
        let h = jwe.slice(0, d1)
        const pick = (c: string) => {
          const all = [...h].flatMap((x, i) => (x === c ? [i] : []))
          return all.length === 0 ? -1 : all[m.at % all.length]!
        }
        if (m.how === 'plus' && pick('-') >= 0) h = `${h.slice(0, pick('-'))}+${h.slice(pick('-') + 1)}`
        else if (m.how === 'slash' && pick('_') >= 0) h = `${h.slice(0, pick('_'))}/${h.slice(pick('_') + 1)}`
        else if (m.how === 'space') h = `${h.slice(0, m.at % h.length)} ${h.slice(m.at % h.length)}`
        else if (m.how === 'pad') h = `${h}${'='.repeat((4 - (h.length % 4)) % 4 || 4)}`
        else if (m.how === 'bits' && h.length % 4 !== 0) {
          // The unused low bits of the last character: set them, the decoded bytes stay the same.
          const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'
          const v = alphabet.indexOf(h[h.length - 1]!) | 1
          h = h.slice(0, -1) + alphabet[v]
        }
        jwe = h + jwe.slice(d1)
      }
      const g = general(jwe, keys, expected)
      const d = dotsOf(jwe)
      const fast = d === undefined ? undefined : canonical.parse(jwe, ...d, expected, true)
      if (fast === undefined) return true
      answered++
      return g.parts !== undefined && JSON.stringify(shape(fast)) === JSON.stringify(g.parts)
    }),
    { numRuns: 1500 },
  )
  t.ok(answered > 200, `the fast path answered ${answered} times (it is exercised)`)
  // And it does answer for every value we seal, where it is expected.
  for (const kid of ['x', 'p']) {
    const jwe = new FieldSealer(only(kid), { route: 'r' }).seal(Buffer.from('1'), { ptr: '/a', rid: '7' })
    t.ok(canonical.parse(jwe, ...dotsOf(jwe)!, { route: 'r', ptr: '/a', rid: '7' }, true), `recognized (${kid})`)
  }
})

t.test('with contexts accepted beside the expected one (alsoRoutes), the fast path decides as the general parser does', async (t) => {
  const g = generateKeySet({ kid: 'also' })
  const keys = parseKeySet(g.publicJwks)
  const routes = ['r-new', 'r-old', 'r-older', 'r-other']
  let accepted = 0
  fc.assert(
    fc.property(
      fc.constantFrom(...routes),
      fc.constantFrom('/a', '/b'),
      fc.option(fc.constantFrom('1', '2'), { nil: undefined }),
      fc.constantFrom('/a', '/b'),
      fc.option(fc.constantFrom('1', '2'), { nil: undefined }),
      fc.subarray(['r-old', 'r-older']),
      (sealedFor, ptr, rid, expectedPtr, expectedRid, alsoRoutes) => {
        const jwe = new FieldSealer(keys, { route: sealedFor }).seal(Buffer.from('1'), { ptr, rid })
        const expected: OpenExpectation = { route: 'r-new', ptr: expectedPtr, rid: expectedRid, ...(alsoRoutes.length === 0 ? {} : { alsoRoutes }) }
        let general = true
        try {
          parseCompact(jwe, keys, FIELD_PROFILE, { 'ecl.route': ['r-new', ...alsoRoutes], 'ecl.ptr': expectedPtr, 'ecl.rid': expectedRid }, 1 << 22)
        } catch {
          general = false
        }
        const fast = isSealedFor(jwe, keys, expected)
        if (fast) accepted++
        // And the rule itself: the context is the expected one or listed, the pointer and record the same.
        const rule = (sealedFor === 'r-new' || alsoRoutes.includes(sealedFor)) && ptr === expectedPtr && rid === expectedRid
        return fast === general && fast === rule
      },
    ),
    { numRuns: 600 },
  )
  t.ok(accepted > 20, `values accepted ${accepted} times (both answers are exercised)`)
})
