/**
 * Compact JWE (RFC 7516 §7.1) for our profile, by hand on synchronous `node:crypto`: building the
 * protected header exactly as jose serializes it, ECDH-ES key agreement (RFC 7518 §4.6), CEK
 * transport, AES-256-GCM content encryption, and the strict, allow-listed parser used on opening.
 *
 * Every failure to open is `EcluseError('open_failed', detail)`: one code whatever the cause
 * (RFC 7516 §11.5); the detail is for logs only.
 */
import { isUtf8 } from 'node:buffer'
import {
  constants,
  createCipheriv,
  createDecipheriv,
  createPublicKey,
  diffieHellman,
  type JsonWebKey,
  type KeyObject,
  privateDecrypt,
  publicEncrypt,
  randomBytes,
} from 'node:crypto'
import { channel } from 'node:diagnostics_channel'
import { EcluseError } from '../errors.js'
import { CONTENT_ENCRYPTION, type CurveInfo, isKeyAlg } from './algorithms.js'
import { b64u, b64uDecode } from './base64url.js'
import { concatKdf256, KeyUnwrapper, KeyWrapper } from './kdf.js'
import { generateKeyPairAsJwk, type KeySet, privateKeyOf, type RecipientKey } from './keys.js'

const GCM = CONTENT_ENCRYPTION.A256GCM

/**
 * Name of the `diagnostics_channel` on which every asymmetric operation is published, e.g. to count
 * them in tests or metrics. Publishing costs nothing when nobody subscribes (STYLE habit 10).
 */
export const ASYMMETRIC_CHANNEL = 'ecluse:crypto:asymmetric'

/** Message published on `ASYMMETRIC_CHANNEL`. */
export interface AsymmetricOperation {
  readonly op: 'ecdh-es' | 'rsa-oaep'
  readonly side: 'seal' | 'open'
  readonly kid: string
}

const asymmetric = channel(ASYMMETRIC_CHANNEL)

export function noteAsymmetric(op: AsymmetricOperation['op'], side: AsymmetricOperation['side'], kid: string): void {
  if (asymmetric.hasSubscribers) asymmetric.publish({ op, side, kid } satisfies AsymmetricOperation)
}

/** Throw the uniform opening failure; `detail` goes to logs only. */
export function openFailed(detail: string): never {
  throw new EcluseError('open_failed', detail)
}

/**
 * Quote an attacker-supplied string for a log detail, bounded, in printable ASCII: anything else
 * (line separators, bidi overrides, 8-bit terminal controls, which pino writes raw) as `\uXXXX`.
 */
export function quote(v: unknown): string {
  const s = typeof v === 'string' ? v : typeof v
  return JSON.stringify(s.length > 64 ? `${s.slice(0, 64)}…` : s).replace(/[^\x20-\x7e]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)
}

/**
 * A header profile: the extension claims (all listed in `crit`) a kind of sealed object carries.
 * A field and a stream key are never interchangeable: each profile refuses the other's claims, so a
 * stream's key-bearing JWE cannot be opened as a field value and so released as plaintext.
 */
export interface HeaderProfile {
  readonly name: string
  /** Every extension claim this profile knows, in header order. */
  readonly claims: readonly string[]
}

export const FIELD_PROFILE: HeaderProfile = { name: 'field', claims: ['ecl.route', 'ecl.ptr', 'ecl.rid'] }
export const STREAM_PROFILE: HeaderProfile = { name: 'stream', claims: ['ecl.fmt', 'ecl.route'] }

/** Registered header parameters we accept; anything else (zip, jku, jwk, x5u, x5c, p2s, …) is refused. */
const REGISTERED = new Set(['alg', 'enc', 'kid', 'epk', 'apu', 'apv', 'crit', 'typ', 'cty'])
const EPK_MEMBERS_OKP = new Set(['kty', 'crv', 'x'])
const EPK_MEMBERS_EC = new Set(['kty', 'crv', 'x', 'y'])

/**
 * Bounds on what a header may cost to parse. The sealer never produces more: its three claims are
 * at most MAX_CLAIM_BYTES each once in the header, ≈ 3.5 KiB of JSON with the rest, 4.7 Ki characters
 * of base64url.
 */
export const MAX_PROTECTED_CHARS = 8192
/**
 * Longest route, pointer or record id we bind into a header, as UTF-8 bytes of its JSON string
 * (quotes aside): a claim is counted as it will cost in the header, where a control character takes
 * six bytes (`\u001f`). At most as many UTF-16 units, so also the bound in characters.
 */
export const MAX_CLAIM_BYTES = 1024

/** Whether `v` fits a claim: at most MAX_CLAIM_BYTES once JSON-escaped (a short string surely does). */
export function claimFits(v: string): boolean {
  return v.length <= MAX_CLAIM_BYTES / 6 || Buffer.byteLength(JSON.stringify(v), 'utf8') - 2 <= MAX_CLAIM_BYTES
}
const MAX_PARTY_INFO_BYTES = 256

/** An ephemeral public key as it appears in `epk`, in jose's member order. */
export interface Epk {
  readonly x: string
  readonly crv: string
  readonly kty: string
  readonly y?: string
}

/** The result of one ECDH-ES agreement on the sealing side: the KEK and the `epk` to publish. */
export interface Agreement {
  readonly kek: Buffer
  readonly epk: Epk
}

/**
 * One ECDH-ES key agreement with a fresh ephemeral key (RFC 7518 §4.6): `Z = ECDH(eph, recipient)`,
 * `KEK = ConcatKDF(Z, "ECDH-ES+A256KW", apu = "", apv = "")`. `ephemeral` is for known-answer tests.
 */
export function agree(key: RecipientKey, ephemeral?: KeyObject): Agreement {
  const curve = key.curve!
  const { privateKey, publicKey } =
    ephemeral === undefined ? generateEphemeral(curve) : { privateKey: ephemeral, publicKey: createPublicKey(ephemeral).export({ format: 'jwk' }) }
  const z = diffieHellman({ privateKey, publicKey: key.publicKey })
  noteAsymmetric('ecdh-es', 'seal', key.kid)
  const kek = concatKdf256(z, key.alg, EMPTY, EMPTY)
  z.fill(0)
  const epk: Epk =
    curve.kty === 'EC'
      ? { x: publicKey.x!, crv: curve.crv, kty: curve.kty, y: publicKey.y! }
      : { x: publicKey.x!, crv: curve.crv, kty: curve.kty }
  return { kek, epk }
}

/**
 * A fresh ephemeral key pair, its public half as a JWK encoded by the key generation itself, never
 * by exporting the fresh KeyObject, which can deadlock Node 20 (`generateKeyPairAsJwk`).
 */
function generateEphemeral(curve: CurveInfo): { privateKey: KeyObject; publicKey: JsonWebKey } {
  const publicKeyEncoding = { format: 'jwk' } as const
  return curve.nodeType === 'x25519'
    ? generateKeyPairAsJwk('x25519', { publicKeyEncoding })
    : generateKeyPairAsJwk('ec', { namedCurve: curve.namedCurve!, publicKeyEncoding })
}

const EMPTY = Buffer.alloc(0)

/** RSA-OAEP-256 (RFC 7518 §4.3) encryption of one CEK. */
export function rsaWrap(key: RecipientKey, cek: Uint8Array): Buffer {
  noteAsymmetric('rsa-oaep', 'seal', key.kid)
  return publicEncrypt({ key: key.publicKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' }, cek)
}

/**
 * The start of a protected header, up to and excluding the claims that vary per sealed value:
 * `{"alg":…,"enc":"A256GCM","kid":…,"crit":[…]` — the member order jose produces for the same
 * `setProtectedHeader` call, so our bytes equal jose's (the known-answer test checks this).
 */
export function headerStart(key: RecipientKey, crit: readonly string[]): string {
  return `{"alg":${JSON.stringify(key.alg)},"enc":"A256GCM","kid":${JSON.stringify(key.kid)},"crit":${JSON.stringify(crit)}`
}

/** `headerStart` with `claims` as its `crit` list and as members, in order (a stream key JWE's header). */
export function headerWithClaims(key: RecipientKey, claims: ReadonlyArray<readonly [string, string]>): string {
  let header = headerStart(
    key,
    claims.map(([name]) => name),
  )
  for (const [name, value] of claims) header += `,${JSON.stringify(name)}:${JSON.stringify(value)}`
  return header
}

/** The end of a protected header: jose appends `epk` last (`{...protectedHeader, ...parameters}`). */
export function headerEnd(epk: Epk | undefined): string {
  return epk === undefined ? '}' : `,"epk":${JSON.stringify(epk)}}`
}

/**
 * AES-256-GCM over `plaintext` with the ASCII of the encoded protected header as AAD
 * (RFC 7516 §5.1 step 14), serialized as compact JWE.
 */
export function encryptToCompact(
  protectedB64: string,
  ek: Uint8Array,
  cek: Uint8Array,
  iv: Uint8Array,
  plaintext: Uint8Array,
): string {
  const cipher = createCipheriv(GCM.cipher, cek, iv) // GCM's default tag is the full 16 bytes
  cipher.setAAD(Buffer.from(protectedB64, 'latin1'))
  const ct = cipher.update(plaintext)
  cipher.final()
  const tag = cipher.getAuthTag()
  return `${protectedB64}.${b64u(ek)}.${b64u(iv)}.${b64u(ct)}.${b64u(tag)}`
}

/** What key management and decryption need of a validated compact JWE. */
export interface CompactParts {
  readonly protectedB64: string
  readonly key: RecipientKey
  readonly ek: Uint8Array
  readonly iv: Uint8Array
  readonly ct: Uint8Array
  readonly tag: Uint8Array
  /** ECDH-ES only: validated `epk` and party info, as they appear in the header. */
  readonly epk: Epk | undefined
  readonly apu: string
  readonly apv: string
}

/** What the parser hands to key management and decryption: the parts and the parsed header. */
export interface ParsedCompact extends CompactParts {
  readonly header: Readonly<Record<string, unknown>>
}

/**
 * Expected claim values: a string must match exactly, a list accepts any of its strings (a context
 * and those accepted while the sealing side changes it), `ANY_VALUE` accepts any string, absent means
 * must be absent.
 */
export const ANY_VALUE: unique symbol = Symbol('any')
export type Expected = Readonly<Record<string, string | readonly string[] | typeof ANY_VALUE | undefined>>

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

/**
 * Parse and validate a compact JWE against our profile and a key set, without any secret-dependent
 * work: shape, strict base64url, header allow-list, `crit` (RFC 7515 §4.1.11), `alg`/`enc` from the
 * table, `kid` in the set with the matching `alg`, `epk` on the key's curve, segment lengths, and the
 * context claims against `expected`. Throws `open_failed`.
 *
 * Everything checked here is a function of public inputs, so failing fast leaks nothing; the
 * secret-dependent steps (unwrap, tag) are made uniform by the callers.
 */
export function parseCompact(
  jwe: unknown,
  keys: KeySet,
  profile: HeaderProfile,
  expected: Expected,
  maxChars: number,
): ParsedCompact {
  if (typeof jwe !== 'string') openFailed('not a string')
  if (jwe.length > maxChars) openFailed('longer than the configured maximum')
  const d1 = jwe.indexOf('.')
  const d2 = jwe.indexOf('.', d1 + 1)
  const d3 = jwe.indexOf('.', d2 + 1)
  const d4 = jwe.indexOf('.', d3 + 1)
  if (d1 < 0 || d2 < 0 || d3 < 0 || d4 < 0 || jwe.indexOf('.', d4 + 1) >= 0) openFailed('not five compact segments')

  const protectedB64 = jwe.slice(0, d1)
  const headerBytes = b64uDecode(protectedB64, MAX_PROTECTED_CHARS)
  if (headerBytes === undefined || headerBytes.length === 0) openFailed('protected header is not canonical base64url or too long')
  if (!isUtf8(headerBytes)) openFailed('protected header is not UTF-8')
  let header: unknown
  try {
    header = JSON.parse(headerBytes.toString('utf8'))
  } catch {
    openFailed('protected header is not JSON')
  }
  if (!isRecord(header)) openFailed('protected header is not an object')

  const claims = profile.claims
  for (const name of Object.keys(header)) {
    if (!REGISTERED.has(name) && !claims.includes(name)) openFailed(`header parameter ${quote(name)} not allowed for a ${profile.name}`)
  }
  const { alg, enc, kid, crit } = header
  if (!isKeyAlg(alg)) openFailed(`alg ${quote(alg)} not allowed`)
  if (enc !== GCM.enc) openFailed(`enc ${quote(enc)} not allowed`)
  if (typeof kid !== 'string') openFailed('kid missing')
  if (header.typ !== undefined && typeof header.typ !== 'string') openFailed('typ is not a string')
  if (header.cty !== undefined && typeof header.cty !== 'string') openFailed('cty is not a string')

  // crit (RFC 7515 §4.1.11, RFC 7516 §4.1.13): must list exactly the extension claims present, each
  // known to this profile; every one of ours is critical so a library that does not check them
  // refuses the value rather than ignoring where it belongs.
  if (!Array.isArray(crit) || crit.length === 0) openFailed('crit missing')
  let present = 0
  for (const name of claims) {
    const v = header[name]
    const want = expected[name]
    if (v === undefined) {
      if (want !== undefined && want !== ANY_VALUE) openFailed(`${name} missing`)
      continue
    }
    present++
    if (typeof v !== 'string') openFailed(`${name} is not a string`)
    if (!crit.includes(name)) openFailed(`${name} not listed in crit`)
    if (want === undefined) openFailed(`${name} present but not expected here`)
    if (want !== ANY_VALUE && (typeof want === 'string' ? v !== want : !want.includes(v))) openFailed(`${name} does not match where the value sits`)
  }
  if (crit.length !== present || new Set(crit).size !== crit.length) openFailed('crit lists unknown, absent or duplicate names')

  const key = keys.get(kid)
  if (key === undefined) openFailed(`kid ${quote(kid)} not accepted`)
  if (key.alg !== alg) openFailed(`alg ${alg} does not match key ${quote(kid)}`)

  let epk: Epk | undefined
  let apu = ''
  let apv = ''
  if (key.algorithm.kind === 'ecdh-es+kw') {
    epk = checkEpk(header.epk, key.curve!)
    apu = partyInfo(header.apu, 'apu')
    apv = partyInfo(header.apv, 'apv')
    // jose refuses equal apu and apv when both are present, empty ones included; so do we, to open
    // exactly what it opens.
    if (header.apu !== undefined && header.apv !== undefined && apu === apv) openFailed('apu equals apv')
  } else if (header.epk !== undefined || header.apu !== undefined || header.apv !== undefined) {
    openFailed('epk/apu/apv with RSA-OAEP-256')
  }

  const ek = b64uDecode(jwe.slice(d1 + 1, d2), 2048)
  const iv = b64uDecode(jwe.slice(d2 + 1, d3), 16)
  const tag = b64uDecode(jwe.slice(d4 + 1), 24)
  const wantEk = key.algorithm.kind === 'ecdh-es+kw' ? key.algorithm.wrappedCekBytes : key.modulusBytes
  if (ek === undefined || ek.length !== wantEk) openFailed('encrypted key has the wrong length')
  if (iv === undefined || iv.length !== GCM.ivBytes) openFailed('iv has the wrong length')
  if (tag === undefined || tag.length !== GCM.tagBytes) openFailed('tag has the wrong length')
  const ct = b64uDecode(jwe.slice(d3 + 1, d4))
  if (ct === undefined) openFailed('ciphertext is not canonical base64url')
  return { protectedB64, header, key, ek, iv, ct, tag, epk, apu, apv }
}

function checkEpk(v: unknown, curve: CurveInfo): Epk {
  if (!isRecord(v)) openFailed('epk missing')
  const allowed = curve.kty === 'EC' ? EPK_MEMBERS_EC : EPK_MEMBERS_OKP
  for (const name of Object.keys(v)) if (!allowed.has(name)) openFailed(`epk member ${quote(name)} not allowed`)
  if (v.kty !== curve.kty || v.crv !== curve.crv) openFailed('epk is not on the key\'s curve')
  const x = coordinate(v.x)
  if (curve.kty === 'EC') return { x, crv: curve.crv, kty: curve.kty, y: coordinate(v.y) }
  return { x, crv: curve.crv, kty: curve.kty }
}

function coordinate(v: unknown): string {
  if (typeof v !== 'string') openFailed('epk coordinate missing')
  const b = b64uDecode(v, 44)
  if (b === undefined || b.length !== 32) openFailed('epk coordinate is not 32 bytes')
  return v
}

function partyInfo(v: unknown, name: string): string {
  if (v === undefined) return ''
  if (typeof v !== 'string') openFailed(`${name} is not a string`)
  const b = b64uDecode(v, Math.ceil((MAX_PARTY_INFO_BYTES * 4) / 3))
  if (b === undefined) openFailed(`${name} is not canonical base64url or too long`)
  return v
}

/**
 * The opening side of ECDH-ES: `Z = ECDH(recipient, epk)` and the Concat KDF. Returns `undefined`
 * when the agreement fails (off-curve or small-order point: OpenSSL refuses an all-zero X25519
 * result).
 */
export function deriveKek(p: CompactParts): Buffer | undefined {
  const priv = privateKeyOf(p.key)
  if (priv === undefined || p.epk === undefined) return undefined
  try {
    const pub = createPublicKey({ key: { ...p.epk }, format: 'jwk' })
    const z = diffieHellman({ privateKey: priv, publicKey: pub })
    noteAsymmetric('ecdh-es', 'open', p.key.kid)
    const kek = concatKdf256(z, p.key.alg, Buffer.from(p.apu, 'base64url'), Buffer.from(p.apv, 'base64url'))
    z.fill(0)
    return kek
  } catch {
    return undefined
  }
}

/**
 * RSA-OAEP-256 decryption of the CEK. On any failure a random CEK is returned instead so that the
 * content decryption fails on the tag like every other bad value (RFC 7516 §11.5; Manger's attack
 * needs to tell padding failures from tag failures).
 */
export function rsaUnwrap(p: CompactParts): { cek: Buffer; ok: boolean } {
  const priv = privateKeyOf(p.key)
  noteAsymmetric('rsa-oaep', 'open', p.key.kid)
  try {
    const cek = privateDecrypt({ key: priv!, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' }, p.ek)
    if (cek.length === GCM.cekBytes) return { cek, ok: true }
  } catch {
    // fall through to the random CEK
  }
  return { cek: randomBytes(GCM.cekBytes), ok: false }
}

/** AES-256-GCM decryption and tag check; throws `open_failed` (with `reason` as detail) on a bad tag. */
export function decryptContent(p: CompactParts, cek: Uint8Array, reason: string): Buffer {
  let out: Buffer | undefined
  try {
    const decipher = createDecipheriv(GCM.cipher, cek, p.iv, { authTagLength: GCM.tagBytes })
    decipher.setAAD(Buffer.from(p.protectedB64, 'latin1'))
    decipher.setAuthTag(p.tag)
    out = decipher.update(p.ct)
    decipher.final()
  } catch {
    // The plaintext is out before the tag is checked: zeroed, as it was never authenticated (a
    // sealed body's key JWE with a bad tag held the real stream key here).
    out?.fill(0)
    openFailed(reason)
  }
  return out
}

const LONE_SURROGATE = /[\ud800-\udfff]/u

/** Validate a claim value we are about to bind into a header (sealing side). */
export function checkClaim(name: string, v: unknown): string {
  if (typeof v !== 'string' || !claimFits(v)) {
    throw new EcluseError('seal_failed', `${name} must be a string of at most ${MAX_CLAIM_BYTES} bytes as JSON`)
  }
  // A lone surrogate would serialize as a "\udXXX" escape other JOSE libraries may refuse.
  if (LONE_SURROGATE.test(v)) {
    throw new EcluseError('seal_failed', `${name} must be well-formed Unicode`)
  }
  return v
}

/**
 * Test-only seam (not re-exported from `src/crypto/index.ts`): fixes the ephemeral key and the
 * random values so known-answer tests can compare bytes with jose and with the published vectors.
 * Nothing in configuration can reach it.
 */
export const TEST_SEAM: unique symbol = Symbol('ecluse.crypto.testSeam')

export interface TestSeam {
  readonly ephemeral?: KeyObject
  readonly cek?: () => Buffer
  readonly iv?: () => Buffer
  /** Stream key material (the `k` of a sealed stream's key JWE). */
  readonly streamKey?: () => Buffer
}

/**
 * Seal one compact JWE with its own key agreement (no batching, no cache): used once per sealed
 * stream for the stream key. `claims` are bound in order and all listed in `crit`.
 */
export function sealCompactOnce(
  key: RecipientKey,
  claims: ReadonlyArray<readonly [string, string]>,
  plaintext: Uint8Array,
  seam: TestSeam | undefined,
): string {
  let header = headerWithClaims(key, claims)
  const cek = seam?.cek?.() ?? randomBytes(GCM.cekBytes)
  const iv = seam?.iv?.() ?? randomBytes(GCM.ivBytes)
  try {
    let ek: Buffer
    if (key.algorithm.kind === 'rsa-oaep') {
      ek = rsaWrap(key, cek)
      header += headerEnd(undefined)
    } else {
      const a = agree(key, seam?.ephemeral)
      const wrapper = new KeyWrapper(a.kek)
      try {
        ek = wrapper.wrap256(cek, 1)
      } finally {
        wrapper.erase()
        a.kek.fill(0)
      }
      header += headerEnd(a.epk)
    }
    return encryptToCompact(Buffer.from(header, 'utf8').toString('base64url'), ek, cek, iv, plaintext)
  } finally {
    cek.fill(0)
  }
}

/**
 * The content of `p` decrypted with `cek`, which is zeroed whatever happens. `unwrapped: false`
 * means the key could not be recovered and `cek` is a random stand-in: the decryption then fails on
 * the tag in the same way as a tampered value (RFC 7516 §11.5), and `failure` is the detail.
 */
export function decryptWithCek(p: CompactParts, cek: Buffer, unwrapped: boolean, failure: string): Buffer {
  try {
    const out = decryptContent(p, cek, unwrapped ? 'authentication tag mismatch' : failure)
    if (!unwrapped) openFailed(failure)
    return out
  } finally {
    cek.fill(0)
  }
}

/** Open one parsed compact JWE without a KEK cache; throws `open_failed`. */
export function openParsedOnce(p: ParsedCompact): Buffer {
  if (p.key.algorithm.kind === 'rsa-oaep') {
    const { cek, ok } = rsaUnwrap(p)
    return decryptWithCek(p, cek, ok, 'key decryption failed')
  }
  const kek = deriveKek(p)
  if (kek === undefined) openFailed('key agreement failed')
  const unwrapper = new KeyUnwrapper(kek)
  const cek = unwrapper.unwrap256(p.ek)
  unwrapper.erase()
  return decryptWithCek(p, cek ?? randomBytes(GCM.cekBytes), cek !== undefined, 'key unwrap failed')
}
