/**
 * `seal` and `open` options and inputs that cannot work: bad options are usage errors (exit 2,
 * the command's usage, nothing written); invalid JSON is `json_invalid`, a missing file or key set
 * a one-line failure (exit 1), none of them showing a value of the input. `--help` of `keys init`,
 * `seal` and `open` prints the usage (exit 0), and the program's usage lists the three.
 */
import { join } from 'node:path'
import t from 'tap'
import { COMPACT_JWE, listDir, runCli, spawnCli } from './helpers/cli.js'
import { CANARY, leaksCanary, writeKeyFiles } from './helpers/sealing.js'

const dir = t.testdir({
  'record.json': JSON.stringify({ id: 1, name: CANARY.name }),
  'broken.json': `{"status": tru, "name": ${JSON.stringify(CANARY.name)}}`,
  'duplicate.json': `{"name": ${JSON.stringify(CANARY.name)}, "name": "again"}`,
  'truncated.json': `{"id": 1, "other": ${JSON.stringify(CANARY.passport)}, "name": `,
  'long.json': `{"name": ${JSON.stringify(CANARY.name)}}`,
  'not-a-key-set.json': `{"name": ${JSON.stringify(CANARY.name)}}`,
  sub: {},
})
const keys = await writeKeyFiles(dir, 'th')
const input = join(dir, 'record.json')
const out = join(dir, 'out.json')

t.test('bad options: exit 2, a message naming the option, the usage, nothing written', async (t) => {
  const seal = ['seal', '-k', keys.publicPath]
  const open = ['open', '-k', keys.privatePath]
  const cases: Array<[string[], string]> = [
    [[...seal, '--context', 'c', '--fields', '/name', '--body', input], 'give either --fields or --body'],
    [[...seal, '--context', 'c', input], 'give either --fields or --body'],
    [[...open, '--context', 'c', input], 'give either --fields or --body'],
    [[...open, '--context', 'c', '--body', '--fields', '/name', input], 'give either --fields or --body'],
    [[...seal, '--context', 'c', '--fields', '/name', '--content-type', 'image/png', input], '--content-type applies to --body only'],
    [[...open, '--context', 'c', '--body', '--content-type', 'image/png', input], "unknown option '--content-type'"],
    [[...seal, '--context', 'c', '--body', '--records', '/r/*:id', input], '--records applies to --fields only'],
    [[...seal, '--context', 'c', '--body', '--ndjson', input], '--ndjson applies to --fields only'],
    [[...open, '--context', 'c', '--body', '--max-value-bytes', '10', input], '--max-value-bytes applies to --fields only'],
    [[...open, '--context', 'c', '--body', '--max-fields-per-record', '10', input], '--max-fields-per-record applies to --fields only'],
    [[...open, '--context', 'c', '--fields', '/name', '--min-record-size', '4096', input], '--min-record-size applies to --body only'],
    [[...seal, '--context', 'c', '--body', '--min-record-size', '4096', input], "unknown option '--min-record-size'"],
    [[...open, '--context', 'c', '--body', '--min-record-size', '8', input], '--min-record-size: Too small: expected number to be >=16'],
    [[...seal, '--context', 'c', '--body', '--record-size', '8', input], '--record-size: Too small: expected number to be >=16'],
    [[...seal, '--context', 'c', '--fields', '/name', '--record-size', '4096', input], '--record-size applies to --body only'],
    [[...open, '--context', 'c', '--body', '--record-size', '4096', input], "unknown option '--record-size'"],
    [[...open, '--context', 'c', '--body', '--min-record-size', '2097152', input], '--min-record-size: must not exceed --max-record-size'],
    [[...open, '--context', 'c', '--body', '--min-record-size', '8192', '--max-record-size', '4096', input], '--min-record-size: must not exceed --max-record-size'],
    [[...open, '--context', 'c', '--body', '--max-record-size', '16777217', input], '--max-record-size: Too big: expected number to be <=16777216'],
    [[...open, '--context', 'c', '--fields', '/name', '--max-record-size', '4096', input], '--max-record-size applies to --body only'],
    [[...seal, '--context', 'c', '--body', '--max-record-size', '4096', input], "unknown option '--max-record-size'"],
    // parseArgs keeps the last of a repeated option: a run would seal for whichever context came last.
    [[...seal, '--context', 'a', '--fields', '/name', '--context', 'b', input], '--context is given more than once'],
    [['open', '-k', keys.publicPath, '--keys', keys.privatePath, '--context', 'c', '--fields', '/name', input], '--keys is given more than once'],
    [[...seal, '--context', 'c', '--body', '--body', input], '--body is given more than once'],
    [[...seal, '--context', 'c', '--fields', '/name', '-o', out, '--out', join(dir, 'other.json'), input], '--out is given more than once'],
    // `-` is stdin as FILE; as --out it was a file named "-".
    [[...open, '--context', 'c', '--fields', '/name', '-o', '-', input], '--out takes a file name; leave --out out to write to stdout'],
    [[...seal, '--context', 'c', '--fields', '/name', '--max-fields-per-record', 'many', input], '--max-fields-per-record takes a positive number of values'],
    [['seal', '--context', 'c', '--fields', '/name', input], '--keys is required'],
    [[...open, '--fields', '/name', input], '--context is required'],
    [[...seal, '--context', '', '--fields', '/name', input], '--context must not be empty'],
    [['seal', '-k', '', '--context', 'c', '--fields', '/name', input], '--keys needs a file'],
    [[...open, '--context', 'c', '--body', input, '-o', ''], '--out needs a file'],
    [[...seal, '--context', 'two words', '--fields', '/name', input], '--context: must be visible ASCII without spaces'],
    // A gateway fills a body's path parameters in; offline there is no path to read them from.
    [[...open, '--context', 'photos-in/{id}', '--body', input], '--context: {id} reads a path parameter, and there is no route path here; give the context as it was bound, e.g. photos-in/A'],
    [[...seal, '--context', 'records/{id}', '--fields', '/name', input], '--context: a "{name}" path parameter binds whole bodies only (seal-body, open-body, require-sealed-body); a field is bound to its record through records'],
    [[...seal, '--context', 'c', '--fields', 'name', input], '--fields takes JSON Pointers, each starting with "/"'],
    [[...seal, '--context', 'c', '--fields', '/name,', input], '--fields takes JSON Pointers, each starting with "/"'],
    [[...seal, '--context', 'c', '--fields', '/name,/name', input], '--fields: JSON patterns "/name" and "/name" can match the same value'],
    [[...seal, '--context', 'c', '--fields', '/name', '--records', 'records', input], '--records takes PTR:ID, PTR a JSON Pointer (empty: the whole value), e.g. /records/*:id'],
    [[...seal, '--context', 'c', '--fields', '/name', '--records', 'records/*:id', input], '--records takes PTR:ID, PTR a JSON Pointer (empty: the whole value), e.g. /records/*:id'],
    [[...open, '--context', 'c', '--fields', '/name', '--records', '/records/*:', input], '--records takes PTR:ID, PTR a JSON Pointer (empty: the whole value), e.g. /records/*:id'],
    [[...seal, '--context', 'c', '--fields', '/name', '--max-value-bytes', '0', input], '--max-value-bytes takes a positive number of bytes'],
    [[...seal, '--context', 'c', '--fields', '/name', '--max-record-bytes', '1e6', input], '--max-record-bytes takes a positive number of bytes'],
    [[...seal, '--context', 'c', '--fields', '/name', '--max-value-bytes', '99999999999', input], '--max-value-bytes: Too big: expected number to be <=16777216'],
    [[...seal, '--context', 'c', '--body', '--content-type', 'not a type', input], '--content-type takes one media type, e.g. image/jpeg'],
    [[...seal, '--context', 'c', '--fields', '/name', input, 'second.json'], "unexpected argument 'second.json'"],
    [[...open, '--context', 'c', '--fields', '/name', '--body=yes', input], "option '--body' does not take an argument"],
  ]
  for (const [argv, message] of cases) {
    // Each case also names an output (unless it is the case), which must not appear.
    const r = await runCli(argv.includes('-o') ? argv : [...argv, '--out', out])
    const name = argv.slice(3).join(' ')
    t.equal(r.code, 2, `${name}: exit 2`)
    t.equal(r.stdout, '', `${name}: nothing on stdout`)
    t.equal(r.stderr.split('\n')[0], `ecluse: ${message}`, name)
    t.match(r.stderr, `\n\nUsage: ecluse ${argv[0]} --keys `, `${name}: the command's usage`)
  }
  t.notOk((await listDir(dir)).some((f) => f.startsWith('out.json')), 'nothing written')
})

t.test('invalid JSON is json_invalid (exit 1) with a reason and an offset, never a value; nothing written', async (t) => {
  const cases: Array<[string, string[], RegExp]> = [
    ['broken.json', ['seal', '-k', keys.publicPath], /^ecluse: json_invalid: malformed literal at byte 14\n$/],
    ['broken.json', ['open', '-k', keys.privatePath], /^ecluse: json_invalid: malformed literal at byte 14\n$/],
    ['duplicate.json', ['seal', '-k', keys.publicPath], /^ecluse: json_invalid: duplicate member name at byte \d+\n$/],
    ['truncated.json', ['seal', '-k', keys.publicPath], /^ecluse: json_invalid: .* at byte \d+\n$/],
  ]
  for (const [file, argv, expected] of cases) {
    const r = await runCli([...argv, '--context', 'c', '--fields', '/name', join(dir, file), '--out', out])
    t.equal(r.code, 1, `${argv[0]} ${file}: exit 1`)
    t.match(r.stderr, expected, `${argv[0]} ${file}`)
    t.equal(r.stdout, '')
    t.equal(leaksCanary(r.stderr), undefined, `${argv[0]} ${file}: no value in the message`)
    t.notOk((await listDir(dir)).some((f) => f.startsWith('out.json')), `${argv[0]} ${file}: nothing written`)
  }
  // Through stdout the bytes before the error are already out; what was written holds no target.
  const s = await runCli(['seal', '-k', keys.publicPath, '--context', 'c', '--fields', '/name', join(dir, 'truncated.json')])
  t.equal(s.code, 1)
  t.notMatch(s.stdout, CANARY.name)
})

t.test('a targeted value over --max-value-bytes is value_too_large, without the value', async (t) => {
  const r = await runCli(['seal', '-k', keys.publicPath, '--context', 'c', '--fields', '/name', '--max-value-bytes', '8', join(dir, 'long.json'), '-o', out])
  t.equal(r.code, 1)
  t.match(r.stderr, /^ecluse: value_too_large: targeted value over its cap at byte \d+\n$/)
  t.equal(leaksCanary(r.stdout + r.stderr), undefined)
  t.notOk((await listDir(dir)).some((f) => f.startsWith('out.json')))
})

t.test('a record with more values than --max-fields-per-record is value_too_large, without the values', async (t) => {
  const many = join(dir, 'many.json')
  const { writeFile } = await import('node:fs/promises')
  await writeFile(many, JSON.stringify({ records: [{ id: 'r-1', phones: [CANARY.phone, `${CANARY.phone}-2`, `${CANARY.phone}-3`] }] }))
  const argv = ['seal', '-k', keys.publicPath, '--context', 'c', '--fields', '/records/*/phones/*', '--records', '/records/*:id', many]
  const r = await runCli([...argv, '--max-fields-per-record', '2', '-o', out])
  t.equal(r.code, 1)
  t.match(r.stderr, /^ecluse: value_too_large: more targeted values in a record than its cap at byte \d+\n$/)
  t.equal(leaksCanary(r.stdout + r.stderr), undefined)
  t.notOk((await listDir(dir)).some((f) => f.startsWith('out.json')))
  const ok = await runCli([...argv, '--max-fields-per-record', '3'])
  t.equal(ok.code, 0, 'three values at a cap of three are sealed')
  t.equal(leaksCanary(ok.stdout), undefined)
})

t.test('missing or unreadable inputs, key sets and output directories: exit 1, one clear line', async (t) => {
  const missing = join(dir, 'missing.json')
  const cases: Array<[string[], string]> = [
    [['seal', '-k', keys.publicPath, '--context', 'c', '--fields', '/name', missing], `ecluse: ${missing}: cannot read (ENOENT)\n`],
    [['open', '-k', keys.privatePath, '--context', 'c', '--body', missing], `ecluse: ${missing}: cannot read (ENOENT)\n`],
    [['seal', '-k', keys.publicPath, '--context', 'c', '--body', join(dir, 'sub')], `ecluse: ${join(dir, 'sub')}: cannot read (EISDIR)\n`],
    [['seal', '-k', join(dir, 'no-keys.json'), '--context', 'c', '--fields', '/name', input], 'ecluse: key_material_invalid: --keys: the file it names: cannot be read (ENOENT)\n'],
    [
      ['open', '-k', join(dir, 'not-a-key-set.json'), '--context', 'c', '--fields', '/name', input],
      `ecluse: key_material_invalid: ${join(dir, 'not-a-key-set.json')}: must be a JWK Set object {"keys": [...]} or a single JWK\n`,
    ],
    [['seal', '-k', keys.publicPath, '--context', 'c', '--fields', '/name', input, '-o', join(dir, 'nowhere', 'x.json')], `ecluse: ${join(dir, 'nowhere', 'x.json')}: cannot write (ENOENT)\n`],
  ]
  for (const [argv, expected] of cases) {
    const r = await runCli(argv)
    t.equal(r.code, 1, argv.join(' '))
    t.equal(r.stderr, expected)
    t.equal(r.stdout, '')
    t.equal(leaksCanary(r.stderr), undefined)
  }
})

t.test('--help of keys init, seal and open: the usage on stdout, exit 0; the program lists them', async (t) => {
  const cases: Array<[string[], string, string[]]> = [
    [['keys', 'init', '--help'], 'Usage: ecluse keys init --out DIR [--name NAME] [--alg ALG] [--crv CRV] [--kid KID] [--rotate [--stage]] [--force]\n', ['--rotate ', '--stage ', '--force ', '--kid KID']],
    [
      ['seal', '-h'],
      'Usage: ecluse seal --keys JWKS --context CTX (--fields PTRS [--records PTR:ID] [--ndjson] | --body [--content-type TYPE] [--record-size N]) [FILE|-] [--out FILE]\n',
      ['--keys, -k JWKS', '--records PTR:ID', '--content-type TYPE', '--out, -o FILE'],
    ],
    [
      ['open', '--help'],
      'Usage: ecluse open --keys PRIVATE_JWKS --context CTX (--fields PTRS [--records PTR:ID] [--ndjson] | --body [--min-record-size N] [--max-record-size N]) [FILE|-] [--out FILE]\n',
      ['"open_failed"', 'mode 0600', '--body ', '--min-record-size N', '--max-fields-per-record N'],
    ],
    [['keys', '--help'], 'Usage: ecluse keys <command> [options]\n', ['keys init --out DIR']],
  ]
  for (const [argv, first, mentions] of cases) {
    const r = await runCli(argv)
    t.equal(r.code, 0, argv.join(' '))
    t.equal(r.stderr, '')
    t.ok(r.stdout.startsWith(first), `${argv.join(' ')}: ${JSON.stringify(r.stdout.split('\n')[0])}`)
    for (const m of mentions) t.match(r.stdout, m, `${argv.join(' ')} mentions ${m}`)
  }
  const program = await spawnCli(['--help'])
  t.equal(program.code, 0)
  for (const command of ['keys init', 'seal', 'open']) t.match(program.stdout.toString('utf8'), `\n  ${command} `)
  const real = await spawnCli(['open', '--help'])
  t.equal(real.code, 0)
  t.match(real.stdout.toString('utf8'), /^Usage: ecluse open --keys PRIVATE_JWKS /)
})

t.test('--out that names no regular file is refused and left as it was: a device, a FIFO, a symlink, a directory', async (t) => {
  // The output takes its name by a rename: over /dev/null (as root) it left a regular file of opened
  // plaintext in the device's place.
  const { lstat, mkdir, symlink } = await import('node:fs/promises')
  const { spawnSync } = await import('node:child_process')
  const fifo = join(dir, 'a-fifo')
  t.equal(spawnSync('mkfifo', [fifo]).status, 0, 'mkfifo')
  const link = join(dir, 'to-null')
  await symlink('/dev/null', link)
  const folder = join(dir, 'a-folder')
  await mkdir(folder)
  const sealed = await runCli(['seal', '-k', keys.publicPath, '--context', 'c', '--fields', '/name', input])
  const sealedFile = join(dir, 'sealed.json')
  const { writeFile } = await import('node:fs/promises')
  await writeFile(sealedFile, sealed.stdout)
  for (const [target, kind] of [[fifo, 'FIFO'], [link, 'symlink'], [folder, 'directory']] as const) {
    const before = await lstat(target)
    for (const argv of [
      ['open', '-k', keys.privatePath, '--context', 'c', '--fields', '/name', sealedFile, '--out', target],
      ['seal', '-k', keys.publicPath, '--context', 'c', '--body', input, '--out', target],
    ]) {
      const r = await runCli(argv)
      t.equal(r.code, 1, `${argv[0]} --out ${kind}`)
      t.match(r.stderr, `ecluse: ${target}: not a regular file`)
      t.equal(leaksCanary(r.stderr + r.stdout), undefined)
    }
    const after = await lstat(target)
    t.equal(after.mode, before.mode, `the ${kind} is left as it was`)
    t.equal(after.ino, before.ino)
  }
  t.notOk((await listDir(dir)).some((name) => name.endsWith('.tmp')), 'no temporary file left')
})

t.test('--out that is the key set or the input (by any name) is refused, and both stay as they were', async (t) => {
  // `open --out` over the private key set used to replace the keys with plaintext, exit 0.
  const { link, readFile, writeFile } = await import('node:fs/promises')
  const sealed = await runCli(['seal', '-k', keys.publicPath, '--context', 'c', '--fields', '/name', input])
  const sealedFile = join(dir, 'sealed-for-out.json')
  await writeFile(sealedFile, sealed.stdout)
  const alias = join(dir, 'keys-alias.json')
  await link(keys.privatePath, alias)
  const cases: Array<[string[], string, string]> = [
    [['open', '-k', keys.privatePath, '--context', 'c', '--fields', '/name', sealedFile, '-o', keys.privatePath], keys.privatePath, '--keys'],
    [['open', '-k', keys.privatePath, '--context', 'c', '--fields', '/name', sealedFile, '-o', alias], alias, '--keys'],
    [['open', '-k', keys.privatePath, '--context', 'c', '--fields', '/name', sealedFile, '-o', sealedFile], sealedFile, 'FILE'],
    [['seal', '-k', keys.publicPath, '--context', 'c', '--body', input, '-o', join(dir, '.', 'record.json')], join(dir, '.', 'record.json'), 'FILE'],
  ]
  for (const [argv, target, what] of cases) {
    const before = await readFile(target)
    const listing = await listDir(dir)
    const r = await runCli(argv)
    t.equal(r.code, 1, `${argv[0]} -o ${target}: exit 1`)
    t.equal(r.stderr, `ecluse: ${target}: --out is the same file as ${what}; write the output to another file\n`)
    t.same(await readFile(target), before, `${target} is left as it was`)
    t.same(await listDir(dir), listing, 'nothing written')
  }
})

t.test('--fields: blanks after a comma separate pointers; a pointer ending in a blank is refused', async (t) => {
  const { writeFile } = await import('node:fs/promises')
  const file = join(dir, 'blanks.json')
  await writeFile(file, JSON.stringify({ a: CANARY.name, b: CANARY.passport, 'c ': CANARY.phone }))
  const both = await runCli(['seal', '-k', keys.publicPath, '--context', 'c', '--fields', '/a, /b', file])
  t.equal(both.code, 0, both.stderr)
  const sealed = JSON.parse(both.stdout) as Record<string, string>
  t.match(sealed['a'], COMPACT_JWE, '/a sealed')
  t.match(sealed['b'], COMPACT_JWE, '/b sealed, the blank before it is no part of it')
  // `/a , /b` would name the member "a " (a was left in plaintext, exit 0), or trimmed, `/c ` would
  // seal "c" and leave "c " in plaintext: either reading loses a field without a word.
  for (const fields of ['/a , /b', '/a ,/b', '/c ', '/b\r', '/a\t']) {
    const r = await runCli(['seal', '-k', keys.publicPath, '--context', 'c', '--fields', fields, file])
    t.equal(r.code, 2, `${JSON.stringify(fields)}: usage error`)
    t.match(r.stderr, /^ecluse: --fields: a JSON Pointer may not end in a blank/)
    t.equal(r.stdout, '', 'nothing written')
  }
})

t.test('whatever seal may make, open opens: a body of 2 MB records, a field of 12 MiB', async (t) => {
  const { randomBytes } = await import('node:crypto')
  const { readFile, writeFile } = await import('node:fs/promises')
  // A body sealed with records over open-body's default cap of 1 MiB: --max-record-size opens it.
  const plain = randomBytes(3_000_000)
  const plainFile = join(dir, 'big.bin')
  await writeFile(plainFile, plain)
  const sealedBody = join(dir, 'big.sealed')
  t.equal((await runCli(['seal', '-k', keys.publicPath, '--context', 'c', '--body', '--record-size', '2000000', plainFile, '-o', sealedBody])).code, 0)
  const refused = await runCli(['open', '-k', keys.privatePath, '--context', 'c', '--body', sealedBody, '-o', join(dir, 'big.opened')])
  t.equal(refused.code, 1, 'over the default cap: refused')
  t.match(refused.stderr, /^ecluse: open_failed: /)
  const opened = await runCli(['open', '-k', keys.privatePath, '--context', 'c', '--body', '--max-record-size', '2000000', sealedBody, '-o', join(dir, 'big.opened')])
  t.equal(opened.code, 0, opened.stderr)
  t.ok((await readFile(join(dir, 'big.opened'))).equals(plain), 'the exact bytes')

  // A field: seal allows 16 MiB of plaintext, which seals to over 16 MiB; open and require-sealed
  // allow 24 MiB of sealed value, so the largest sealable value still opens.
  const value = 'x'.repeat(12 * 1024 * 1024)
  const fieldFile = join(dir, 'big-field.json')
  await writeFile(fieldFile, JSON.stringify({ name: value }))
  const sealedField = join(dir, 'big-field.sealed.json')
  t.equal((await runCli(['seal', '-k', keys.publicPath, '--context', 'c', '--fields', '/name', '--max-value-bytes', '16777216', fieldFile, '-o', sealedField])).code, 0)
  t.ok((await readFile(sealedField)).length > 16 * 1024 * 1024, 'the sealed value is over 16 MiB')
  const back = await runCli(['open', '-k', keys.privatePath, '--context', 'c', '--fields', '/name', '--max-value-bytes', '25165824', sealedField, '-o', join(dir, 'big-field.opened.json')])
  t.equal(back.code, 0, back.stderr)
  t.equal((JSON.parse(await readFile(join(dir, 'big-field.opened.json'), 'utf8')) as { name: string }).name, value, 'the exact value')
})
