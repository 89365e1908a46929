/**
 * The `crypto-micro` scenario's measurements, in their own process (one core, nothing else running
 * in it): raw AES-256-GCM on field-sized and 64 KiB messages (baseline 5), jose `CompactEncrypt` /
 * `compactDecrypt` per field (what the naive proxy pays), and Écluse's own field sealer and opener
 * (src/crypto/field.ts: one ECDH agreement per message of six fields).
 *
 *   node --import tsx bench/crypto-micro.ts '{"seconds":1}'
 *
 * Prints one line `{"event":"result","rows":[…]}`; values per second count sealed (or opened) values.
 */
import { CompactEncrypt, compactDecrypt, exportJWK, generateKeyPair } from 'jose'
import { FieldOpener, FieldSealer } from '../src/crypto/field.js'
import { generateKeySet, parseKeySet } from '../src/crypto/keys.js'
import { aesGcmRate } from './baselines/aes-gcm.js'
import { generateRecords, SENSITIVE_POINTERS, valueAt } from './records.js'

const { seconds } = JSON.parse(process.argv[2] ?? '{}') as { seconds?: number }
const MS = (seconds ?? 1) * 1000
const ALG = 'ECDH-ES+A256KW'
const ENC = 'A256GCM'
const ROUTE = 'records'

/** The six sensitive values of 64 records, as the JSON text a sealer receives. */
const FIELDS = generateRecords(64).flatMap((record) =>
  SENSITIVE_POINTERS.map((ptr) => ({ ptr, json: Buffer.from(JSON.stringify(valueAt(record, ptr))) })),
)
const meanFieldBytes = FIELDS.reduce((s, f) => s + f.json.length, 0) / FIELDS.length

interface MicroRow {
  key: string
  label: string
  valuesPerSecond: number
  mbps: number
  bytes: number
}

async function timed(ms: number, batch: () => Promise<number> | number): Promise<{ perSecond: number }> {
  let done = 0
  const started = performance.now()
  while (performance.now() - started < ms) done += await batch()
  return { perSecond: done / ((performance.now() - started) / 1000) }
}

const rows: MicroRow[] = []

// Warm up the JIT and OpenSSL's tables before the first timing.
aesGcmRate(32, 100)
const fieldAes = aesGcmRate(32, MS)
rows.push({ key: 'aes-field', label: 'AES-256-GCM, 32 B (raw)', valuesPerSecond: fieldAes.opsPerSecond, mbps: fieldAes.bytesPerSecond / 1e6, bytes: 32 })
const bulkAes = aesGcmRate(64 * 1024, MS)
rows.push({ key: 'aes-64k', label: 'AES-256-GCM, 64 KiB (raw)', valuesPerSecond: bulkAes.opsPerSecond, mbps: bulkAes.bytesPerSecond / 1e6, bytes: 64 * 1024 })

// jose, per field: every value is its own JWE with its own ECDH agreement (RFC 7518 §4.6).
const pair = await generateKeyPair(ALG, { crv: 'X25519', extractable: true })
const kid = (await exportJWK(pair.publicKey)).x!.slice(0, 16)
const joseSealed: string[] = []
let i = 0
const joseSeal = await timed(MS, async () => {
  const f = FIELDS[i++ % FIELDS.length]!
  const jwe = await new CompactEncrypt(f.json).setProtectedHeader({ alg: ALG, enc: ENC, kid }).encrypt(pair.publicKey)
  if (joseSealed.length < FIELDS.length) joseSealed.push(jwe)
  return 1
})
rows.push({ key: 'jose-seal', label: 'jose CompactEncrypt per field', valuesPerSecond: joseSeal.perSecond, mbps: (joseSeal.perSecond * meanFieldBytes) / 1e6, bytes: meanFieldBytes })
i = 0
const joseOpen = await timed(MS, async () => {
  await compactDecrypt(joseSealed[i++ % joseSealed.length]!, pair.privateKey, { keyManagementAlgorithms: [ALG], contentEncryptionAlgorithms: [ENC] })
  return 1
})
rows.push({ key: 'jose-open', label: 'jose compactDecrypt per field', valuesPerSecond: joseOpen.perSecond, mbps: (joseOpen.perSecond * meanFieldBytes) / 1e6, bytes: meanFieldBytes })

// Écluse: one FieldSealer per message (six fields, one agreement), one shared FieldOpener.
const { privateJwks, publicJwks } = generateKeySet({ alg: ALG, crv: 'X25519' })
const recipients = parseKeySet(publicJwks, { publicOnly: true })
const privateKeys = parseKeySet(privateJwks, { requirePrivate: true })
const sealedMessages: Array<Array<{ ptr: string; jwe: string }>> = []
let m = 0
const ecluseSeal = await timed(MS, () => {
  const sealer = new FieldSealer(recipients, { route: ROUTE })
  const base = (m++ * SENSITIVE_POINTERS.length) % FIELDS.length
  const message: Array<{ ptr: string; jwe: string }> = []
  for (let k = 0; k < SENSITIVE_POINTERS.length; k++) {
    const f = FIELDS[base + k]!
    message.push({ ptr: f.ptr, jwe: sealer.seal(f.json, { ptr: f.ptr }) })
  }
  if (sealedMessages.length < 2048) sealedMessages.push(message)
  return SENSITIVE_POINTERS.length
})
rows.push({ key: 'ecluse-seal', label: 'écluse FieldSealer (6 fields/message)', valuesPerSecond: ecluseSeal.perSecond, mbps: (ecluseSeal.perSecond * meanFieldBytes) / 1e6, bytes: meanFieldBytes })
// Honest cache: messages are opened in order and the KEK cache holds half of them (FIFO), so every
// message pays its one agreement, as distinct messages do in real traffic.
const opener = new FieldOpener(privateKeys, { kekCacheSize: Math.max(1, Math.floor(sealedMessages.length / 2)) })
m = 0
const ecluseOpen = await timed(MS, () => {
  for (const { ptr, jwe } of sealedMessages[m++ % sealedMessages.length]!) opener.open(jwe, { route: ROUTE, ptr })
  return SENSITIVE_POINTERS.length
})
rows.push({ key: 'ecluse-open', label: 'écluse FieldOpener (6 fields/message)', valuesPerSecond: ecluseOpen.perSecond, mbps: (ecluseOpen.perSecond * meanFieldBytes) / 1e6, bytes: meanFieldBytes })

process.stdout.write(`${JSON.stringify({ event: 'result', rows, meanFieldBytes })}\n`)
