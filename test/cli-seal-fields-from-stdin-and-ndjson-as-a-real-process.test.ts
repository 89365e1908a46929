/**
 * `ecluse seal` and `ecluse open` as a user pipes them: stdin (no FILE, or `-`) to stdout, a JSON
 * document and NDJSON (`--ndjson`, every line sealed, the line structure kept), large enough to take
 * many chunks and to fill the pipes; `open` gives back the exact input bytes.
 */
import { compactDecrypt, importJWK } from 'jose'
import t from 'tap'
import { COMPACT_JWE, JOSE_OPEN, spawnCli } from './helpers/cli.js'
import { CANARY, canaryRecord, leaksCanary, SENSITIVE_FIELDS, writeKeyFiles } from './helpers/sealing.js'

const dir = t.testdir()
const keys = await writeKeyFiles(dir, 'th', { kid: 'stdin-k' })
const key = await importJWK(keys.privateJwks.keys[0]!, 'ECDH-ES+A256KW')

async function opensTo(jwe: string, ptr: string): Promise<string> {
  const out = await compactDecrypt(jwe, key, { ...JOSE_OPEN, keyManagementAlgorithms: ['ECDH-ES+A256KW'] })
  if (out.protectedHeader['ecl.ptr'] !== ptr) throw new Error(`bound to ${String(out.protectedHeader['ecl.ptr'])}, not ${ptr}`)
  return Buffer.from(out.plaintext).toString('utf8')
}

t.test('a document on stdin, without FILE and with -, sealed to stdout and opened back', async (t) => {
  const input = `${JSON.stringify({ id: 1, name: CANARY.name, nested: { email: CANARY.email }, keep: 'plain' }, null, 2)}\n`
  const args = ['-k', keys.publicPath, '--context', 'accreditations', '--fields', '/name,/nested/email']
  for (const extra of [[], ['-']]) {
    const sealed = await spawnCli(['seal', ...args, ...extra], input)
    t.equal(sealed.code, 0, sealed.stderr)
    t.equal(sealed.stderr, '')
    const text = sealed.stdout.toString('utf8')
    t.equal(leaksCanary(text), undefined, 'no canary on stdout')
    const doc = JSON.parse(text)
    t.match(doc, { id: 1, keep: 'plain' })
    t.match(doc.name, COMPACT_JWE)
    t.equal(await opensTo(doc.name, '/name'), JSON.stringify(CANARY.name))
    t.equal(await opensTo(doc.nested.email, '/nested/email'), JSON.stringify(CANARY.email))

    const opened = await spawnCli(['open', '-k', keys.privatePath, '--context', 'accreditations', '--fields', '/name,/nested/email', ...extra], sealed.stdout)
    t.equal(opened.code, 0, opened.stderr)
    t.equal(opened.stdout.toString('utf8'), input, `${extra.length === 0 ? 'stdin' : '-'}: open restores the exact bytes`)
  }
})

t.test('--ndjson: thousands of lines through the pipes, every line sealed, line for line back', async (t) => {
  // About 2 MB: many reads on stdin and writes that outrun the reader on stdout.
  const lines = Array.from({ length: 8000 }, (_, i) => JSON.stringify(canaryRecord(i, `-${i}`)))
  const input = `${lines.join('\n')}\n`
  const fields = SENSITIVE_FIELDS.join(',')
  const sealed = await spawnCli(['seal', '-k', keys.publicPath, '--context', 'accreditations', '--ndjson', '--fields', fields], input)
  t.equal(sealed.code, 0, sealed.stderr)
  const text = sealed.stdout.toString('utf8')
  t.equal(leaksCanary(text), undefined, 'no canary in the sealed stream')
  const out = text.split('\n')
  t.equal(out.length, lines.length + 1, 'one line out per line in')
  t.equal(out.at(-1), '', 'the final newline is kept')
  let shaped = 0
  for (const [i, line] of out.slice(0, -1).entries()) {
    const doc = JSON.parse(line)
    if (doc.id === i && doc.status === 'pending' && SENSITIVE_FIELDS.every((f) => COMPACT_JWE.test(doc[f.slice(1)]))) shaped++
  }
  t.equal(shaped, lines.length, 'untargeted members kept, targeted ones sealed, on every line')
  const last = JSON.parse(out.at(-2)!)
  // A line's values are bound to its line, as an array element's to its index (jose opens it).
  t.equal(await opensTo(last.passport, '/7999/passport'), JSON.stringify(`${CANARY.passport}-7999`))

  const opened = await spawnCli(['open', '-k', keys.privatePath, '--context', 'accreditations', '--ndjson', '--fields', fields], sealed.stdout)
  t.equal(opened.code, 0, opened.stderr)
  t.equal(opened.stdout.toString('utf8'), input, 'open restores every line exactly')
})

t.test('--ndjson is required for more than one value: a second line is not a JSON document', async (t) => {
  const r = await spawnCli(['seal', '-k', keys.publicPath, '--context', 'c', '--fields', '/name'], '{"name":"a"}\n{"name":"b"}\n')
  t.equal(r.code, 1)
  t.match(r.stderr, /^ecluse: json_invalid: trailing data after the JSON value at byte 13\n$/)
})
