/**
 * `ecluse seal --fields FILE`: every targeted member becomes a compact JWE that jose's
 * `compactDecrypt` opens with the private key, to the member's exact JSON text, bound to the context
 * and the pointer; every other byte of the file is unchanged; `ecluse open` gives back the original
 * file byte for byte. `seal` given the private set seals to its current key as well.
 */
import { readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { compactDecrypt, decodeProtectedHeader, importJWK } from 'jose'
import t from 'tap'
import { COMPACT_JWE, JOSE_OPEN, listDir, runCli } from './helpers/cli.js'
import { CANARY, leaksCanary, writeKeyFiles } from './helpers/sealing.js'

/** The input, with each targeted value as a marker; markers are replaced by the raw JSON text. */
const TEMPLATE = `{
  "id" : "A-2025-0042",
  "name":\t@name@ ,
  "person": { "birthDate": @birthDate@, "height": 1.8e+2 },
  "documents": [ {"kind": "passport", "number": @passport@}, {"kind": "id", "number": @idcard@} ],
  "escaped": "\\u00e9t\\u00e9 \\"quoted\\"",
  "status": "pending"
}
`
const RAW: Record<string, string> = {
  name: JSON.stringify(CANARY.name),
  // A non-string value is sealed as its exact JSON text, whitespace and escapes included.
  birthDate: `{ "y": 1911, "text": ${JSON.stringify(CANARY.birthDate)} }`,
  passport: `"${CANARY.passport.replace('P', '\\u0050')}"`,
  idcard: '12345678',
}
const POINTERS: Record<string, string> = {
  name: '/name',
  birthDate: '/person/birthDate',
  passport: '/documents/0/number',
  idcard: '/documents/1/number',
}
const INPUT = TEMPLATE.replace(/@(\w+)@/g, (_m, k: string) => RAW[k]!)
const FIELDS = '/name,/person/birthDate,/documents/*/number'

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
}

/** The sealed output must be the template with each marker replaced by one quoted JWE. */
function sealedShape(): RegExp {
  const parts = TEMPLATE.split(/@\w+@/)
  return new RegExp(`^${parts.map(escapeRegExp).join('"([^"]+)"')}$`)
}
const ORDER = [...TEMPLATE.matchAll(/@(\w+)@/g)].map((m) => m[1]!)

t.test('sealed members open with jose to their exact text; the rest is byte-identical; open restores the file', async (t) => {
  const dir = t.testdir({ 'record.json': INPUT })
  const keys = await writeKeyFiles(dir, 'th', { kid: 'cli-k1' })
  const sealedFile = join(dir, 'record.sealed.json')
  const r = await runCli(['seal', '--keys', keys.publicPath, '--context', 'accreditations', '--fields', FIELDS, join(dir, 'record.json'), '--out', sealedFile])
  t.equal(r.code, 0, r.stderr)
  t.equal(r.stderr, '')
  t.equal(r.stdout, `sealed ${join(dir, 'record.json')} into ${sealedFile}\n`)
  t.equal((await stat(sealedFile)).mode & 0o777, 0o644, 'sealed output is 0644')

  const sealed = await readFile(sealedFile, 'utf8')
  t.equal(leaksCanary(sealed), undefined, 'no canary in the sealed file')
  const m = sealedShape().exec(sealed)
  t.ok(m, 'every byte outside the targeted members is unchanged')
  const key = await importJWK(keys.privateJwks.keys[0]!, 'ECDH-ES+A256KW')
  for (const [i, name] of ORDER.entries()) {
    const jwe = m![i + 1]!
    t.match(jwe, COMPACT_JWE, `${name}: a compact JWE`)
    const out = await compactDecrypt(jwe, key, { ...JOSE_OPEN, keyManagementAlgorithms: ['ECDH-ES+A256KW'] })
    t.equal(Buffer.from(out.plaintext).toString('utf8'), RAW[name], `${name}: jose opens it to the exact JSON text`)
    t.match(out.protectedHeader, { alg: 'ECDH-ES+A256KW', enc: 'A256GCM', kid: 'cli-k1', 'ecl.route': 'accreditations', 'ecl.ptr': POINTERS[name] })
    t.notOk('ecl.rid' in out.protectedHeader, `${name}: no record binding without --records`)
  }

  // Back with the private set: the exact original bytes, into a file (0600) and on stdout.
  const openedFile = join(dir, 'record.opened.json')
  const o = await runCli(['open', '--keys', keys.privatePath, '--context', 'accreditations', '--fields', FIELDS, sealedFile, '--out', openedFile])
  t.equal(o.code, 0, o.stderr)
  t.equal(o.stdout, `opened ${sealedFile} into ${openedFile}\n`)
  t.equal(await readFile(openedFile, 'utf8'), INPUT, 'open restores the file byte for byte')
  t.equal((await stat(openedFile)).mode & 0o777, 0o600, 'opened output is 0600')
  const s = await runCli(['open', '-k', keys.privatePath, '--context', 'accreditations', '--fields', '/name', '--fields', '/person/birthDate,/documents/*/number', sealedFile])
  t.equal(s.code, 0, s.stderr)
  t.equal(s.stdout, INPUT, 'repeated --fields are the same list; stdout carries the original')
  t.same(await listDir(dir), ['record.json', 'record.opened.json', 'record.sealed.json', 'th.private.jwks.json', 'th.public.jwks.json'])
})

t.test('untargeted members and an input without any target pass through unchanged', async (t) => {
  const dir = t.testdir({ 'plain.json': '[1, {"other": "CANARY-free"}, null]\n' })
  const keys = await writeKeyFiles(dir, 'th')
  const r = await runCli(['seal', '-k', keys.publicPath, '--context', 'c', '--fields', '/name', join(dir, 'plain.json')])
  t.equal(r.code, 0, r.stderr)
  t.equal(r.stdout, '[1, {"other": "CANARY-free"}, null]\n')
})

t.test('seal given the private set seals to its current key, like the public set', async (t) => {
  const dir = t.testdir({ 'record.json': INPUT })
  const keys = await writeKeyFiles(dir, 'th', { kid: 'cli-private-given' })
  const r = await runCli(['seal', '-k', keys.privatePath, '--context', 'accreditations', '--fields', FIELDS, join(dir, 'record.json')])
  t.equal(r.code, 0, r.stderr)
  t.equal(leaksCanary(r.stdout + r.stderr), undefined)
  const m = sealedShape().exec(r.stdout)
  t.ok(m, 'the same shape as with the public set')
  const key = await importJWK(keys.privateJwks.keys[0]!, 'ECDH-ES+A256KW')
  for (const [i, name] of ORDER.entries()) {
    t.equal(decodeProtectedHeader(m![i + 1]!).kid, 'cli-private-given')
    const out = await compactDecrypt(m![i + 1]!, key, { ...JOSE_OPEN, keyManagementAlgorithms: ['ECDH-ES+A256KW'] })
    t.equal(Buffer.from(out.plaintext).toString('utf8'), RAW[name])
  }
})

t.test('RSA-OAEP-256 and P-256 sets: jose opens what seal writes', async (t) => {
  for (const opts of [{ alg: 'RSA-OAEP-256' as const, modulusLength: 2048 }, { crv: 'P-256' as const }]) {
    const dir = t.testdir({ 'record.json': INPUT })
    const keys = await writeKeyFiles(dir, 'th', opts)
    const alg = keys.publicJwks.keys[0]!['alg'] as string
    const r = await runCli(['seal', '-k', keys.publicPath, '--context', 'accreditations', '--fields', FIELDS, join(dir, 'record.json')])
    t.equal(r.code, 0, r.stderr)
    const m = sealedShape().exec(r.stdout)
    t.ok(m, `${alg}: shape`)
    const key = await importJWK(keys.privateJwks.keys[0]!, alg)
    const out = await compactDecrypt(m![1]!, key, { ...JOSE_OPEN, keyManagementAlgorithms: [alg] })
    t.equal(Buffer.from(out.plaintext).toString('utf8'), RAW[ORDER[0]!], `${alg}: jose opens it`)
  }
})
