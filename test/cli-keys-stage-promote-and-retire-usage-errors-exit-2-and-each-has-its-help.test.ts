/**
 * `keys promote`, `keys retire` and `keys init --stage`: a bad option is a usage error (exit 2, a
 * message naming the option, the command's usage on stderr, nothing on stdout, nothing written); each
 * command has its own `--help` (exit 0), `keys --help` lists them, and the help of `keys init` warns
 * that the one-step `--rotate` does not suit a chain.
 */
import { join } from 'node:path'
import t from 'tap'
import { listDir, runCli } from './helpers/cli.js'

t.test('bad options of promote and retire: exit 2, a clear message and the usage, nothing touched', async (t) => {
  const base = t.testdir()
  const dir = join(base, 'keys')
  t.equal((await runCli(['keys', 'init', '--out', dir, '--kid', 'k1'])).code, 0)
  t.equal((await runCli(['keys', 'init', '--out', dir, '--rotate', '--stage', '--kid', 'k2'])).code, 0)
  const before = await listDir(dir)
  const cases: Array<[string[], string]> = [
    [[], '--out is required'],
    [['--kid', 'k2'], '--out is required'],
    [['--out', dir], '--kid is required'],
    [['--out', '', '--kid', 'k2'], '--out needs a directory'],
    [['--out', dir, '--kid', 'has space'], '--kid takes 1 to 128 visible ASCII characters (no spaces)'],
    [['--out', dir, '--kid', ''], '--kid takes 1 to 128 visible ASCII characters (no spaces)'],
    [['--out', dir, '--kid', 'k'.repeat(129)], '--kid takes 1 to 128 visible ASCII characters (no spaces)'],
    [['--out', dir, '--name', '../escape', '--kid', 'k2'], '--name takes letters, digits, ".", "_" and "-" (64 at most)'],
    [['--out', dir, '--kid', 'k2', '--force'], "unknown option '--force'"],
    [['--out', dir, '--kid', 'k2', '--rotate'], "unknown option '--rotate'"],
    [['--out', dir, '--kid', 'k2', 'extra'], "unexpected argument 'extra'"],
    [['--out', dir, '--kid'], "option '--kid <value>' argument missing"],
  ]
  for (const op of ['promote', 'retire']) {
    for (const [args, message] of cases) {
      const name = `${op} ${args.join(' ') || '(no options)'}`
      const r = await runCli(['keys', op, ...args])
      t.equal(r.code, 2, `${name}: exit 2`)
      t.equal(r.stdout, '', `${name}: nothing on stdout`)
      t.equal(r.stderr.split('\n')[0], `ecluse: ${message}`, name)
      t.match(r.stderr, `\n\nUsage: ecluse keys ${op} --out DIR [--name NAME] --kid KID\n`, `${name}: shows the usage`)
    }
  }
  t.same(await listDir(dir), before, 'no file added')
  t.same(await listDir(base), ['keys'], 'nothing created next to it')
})

t.test('--stage without --rotate, or with an argument, is a usage error', async (t) => {
  const base = t.testdir()
  const out = join(base, 'keys')
  const cases: Array<[string[], string]> = [
    [['--out', out, '--stage'], '--stage goes with --rotate: it adds a key to an existing set'],
    [['--out', out, '--stage', '--force'], '--stage goes with --rotate: it adds a key to an existing set'],
    [['--out', out, '--stage', '--rotate', '--force'], '--rotate and --force exclude each other'],
    [['--out', out, '--rotate', '--stage=yes'], "option '--stage' does not take an argument"],
  ]
  for (const [args, message] of cases) {
    const r = await runCli(['keys', 'init', ...args])
    t.equal(r.code, 2, `${args.join(' ')}: exit 2`)
    t.equal(r.stdout, '')
    t.equal(r.stderr.split('\n')[0], `ecluse: ${message}`)
    t.match(r.stderr, '\n\nUsage: ecluse keys init --out DIR ')
  }
  t.same(await listDir(base), [], 'nothing was created')

  // --rotate --stage on a set that does not exist is a failure (exit 1), as --rotate alone.
  const r = await runCli(['keys', 'init', '--out', out, '--rotate', '--stage'])
  t.equal(r.code, 1)
  t.equal(r.stderr, `ecluse: cannot rotate: ${join(out, 'trusted-host.private.jwks.json')} does not exist (without --rotate, keys init creates the set)\n`)
  t.same(await listDir(base), [])
})

t.test('each command prints its help, exit 0; the group lists them; keys init warns about the one-step rotation', async (t) => {
  for (const [op, flag] of [['promote', '--help'], ['retire', '-h']] as const) {
    const r = await runCli(['keys', op, flag])
    t.equal(r.code, 0)
    t.equal(r.stderr, '')
    t.ok(r.stdout.startsWith(`Usage: ecluse keys ${op} --out DIR [--name NAME] --kid KID\n`), `${op} ${flag}`)
    for (const option of ['--out, -o DIR', '--name NAME', '--kid KID', '--help, -h']) t.match(r.stdout, option, `${op}: ${option}`)
    t.match(r.stdout, 'in any order', `${op}: reload every gateway, in any order`)
  }
  t.match((await runCli(['keys', 'promote', '--help'])).stdout, 'it must already be in both files (keys init --rotate --stage)')
  t.match((await runCli(['keys', 'retire', '--help'])).stdout, 'never the current key, never the last one')
  t.match((await runCli(['keys', 'retire', '--help'])).stdout, 'fails with open_failed')

  const group = await runCli(['keys', '--help'])
  t.equal(group.code, 0)
  for (const line of ['  keys init --out DIR', '  keys promote --out DIR [--name NAME] --kid KID\n', '  keys retire --out DIR [--name NAME] --kid KID\n']) {
    t.match(group.stdout, line)
  }

  const init = await runCli(['keys', 'init', '--help'])
  t.equal(init.code, 0)
  t.ok(init.stdout.startsWith('Usage: ecluse keys init --out DIR [--name NAME] [--alg ALG] [--crv CRV] [--kid KID] [--rotate [--stage]] [--force]\n'))
  t.match(init.stdout, '--stage         with --rotate: the two-phase variant.')
  t.match(init.stdout, 'Alone, the one-step variant')
  t.match(init.stdout, /Warning: in a chain where both sides seal .*\n.*the one-step --rotate cannot be rolled out without refusing traffic/)

  const missing = await runCli(['keys', 'demote'])
  t.equal(missing.code, 2)
  t.equal(missing.stderr.split('\n')[0], "ecluse: unknown command 'keys demote'")
  t.match(missing.stderr, '  keys promote --out DIR')
})
