/**
 * The `crypto-micro` scenario's measurements, in their own process (one core, nothing else running
 * in it): raw AES-256-GCM on field-sized and 64 KiB messages (baseline 5), jose `CompactEncrypt` /
 * `compactDecrypt` per field (what the naive proxy pays), and Écluse's own field sealer and opener
 * (src/crypto/field.ts: messages of six fields; the sealer makes one ECDH agreement per sealing
 * window, the opener one per window it meets: per message for stored records, each sealed under an
 * agreement of its own, per window for live traffic). The écluse rows are timed in alternating
 * slices with raw AES-256-GCM on the same field values' sizes in the same direction, so the machine's changing load weighs
 * on both alike; `ratios` gives each one against its own raw slices, `agreements` the asymmetric
 * operations counted in its slices.
 *
 *   node --import tsx bench/crypto-micro.ts '{"seconds":1}'
 *
 * Prints one line `{"event":"result","rows":[…]}`; values per second count sealed (or opened) values.
 */
import { subscribe } from 'node:diagnostics_channel'
import { CompactEncrypt, compactDecrypt, exportJWK, generateKeyPair } from 'jose'
import { FieldOpener, FieldSealer, SealWindows } from '../src/crypto/field.js'
import { ASYMMETRIC_CHANNEL, type AsymmetricOperation } from '../src/crypto/jwe.js'
import { generateKeySet, parseKeySet } from '../src/crypto/keys.js'
import { aesGcmOpenRate, aesGcmRate } from './baselines/aes-gcm.js'
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
/** Raw AES-256-GCM is timed on messages of these sizes in turn: the field sizes the sealer gets. */
const FIELD_SIZES = FIELDS.map((f) => f.json.length)

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
aesGcmRate(FIELD_SIZES, 100)
const fieldAes = aesGcmRate(FIELD_SIZES, MS)
rows.push({
  key: 'aes-field',
  label: `AES-256-GCM, the field values' sizes (mean ${meanFieldBytes.toFixed(1)} B, raw)`,
  valuesPerSecond: fieldAes.opsPerSecond,
  mbps: fieldAes.bytesPerSecond / 1e6,
  bytes: meanFieldBytes,
})
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

// Écluse: one FieldSealer per message (six fields), one shared FieldOpener. The sealer takes its
// agreement from the process-wide sealing window (src/crypto/field.ts: one ECDH per window of at
// most 1 s and 65,536 values, not per message), so the agreements are counted and reported.
const { privateJwks, publicJwks } = generateKeySet({ alg: ALG, crv: 'X25519' })
const recipients = parseKeySet(publicJwks, { publicOnly: true })
const privateKeys = parseKeySet(privateJwks, { requirePrivate: true })
const agreements = { seal: 0, open: 0 }
subscribe(ASYMMETRIC_CHANNEL, (m) => {
  agreements[(m as AsymmetricOperation).side]++
})
/** Messages of six sealed fields, as an opener receives them. */
type SealedMessage = Array<{ ptr: string; jwe: string }>
const liveMessages: SealedMessage[] = []
let m = 0
let sink = 0
/** Seals `messages` messages of six fields (the first 2048 kept); returns the number of values sealed. */
function sealMessages(messages: number, windows?: SealWindows, keep = liveMessages): number {
  for (let n = 0; n < messages; n++) {
    const sealer = new FieldSealer(recipients, windows === undefined ? { route: ROUTE } : { route: ROUTE, windows })
    const base = (m++ * SENSITIVE_POINTERS.length) % FIELDS.length
    const message: SealedMessage = []
    for (let k = 0; k < SENSITIVE_POINTERS.length; k++) {
      const f = FIELDS[base + k]!
      message.push({ ptr: f.ptr, jwe: sealer.seal(f.json, { ptr: f.ptr }) })
    }
    if (keep.length < 2048) keep.push(message)
    else sink += message.length
  }
  return messages * SENSITIVE_POINTERS.length
}

/**
 * Two corpora for the opener. Stored records were sealed at different times, each under an
 * agreement of its own (windows of one message here): opening one costs one agreement. Live
 * traffic from a sealing gateway comes in its windows (1 s): the messages of one window share it.
 */
const storedMessages: SealedMessage[] = []
sealMessages(2048, new SealWindows({ maxValues: SENSITIVE_POINTERS.length }), storedMessages)

// Honest cache: messages are opened in order and the KEK cache holds half of the distinct epks of
// the corpus (FIFO), so no message finds the agreement of its own window left by the one before
// its window came round again.
function distinctEpks(corpus: readonly SealedMessage[]): number {
  return new Set(corpus.map((msg) => JSON.parse(Buffer.from(msg[0]!.jwe.slice(0, msg[0]!.jwe.indexOf('.')), 'base64url').toString()).epk.x)).size
}
function opening(corpus: readonly SealedMessage[]): { open: (messages: number) => number; epks: number } {
  const epks = distinctEpks(corpus)
  const opener = new FieldOpener(privateKeys, { kekCacheSize: Math.max(1, Math.floor(epks / 2)) })
  let o = 0
  const open = (messages: number): number => {
    for (let n = 0; n < messages; n++) {
      for (const { ptr, jwe } of corpus[o++ % corpus.length]!) sink += opener.open(jwe, { route: ROUTE, ptr }).length
    }
    return messages * SENSITIVE_POINTERS.length
  }
  open(64) // warm-up
  return { open, epks }
}

/**
 * Values per second of `run` and of the raw AES-256-GCM baseline on the field sizes in the same direction,
 * timed in alternating slices (raw, écluse, raw, écluse…) and summed, so a change of the machine's
 * load during the run weighs on both alike; both are synchronous loops that read the clock every few
 * hundred values. `agreements`: the asymmetric operations made by the écluse slices.
 */
function alternate(run: (messages: number) => number, raw: typeof aesGcmRate, side: 'seal' | 'open'): { raw: number; ecluse: number; values: number; agreements: number } {
  const SLICES = 10
  let rawOps = 0
  let rawMs = 0
  let ops = 0
  let ms = 0
  let made = 0
  for (let i = 0; i < SLICES; i++) {
    const slice = MS / SLICES
    const r = raw(FIELD_SIZES, slice / 2)
    rawOps += (r.opsPerSecond * slice) / 2 / 1000
    rawMs += slice / 2
    const before = agreements[side]
    const started = performance.now()
    let elapsed = 0
    while (elapsed < slice) {
      ops += run(40)
      elapsed = performance.now() - started
    }
    ms += elapsed
    made += agreements[side] - before
  }
  return { raw: (rawOps / rawMs) * 1000, ecluse: (ops / ms) * 1000, values: ops, agreements: made }
}

sealMessages(2048) // warm-up, and the live corpus
const sealing = alternate((n) => sealMessages(n), aesGcmRate, 'seal')
const stored = opening(storedMessages)
const openingStored = alternate(stored.open, aesGcmOpenRate, 'open')
const live = opening(liveMessages)
const openingLive = alternate(live.open, aesGcmOpenRate, 'open')
const row = (key: string, label: string, r: { ecluse: number }) => ({ key, label, valuesPerSecond: r.ecluse, mbps: (r.ecluse * meanFieldBytes) / 1e6, bytes: meanFieldBytes })
rows.push(row('ecluse-seal', 'écluse FieldSealer (6 fields/message)', sealing))
rows.push(row('ecluse-open', 'écluse FieldOpener, stored records (an agreement per message)', openingStored))
rows.push(row('ecluse-open-live', 'écluse FieldOpener, live traffic (an agreement per sealing window)', openingLive))
// The AES-256-GCM row pools the raw sealing measurements of the run by time: its own second and the
// slices interleaved with the sealer (each écluse row's own ratio, against the raw slices of its
// direction, is in `ratios`).
const aesField = rows.find((r) => r.key === 'aes-field')!
aesField.valuesPerSecond = (fieldAes.opsPerSecond + sealing.raw) / 2
aesField.mbps = (aesField.valuesPerSecond * meanFieldBytes) / 1e6
if (sink < 0) throw new Error('unreachable: keeps the work observable')
const perValue = (r: { values: number; agreements: number }) => ({ values: r.values, agreements: r.agreements })

process.stdout.write(
  `${JSON.stringify({
    event: 'result',
    rows,
    meanFieldBytes,
    ratios: { seal: sealing.ecluse / sealing.raw, open: openingStored.ecluse / openingStored.raw, openLive: openingLive.ecluse / openingLive.raw },
    raw: { seal: sealing.raw, open: openingStored.raw, openLive: openingLive.raw },
    // The same raw seal timed on its own, before the interleaved slices: a large gap between the two
    // says the machine's load moved during the run.
    rawAlone: { seal: fieldAes.opsPerSecond },
    agreements: {
      seal: perValue(sealing),
      open: { ...perValue(openingStored), distinctEpks: stored.epks },
      openLive: { ...perValue(openingLive), distinctEpks: live.epks },
    },
  })}\n`,
)
