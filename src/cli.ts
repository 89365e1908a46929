/**
 * The `ecluse` command line. Commands live in one table (`COMMANDS`): a command is one or more words
 * (`serve`, `certs init`, `config check`), its own strict `parseArgs` options, a positional count
 * and a `run`. The heavy modules (the gateway, the PKI generator, the route table) are imported only
 * by the command that needs them, so `--help` stays fast and a broken module affects only its command.
 *
 * Exit codes: 0 success, 1 failure (`ecluse: <message>` on stderr, no stack trace unless
 * `ECLUSE_DEBUG=1`), 2 usage error (the usage on stderr).
 */
import { readFileSync, realpathSync } from 'node:fs'
import { access } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { type ParseArgsConfig, parseArgs } from 'node:util'

/** Where the CLI writes; tests pass their own. */
export interface CliIo {
  readonly stdout: { write(chunk: string): unknown }
  readonly stderr: { write(chunk: string): unknown }
  readonly env: Readonly<Record<string, string | undefined>>
}

type Options = NonNullable<ParseArgsConfig['options']>
type Values = Record<string, string | boolean | undefined>

/** One entry of the command table. */
export interface Command {
  /** The words that select it, e.g. `['certs', 'init']`. */
  readonly words: readonly string[]
  /** One line for the program's usage. */
  readonly summary: string
  /** The argument synopsis after the words, e.g. `--config FILE`. */
  readonly synopsis: string
  /** The option lines of the command's own `--help`. */
  readonly details: readonly string[]
  readonly options: Options
  /** Allowed number of positionals, and their names for messages. */
  readonly positionals: readonly string[]
  /** Options that must be given. */
  readonly required?: readonly string[]
  run(values: Values, positionals: readonly string[], io: CliIo): Promise<number>
}

const PROGRAM = 'ecluse'
/** The ceiling of `serve --workers` (the same as src/cluster.ts, which is imported only by `serve`). */
const MAX_WORKERS = 256

/**
 * The command table. New commands (`keys init`, `seal`, `open`) are added here and nowhere else.
 */
export const COMMANDS: Command[] = [
  {
    words: ['serve'],
    summary: 'run the gateway',
    synopsis: '--config FILE',
    details: [
      '--config, -c FILE    the configuration file (YAML)',
      '--workers, -w N      worker processes sharing the sponsor port (default 1: one process);',
      '                     with N > 1 the admin listener runs in the primary and aggregates them',
      '',
      'SIGHUP reloads certificates and configuration; SIGTERM or SIGINT drains and stops.',
      'With workers, both are relayed to every worker and a crashed worker is restarted.',
    ],
    options: { config: { type: 'string', short: 'c' }, workers: { type: 'string', short: 'w' } },
    positionals: [],
    required: ['config'],
    async run(values, _positionals, io) {
      const workers = parseWorkers(values['workers'] as string | undefined, this)
      const config = values['config'] as string
      // From here on the process lives until a signal; a late uncaught error still ends in one line.
      if (workers === 1) {
        const { runGateway } = await import('./main.js')
        installLastResortHandlers(io)
        await runGateway(config)
        return 0
      }
      const { runCluster } = await import('./cluster.js')
      installLastResortHandlers(io)
      await runCluster(config, { workers })
      return 0
    },
  },
  {
    words: ['certs', 'init'],
    summary: 'write a development PKI (two independent CAs and the demo certificates)',
    synopsis: '[--out DIR] [--force]',
    details: [
      '--out, -o DIR   where to write; default ./certs',
      '--force         regenerate even if the files exist',
      '',
      'Development only: the CA keys are written next to the certificates they issue.',
    ],
    options: { out: { type: 'string', short: 'o' }, force: { type: 'boolean' } },
    positionals: [],
    async run(values, _positionals, io) {
      const { devPkiPaths, generateDevPki } = await import('./pki/dev-pki.js')
      const outDir = (values['out'] as string | undefined) ?? './certs'
      // An empty --out would resolve to the working directory: never scatter keys there by accident.
      if (outDir.trim() === '') throw new UsageError('--out needs a directory', commandUsage(this))
      const force = values['force'] === true
      const files = listPairs(devPkiPaths(outDir))
      const existed = !force && (await Promise.all(files.map(exists))).every(Boolean)
      const pki = await generateDevPki({ outDir, force })
      if (existed) {
        io.stdout.write(`kept the existing development PKI in ${pki.dir} (--force regenerates it):\n`)
      } else {
        io.stdout.write(`wrote a development PKI in ${pki.dir}:\n`)
      }
      for (const file of listPairs(pki)) io.stdout.write(`  ${file}\n`)
      return 0
    },
  },
  {
    words: ['config', 'check'],
    summary: 'validate a configuration file, its certificates and its routes, then exit',
    synopsis: 'FILE',
    details: ['Loads FILE exactly as `serve` would, without listening. Prints "ok: …" or the problems.'],
    options: {},
    positionals: ['FILE'],
    async run(_values, positionals, io) {
      const file = positionals[0]!
      const { loadConfigFile } = await import('./config/load.js')
      const { loadAllTls } = await import('./config/tls-material.js')
      const config = await loadConfigFile(file)
      await loadAllTls(config)
      const { compileRouteTable } = await import('./route/table.js')
      // The same transforms, key sets and profile check as `serve` (src/main.ts).
      await import('./transform/builtin.js')
      const { loadKeySets } = await import('./transform/key-sets.js')
      const { pino } = await import('pino')
      // Warnings from transform factories go to stderr; stdout carries the verdict only.
      const log = pino({ level: 'warn', base: null }, pino.destination({ dest: 2, sync: true }))
      try {
        compileRouteTable(config, { log, keySets: await loadKeySets(config) })
      } catch (err) {
        throw withSource(err, file)
      }
      // A fixed shape, for scripts: always "routes" and "upstreams".
      io.stdout.write(`ok: ${config.routes.length} routes, ${Object.keys(config.upstreams).length} upstreams\n`)
      return 0
    },
  },
]

/**
 * Runs the CLI and resolves to the exit code; it never throws and never calls `process.exit`
 * (`serve` resolves once the gateway is up, and the process lives on its listeners).
 *
 * @example
 * process.exitCode = await main(process.argv.slice(2))
 */
export async function main(argv: readonly string[], io: CliIo = processIo()): Promise<number> {
  try {
    return await dispatch([...argv], io)
  } catch (err) {
    reportError(err, io)
    return 1
  }
}

// ---------------------------------------------------------------------------------------------

class UsageError extends Error {
  readonly usage: string
  constructor(message: string, usage: string) {
    super(message)
    this.usage = usage
  }
}

const HELP: Options = { help: { type: 'boolean', short: 'h' } }

function isHelp(arg: string | undefined): boolean {
  return arg === '--help' || arg === '-h'
}

async function dispatch(argv: string[], io: CliIo): Promise<number> {
  try {
    const first = argv[0]
    if (first === undefined) throw new UsageError('a command is required', programUsage())
    if (isHelp(first)) {
      io.stdout.write(programUsage())
      return 0
    }
    if (first === '--version' || first === '-V') {
      io.stdout.write(`${PROGRAM} ${version()}\n`)
      return 0
    }
    if (first.startsWith('-')) throw new UsageError(`unknown option '${first}'`, programUsage())

    // The longest run of leading words that names a command wins.
    const command = COMMANDS.filter((c) => c.words.every((w, i) => argv[i] === w)).sort(
      (a, b) => b.words.length - a.words.length,
    )[0]
    if (command === undefined) {
      const group = COMMANDS.filter((c) => c.words[0] === first)
      if (group.length === 0) throw new UsageError(`unknown command '${first}'`, programUsage())
      // `ecluse certs` or `ecluse certs --help`: the group's commands.
      if (isHelp(argv[1]) && argv.length === 2) {
        io.stdout.write(groupUsage(first, group))
        return 0
      }
      const sub = argv[1]
      throw new UsageError(
        sub === undefined ? `'${first}' needs a subcommand` : `unknown command '${first} ${sub}'`,
        groupUsage(first, group),
      )
    }
    return await runCommand(command, argv.slice(command.words.length), io)
  } catch (err) {
    if (!(err instanceof UsageError)) throw err
    io.stderr.write(`${PROGRAM}: ${err.message}\n\n${err.usage}`)
    return 2
  }
}

async function runCommand(command: Command, args: string[], io: CliIo): Promise<number> {
  let parsed: { values: Values; positionals: string[] }
  try {
    parsed = parseArgs({
      args,
      options: { ...command.options, ...HELP },
      allowPositionals: true,
      strict: true,
    }) as { values: Values; positionals: string[] }
  } catch (err) {
    throw new UsageError(parseArgsMessage(err), commandUsage(command))
  }
  const { values, positionals } = parsed
  if (values['help'] === true) {
    io.stdout.write(commandUsage(command))
    return 0
  }
  if (positionals.length > command.positionals.length) {
    throw new UsageError(`unexpected argument '${positionals[command.positionals.length]}'`, commandUsage(command))
  }
  if (positionals.length < command.positionals.length) {
    throw new UsageError(`missing ${command.positionals[positionals.length]}`, commandUsage(command))
  }
  for (const name of command.required ?? []) {
    if (values[name] === undefined) throw new UsageError(`--${name} is required`, commandUsage(command))
  }
  return await command.run(values, positionals, io)
}

/** `--workers`: absent → 1; else a whole number from 1 to cluster.ts `MAX_WORKERS` (kept in step). */
function parseWorkers(value: string | undefined, command: Command): number {
  if (value === undefined) return 1
  const n = /^[0-9]{1,3}$/.test(value) ? Number(value) : Number.NaN
  if (!(n >= 1 && n <= MAX_WORKERS)) {
    throw new UsageError(`--workers must be a whole number from 1 to ${MAX_WORKERS}`, commandUsage(command))
  }
  return n
}

/** parseArgs explains itself at length; keep the first sentence, in our voice. */
function parseArgsMessage(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err)
  const first = message.split(/\. |\n/)[0]!.replace(/\.$/, '')
  return first.charAt(0).toLowerCase() + first.slice(1)
}

function programUsage(): string {
  const width = Math.max(...COMMANDS.map((c) => c.words.join(' ').length))
  const lines = COMMANDS.map((c) => `  ${c.words.join(' ').padEnd(width)}  ${c.summary}`)
  return [
    `Usage: ${PROGRAM} <command> [options]`,
    '',
    'Écluse, an encrypted transit gateway between a sponsor side and a trusted side.',
    '',
    'Commands:',
    ...lines,
    '',
    `Run '${PROGRAM} <command> --help' for a command's options.`,
    'Exit codes: 0 ok, 1 failure, 2 usage error. ECLUSE_DEBUG=1 prints stack traces.',
    '',
  ].join('\n')
}

function groupUsage(group: string, commands: readonly Command[]): string {
  return [
    `Usage: ${PROGRAM} ${group} <command> [options]`,
    '',
    'Commands:',
    ...commands.map((c) => `  ${c.words.join(' ')} ${c.synopsis}`.trimEnd() + `\n      ${c.summary}`),
    '',
  ].join('\n')
}

function commandUsage(command: Command): string {
  return [
    `Usage: ${PROGRAM} ${command.words.join(' ')} ${command.synopsis}`.trimEnd(),
    '',
    `${command.summary.charAt(0).toUpperCase()}${command.summary.slice(1)}.`,
    '',
    ...command.details.map((l) => (l === '' ? '' : `  ${l}`)),
    ...(command.details.length > 0 ? [''] : []),
    '  --help, -h   this help',
    '',
  ].join('\n')
}

/** One line per error (multi-line messages list one problem per line); a stack only on request. */
function reportError(err: unknown, io: CliIo): void {
  const message = err instanceof Error ? err.message : String(err)
  const lines = message.split('\n').map((line) => `${PROGRAM}: ${line}\n`)
  io.stderr.write(lines.join(''))
  if (io.env['ECLUSE_DEBUG'] === '1' && err instanceof Error && err.stack !== undefined) {
    io.stderr.write(`${err.stack}\n`)
  }
}

let lastResortInstalled = false

/** For the long-running `serve`: an error nobody caught still ends as one line and exit code 1. */
function installLastResortHandlers(io: CliIo): void {
  if (lastResortInstalled) return
  lastResortInstalled = true
  const die = (err: unknown) => {
    reportError(err, io)
    process.exit(1)
  }
  process.on('uncaughtException', die)
  process.on('unhandledRejection', die)
}

/**
 * The route table names keys (`routes[0].transforms…`) but not the file; `config check` adds it so
 * each line reads like the loader's.
 */
function withSource(err: unknown, file: string): unknown {
  if (!(err instanceof Error) || (err as { code?: unknown }).code !== 'config_invalid') return err
  const prefix = `${file}: `
  const message = err.message
    .split('\n')
    .map((line) => (line.startsWith(prefix) ? line : prefix + line))
    .join('\n')
  if (message === err.message) return err
  err.message = message
  return err
}

function listPairs(pki: object): string[] {
  const files: string[] = []
  for (const value of Object.values(pki)) {
    if (value !== null && typeof value === 'object') {
      for (const file of [(value as { cert?: unknown }).cert, (value as { key?: unknown }).key]) {
        if (typeof file === 'string') files.push(file)
      }
    }
  }
  return files
}

async function exists(file: string): Promise<boolean> {
  try {
    await access(file)
    return true
  } catch {
    return false
  }
}

function version(): string {
  // package.json sits one level above both src/cli.ts and dist/cli.js.
  try {
    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version?: string }
    return pkg.version ?? 'unknown'
  } catch {
    return 'unknown'
  }
}

function processIo(): CliIo {
  return { stdout: process.stdout, stderr: process.stderr, env: process.env }
}

/** True when this file is the program (`node --import tsx src/cli.ts …`), not an import of it. */
function isEntryPoint(): boolean {
  const script = process.argv[1]
  if (script === undefined) return false
  try {
    return realpathSync(script) === realpathSync(fileURLToPath(import.meta.url))
  } catch {
    return false
  }
}

if (isEntryPoint()) {
  process.exitCode = await main(process.argv.slice(2))
}
