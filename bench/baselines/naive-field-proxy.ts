/**
 * Baseline 3: the naive field-encrypting proxy — the bare proxy (baseline 2) plus what one would
 * write first to seal JSON fields: buffer the body, `JSON.parse`, jose `CompactEncrypt` per field
 * (ECDH-ES+A256KW on X25519, A256GCM: a fresh ECDH agreement per field), `JSON.stringify`, forward.
 * The reverse direction opens with jose `compactDecrypt` per field. It is the yardstick for Écluse's
 * streaming `seal-fields` / `open-fields` transforms (one agreement per message, no full parse).
 *
 *   node --import tsx bench/baselines/naive-field-proxy.ts --pki DIR --upstream-port N
 *        [--seal request|none] [--open response|none] [--jwks PRIVATE_JWKS_FILE] [--max-body-bytes N]
 *
 * The fields are bench/records.ts `SENSITIVE_POINTERS`, in a body that is one record, an array of
 * records, or `{"records": [...]}`. Without `--jwks` a key pair is generated at start (the public
 * half is printed in the ready line as `jwk`, so a scenario can hand it to an upstream that opens).
 * Bodies are capped at 1 MiB unless `--max-body-bytes` says more (413), and a value that does not
 * open is a 502, never passed on.
 */
import { readFileSync } from 'node:fs'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { CompactEncrypt, type CryptoKey, compactDecrypt, exportJWK, generateKeyPair, importJWK, type JWK } from 'jose'
import type { Dispatcher } from 'undici'
import { isMain } from '../lib/child.js'
import { SENSITIVE_POINTERS } from '../records.js'
import { BareProxy, type BareProxyOptions, proxyOptionsFromArgs, serveProxy } from './bare-proxy.js'

const DEFAULT_MAX_BODY_BYTES = 1024 * 1024
const ALG = 'ECDH-ES+A256KW'
const ENC = 'A256GCM'
const encoder = new TextEncoder()
const decoder = new TextDecoder('utf-8', { fatal: true })

export interface FieldKeys {
  readonly kid: string
  readonly publicKey: CryptoKey
  readonly privateKey: CryptoKey
  readonly publicJwk: JWK
}

/** A fresh X25519 key pair, or the first key of a private JWKS file. */
export async function fieldKeys(jwksFile?: string): Promise<FieldKeys> {
  if (jwksFile === undefined) {
    const pair = await generateKeyPair(ALG, { crv: 'X25519', extractable: true })
    const publicJwk = { ...(await exportJWK(pair.publicKey)), kid: 'bench', alg: ALG, use: 'enc' }
    return { kid: 'bench', publicKey: pair.publicKey, privateKey: pair.privateKey, publicJwk }
  }
  const jwk = (JSON.parse(readFileSync(jwksFile, 'utf8')) as { keys: JWK[] }).keys[0]!
  const { d: _d, ...publicJwk } = jwk
  return {
    kid: jwk.kid ?? 'bench',
    publicKey: (await importJWK(publicJwk, ALG)) as CryptoKey,
    privateKey: (await importJWK(jwk, ALG)) as CryptoKey,
    publicJwk,
  }
}

/** The records of a body: one record, an array of them, or `{"records": [...]}`. */
function recordsOf(doc: unknown): Record<string, unknown>[] {
  if (Array.isArray(doc)) return doc as Record<string, unknown>[]
  if (doc !== null && typeof doc === 'object') {
    const list = (doc as { records?: unknown }).records
    return Array.isArray(list) ? (list as Record<string, unknown>[]) : [doc as Record<string, unknown>]
  }
  return []
}

/**
 * Calls `visit(parent, key, value)` for every sensitive field present in the body: the six fields of
 * a record at once (jose's WebCrypto operations run on libuv's thread pool, so they may overlap),
 * one record after the other.
 */
async function eachField(doc: unknown, visit: (parent: Record<string, unknown>, key: string, value: unknown) => Promise<void>): Promise<void> {
  for (const record of recordsOf(doc)) {
    const pending: Promise<void>[] = []
    for (const pointer of SENSITIVE_POINTERS) {
      const segments = pointer.split('/').slice(1)
      let parent: unknown = record
      for (const segment of segments.slice(0, -1)) parent = (parent as Record<string, unknown> | null)?.[segment]
      const key = segments.at(-1)!
      if (parent === null || typeof parent !== 'object' || !(key in parent)) continue
      pending.push(visit(parent as Record<string, unknown>, key, (parent as Record<string, unknown>)[key]))
    }
    await Promise.all(pending)
  }
}

/** Seals the sensitive fields of `doc` in place: one JWE, and so one ECDH agreement, per field. */
export async function sealFields(doc: unknown, keys: Pick<FieldKeys, 'kid' | 'publicKey'>): Promise<void> {
  await eachField(doc, async (parent, key, value) => {
    parent[key] = await new CompactEncrypt(encoder.encode(JSON.stringify(value)))
      .setProtectedHeader({ alg: ALG, enc: ENC, kid: keys.kid })
      .encrypt(keys.publicKey)
  })
}

export async function openFields(doc: unknown, keys: FieldKeys): Promise<void> {
  await eachField(doc, async (parent, key, value) => {
    if (typeof value !== 'string') return
    const { plaintext } = await compactDecrypt(value, keys.privateKey, { keyManagementAlgorithms: [ALG], contentEncryptionAlgorithms: [ENC] })
    parent[key] = JSON.parse(decoder.decode(plaintext))
  })
}

async function readBounded(stream: NodeJS.ReadableStream, max: number): Promise<Buffer> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of stream) {
    size += (chunk as Buffer).length
    if (size > max) throw Object.assign(new Error('body too large'), { status: 413 })
    chunks.push(chunk as Buffer)
  }
  return Buffer.concat(chunks)
}

function isJson(type: string | string[] | undefined): boolean {
  return typeof type === 'string' && /^application\/(?:[\w.+-]+\+)?json\b/i.test(type)
}

export class NaiveFieldProxy extends BareProxy {
  readonly #keys: FieldKeys
  readonly #sealRequests: boolean
  readonly #openResponses: boolean
  readonly #maxBodyBytes: number

  constructor(opts: BareProxyOptions, keys: FieldKeys, mode: { seal: boolean; open: boolean; maxBodyBytes?: number }) {
    super(opts)
    this.#keys = keys
    this.#sealRequests = mode.seal
    this.#openResponses = mode.open
    this.#maxBodyBytes = mode.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES
  }

  protected override async requestBody(req: IncomingMessage, headers: Record<string, string | string[]>, hasBody: boolean): Promise<Buffer | null | IncomingMessage> {
    if (!hasBody) return null
    if (!this.#sealRequests || !isJson(req.headers['content-type'])) return req
    const doc = JSON.parse((await readBounded(req, this.#maxBodyBytes)).toString('utf8')) as unknown
    await sealFields(doc, this.#keys)
    const body = Buffer.from(JSON.stringify(doc))
    headers['content-length'] = String(body.length)
    return body
  }

  protected override async respond(res: ServerResponse, up: Dispatcher.ResponseData): Promise<void> {
    if (!this.#openResponses || !isJson(up.headers['content-type']) || up.statusCode === 204) return super.respond(res, up)
    const doc = JSON.parse((await readBounded(up.body, this.#maxBodyBytes)).toString('utf8')) as unknown
    await openFields(doc, this.#keys)
    const body = Buffer.from(JSON.stringify(doc))
    res.writeHead(up.statusCode, { 'content-type': 'application/json', 'content-length': body.length })
    res.end(body)
  }

  protected override fail(res: ServerResponse, err: unknown, status: number): void {
    super.fail(res, err, (err as { status?: number }).status ?? status)
  }
}

if (isMain(import.meta.url)) {
  const { options, values } = proxyOptionsFromArgs({
    seal: { type: 'string', default: 'request' },
    open: { type: 'string', default: 'none' },
    jwks: { type: 'string' },
    'max-body-bytes': { type: 'string' },
  })
  const keys = await fieldKeys(values['jwks'])
  const maxBodyBytes = values['max-body-bytes'] === undefined ? undefined : Number(values['max-body-bytes'])
  const proxy = new NaiveFieldProxy(options, keys, { seal: values['seal'] === 'request', open: values['open'] === 'response', maxBodyBytes })
  // The ready line also carries the public key, for an upstream or a scenario that opens.
  await serveProxy(proxy, { jwk: keys.publicJwk })
}
