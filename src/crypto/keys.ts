/**
 * Recipient key sets: JWK / JWKS files (RFC 7517) holding the trusted host's encryption keys, one
 * `kid` per key. A set is loaded and validated once at boot and every key is imported into a
 * `KeyObject` then (STYLE habit 2); the hot path only looks keys up by `kid`.
 *
 * Private keys never leave this module's objects by accident: `RecipientKey` keeps the private
 * `KeyObject` in a `#private` field, and both `toJSON` and `util.inspect` render a summary without
 * key material, so a key set can be logged (and will be, by mistake, one day) without harm.
 */
import {
  constants,
  createHash,
  createPrivateKey,
  createPublicKey,
  diffieHellman,
  generateKeyPairSync,
  type JsonWebKey,
  type KeyObject,
  privateDecrypt,
  publicEncrypt,
  randomBytes,
} from 'node:crypto'
import { inspect } from 'node:util'
import { EcluseError } from '../errors.js'
import { neverOpened, readBoundedFile, unreadable } from '../read-bounded-file.js'
import {
  CURVES,
  type Curve,
  type CurveInfo,
  DEFAULT_CURVE,
  DEFAULT_KEY_ALG,
  isCurve,
  isKeyAlg,
  KEY_ALGORITHMS,
  type KeyAlg,
  type KeyAlgorithm,
} from './algorithms.js'
import { b64u, b64uDecode } from './base64url.js'

/** A JSON Web Key as found in a file: members are validated by `parseKeySet`. */
export type Jwk = Record<string, unknown>

/** A JSON Web Key Set (RFC 7517 §5), with our optional `current` member naming the sealing key. */
export interface Jwks {
  keys: Jwk[]
  /** Non-standard member (RFC 7517 §5 lets readers ignore it): the `kid` new values are sealed to. */
  current?: string
}

const MAX_KEYSET_BYTES = 1024 * 1024
const MAX_KEYS = 64
const MAX_KID_CHARS = 128
/** `kid` travels in every sealed header and in logs: visible ASCII only, no spaces or quotes games. */
const KID_PATTERN = /^[\x21-\x7e]+$/

/** 1 to 128 visible ASCII characters: a kid we accept, and may quote in a message. */
function isKidShaped(kid: string): boolean {
  return kid.length > 0 && kid.length <= MAX_KID_CHARS && KID_PATTERN.test(kid)
}

const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'] as const
const RSA_PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi'] as const
const KEY_OPS: Readonly<Record<KeyAlgorithm['kind'], ReadonlySet<string>>> = {
  'ecdh-es+kw': new Set(['deriveKey', 'deriveBits']),
  'rsa-oaep': new Set(['encrypt', 'decrypt', 'wrapKey', 'unwrapKey']),
}
/**
 * What `key_ops`, when present, must allow of a key: a public key seals (its CEK wrapped to it), a
 * private key opens. As jose and WebCrypto read it: a public RSA key that allows only `decrypt`, or
 * any key that allows nothing (`[]`), is refused rather than used against its own constraint.
 */
const KEY_USES: Readonly<Record<KeyAlgorithm['kind'], Record<'public' | 'private', ReadonlySet<string>>>> = {
  'ecdh-es+kw': { public: new Set(['deriveKey', 'deriveBits']), private: new Set(['deriveKey', 'deriveBits']) },
  'rsa-oaep': { public: new Set(['encrypt', 'wrapKey']), private: new Set(['decrypt', 'unwrapKey']) },
}

let privateOf: (key: RecipientKey) => KeyObject | undefined

/**
 * One recipient key: its `kid`, algorithm, imported public key and, in a private set, the imported
 * private key (reachable only inside `src/crypto`).
 */
export class RecipientKey {
  readonly kid: string
  readonly alg: KeyAlg
  readonly algorithm: KeyAlgorithm
  /** The curve for ECDH-ES keys, `undefined` for RSA. */
  readonly curve: CurveInfo | undefined
  readonly publicKey: KeyObject
  /** RSA modulus length in bytes (the size of an RSA-OAEP encrypted key), 0 for ECDH keys. */
  readonly modulusBytes: number
  /** The public JWK (public members, `kid`, `use`, `alg`), safe to publish. */
  readonly publicJwk: Readonly<Jwk>
  readonly #privateKey: KeyObject | undefined

  static {
    privateOf = (key) => key.#privateKey
  }

  /** @internal built by `parseKeySet` / `generateKeySet` only. */
  constructor(
    init: {
      kid: string
      alg: KeyAlg
      curve: CurveInfo | undefined
      publicKey: KeyObject
      modulusBytes: number
      publicJwk: Jwk
    },
    privateKey: KeyObject | undefined,
  ) {
    this.kid = init.kid
    this.alg = init.alg
    this.algorithm = KEY_ALGORITHMS[init.alg]
    this.curve = init.curve
    this.publicKey = init.publicKey
    this.modulusBytes = init.modulusBytes
    this.publicJwk = Object.freeze({ ...init.publicJwk })
    this.#privateKey = privateKey
  }

  get hasPrivateKey(): boolean {
    return this.#privateKey !== undefined
  }

  toJSON(): { kid: string; alg: KeyAlg; crv?: Curve; private: boolean } {
    return this.curve === undefined
      ? { kid: this.kid, alg: this.alg, private: this.hasPrivateKey }
      : { kid: this.kid, alg: this.alg, crv: this.curve.crv, private: this.hasPrivateKey }
  }

  [inspect.custom](): string {
    return `RecipientKey ${JSON.stringify(this.toJSON())}`
  }
}

/** @internal the private `KeyObject` of a key, for `src/crypto` only (not re-exported). */
export function privateKeyOf(key: RecipientKey): KeyObject | undefined {
  return privateOf(key)
}

/**
 * A set of recipient keys. Sealing uses `current`; opening accepts any key in the set, so rotation is:
 * add the new key as current, keep the old one while values sealed to it may still arrive, then
 * remove it (a removed key opens nothing, see docs/sealing.md).
 *
 * @example
 * const recipients = await readKeySetFile('/etc/ecluse/trusted.pub.jwks', { publicOnly: true })
 * const sealer = new FieldSealer(recipients, { route: 'accreditations' })
 */
export class KeySet {
  /** The key new values are sealed to: the one named by `current`, else the first. */
  readonly current: RecipientKey
  /** True for a private set (every key holds its private half); a set is never mixed. */
  readonly hasPrivateKeys: boolean
  readonly keys: readonly RecipientKey[]
  readonly #byKid: ReadonlyMap<string, RecipientKey>

  /** @internal built by `parseKeySet`. */
  constructor(keys: readonly RecipientKey[], current: RecipientKey) {
    this.keys = Object.freeze([...keys])
    this.#byKid = new Map(keys.map((k) => [k.kid, k]))
    this.current = current
    this.hasPrivateKeys = keys[0]!.hasPrivateKey
  }

  /** The key with this `kid`, if the set still accepts it. */
  get(kid: string): RecipientKey | undefined {
    return this.#byKid.get(kid)
  }

  get kids(): string[] {
    return this.keys.map((k) => k.kid)
  }

  /** The public halves as a JWKS, e.g. to hand to a seal-only profile. */
  publicJwks(): Jwks {
    return { keys: this.keys.map((k) => ({ ...k.publicJwk })), current: this.current.kid }
  }

  toJSON(): { current: string; private: boolean; keys: ReturnType<RecipientKey['toJSON']>[] } {
    return { current: this.current.kid, private: this.hasPrivateKeys, keys: this.keys.map((k) => k.toJSON()) }
  }

  [inspect.custom](): string {
    return `KeySet ${JSON.stringify(this.toJSON())}`
  }
}

export interface KeySetOptions {
  /**
   * Refuse any private key member: a seal-only profile must never hold private keys, so a private
   * file given by mistake is an error rather than a silent downgrade.
   */
  publicOnly?: boolean
  /** Every key must hold its private half (an opening profile). */
  requirePrivate?: boolean
  /** `kid` of the sealing key; overrides the file's `current`; default the first key. */
  current?: string
  /** Name used in error details, e.g. the file path. */
  source?: string
  /** `readKeySetFile`: what names the file without its path, for a path that did not open (`--keys`). */
  named?: string
}

function fail(source: string, where: string, reason: string): never {
  throw new EcluseError('key_material_invalid', `${source}${where}: ${reason}`)
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

/**
 * Parse and import a JWKS (or a single JWK), from JSON text or an already parsed object.
 * Throws `EcluseError('key_material_invalid')` with a detail naming the key and the problem, never a
 * key value.
 */
export function parseKeySet(input: string | Uint8Array | unknown, options: KeySetOptions = {}): KeySet {
  const source = options.source ?? 'key set'
  if (options.publicOnly && options.requirePrivate) fail(source, '', 'publicOnly and requirePrivate are exclusive')
  let doc: unknown = input
  if (typeof input === 'string' || input instanceof Uint8Array) {
    const text = typeof input === 'string' ? input : Buffer.from(input).toString('utf8')
    if (text.length > MAX_KEYSET_BYTES) fail(source, '', `larger than ${MAX_KEYSET_BYTES} bytes`)
    try {
      doc = JSON.parse(text)
    } catch {
      // The parser's message may quote the text, i.e. key material: keep only the fact.
      fail(source, '', 'not valid JSON')
    }
  }
  if (!isRecord(doc)) fail(source, '', 'must be a JWK Set object {"keys": [...]} or a single JWK')
  let list: unknown[]
  let current = options.current
  if ('keys' in doc) {
    if (!Array.isArray(doc.keys)) fail(source, '', '"keys" must be an array')
    list = doc.keys
    if (current === undefined && doc.current !== undefined) {
      if (typeof doc.current !== 'string') fail(source, '', '"current" must be a kid string')
      current = doc.current
    }
  } else if ('kty' in doc) {
    list = [doc]
  } else {
    fail(source, '', 'must be a JWK Set object {"keys": [...]} or a single JWK')
  }
  if (list.length === 0) fail(source, '', 'holds no key')
  if (list.length > MAX_KEYS) fail(source, '', `holds more than ${MAX_KEYS} keys`)

  const keys: RecipientKey[] = []
  const seen = new Set<string>()
  list.forEach((jwk, i) => {
    const key = importJwk(jwk, source, `: keys[${i}]`, options)
    if (seen.has(key.kid)) fail(source, `: keys[${i}]`, `duplicate kid "${key.kid}"`)
    seen.add(key.kid)
    keys.push(key)
  })
  const withPrivate = keys.filter((k) => k.hasPrivateKey).length
  if (withPrivate !== 0 && withPrivate !== keys.length) {
    fail(source, '', 'mixes public and private keys; use one file per side')
  }
  if (options.requirePrivate && withPrivate === 0) fail(source, '', 'holds no private key (an opening profile needs them)')
  let currentKey = keys[0]!
  if (current !== undefined) {
    const found = keys.find((k) => k.kid === current)
    // Quoted only when it is a kid's shape: the file may come from another host, and this message
    // reaches a terminal (`ecluse seal`) and the log.
    if (found === undefined) {
      fail(source, '', typeof current === 'string' && isKidShaped(current) ? `current kid "${current}" is not in the set` : 'current is not a kid of the set')
    }
    currentKey = found
  }
  return new KeySet(keys, currentKey)
}

/**
 * Read a JWKS file (bounded size) and `parseKeySet` it; the path is used in error details.
 *
 * @example
 * const keys = await readKeySetFile('trusted.jwks', { requirePrivate: true })
 */
export async function readKeySetFile(path: string, options: KeySetOptions = {}): Promise<KeySet> {
  const source = options.source ?? path
  return parseKeySet(await readKeySetText(path, source, options.named), { ...options, source })
}

/**
 * The bytes of a key-set file: a regular file of at most 1 MiB, checked and read through one handle.
 * `readKeySetFile` parses them; `ecluse keys …` also keeps the document itself.
 *
 * @throws EcluseError `key_material_invalid` naming `source`.
 */
export async function readKeySetText(path: string, source = path, named = 'the key set file'): Promise<Buffer> {
  try {
    return await readBoundedFile(path, MAX_KEYSET_BYTES)
  } catch (err) {
    // A value that did not open is not quoted: it may be a key pasted in the path's place.
    throw new EcluseError('key_material_invalid', `${neverOpened(err) ? named : source}: ${unreadable(err, 'cannot be read')}`)
  }
}

function str(jwk: Record<string, unknown>, name: string, source: string, where: string): string {
  const v = jwk[name]
  if (typeof v !== 'string' || v.length === 0) fail(source, where, `"${name}" must be a non-empty string`)
  return v
}

function bytesMember(jwk: Record<string, unknown>, name: string, length: number, source: string, where: string): void {
  const v = str(jwk, name, source, where)
  const bytes = b64uDecode(v, 4 * length)
  if (bytes === undefined || bytes.length !== length) {
    fail(source, where, `"${name}" must be ${length} bytes of canonical base64url`)
  }
}

function importJwk(input: unknown, source: string, at: string, options: KeySetOptions): RecipientKey {
  if (!isRecord(input)) fail(source, at, 'must be a JWK object')
  const jwk = input
  const kidValue = jwk.kid
  if (typeof kidValue !== 'string' || !isKidShaped(kidValue)) {
    fail(source, at, `"kid" is required: 1 to ${MAX_KID_CHARS} visible ASCII characters`)
  }
  const kid = kidValue
  const where = `${at} (kid "${kid}")`
  if (jwk.use !== undefined && jwk.use !== 'enc') fail(source, where, '"use" must be "enc"')
  if (!isKeyAlg(jwk.alg)) {
    fail(source, where, `"alg" is required and must be one of ${Object.keys(KEY_ALGORITHMS).join(', ')}`)
  }
  const alg = jwk.alg
  const algorithm = KEY_ALGORITHMS[alg]
  const privateMembers = PRIVATE_MEMBERS.filter((m) => jwk[m] !== undefined)
  const isPrivate = privateMembers.length > 0
  if (jwk.key_ops !== undefined) {
    const allowed = KEY_OPS[algorithm.kind]
    const ops = jwk.key_ops
    if (!Array.isArray(ops) || !ops.every((op) => typeof op === 'string' && allowed.has(op))) {
      fail(source, where, `"key_ops" may only list ${[...allowed].join(', ')} for ${alg}`)
    }
    // RFC 7517 §4.3: duplicate values MUST NOT be present.
    if (new Set(ops).size !== ops.length) fail(source, where, '"key_ops" lists an operation twice')
    const uses = KEY_USES[algorithm.kind][isPrivate ? 'private' : 'public']
    if (!ops.some((op) => uses.has(op as string))) {
      fail(source, where, `"key_ops" must allow ${[...uses].join(' or ')}: the gateway ${isPrivate ? 'opens with a private key' : 'seals to a public key'}`)
    }
  }
  if (isPrivate && options.publicOnly) {
    fail(source, where, 'holds private key material where only public keys are allowed')
  }
  if (!isPrivate && options.requirePrivate) fail(source, where, 'has no private key material')
  if (jwk.k !== undefined || jwk.oth !== undefined) fail(source, where, 'symmetric and multi-prime keys are not supported')

  let curve: CurveInfo | undefined
  let publicJwk: Jwk
  let modulusBytes = 0
  if (algorithm.kind === 'ecdh-es+kw') {
    if (!isCurve(jwk.crv)) fail(source, where, `"crv" must be one of ${Object.keys(CURVES).join(', ')} for ${alg}`)
    curve = CURVES[jwk.crv]
    if (jwk.kty !== curve.kty) fail(source, where, `"kty" must be "${curve.kty}" for ${curve.crv}`)
    bytesMember(jwk, 'x', curve.coordinateBytes, source, where)
    if (curve.kty === 'EC') bytesMember(jwk, 'y', curve.coordinateBytes, source, where)
    if (isPrivate) bytesMember(jwk, 'd', curve.coordinateBytes, source, where)
    publicJwk =
      curve.kty === 'EC'
        ? { kty: curve.kty, crv: curve.crv, x: jwk.x, y: jwk.y }
        : { kty: curve.kty, crv: curve.crv, x: jwk.x }
  } else {
    if (jwk.kty !== 'RSA') fail(source, where, '"kty" must be "RSA" for RSA-OAEP-256')
    const n = b64uDecode(str(jwk, 'n', source, where), 4096)
    const e = b64uDecode(str(jwk, 'e', source, where), 16)
    // RFC 7518 §6.3.1.1: the modulus is unsigned big-endian without a leading zero octet.
    if (n === undefined || n.length === 0 || n[0] === 0) fail(source, where, '"n" must be canonical base64url without leading zero')
    // An exponent of 1 (or 3) makes RSA-OAEP of a CEK undoable without the private key (e = 1: the
    // "ciphertext" is the padded CEK itself): NIST SP 800-56B asks for 65537 ≤ e < 2^256, odd.
    if (e === undefined || e.length === 0 || e.length > 4 || e[0] === 0 || (e[e.length - 1]! & 1) === 0 || e.readUIntBE(0, e.length) < 65537) {
      fail(source, where, '"e" must be an odd public exponent from 65537 to 2^32 − 1')
    }
    const bits = (n.length - 1) * 8 + (32 - Math.clz32(n[0]!))
    if (bits < algorithm.minModulusBits || bits > algorithm.maxModulusBits) {
      fail(source, where, `RSA modulus must be ${algorithm.minModulusBits} to ${algorithm.maxModulusBits} bits`)
    }
    if (isPrivate) {
      for (const m of RSA_PRIVATE_MEMBERS) {
        if (typeof jwk[m] !== 'string' || b64uDecode(jwk[m] as string, 4096) === undefined) {
          fail(source, where, `private RSA keys need "${m}" (all of d, p, q, dp, dq, qi)`)
        }
      }
    }
    modulusBytes = n.length
    publicJwk = { kty: 'RSA', n: jwk.n, e: jwk.e }
  }
  publicJwk.kid = kid
  publicJwk.use = 'enc'
  publicJwk.alg = alg

  let publicKey: KeyObject
  let privateKey: KeyObject | undefined
  try {
    const { kid: _k, use: _u, alg: _a, ...material } = publicJwk
    publicKey = createPublicKey({ key: material as import('node:crypto').JsonWebKey, format: 'jwk' })
    if (isPrivate) {
      const priv: Record<string, unknown> = { ...material }
      if (algorithm.kind === 'ecdh-es+kw') priv.d = jwk.d
      else for (const m of RSA_PRIVATE_MEMBERS) priv[m] = jwk[m]
      privateKey = createPrivateKey({ key: priv as import('node:crypto').JsonWebKey, format: 'jwk' })
    }
  } catch {
    // Node's message is generic, but never risk echoing material: the fact is enough.
    fail(source, where, 'cannot be imported (invalid point, modulus or encoding)')
  }
  // An X25519 point of small order (u = 0, 1, …) imports, but every agreement with it gives the
  // all-zero secret, which OpenSSL refuses: every seal would fail (a 502 on every request) where the
  // boot is meant to refuse the set. One trial agreement at load tells; for a private key, the
  // pairwise check's agreement with the public point is that trial already.
  if (privateKey !== undefined) checkPair(publicKey, privateKey, algorithm, publicJwk, source, where)
  else if (curve?.kty === 'OKP' && !agreesWith(publicKey)) fail(source, where, 'is a point of small order (no agreement with it is possible)')
  return new RecipientKey({ kid, alg, curve, publicKey, modulusBytes, publicJwk }, privateKey)
}

/** A trial ECDH with a fresh ephemeral key of the same curve: false when OpenSSL refuses it. */
function agreesWith(publicKey: KeyObject): boolean {
  try {
    const { privateKey } = generateKeyPairSync(publicKey.asymmetricKeyType as 'x25519')
    diffieHellman({ privateKey, publicKey }).fill(0)
    return true
  } catch {
    return false
  }
}

/**
 * The private half must match the public members given next to it: for EC/OKP the public point
 * derived from `d` must equal `x`/`y`; for RSA a round trip (one operation at load) must succeed.
 * A mismatched file would otherwise seal to one key and open with another.
 */
function checkPair(
  publicKey: KeyObject,
  privateKey: KeyObject,
  algorithm: KeyAlgorithm,
  publicJwk: Jwk,
  source: string,
  where: string,
): void {
  if (algorithm.kind === 'ecdh-es+kw') {
    // Pairwise consistency (Node keeps the given x/y next to d for EC keys rather than deriving
    // them, so comparing exports is not enough): ECDH(d, E) must equal ECDH(e, P).
    const curve = CURVES[publicJwk.crv as Curve]
    const eph =
      curve.nodeType === 'x25519'
        ? generateKeyPairSync('x25519')
        : generateKeyPairSync('ec', { namedCurve: curve.namedCurve! })
    try {
      const a = diffieHellman({ privateKey, publicKey: eph.publicKey })
      const b = diffieHellman({ privateKey: eph.privateKey, publicKey })
      if (a.equals(b)) return
    } catch {
      // fall through
    }
    fail(source, where, 'private key does not match its public members')
  }
  const probe = randomBytes(32)
  try {
    const opts = { padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' }
    const back = privateDecrypt({ key: privateKey, ...opts }, publicEncrypt({ key: publicKey, ...opts }, probe))
    if (back.equals(probe)) return
  } catch {
    // fall through
  }
  fail(source, where, 'private key does not match its public members')
}

/**
 * Whether two keys read from different files are one key: the same algorithm and the same public key
 * (RFC 7638 thumbprint). A kid that names two keys splits a deployment: values sealed under it to one
 * are opened with the other, and never open.
 */
export function isSameRecipientKey(a: RecipientKey, b: RecipientKey): boolean {
  return a.alg === b.alg && jwkThumbprint(a.publicJwk) === jwkThumbprint(b.publicJwk)
}

/** RFC 7638 JWK thumbprint (SHA-256, base64url) over the required public members in lexical order. */
export function jwkThumbprint(jwk: Jwk): string {
  let canonical: string
  if (jwk.kty === 'RSA') canonical = JSON.stringify({ e: jwk.e, kty: jwk.kty, n: jwk.n })
  else if (jwk.kty === 'EC') canonical = JSON.stringify({ crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y })
  else canonical = JSON.stringify({ crv: jwk.crv, kty: jwk.kty, x: jwk.x })
  return b64u(createHash('sha256').update(canonical).digest())
}

const JWK_ENCODINGS = { publicKeyEncoding: { format: 'jwk' }, privateKeyEncoding: { format: 'jwk' } } as const

/**
 * `generateKeyPairSync` with a half encoded as a JWK by the generation itself, which Node supports
 * and @types/node does not declare: an encoded half is returned "as if keyObject.export() had been
 * called on its result", the other as a KeyObject. Used instead of exporting a fresh KeyObject as a
 * JWK, which can deadlock Node 20: the export holds the key's lock while it allocates, and a garbage
 * collection in that moment finalises the generation job, whose destructor takes the same lock (one
 * hang in about 150,000 X25519 and 40,000 P-256 agreements on Node 20.20; docs/sealing.md, "Node 20:
 * no JWK export of a fresh key").
 */
export const generateKeyPairAsJwk = generateKeyPairSync as unknown as {
  (
    type: 'x25519' | 'ec' | 'rsa',
    options: { namedCurve?: string; modulusLength?: number; publicExponent?: number } & typeof JWK_ENCODINGS,
  ): { privateKey: JsonWebKey; publicKey: JsonWebKey }
  (
    type: 'x25519' | 'ec',
    options: { namedCurve?: string; publicKeyEncoding: { format: 'jwk' } },
  ): { privateKey: KeyObject; publicKey: JsonWebKey }
}

export interface GenerateKeySetOptions {
  /** Default `ECDH-ES+A256KW` (see docs/sealing.md for why). */
  alg?: KeyAlg
  /** For ECDH-ES: default `X25519`. */
  crv?: Curve
  /** Default: the RFC 7638 thumbprint of the public key. */
  kid?: string
  /** For RSA: default 3072 bits. */
  modulusLength?: number
}

/**
 * Generate one new key as a private JWKS (for the trusted host) and the matching public JWKS (for the
 * gateway's seal-only profile). The caller writes them out; nothing is logged here.
 *
 * @example
 * const { privateJwks, publicJwks } = generateKeySet({ alg: 'ECDH-ES+A256KW', crv: 'X25519' })
 */
export function generateKeySet(options: GenerateKeySetOptions = {}): { privateJwks: Jwks; publicJwks: Jwks } {
  const alg = options.alg ?? DEFAULT_KEY_ALG
  if (!isKeyAlg(alg)) throw new EcluseError('key_material_invalid', `unsupported alg "${String(alg)}"`)
  const algorithm = KEY_ALGORITHMS[alg]
  let priv: Jwk
  if (algorithm.kind === 'ecdh-es+kw') {
    const crv = options.crv ?? DEFAULT_CURVE
    if (!isCurve(crv)) throw new EcluseError('key_material_invalid', `unsupported crv "${String(crv)}"`)
    const info = CURVES[crv]
    const pair =
      info.nodeType === 'x25519'
        ? generateKeyPairAsJwk('x25519', JWK_ENCODINGS)
        : generateKeyPairAsJwk('ec', { namedCurve: info.namedCurve!, ...JWK_ENCODINGS })
    priv = pair.privateKey as Jwk
  } else {
    const modulusLength = options.modulusLength ?? 3072
    if (!Number.isInteger(modulusLength) || modulusLength < algorithm.minModulusBits || modulusLength > algorithm.maxModulusBits) {
      throw new EcluseError('key_material_invalid', `RSA modulus must be ${algorithm.minModulusBits} to ${algorithm.maxModulusBits} bits`)
    }
    priv = generateKeyPairAsJwk('rsa', { modulusLength, publicExponent: 65537, ...JWK_ENCODINGS }).privateKey as Jwk
  }
  const pubMembers =
    priv.kty === 'RSA'
      ? { kty: priv.kty, n: priv.n, e: priv.e }
      : priv.kty === 'EC'
        ? { kty: priv.kty, crv: priv.crv, x: priv.x, y: priv.y }
        : { kty: priv.kty, crv: priv.crv, x: priv.x }
  const kid = options.kid ?? jwkThumbprint(pubMembers)
  if (!isKidShaped(kid)) {
    throw new EcluseError('key_material_invalid', `"kid" must be 1 to ${MAX_KID_CHARS} visible ASCII characters`)
  }
  const head = { kid, use: 'enc', alg }
  return {
    privateJwks: { keys: [{ ...head, ...priv }], current: kid },
    publicJwks: { keys: [{ ...head, ...pubMembers }], current: kid },
  }
}
