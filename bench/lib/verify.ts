/**
 * The upstream's proof that what reached it sealed really is sealed: it opens a sample of what it
 * receives with the run's private key, through jose and `node:crypto` (not Écluse's own opener), and
 * compares the plaintext with what the load generator sent. A shape check alone (a JWE's header
 * prefix, a stream's length) would pass a sealer that skipped the encryption, sealed to another key,
 * or sealed the wrong fields.
 *
 * At most one sample is opened at a time, and at most one per interval the caller names, so the
 * check costs the shared machine little whatever the load (a few percent of a core at most, the same
 * for every row).
 */
import { createDecipheriv, createHash, hkdfSync } from 'node:crypto'
import { isDeepStrictEqual } from 'node:util'
import { compactDecrypt, decodeProtectedHeader, importJWK, type JWK } from 'jose'
import { type AccreditationRecord, generateRecords, SENSITIVE_POINTERS, valueAt } from '../records.js'
import { patternBuffer } from './bodies.js'

/** Records the load generator sends (bulk bodies are the first 10,000; record bodies the first 16). */
const KNOWN_RECORDS = 10_000
/** The claims Écluse's sealer binds (docs/sealing.md); the naive proxy's values carry none. */
const ECLUSE_CLAIMS = { 'ecl.route': true, 'ecl.ptr': true, 'ecl.rid': true, 'ecl.fmt': true }
const STREAM_INFO = Buffer.from('ecluse sealed-stream v1\0', 'latin1')

type Key = Awaited<ReturnType<typeof importJWK>>

export class SealedSampleVerifier {
  readonly #keys: Map<string, { key: Key; alg: string }>
  readonly #records: Map<string, AccreditationRecord>
  #busy = false
  #last = Number.NEGATIVE_INFINITY

  private constructor(keys: Map<string, { key: Key; alg: string }>) {
    this.#keys = keys
    // As JSON reads them back: what a body carries, member for member.
    this.#records = new Map(generateRecords(KNOWN_RECORDS).map((r) => [r.id, JSON.parse(JSON.stringify(r)) as AccreditationRecord]))
  }

  /** From the private JWKS the run's openers use (bench/lib/keys.ts). */
  static async create(privateJwks: { keys: JWK[] }): Promise<SealedSampleVerifier> {
    const keys = new Map<string, { key: Key; alg: string }>()
    for (const jwk of privateJwks.keys) keys.set(jwk.kid!, { key: await importJWK(jwk, jwk.alg), alg: jwk.alg! })
    return new SealedSampleVerifier(keys)
  }

  /**
   * True if this message is to be sampled now: none is being judged, and none was taken in the last
   * `intervalMs` (then `judge` must be called once, whatever becomes of the message).
   */
  take(intervalMs: number): boolean {
    const now = performance.now()
    if (this.#busy || now - this.#last < intervalMs) return false
    this.#busy = true
    this.#last = now
    return true
  }

  /** Runs `judge` on a sampled message: false on any error (a value that does not open). */
  async judge(judge: () => Promise<boolean>): Promise<boolean> {
    try {
      return await judge()
    } catch {
      return false
    } finally {
      this.#busy = false
    }
  }

  /** The JSON value a compact JWE seals (the key from its `kid`). */
  async #open(jwe: string): Promise<{ value: unknown; header: Record<string, unknown> }> {
    const { kid } = decodeProtectedHeader(jwe)
    const key = this.#keys.get(String(kid))
    if (key === undefined) throw new Error('sealed for a key the run does not have')
    const out = await compactDecrypt(jwe, key.key, { keyManagementAlgorithms: [key.alg], contentEncryptionAlgorithms: ['A256GCM'], crit: ECLUSE_CLAIMS })
    return { value: JSON.parse(Buffer.from(out.plaintext).toString('utf8')), header: out.protectedHeader as Record<string, unknown> }
  }

  /**
   * A record of the load generator's whose six sensitive values must each be a JWE that opens to
   * the value sent, and whose other members must be those sent.
   */
  async record(doc: Record<string, unknown>): Promise<boolean> {
    const sent = this.#records.get(String(doc['id']))
    if (sent === undefined) return false
    const opened = structuredClone(doc)
    for (const pointer of SENSITIVE_POINTERS) {
      const sealed = valueAt(doc, pointer)
      if (typeof sealed !== 'string') return false
      const [, parent, member] = pointer.split('/')
      ;(opened[parent!] as Record<string, unknown>)[member!] = (await this.#open(sealed)).value
    }
    return isDeepStrictEqual(opened, sent)
  }

  /** A bulk body: its first, middle and last records (the whole body is counted by the caller). */
  async bulk(body: Buffer): Promise<boolean> {
    const records = (JSON.parse(body.toString('utf8')) as { records: Array<Record<string, unknown>> }).records
    if (records.length === 0) return false
    for (const i of new Set([0, records.length >> 1, records.length - 1])) if (!(await this.record(records[i]!))) return false
    return true
  }

  /**
   * The start of a sealed stream (docs/sealed-stream-format.md): its key JWE opens, and its first
   * record, decrypted with the key schedule of §3, holds the first bytes of the pattern body the
   * load generator sent (its id is in its first 4 bytes).
   */
  async streamStart(head: Buffer, total: number): Promise<boolean> {
    if (head.length < 12 || head.toString('latin1', 0, 4) !== 'ECLS' || head[4] !== 1 || head[5] !== 0) return false
    const rs = head.readUInt32BE(6)
    const headerLength = 12 + head.readUInt16BE(10)
    const recordLength = Math.min(rs + 17, total - headerLength)
    if (recordLength < 17 || head.length < headerLength + recordLength) return false
    const { value, header } = await this.#open(head.toString('latin1', 12, headerLength))
    if (header['ecl.fmt'] !== 'ecls/1') return false
    const k = Buffer.from(String((value as { k?: unknown }).k), 'base64url')
    const okm = Buffer.from(hkdfSync('sha256', k, Buffer.alloc(0), Buffer.concat([STREAM_INFO, createHash('sha256').update(head.subarray(0, headerLength)).digest()]), 44))
    const record = head.subarray(headerLength, headerLength + recordLength)
    // Record 0: nonce_base XOR 0.
    const decipher = createDecipheriv('aes-256-gcm', okm.subarray(0, 32), okm.subarray(32, 44))
    decipher.setAuthTag(record.subarray(record.length - 16))
    const plain = Buffer.concat([decipher.update(record.subarray(0, record.length - 16)), decipher.final()])
    const data = plain.subarray(0, plain.length - 1)
    const last = plain[plain.length - 1] === 2
    if (plain.length === 0 || (!last && data.length !== rs) || (last && headerLength + recordLength !== total) || data.length < 4) return false
    return data.equals(patternBuffer(data.readUInt32BE(0), data.length))
  }
}
