import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { type CliIo, main } from '../src/cli.js'

const root = fileURLToPath(new URL('..', import.meta.url))

/** The CLI in this process, with captured output (fast: most cases need no child process). */
async function run(argv: string[], env: Record<string, string> = {}) {
  let stdout = ''
  let stderr = ''
  const io: CliIo = {
    stdout: { write: (s: string) => (stdout += s) },
    stderr: { write: (s: string) => (stderr += s) },
    env,
  }
  const code = await main(argv, io)
  return { code, stdout, stderr }
}

/** The CLI as a user runs it, from source. */
function spawnCli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const env = { ...process.env }
    delete env['ECLUSE_DEBUG']
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', ...args], { cwd: root, env })
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d))
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d))
    child.on('error', reject)
    child.on('close', (code) => resolve({ code, stdout, stderr }))
  })
}

t.test('--help and -h print the usage on stdout and exit 0', async (t) => {
  for (const argv of [['--help'], ['-h']]) {
    const r = await run(argv)
    t.equal(r.code, 0, argv.join(' '))
    t.equal(r.stderr, '')
    t.match(r.stdout, /^Usage: ecluse <command> \[options\]\n/)
    for (const command of ['serve', 'certs init', 'config check']) t.match(r.stdout, `\n  ${command} `)
  }
})

t.test('each command has its own --help, exit 0', async (t) => {
  const cases: Array<[string[], string]> = [
    [['serve', '--help'], 'Usage: ecluse serve --config FILE [--workers N]\n'],
    [['certs', 'init', '-h'], 'Usage: ecluse certs init [--out DIR] [--force]\n'],
    [['config', 'check', '--help'], 'Usage: ecluse config check (FILE | --config FILE)\n'],
    [['certs', '--help'], 'Usage: ecluse certs <command> [options]\n'],
    [['config', '-h'], 'Usage: ecluse config <command> [options]\n'],
  ]
  for (const [argv, first] of cases) {
    const r = await run(argv)
    t.equal(r.code, 0, argv.join(' '))
    t.ok(r.stdout.startsWith(first), `${argv.join(' ')} prints ${JSON.stringify(first)}`)
    t.equal(r.stderr, '')
  }
  t.match((await run(['serve', '--help'])).stdout, '--config, -c FILE')
  t.match((await run(['certs', 'init', '--help'])).stdout, '--out, -o DIR')
})

t.test('usage errors say what is wrong, print the usage on stderr and exit 2', async (t) => {
  const cases: Array<[string[], string, string]> = [
    [[], 'ecluse: a command is required\n', 'Usage: ecluse <command>'],
    [['launch'], "ecluse: unknown command 'launch'\n", 'Usage: ecluse <command>'],
    [['--verbose'], "ecluse: unknown option '--verbose'\n", 'Usage: ecluse <command>'],
    [['certs'], "ecluse: 'certs' needs a subcommand\n", 'Usage: ecluse certs <command>'],
    [['certs', 'rotate'], "ecluse: unknown command 'certs rotate'\n", 'Usage: ecluse certs <command>'],
    [['serve'], 'ecluse: --config is required\n', 'Usage: ecluse serve --config FILE [--workers N]'],
    [['serve', '--config'], "ecluse: option '-c, --config <value>' argument missing\n", 'Usage: ecluse serve'],
    [['serve', '--config', 'x.yaml', '--port', '1'], "ecluse: unknown option '--port'\n", 'Usage: ecluse serve'],
    [['serve', '--config', 'x.yaml', 'extra'], "ecluse: unexpected argument 'extra'\n", 'Usage: ecluse serve'],
    [['certs', 'init', '--force=yes'], "ecluse: option '--force' does not take an argument\n", 'Usage: ecluse certs init'],
    [['certs', 'init', '--out', ''], 'ecluse: --out needs a directory\n', 'Usage: ecluse certs init'],
    [['config', 'check'], 'ecluse: give the configuration file once: FILE or --config FILE\n', 'Usage: ecluse config check (FILE | --config FILE)'],
    [['config', 'check', 'a.yaml', '--config', 'a.yaml'], 'ecluse: give the configuration file once: FILE or --config FILE\n', 'Usage: ecluse config check (FILE | --config FILE)'],
    [['config', 'check', 'a.yaml', 'b.yaml'], "ecluse: unexpected argument 'b.yaml'\n", 'Usage: ecluse config check (FILE | --config FILE)'],
    // Found by review: an empty file name was read, and failed as `ecluse: : cannot read (ENOENT)`.
    [['config', 'check', '--config='], 'ecluse: the configuration file name is empty\n', 'Usage: ecluse config check (FILE | --config FILE)'],
    [['config', 'check', ' '], 'ecluse: the configuration file name is empty\n', 'Usage: ecluse config check (FILE | --config FILE)'],
    [['serve', '--config='], 'ecluse: the configuration file name is empty\n', 'Usage: ecluse serve --config FILE [--workers N]'],
  ]
  for (const [argv, message, usage] of cases) {
    const r = await run(argv)
    const name = argv.join(' ') || '(nothing)'
    t.equal(r.code, 2, name)
    t.equal(r.stdout, '', `${name}: nothing on stdout`)
    t.ok(r.stderr.startsWith(message), `${name}: ${JSON.stringify(r.stderr.split('\n')[0])}`)
    t.match(r.stderr, usage, `${name}: shows the usage`)
  }
})

t.test('a failing command prints one line per problem and exits 1; a stack only with ECLUSE_DEBUG=1', async (t) => {
  const quiet = await run(['config', 'check', 'test/fixtures/config/does-not-exist.yaml'])
  t.equal(quiet.code, 1)
  t.equal(quiet.stderr, 'ecluse: test/fixtures/config/does-not-exist.yaml: cannot read (ENOENT)\n')
  const debug = await run(['config', 'check', 'test/fixtures/config/does-not-exist.yaml'], { ECLUSE_DEBUG: '1' })
  t.equal(debug.code, 1)
  t.match(debug.stderr, /^ecluse: .*ENOENT\)\nEcluseError: .*\n {4}at /)
})

t.test('the real process: exit codes and streams match', async (t) => {
  const [help, usage, version] = await Promise.all([spawnCli(['--help']), spawnCli(['nope']), spawnCli(['--version'])])
  t.equal(help.code, 0)
  t.match(help.stdout, /^Usage: ecluse/)
  t.equal(help.stderr, '')
  t.equal(usage.code, 2)
  t.equal(usage.stdout, '')
  t.match(usage.stderr, /^ecluse: unknown command 'nope'\n\nUsage: ecluse/)
  t.notMatch(usage.stderr, / {4}at /, 'no stack trace')
  t.equal(version.code, 0)
  t.match(version.stdout, /^ecluse \d+\.\d+\.\d+\n$/)
})

t.test('found by review: a key set pasted in place of --keys is a usage error that does not repeat it', async (t) => {
  for (const pasted of ['{"kty":"OKP","crv":"X25519","x":"PUBLICX","d":"TOPSECRETD"}', Buffer.from('-----BEGIN PRIVATE KEY-----\nTOPSECRETD\n').toString('base64')]) {
    for (const command of ['seal', 'open']) {
      const r = await run([command, '--keys', pasted, '--context', 'c', '--body', '/dev/null'])
      t.equal(r.code, 2, command)
      t.ok(r.stderr.startsWith('ecluse: --keys must be the path of a file (key material written in its place'), `${command}: ${r.stderr.split('\n')[0]}`)
      t.notOk(r.stderr.includes(pasted) || r.stderr.includes('TOPSECRETD'), `${command}: the material is not repeated`)
    }
  }
})
