/**
 * Whatever keeps a sealed value or body from opening (another context, a tampered value, another
 * private key, plaintext where a sealed value is expected, a truncated stream), `ecluse open` exits 1
 * with the same `ecluse: open_failed: …` line, and neither stderr nor stdout holds a value of the
 * input. With `--out FILE`, a failed run leaves neither FILE nor a temporary file, and an existing
 * FILE keeps its bytes and mode. A public set given to `open` is refused before any input is read.
 */
import { chmod, readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { listDir, runCli } from './helpers/cli.js'
import { CANARY, canaryRecord, leaksCanary, SENSITIVE_FIELDS, writeKeyFiles } from './helpers/sealing.js'

const FIELDS = SENSITIVE_FIELDS.join(',')
const PLAIN = JSON.stringify(canaryRecord('A-1'))
const BODY = Buffer.from(`${CANARY.name} ${CANARY.passport}\n`.repeat(2000))

const dir = t.testdir({ 'record.json': PLAIN, 'scan.bin': BODY })
const keys = await writeKeyFiles(dir, 'th')
const other = await writeKeyFiles(dir, 'other')

async function sealTo(args: string[], out: string): Promise<Buffer> {
  const r = await runCli(['seal', '-k', keys.publicPath, ...args, '-o', out])
  if (r.code !== 0) throw new Error(r.stderr)
  return readFile(out)
}
const sealedRecord = (await sealTo(['--context', 'accreditations', '--fields', FIELDS, join(dir, 'record.json')], join(dir, 'record.sealed.json'))).toString('utf8')
const sealedBody = await sealTo(['--context', 'documents', '--body', '--content-type', 'image/tiff', join(dir, 'scan.bin')], join(dir, 'scan.sealed'))

/** A base64url character changed in the ciphertext of the sealed `name`. */
function tamperedRecord(): string {
  const doc = JSON.parse(sealedRecord)
  const parts = (doc.name as string).split('.')
  const ct = parts[3]!
  parts[3] = (ct[0] === 'A' ? 'B' : 'A') + ct.slice(1)
  doc.name = parts.join('.')
  return JSON.stringify(doc)
}

/** A header claim rewritten (context "accreditations" → "accreditationz") in the sealed `name`. */
function reheaderedRecord(): string {
  const doc = JSON.parse(sealedRecord)
  const parts = (doc.name as string).split('.')
  const header = Buffer.from(parts[0]!, 'base64url').toString('utf8').replace('"accreditations"', '"accreditationz"')
  parts[0] = Buffer.from(header).toString('base64url')
  doc.name = parts.join('.')
  return JSON.stringify(doc)
}

const FIELD_FAILURE = 'ecluse: open_failed: /name does not open with these keys for this context (or was moved or altered)\n'
const BODY_FAILURE = 'ecluse: open_failed: the sealed body does not open with these keys for this context (or was moved or altered)\n'

interface Case {
  readonly name: string
  readonly input: string | Buffer
  readonly keys?: string
  readonly context: string
}

const fieldCases: Case[] = [
  { name: 'another context', input: sealedRecord, context: 'photos' },
  { name: 'a tampered ciphertext', input: tamperedRecord(), context: 'accreditations' },
  { name: 'a rewritten header', input: reheaderedRecord(), context: 'accreditations' },
  { name: 'another private key', input: sealedRecord, keys: other.privatePath, context: 'accreditations' },
  { name: 'the plaintext record', input: PLAIN, context: 'accreditations' },
  { name: 'a number where a sealed value is expected', input: '{"id":"A-1","name":19111111}', context: 'accreditations' },
  { name: 'an object where a sealed value is expected', input: `{"id":"A-1","name":{"v":${JSON.stringify(CANARY.name)}}}`, context: 'accreditations' },
]

const truncated = sealedBody.subarray(0, sealedBody.length - 40)
const flipped = Buffer.from(sealedBody)
flipped[Math.floor(flipped.length / 2)]! ^= 0x10
const bodyCases: Case[] = [
  { name: 'another context', input: sealedBody, context: 'photos' },
  { name: 'a flipped byte', input: flipped, context: 'documents' },
  { name: 'a truncated stream', input: truncated, context: 'documents' },
  { name: 'another private key', input: sealedBody, keys: other.privatePath, context: 'documents' },
  { name: 'the plaintext body', input: BODY, context: 'documents' },
  { name: 'an empty input', input: Buffer.alloc(0), context: 'documents' },
]

async function runCase(c: Case, mode: string[], i: number, out: string[] = []) {
  const file = join(dir, `case-${mode[0]!.slice(2)}-${i}.in`)
  await writeFile(file, c.input)
  return runCli(['open', '-k', c.keys ?? keys.privatePath, '--context', c.context, ...mode, file, ...out])
}

t.test('fields: every cause gives the same line, exit 1, and no value on either stream', async (t) => {
  // Control: the same command opens the untouched record.
  const ok = await runCase({ name: 'control', input: sealedRecord, context: 'accreditations' }, ['--fields', FIELDS], 99)
  t.equal(ok.code, 0, ok.stderr)
  t.equal(ok.stdout, PLAIN)
  for (const [i, c] of fieldCases.entries()) {
    const r = await runCase(c, ['--fields', FIELDS], i)
    t.equal(r.code, 1, `${c.name}: exit 1`)
    t.equal(r.stderr, FIELD_FAILURE, `${c.name}: the uniform line`)
    t.equal(leaksCanary(r.stdout + r.stderr, ['19111111']), undefined, `${c.name}: no value on stdout or stderr`)
  }
})

t.test('bodies: every cause gives the same line, exit 1, and no plaintext byte on stdout', async (t) => {
  for (const [i, c] of bodyCases.entries()) {
    const r = await runCase(c, ['--body'], i)
    t.equal(r.code, 1, `${c.name}: exit 1`)
    t.equal(r.stderr, BODY_FAILURE, `${c.name}: the uniform line`)
    if (c.name === 'a flipped byte' || c.name === 'a truncated stream') {
      // On stdout the records before the damage were already released: authenticated plaintext,
      // whole records only, never a byte of the damaged one (the help: check the exit status, or
      // use --out, which the next test covers).
      t.ok(BODY.toString('utf8').startsWith(r.stdout), `${c.name}: stdout is a prefix of the original`)
      t.ok(r.stdout.length < BODY.length, `${c.name}: and never all of it`)
    } else {
      t.equal(r.stdout, '', `${c.name}: nothing on stdout`)
    }
    t.equal(leaksCanary(r.stderr), undefined, `${c.name}: no value on stderr`)
  }
})

t.test('--out: a failed run writes no file and no temporary file, and leaves an existing file as it was', async (t) => {
  const cases: Array<[Case, string[]]> = [
    ...fieldCases.map((c): [Case, string[]] => [c, ['--fields', FIELDS]]),
    ...bodyCases.map((c): [Case, string[]] => [c, ['--body']]),
  ]
  for (const [i, [c, mode]] of cases.entries()) {
    const fresh = join(dir, `fresh-${i}.out`)
    const before = await listDir(dir)
    const r = await runCase(c, mode, i, ['--out', fresh])
    t.equal(r.code, 1, `${c.name}: exit 1`)
    t.equal(r.stderr, mode[0] === '--body' ? BODY_FAILURE : FIELD_FAILURE, c.name)
    t.equal(r.stdout, '', `${c.name}: nothing on stdout`)
    const after = await listDir(dir)
    t.notOk(after.includes(`fresh-${i}.out`), `${c.name}: no output file`)
    t.same(after.filter((f) => !before.includes(f) && !f.startsWith('case-')), [], `${c.name}: nothing else left behind`)

    const existing = join(dir, `existing-${i}.out`)
    await writeFile(existing, 'the previous result\n')
    await chmod(existing, 0o640)
    const again = await runCase(c, mode, i, ['--out', existing])
    t.equal(again.code, 1)
    t.equal(await readFile(existing, 'utf8'), 'the previous result\n', `${c.name}: the existing file keeps its bytes`)
    t.equal((await stat(existing)).mode & 0o777, 0o640, `${c.name}: and its mode`)
  }
  t.notOk((await listDir(dir)).some((f) => f.endsWith('.tmp')), 'no temporary file anywhere')
})

t.test('a public set given to open: refused as key material, before any input is read or written', async (t) => {
  const out = join(dir, 'public-set.out')
  for (const mode of [['--fields', FIELDS], ['--body']]) {
    const input = mode[0] === '--body' ? join(dir, 'scan.sealed') : join(dir, 'record.sealed.json')
    const r = await runCli(['open', '-k', keys.publicPath, '--context', 'accreditations', ...mode, input, '--out', out])
    t.equal(r.code, 1)
    t.equal(
      r.stderr,
      `ecluse: key_material_invalid: ${keys.publicPath} holds public keys only: open needs the private set (*.private.jwks.json)\n`,
    )
    t.equal(r.stdout, '')
    t.notOk((await listDir(dir)).some((f) => f.startsWith('public-set.out')), 'no output, no temporary file')
  }
})
