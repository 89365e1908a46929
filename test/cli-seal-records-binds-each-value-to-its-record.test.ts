/**
 * `seal --records PTR:ID` binds each sealed value to its record's id (`ecl.rid`) and to its place
 * inside the record (`ecl.ptr` = the record pattern + the member). Records may be reordered and
 * still open; a value moved to another record, a record whose id was changed, or an `open` without
 * the same `--records` fails with `open_failed`, printing no value. With `--ndjson`, `:id` makes
 * every line a record.
 */
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { compactDecrypt, importJWK } from 'jose'
import t from 'tap'
import { JOSE_OPEN, listDir, runCli } from './helpers/cli.js'
import { canaryRecord, leaksCanary, writeKeyFiles } from './helpers/sealing.js'

const FIELDS = '/records/*/name,/records/*/passport'
const SEAL = ['--context', 'accreditations', '--fields', FIELDS, '--records', '/records/*:id']
const INPUT = JSON.stringify({ page: 1, records: [canaryRecord(7, '-seven'), canaryRecord('B-2', '-b2')] })

const dir = t.testdir({ 'page.json': INPUT })
const keys = await writeKeyFiles(dir, 'th')
const sealedFile = join(dir, 'page.sealed.json')
const sealed = await runCli(['seal', '-k', keys.publicPath, ...SEAL, join(dir, 'page.json'), '-o', sealedFile])
if (sealed.code !== 0) throw new Error(sealed.stderr)
const sealedDoc = JSON.parse(await readFile(sealedFile, 'utf8'))

/** Writes `doc` as a file and opens it with `args`; the result and what the directory holds after. */
async function openDoc(name: string, doc: unknown, args = SEAL) {
  const file = join(dir, `${name}.json`)
  await writeFile(file, typeof doc === 'string' ? doc : JSON.stringify(doc))
  const out = join(dir, `${name}.opened.json`)
  const r = await runCli(['open', '-k', keys.privatePath, ...args, file, '--out', out])
  return { ...r, files: await listDir(dir), out }
}

function clone<T>(v: T): T {
  return JSON.parse(JSON.stringify(v)) as T
}

t.test('each value is bound to its record id and its member, as jose reads the header', async (t) => {
  const key = await importJWK(keys.privateJwks.keys[0]!, 'ECDH-ES+A256KW')
  for (const [i, rid] of [[0, '7'], [1, 'B-2']] as const) {
    for (const member of ['name', 'passport']) {
      const out = await compactDecrypt(sealedDoc.records[i][member], key, { ...JOSE_OPEN, keyManagementAlgorithms: ['ECDH-ES+A256KW'] })
      t.equal(out.protectedHeader['ecl.rid'], rid, `records[${i}].${member} bound to id ${rid}`)
      t.equal(out.protectedHeader['ecl.ptr'], `/records/*/${member}`)
    }
  }
  t.equal(leaksCanary(JSON.stringify(sealedDoc.records.map((r: Record<string, unknown>) => [r.name, r.passport]))), undefined)
})

t.test('the sealed page opens back exactly, and so does the same page with its records reordered', async (t) => {
  const back = await openDoc('as-is', await readFile(sealedFile, 'utf8'))
  t.equal(back.code, 0, back.stderr)
  t.equal(await readFile(back.out, 'utf8'), INPUT)

  const reordered = clone(sealedDoc)
  reordered.records.reverse()
  const r = await openDoc('reordered', reordered)
  t.equal(r.code, 0, r.stderr)
  const expected = JSON.parse(INPUT)
  expected.records.reverse()
  t.same(JSON.parse(await readFile(r.out, 'utf8')), expected)
})

t.test('a value moved to another record, a changed id, or open without --records: open_failed, nothing written', async (t) => {
  const moved = clone(sealedDoc)
  ;[moved.records[0].passport, moved.records[1].passport] = [moved.records[1].passport, moved.records[0].passport]
  const movedMember = clone(sealedDoc)
  ;[movedMember.records[0].name, movedMember.records[0].passport] = [movedMember.records[0].passport, movedMember.records[0].name]
  const renamed = clone(sealedDoc)
  renamed.records[1].id = 'B-3'
  const numeric = clone(sealedDoc)
  numeric.records[0].id = '7' // the string "7", not the number 7: still the same claim, so it opens

  const cases: Array<[string, unknown, string[] | undefined, string]> = [
    // Where the value sits now: array indices, which name no content (a member a * matched would
    // show as *).
    ['moved', moved, undefined, '/records/0/passport'],
    ['moved-member', movedMember, undefined, '/records/0/name'],
    ['renamed', renamed, undefined, '/records/1/name'],
    ['no-records', sealedDoc, ['--context', 'accreditations', '--fields', FIELDS], '/records/0/name'],
  ]
  for (const [name, doc, args, where] of cases) {
    const r = await openDoc(name, doc, args)
    t.equal(r.code, 1, `${name}: exit 1`)
    t.equal(r.stdout, '', `${name}: nothing on stdout`)
    t.equal(r.stderr, `ecluse: open_failed: ${where} does not open with these keys for this context (or was moved or altered)\n`, name)
    t.equal(leaksCanary(r.stdout + r.stderr), undefined, `${name}: no value shown`)
    t.notOk(r.files.includes(`${name}.opened.json`), `${name}: no output file`)
    t.notOk(r.files.some((f) => f.endsWith('.tmp')), `${name}: no temporary file`)
  }
  const same = await openDoc('numeric', numeric)
  t.equal(same.code, 0, `the id's text is the claim: ${same.stderr}`)
})

t.test('a record that holds a target but no id cannot be sealed: record_id_missing', async (t) => {
  const file = join(dir, 'no-id.json')
  const record = canaryRecord(1) as Record<string, unknown>
  delete record.id
  await writeFile(file, JSON.stringify({ records: [record] }))
  const r = await runCli(['seal', '-k', keys.publicPath, ...SEAL, file, '-o', join(dir, 'no-id.sealed.json')])
  t.equal(r.code, 1)
  t.equal(r.stderr, 'ecluse: record_id_missing: record at /records/0 has no id member\n')
  t.notOk((await listDir(dir)).some((f) => f.startsWith('no-id.sealed')), 'nothing written')
})

t.test('--ndjson with --records :id: every line is a record; a value moved between lines does not open', async (t) => {
  const lines = [canaryRecord('L1', '-1'), canaryRecord('L2', '-2')].map((r) => JSON.stringify(r))
  const file = join(dir, 'lines.ndjson')
  await writeFile(file, `${lines.join('\n')}\n`)
  const args = ['--context', 'accreditations', '--ndjson', '--fields', '/name,/passport', '--records', ':id']
  const s = await runCli(['seal', '-k', keys.publicPath, ...args, file])
  t.equal(s.code, 0, s.stderr)
  const out = s.stdout.trimEnd().split('\n').map((l) => JSON.parse(l))
  const key = await importJWK(keys.privateJwks.keys[0]!, 'ECDH-ES+A256KW')
  const header = (await compactDecrypt(out[1].name, key, { ...JOSE_OPEN, keyManagementAlgorithms: ['ECDH-ES+A256KW'] })).protectedHeader
  t.equal(header['ecl.rid'], 'L2')
  t.equal(header['ecl.ptr'], '/name')

  const sealedLines = join(dir, 'lines.sealed.ndjson')
  await writeFile(sealedLines, s.stdout)
  const back = await runCli(['open', '-k', keys.privatePath, ...args, sealedLines])
  t.equal(back.code, 0, back.stderr)
  t.equal(back.stdout, `${lines.join('\n')}\n`)

  ;[out[0].passport, out[1].passport] = [out[1].passport, out[0].passport]
  const r = await openDoc('lines-moved', `${out.map((o) => JSON.stringify(o)).join('\n')}\n`, args)
  t.equal(r.code, 1)
  t.equal(r.stderr, 'ecluse: open_failed: /passport does not open with these keys for this context (or was moved or altered)\n')
  t.equal(leaksCanary(r.stdout + r.stderr), undefined)
  t.notOk(r.files.includes('lines-moved.opened.json'))
})
