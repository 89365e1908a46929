/**
 * The trusted-side service every scenario ends at, in its own process: HTTPS/1.1 with a client
 * certificate required and verified against the trusted CA only (the same as the demo service).
 *
 *   node --import tsx bench/upstream.ts --pki DIR [--keys PUBLIC_JWKS] [--sealed-records N] [--blob-bytes N]
 *
 * Routes (small, fixed, no per-request work beyond what a real service does):
 *   GET  /healthz                200 {"status":"ok"}
 *   GET  /v1/records/:n          one ~1 KiB accreditation record (bench/records.ts, seeded), n mod 1024
 *   POST /v1/records[/…]         echoes the JSON body (≤ 1 MiB) with 200: what was sent comes back
 *   POST /v1/bulk                reads the whole body (≤ 256 MiB), answers {"bytes":N,"sealed":K}: K
 *                                sealed values (compact JWEs) in what it received
 *   PUT  /v1/uploads/:id         reads the whole body, answers {"bytes":N,"sha256":"…","head":"<hex>"}
 *                                (head: its first 12 bytes, where a sealed stream says what it is)
 * With --keys (the gateway's public JWKS), corpora sealed for it once, here at start-up, never per
 * request:
 *   GET  /v1/sealed/ecluse/:n    record n mod 1024 with its six sensitive fields sealed as Écluse's
 *                                `seal` step seals them on the trusted side (one FieldSealer per
 *                                record, context `sealed-records`), each record under an agreement
 *                                of its own, as records stored over time are; N distinct sealings
 *                                (--sealed-records)
 *   GET  /v1/sealed/jose/:n      the same records sealed field by field with jose's CompactEncrypt,
 *                                as the naive proxy seals them (what it opens)
 *   GET  /v1/blobs/plain/…       a --blob-bytes pattern body (bench/lib/bodies.ts, id 0)
 *   GET  /v1/blobs/sealed/…      the same body as one sealed stream (application/vnd.ecluse.sealed,
 *                                context `blobs`), as `seal-body` produces it
 *
 * Prints one line `{"ready":true,"port":N}` once listening (after sealing); SIGTERM closes it.
 */
import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import type { IncomingMessage, ServerResponse } from 'node:http'
import https from 'node:https'
import { Readable, Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { parseArgs } from 'node:util'
import { type CryptoKey, importJWK, type JWK } from 'jose'
import { FieldSealer, SealWindows } from '../src/crypto/field.js'
import { parseKeySet } from '../src/crypto/keys.js'
import { createSealStream } from '../src/crypto/stream.js'
import { sealFields } from './baselines/naive-field-proxy.js'
import { CHUNK, NeedleCounter, patternBuffer, SEALED_VALUE_NEEDLE } from './lib/bodies.js'
import { BLOB_CONTEXT, SEALED_RECORDS_CONTEXT } from './lib/keys.js'
import { readBenchPki } from './lib/pki.js'
import { SealedSampleVerifier } from './lib/verify.js'
import { generateRecords, SENSITIVE_POINTERS, valueAt } from './records.js'

const RECORDS = 1024
const MAX_ECHO_BYTES = 1024 * 1024
const MAX_BULK_BYTES = 256 * 1024 * 1024
const SEALED_TYPE = 'application/vnd.ecluse.sealed'

const { values } = parseArgs({
  options: {
    pki: { type: 'string' },
    port: { type: 'string', default: '0' },
    keys: { type: 'string' },
    'sealed-records': { type: 'string', default: '0' },
    'blob-bytes': { type: 'string', default: '0' },
    'private-keys': { type: 'string' },
  },
})
const pki = readBenchPki(values.pki!)
/** With --private-keys: a sample of what arrives sealed is opened, and the answer says so (`opened`). */
const verifier = values['private-keys'] === undefined ? undefined : await SealedSampleVerifier.create(JSON.parse(readFileSync(values['private-keys'], 'utf8')))
/** At most one sampled message every this many ms; bulk bodies are 10 MiB to parse, one every 2 s. */
const SAMPLE_EVERY_MS = 100
const BULK_SAMPLE_EVERY_MS = 2_000
const records = generateRecords(RECORDS)
const bodies = records.map((r) => Buffer.from(JSON.stringify(r)))
const OK = Buffer.from('{"status":"ok"}')
const JSON_TYPE = 'application/json'

/** Sets a value at one of SENSITIVE_POINTERS (two segments, no escapes). */
function setAt(record: Record<string, unknown>, pointer: string, value: unknown): void {
  const [, parent, key] = pointer.split('/')
  ;(record[parent!] as Record<string, unknown>)[key!] = value
}

/**
 * Sealing windows that last one record: the corpus is sealed here in a fraction of a second, where
 * the process-wide windows would give all of it one agreement (one `epk`) and every GET would hit
 * the opener's KEK cache. Records a service stores were sealed over days, each in its own window.
 */
const ONE_RECORD_WINDOWS = new SealWindows({ maxValues: SENSITIVE_POINTERS.length })

/** Record `i`, its six fields sealed by Écluse's sealer under an agreement of their own. */
function sealEcluseStyle(i: number, recipients: ReturnType<typeof parseKeySet>): Buffer {
  const record = structuredClone(records[i % RECORDS]!) as unknown as Record<string, unknown>
  const sealer = new FieldSealer(recipients, { route: SEALED_RECORDS_CONTEXT, windows: ONE_RECORD_WINDOWS })
  for (const ptr of SENSITIVE_POINTERS) setAt(record, ptr, sealer.seal(Buffer.from(JSON.stringify(valueAt(record, ptr))), { ptr }))
  return Buffer.from(JSON.stringify(record))
}

async function sealJoseStyle(i: number, key: { kid: string; publicKey: CryptoKey }): Promise<Buffer> {
  const record = structuredClone(records[i % RECORDS]!)
  await sealFields(record, key)
  return Buffer.from(JSON.stringify(record))
}

/** A body in memory as a stream of 64 KiB views (no copies), read with back-pressure. */
function* chunksOf(body: Buffer): Generator<Buffer> {
  for (let off = 0; off < body.length; off += CHUNK) yield body.subarray(off, off + CHUNK)
}

async function sealStream(plain: Buffer, recipients: ReturnType<typeof parseKeySet>): Promise<Buffer> {
  const parts: Buffer[] = []
  await pipeline(
    Readable.from(chunksOf(plain)),
    createSealStream(recipients, { contentType: 'application/octet-stream', route: BLOB_CONTEXT }),
    new Writable({
      write(chunk: Buffer, _enc, done) {
        parts.push(chunk)
        done()
      },
    }),
  )
  return Buffer.concat(parts)
}

const sealedRecords = Number(values['sealed-records'])
const blobBytes = Number(values['blob-bytes'])
let ecluseSealed: Buffer[] = []
let joseSealed: Buffer[] = []
let plainBlob: Buffer | undefined
let sealedBlob: Buffer | undefined
if (values.keys !== undefined) {
  const text = readFileSync(values.keys, 'utf8')
  const recipients = parseKeySet(text, { publicOnly: true })
  const jwk = (JSON.parse(text) as { keys: JWK[] }).keys[0]!
  const joseKey = { kid: jwk.kid!, publicKey: (await importJWK(jwk, 'ECDH-ES+A256KW')) as CryptoKey }
  ecluseSealed = Array.from({ length: sealedRecords }, (_, i) => sealEcluseStyle(i, recipients))
  joseSealed = await Promise.all(Array.from({ length: sealedRecords }, (_, i) => sealJoseStyle(i, joseKey)))
  if (blobBytes > 0) {
    plainBlob = patternBuffer(0, blobBytes)
    sealedBlob = await sealStream(plainBlob, recipients)
  }
}

function send(res: ServerResponse, status: number, body: Buffer, type = JSON_TYPE): void {
  res.writeHead(status, { 'content-type': type, 'content-length': body.length })
  res.end(body)
}

/** The decimal number at the start of `tail` (digits only; anything else ends it), mod `n`. */
function indexIn(tail: string, n: number): number {
  let i = 0
  for (let k = 0; k < tail.length; k++) {
    const c = tail.charCodeAt(k) - 48
    if (c < 0 || c > 9) break
    i = (i * 10 + c) % n
  }
  return i
}

function echo(req: IncomingMessage, res: ServerResponse): void {
  const chunks: Buffer[] = []
  let size = 0
  req.on('data', (chunk: Buffer) => {
    size += chunk.length
    if (size > MAX_ECHO_BYTES) {
      req.destroy()
      return
    }
    chunks.push(chunk)
  })
  req.on('end', () => {
    const body = Buffer.concat(chunks)
    if (verifier === undefined || !body.includes(SEALED_VALUE_NEEDLE) || !verifier.take(SAMPLE_EVERY_MS)) return send(res, 200, body)
    // Sampled: the echo says whether its sealed values opened to the record sent (`"benchOpened"`).
    void verifier.judge(() => verifier.record(JSON.parse(body.toString('utf8')) as Record<string, unknown>)).then((opened) => {
      const end = body.lastIndexOf('}')
      send(res, 200, Buffer.concat([body.subarray(0, end), Buffer.from(`,"benchOpened":${opened}}`)]))
    })
  })
}

/** Counts the sealed values of a bulk body as it streams in (memory: one chunk). */
function bulk(req: IncomingMessage, res: ServerResponse): void {
  const counter = new NeedleCounter(SEALED_VALUE_NEEDLE)
  let bytes = 0
  // Sampled (see `verifier`): the body is kept whole, and its first, middle and last records opened.
  const kept: Buffer[] | undefined = verifier?.take(BULK_SAMPLE_EVERY_MS) ? [] : undefined
  req.on('data', (chunk: Buffer) => {
    bytes += chunk.length
    if (bytes > MAX_BULK_BYTES) {
      req.destroy()
      return
    }
    counter.update(chunk)
    kept?.push(chunk)
  })
  req.on('close', () => {
    if (kept !== undefined && !req.complete) void verifier!.judge(async () => false)
  })
  req.on('end', () => {
    const answer = { bytes, sealed: counter.count }
    if (kept === undefined) return send(res, 200, Buffer.from(JSON.stringify(answer)))
    const body = Buffer.concat(kept)
    void verifier!.judge(async () => counter.count > 0 && (await verifier!.bulk(body))).then((opened) => {
      send(res, 200, Buffer.from(JSON.stringify({ ...answer, ...(counter.count > 0 ? { opened } : {}) })))
    })
  })
}

/**
 * Of a sampled sealed upload, what is kept to open: its header and first record, at most the fixed
 * header, the longest key JWE and the largest record (docs/sealed-stream-format.md).
 */
const SEALED_START_BYTES = 12 + 65_535 + 16 * 1024 * 1024 + 17

function digest(req: IncomingMessage, res: ServerResponse): void {
  const hash = createHash('sha256')
  let bytes = 0
  let head = Buffer.alloc(0)
  // Sampled (see `verifier`), a sealed upload's header and first record are kept and opened.
  const start: Buffer[] | undefined = verifier !== undefined && req.headers['content-type'] === SEALED_TYPE && verifier.take(SAMPLE_EVERY_MS) ? [] : undefined
  let kept = 0
  req.on('data', (chunk: Buffer) => {
    if (head.length < 12) head = Buffer.concat([head, chunk.subarray(0, 12 - head.length)])
    // Its own header says how long the header and the first record are (jwe_len, rs).
    const wanted = head.length < 12 ? SEALED_START_BYTES : Math.min(SEALED_START_BYTES, 12 + head.readUInt16BE(10) + head.readUInt32BE(6) + 17)
    if (start !== undefined && kept < wanted) {
      start.push(chunk)
      kept += chunk.length
    }
    bytes += chunk.length
    hash.update(chunk)
  })
  req.on('close', () => {
    if (start !== undefined && !req.complete) void verifier!.judge(async () => false)
  })
  req.on('end', () => {
    const answer = { bytes, sha256: hash.digest('hex'), head: head.toString('hex') }
    if (start === undefined) return send(res, 200, Buffer.from(JSON.stringify(answer)))
    void verifier!.judge(() => verifier!.streamStart(Buffer.concat(start), bytes)).then((opened) => send(res, 200, Buffer.from(JSON.stringify({ ...answer, opened }))))
  })
}


/** A large body from memory, with back-pressure: the socket never holds a copy of all of it. */
function sendBlob(res: ServerResponse, blob: Buffer, type: string): void {
  res.writeHead(200, { 'content-type': type, 'content-length': blob.length })
  pipeline(Readable.from(chunksOf(blob)), res).catch(() => res.destroy())
}

function notFound(req: IncomingMessage, res: ServerResponse): void {
  req.resume()
  send(res, 404, Buffer.from('{"error":"not_found"}'))
}

function handle(req: IncomingMessage, res: ServerResponse): void {
  const url = req.url ?? '/'
  if (req.method === 'GET' && url.startsWith('/v1/records/')) send(res, 200, bodies[indexIn(url.slice(12), RECORDS)]!)
  else if (req.method === 'POST' && url.startsWith('/v1/records')) echo(req, res)
  else if (req.method === 'POST' && url === '/v1/bulk') bulk(req, res)
  else if (req.method === 'PUT' && url.startsWith('/v1/uploads/')) digest(req, res)
  else if (req.method === 'GET' && url.startsWith('/v1/sealed/ecluse/') && ecluseSealed.length > 0) {
    send(res, 200, ecluseSealed[indexIn(url.slice(18), ecluseSealed.length)]!)
  } else if (req.method === 'GET' && url.startsWith('/v1/sealed/jose/') && joseSealed.length > 0) {
    send(res, 200, joseSealed[indexIn(url.slice(16), joseSealed.length)]!)
  } else if (req.method === 'GET' && url.startsWith('/v1/blobs/plain/') && plainBlob !== undefined) {
    sendBlob(res, plainBlob, 'application/octet-stream')
  } else if (req.method === 'GET' && url.startsWith('/v1/blobs/sealed/') && sealedBlob !== undefined) {
    sendBlob(res, sealedBlob, SEALED_TYPE)
  } else if (url === '/healthz') send(res, 200, OK)
  else notFound(req, res)
}

const server = https.createServer(
  {
    cert: pki.trustedServer.certPem,
    key: pki.trustedServer.keyPem,
    ca: pki.trustedCaPem,
    requestCert: true,
    rejectUnauthorized: true,
    minVersion: 'TLSv1.2',
    noDelay: true,
    // Longer than the proxies' pool keep-alive (4 s): the client side closes idle connections first.
    keepAliveTimeout: 10_000,
    requestTimeout: 0,
  },
  handle,
)
server.listen(Number(values.port), '127.0.0.1', () => {
  const addr = server.address()
  process.stdout.write(`${JSON.stringify({ ready: true, port: typeof addr === 'object' && addr !== null ? addr.port : 0 })}\n`)
})
process.on('SIGTERM', () => {
  server.close(() => process.exit(0))
  server.closeAllConnections()
})
