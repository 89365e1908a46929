/**
 * An independent implementation decodes what we encode (STYLE: jose's cookbook tests): the Python
 * decoders in test/independent/ use Debian's python3-cryptography primitives and python3-jwcrypto.
 * In CI (`CI` set) missing packages are a failure; locally the test skips with the reason.
 */
import { spawn, spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { Readable, Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { createSealStream, FieldSealer, generateKeySet, type Jwk, parseKeySet } from '../src/crypto/index.js'
import { seededRecipient } from './vectors/deterministic.js'

const PYTHON = '/usr/bin/python3'
const DECODER = fileURLToPath(new URL('./independent/ecluse_decode.py', import.meta.url))

const probe = spawnSync(PYTHON, ['-c', 'import cryptography, jwcrypto'], { encoding: 'utf8' })
const missing = probe.error !== undefined || probe.status !== 0
const why = `${PYTHON} with python3-cryptography and python3-jwcrypto is required (apt-get install -y python3-jwcrypto python3-cryptography): ${probe.error?.message ?? probe.stderr.trim()}`

interface Decoded {
  fields: Array<{ ok: boolean; plaintext?: string; error?: string }>
  streams: Array<{ ok: boolean; plaintext?: string; contentType?: string; kid?: string; error?: string }>
  versions: Record<string, string>
}

function decode(request: unknown): Promise<Decoded> {
  return new Promise((resolve, reject) => {
    const child = spawn(PYTHON, [DECODER], { stdio: ['pipe', 'pipe', 'pipe'] })
    let out = ''
    let err = ''
    child.stdout.setEncoding('utf8').on('data', (d) => { out += d })
    child.stderr.setEncoding('utf8').on('data', (d) => { err += d })
    child.on('error', reject)
    child.on('close', (code) => {
      if (code !== 0) reject(new Error(`decoder exited ${code}: ${err}`))
      else resolve(JSON.parse(out))
    })
    child.stdin.end(JSON.stringify(request))
  })
}

async function sealStream(keys: ReturnType<typeof parseKeySet>, data: Buffer, contentType: string, recordSize: number, route?: string) {
  const out: Buffer[] = []
  await pipeline(
    Readable.from([data.subarray(0, 1000), data.subarray(1000)]),
    createSealStream(keys, { contentType, recordSize, route }),
    new Writable({ write: (c, _e, cb) => { out.push(c); cb() } }),
  )
  return Buffer.concat(out)
}

if (missing && process.env.CI) {
  t.fail(why)
} else if (missing) {
  t.test('Python (cryptography primitives and jwcrypto) opens our fields and streams', { skip: why }, async () => {})
} else {
  t.test('Python (cryptography primitives and jwcrypto) opens our fields and streams, and refuses tampering', async (t) => {
    const gens = [
      generateKeySet({ kid: 'py-x25519' }),
      generateKeySet({ crv: 'P-256', kid: 'py-p256' }),
      generateKeySet({ alg: 'RSA-OAEP-256', modulusLength: 2048, kid: 'py-rsa' }),
    ]
    const vectorKeys = [
      seededRecipient('X25519', 'ecluse test vector: recipient X25519', 'vector-x25519').privateJwk,
      seededRecipient('P-256', 'ecluse test vector: recipient P-256', 'vector-p256').privateJwk,
    ]
    const keys: Jwk[] = [...gens.map((g) => g.privateJwks.keys[0]!), ...vectorKeys]

    const fields: Array<{ jwe: string; route: string; ptr: string; rid: string | null; expect: string | null }> = []
    for (const g of gens) {
      const sealer = new FieldSealer(parseKeySet(g.publicJwks), { route: 'accreditations' })
      for (const [value, ptr, rid] of [
        ['"1985-04-12"', '/person/birthDate', null],
        ['{"n":"12 345 678","pays":"FR ✓"}', '/records/2/id', 'A-7'],
        ['""', '', null],
      ] as const) {
        const jwe = sealer.seal(Buffer.from(value), { ptr, rid: rid ?? undefined })
        fields.push({ jwe, route: 'accreditations', ptr, rid, expect: value })
        // The same value presented elsewhere must be refused by the independent decoder too.
        fields.push({ jwe, route: 'accreditations', ptr: `${ptr}/moved`, rid, expect: null })
      }
    }
    const fieldVectors = JSON.parse(readFileSync(new URL('./vectors/sealed-fields.json', import.meta.url), 'utf8')).vectors
    for (const v of fieldVectors) fields.push({ jwe: v.jwe, route: v.context.route, ptr: v.context.ptr, rid: v.context.rid ?? null, expect: v.plaintext })

    const streams: Array<{ sealed: string; route: string | null; expect: string | null; contentType?: string }> = []
    const body = Buffer.from(Array.from({ length: 5000 }, (_, i) => (i * 7) & 0xff))
    for (const [i, g] of gens.entries()) {
      const rs = [16, 1000, 4096][i]!
      const sealed = await sealStream(parseKeySet(g.publicJwks), body, 'application/pdf', rs, i === 0 ? 'documents' : undefined)
      streams.push({ sealed: sealed.toString('hex'), route: i === 0 ? 'documents' : null, expect: body.toString('hex'), contentType: 'application/pdf' })
      const flipped = Buffer.from(sealed)
      flipped[flipped.length - 40]! ^= 4
      streams.push({ sealed: flipped.toString('hex'), route: null, expect: null })
      streams.push({ sealed: sealed.subarray(0, sealed.length - 17).toString('hex'), route: null, expect: null })
    }
    const sv = JSON.parse(readFileSync(new URL('./vectors/sealed-stream.json', import.meta.url), 'utf8')).vector
    streams.push({ sealed: sv.sealed, route: sv.route, expect: Buffer.from(sv.plaintext).toString('hex'), contentType: sv.contentType })
    for (const bad of sv.invalid) streams.push({ sealed: bad.sealed, route: sv.route, expect: null })
    streams.push({ sealed: sv.sealed, route: 'elsewhere', expect: null })

    const result = await decode({ keys, fields, streams })
    t.comment(`independent decoder: ${JSON.stringify(result.versions)}`)
    t.equal(result.fields.length, fields.length)
    fields.forEach((f, i) => {
      const r = result.fields[i]!
      if (f.expect === null) t.notOk(r.ok, `field ${i} (${f.ptr}) refused: ${r.error}`)
      else t.equal(r.ok && Buffer.from(r.plaintext!, 'base64').toString('utf8'), f.expect, `field ${i} (${f.ptr}) ${r.error ?? ''}`)
    })
    t.equal(result.streams.length, streams.length)
    streams.forEach((s, i) => {
      const r = result.streams[i]!
      if (s.expect === null) {
        t.notOk(r.ok, `stream ${i} refused: ${r.error}`)
      } else {
        t.ok(r.ok, `stream ${i} opens ${r.error ?? ''}`)
        t.equal(r.plaintext, s.expect, `stream ${i} plaintext`)
        t.equal(r.contentType, s.contentType, `stream ${i} content type`)
      }
    })
  })
}
