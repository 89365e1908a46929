/**
 * Bad `keys init` options are usage errors: exit 2, a message naming the option, the command's usage
 * on stderr, nothing on stdout, and nothing written (the output directory is not even created).
 */
import { join } from 'node:path'
import t from 'tap'
import { listDir, runCli } from './helpers/cli.js'

t.test('each bad option: exit 2 with a clear message, and no file or directory created', async (t) => {
  const base = t.testdir()
  const out = join(base, 'keys')
  const cases: Array<[string[], string]> = [
    [[], '--out is required'],
    [['--out', ''], '--out needs a directory'],
    [['--out', out, '--alg', 'A128KW'], '--alg must be one of ECDH-ES+A256KW, RSA-OAEP-256'],
    [['--out', out, '--alg', 'ecdh-es+a256kw'], '--alg must be one of ECDH-ES+A256KW, RSA-OAEP-256'],
    [['--out', out, '--crv', 'P-384'], '--crv must be one of X25519, P-256'],
    [['--out', out, '--alg', 'RSA-OAEP-256', '--crv', 'P-256'], '--crv does not apply to RSA-OAEP-256'],
    [['--out', out, '--kid', 'has space'], '--kid takes 1 to 128 visible ASCII characters (no spaces)'],
    [['--out', out, '--kid', ''], '--kid takes 1 to 128 visible ASCII characters (no spaces)'],
    [['--out', out, '--kid', 'k'.repeat(129)], '--kid takes 1 to 128 visible ASCII characters (no spaces)'],
    [['--out', out, '--kid', 'clé'], '--kid takes 1 to 128 visible ASCII characters (no spaces)'],
    [['--out', out, '--name', '../escape'], '--name takes letters, digits, ".", "_" and "-" (64 at most)'],
    [['--out', out, '--name', '.hidden'], '--name takes letters, digits, ".", "_" and "-" (64 at most)'],
    [['--out', out, '--name', ''], '--name takes letters, digits, ".", "_" and "-" (64 at most)'],
    [['--out', out, '--rotate', '--force'], '--rotate and --force exclude each other'],
    [['--out', out, '--force=yes'], "option '--force' does not take an argument"],
    [['--out', out, '--bits', '4096'], "unknown option '--bits'"],
    [['--out', out, 'extra'], "unexpected argument 'extra'"],
    [['--out'], "option '-o, --out <value>' argument missing"],
  ]
  for (const [args, message] of cases) {
    const name = args.join(' ') || '(no options)'
    const r = await runCli(['keys', 'init', ...args])
    t.equal(r.code, 2, `${name}: exit 2`)
    t.equal(r.stdout, '', `${name}: nothing on stdout`)
    t.equal(r.stderr.split('\n')[0], `ecluse: ${message}`, name)
    t.match(r.stderr, '\n\nUsage: ecluse keys init --out DIR ', `${name}: shows the usage`)
  }
  t.same(await listDir(base), [], 'nothing was created')
})

t.test('a kid at the limit is accepted: 128 visible ASCII characters', async (t) => {
  const out = t.testdir()
  const kid = `${'k'.repeat(120)}!#$%&*+~`
  const r = await runCli(['keys', 'init', '--out', out, '--kid', kid])
  t.equal(r.code, 0, r.stderr)
  t.match(r.stdout, `current kid ${kid} (`)
})

t.test('an --out that is a file is a failure (exit 1) naming the path, not a usage error', async (t) => {
  const base = t.testdir({ taken: 'not a directory\n' })
  const r = await runCli(['keys', 'init', '--out', join(base, 'taken')])
  t.equal(r.code, 1)
  t.equal(r.stderr, `ecluse: ${join(base, 'taken')}: cannot create the directory (EEXIST)\n`)
  t.same(await listDir(base), ['taken'])
})
