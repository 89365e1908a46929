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
import { BootSignals } from './boot-signals.js'
import { isKeyMaterialNotPath, KEY_MATERIAL_NOT_PATH } from './config/key-material-path.js'
// Types only (erased): the crypto modules themselves load with the commands that use them.
import type { Curve, KeyAlg, KeySet } from './crypto/index.js'

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
  /** How many of the trailing positionals may be left out (default 0), e.g. an input FILE for stdin. */
  readonly optionalPositionals?: number
  /** Options that must be given. */
  readonly required?: readonly string[]
  run(values: Values, positionals: readonly string[], io: CliIo): Promise<number>
}

const PROGRAM = 'ecluse'
/** The ceiling of `serve --workers` (the same as src/cluster.ts, which is imported only by `serve`). */
const MAX_WORKERS = 256

/**
 * The options `seal` and `open` share (`sealingArgs` reads them for both); `seal` adds
 * `--content-type`, `open` adds `--min-record-size`.
 */
const SEALING_OPTIONS: Options = {
  keys: { type: 'string', short: 'k' },
  context: { type: 'string' },
  fields: { type: 'string', multiple: true },
  records: { type: 'string' },
  ndjson: { type: 'boolean' },
  'max-value-bytes': { type: 'string' },
  'max-record-bytes': { type: 'string' },
  'max-fields-per-record': { type: 'string' },
  body: { type: 'boolean' },
  out: { type: 'string', short: 'o' },
}

/** `keys promote` and `keys retire`: the key set's folder and name, and the kid acted on. */
const KEY_CHANGE_OPTIONS: Options = { out: { type: 'string', short: 'o' }, name: { type: 'string' }, kid: { type: 'string' } }

/**
 * The command table. New commands (`keys init`, `seal`, `open`) are added here and nowhere else.
 */
export const COMMANDS: Command[] = [
  {
    words: ['serve'],
    summary: 'run the gateway',
    synopsis: '--config FILE [--workers N]',
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
      if (config.trim() === '') throw new UsageError('the configuration file name is empty', commandUsage(this))
      // Before anything else is loaded: a SIGHUP (a reload sent across pods) or SIGTERM that arrives
      // while the gateway boots waits for it (src/boot-signals.ts).
      const signals = new BootSignals()
      // From here on the process lives until a signal; a late uncaught error still ends in one line.
      const { closeStdoutLog, exitAfterLog } = await import('./observability/logger.js')
      installLastResortHandlers(io, exitAfterLog)
      try {
        if (workers === 1) await (await import('./main.js')).runGateway(config, signals)
        else await (await import('./cluster.js')).runCluster(config, { workers }, signals)
      } catch (err) {
        // A boot that failed ends when nothing is left to do: lines held for a stalled reader
        // would keep it alive, retrying.
        await closeStdoutLog()
        throw err
      }
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
      const present = force ? files.map(() => false) : await Promise.all(files.map(exists))
      const pki = await generateDevPki({ outDir, force })
      const written = listPairs(pki).filter((_, i) => !present[i])
      if (written.length === 0) {
        io.stdout.write(`kept the existing development PKI in ${pki.dir} (--force regenerates it):\n`)
      } else if (written.length < files.length) {
        // A set from before the chained demo, completed from its own CAs: only the new pairs are new.
        io.stdout.write(`completed the development PKI in ${pki.dir} from its CAs, keeping the other files; wrote:\n`)
      } else {
        io.stdout.write(`wrote a development PKI in ${pki.dir}:\n`)
      }
      for (const file of written.length === 0 ? listPairs(pki) : written) io.stdout.write(`  ${file}\n`)
      // Keys it kept are as their owner left them: one every user may read is said, not changed.
      for (const key of listPairs(pki).filter((f, i) => f.endsWith('.key') && present[i])) await warnIfReadableByOthers(key, io)
      // Whoever may swap a CA certificate or key there decides what the gateways trust.
      await warnIfReplaceableByOthers(listPairs(pki), io)
      return 0
    },
  },
  {
    words: ['config', 'check'],
    summary: 'validate a configuration file, its certificates and its routes, then exit',
    synopsis: '(FILE | --config FILE)',
    details: [
      'Loads FILE exactly as `serve` would, without listening. Prints "ok: …" or the problems.',
      '--config FILE          the same, spelled as for `serve`',
    ],
    options: { config: { type: 'string', short: 'c' } },
    positionals: ['FILE'],
    optionalPositionals: 1,
    async run(values, positionals, io) {
      const given = values['config'] as string | undefined
      if ((given === undefined) === (positionals[0] === undefined)) {
        throw new UsageError('give the configuration file once: FILE or --config FILE', commandUsage(this))
      }
      const file = given ?? positionals[0]!
      if (file.trim() === '') throw new UsageError('the configuration file name is empty', commandUsage(this))
      // The same read as `serve`'s (one version of the files), transforms, key sets and profile check.
      const { loadSettledFiles } = await import('./config/load-settled.js')
      const { compileRouteTable } = await import('./route/table.js')
      await import('./transform/builtin.js')
      const { pino } = await import('pino')
      // Warnings from transform factories go to stderr; stdout carries the verdict only.
      const log = pino({ level: 'warn', base: null }, pino.destination({ dest: 2, sync: true }))
      let config: Awaited<ReturnType<typeof loadSettledFiles>>['config']
      try {
        const loaded = await loadSettledFiles(file)
        config = loaded.config
        compileRouteTable(config, { log, keySets: loaded.keySets })
      } catch (err) {
        throw withSource(err, file)
      }
      // The warning `serve` logs at boot, here too: a check run against the mounted files in CI
      // would otherwise never show it. Not a failure, as it is not one for `serve`.
      const { fileModeWarnings } = await import('./config/key-file-modes.js')
      for (const { key, file: named, warning } of await fileModeWarnings(config, file)) {
        io.stderr.write(`warning: ${key}: ${named}: ${warning}\n`)
      }
      // A fixed shape, for scripts: always "routes" and "upstreams".
      io.stdout.write(`ok: ${config.routes.length} routes, ${Object.keys(config.upstreams).length} upstreams\n`)
      return 0
    },
  },
  {
    words: ['keys', 'init'],
    summary: 'write a sealing key set: a private JWKS for the trusted host, a public JWKS for the sealing side',
    synopsis: '--out DIR [--name NAME] [--alg ALG] [--crv CRV] [--kid KID] [--rotate [--stage]] [--force]',
    details: [
      '--out, -o DIR   where to write NAME.private.jwks.json (0600) and NAME.public.jwks.json;',
      '                a missing directory is created 0700',
      '--name NAME     file name prefix; default trusted-host',
      '--alg ALG       ECDH-ES+A256KW (default) or RSA-OAEP-256; with --rotate, default the current key\'s',
      '--crv CRV       X25519 (default) or P-256, for ECDH-ES+A256KW only; with --rotate, default the',
      '                current key\'s (if it is one)',
      '--kid KID       key id of the new key; default its RFC 7638 thumbprint',
      '--rotate        add a new key to the existing set; the older keys stay in both files, so what was',
      '                sealed to them still opens. Alone, the one-step variant: the new key goes in front',
      '                and becomes current at once, for a single gateway or a set not yet in use',
      '--stage         with --rotate: the two-phase variant. The new key goes right behind the current',
      '                one, which stays current; reload every gateway, then `keys promote --kid KID`',
      '--force         replace an existing set (values sealed to it will no longer open)',
      '',
      'Private key material is never printed. The private set stays on the trusted host; the public set',
      'goes to every gateway that seals or checks sealing.',
      '',
      'Warning: in a chain where both sides seal (edge gateways seal requests, the trusted sidecar seals',
      'responses), the one-step --rotate cannot be rolled out without refusing traffic: whichever gateway',
      'reloads first seals to a key the other does not accept yet. Use --rotate --stage, reload every',
      'gateway, then keys promote, and reload every gateway again (docs/operations.md).',
    ],
    options: {
      out: { type: 'string', short: 'o' },
      name: { type: 'string' },
      alg: { type: 'string' },
      crv: { type: 'string' },
      kid: { type: 'string' },
      rotate: { type: 'boolean' },
      stage: { type: 'boolean' },
      force: { type: 'boolean' },
    },
    positionals: [],
    required: ['out'],
    async run(values, _positionals, io) {
      return await keysInit(values, io, commandUsage(this))
    },
  },
  {
    words: ['keys', 'promote'],
    summary: 'make a staged key the current one (the key new values are sealed to) in both files',
    synopsis: '--out DIR [--name NAME] --kid KID',
    details: [
      '--out, -o DIR   the folder of NAME.private.jwks.json and NAME.public.jwks.json',
      '--name NAME     file name prefix; default trusted-host',
      '--kid KID       the key to promote: it must already be in both files (keys init --rotate --stage);',
      '                write --kid=KID, as a kid may start with "-"',
      '',
      'The second phase of a rotation. Run it only once every gateway has reloaded the staged set',
      '(each accepts the key already); then reload (SIGHUP) every gateway, in any order. The key moves',
      'first in both files; every other key stays, so what was sealed to them still opens.',
      'Promoting the key that is already current changes nothing.',
    ],
    options: KEY_CHANGE_OPTIONS,
    positionals: [],
    required: ['out', 'kid'],
    async run(values, _positionals, io) {
      return await keysChange('promote', values, io, commandUsage(this))
    },
  },
  {
    words: ['keys', 'retire'],
    summary: 'remove a key that is not current from both files: values sealed to it will no longer open',
    synopsis: '--out DIR [--name NAME] --kid KID',
    details: [
      '--out, -o DIR   the folder of NAME.private.jwks.json and NAME.public.jwks.json',
      '--name NAME     file name prefix; default trusted-host',
      '--kid KID       the key to remove; never the current key, never the last one; write --kid=KID,',
      '                as a kid may start with "-"',
      '',
      'The last phase of a rotation, once nothing sealed to the old key can still arrive (stored values',
      're-sealed or expired); then reload (SIGHUP) every gateway, in any order. From then on a value',
      'sealed to KID fails with open_failed, and require-sealed refuses it. Retiring a staged key that',
      'was never promoted abandons that rotation.',
    ],
    options: KEY_CHANGE_OPTIONS,
    positionals: [],
    required: ['out', 'kid'],
    async run(values, _positionals, io) {
      return await keysChange('retire', values, io, commandUsage(this))
    },
  },
  {
    words: ['seal'],
    summary: 'seal JSON fields (compact JWE) or a whole body (sealed stream), as a sealing gateway does',
    synopsis:
      '--keys JWKS --context CTX (--fields PTRS [--records PTR:ID] [--ndjson] | --body [--content-type TYPE] [--record-size N]) [FILE|-] [--out FILE]',
    details: [
      '--keys, -k JWKS        the recipients\' key set; only its public keys are used (a private set is',
      '                       accepted, its private halves ignored); values are sealed to its current key',
      '--context CTX          bound into every sealed value (ecl.route): the `context` of the matching',
      '                       transform step, e.g. accreditations; for a body, with its path',
      '                       parameters filled in (photos-in/A for photos-in/{id})',
      '--fields PTRS          JSON Pointers to seal, comma-separated or repeated, none ending in a',
      '                       blank; `*` matches any member or index, e.g. /name,/records/*/passportNumber',
      '--records PTR:ID       bind each value to its record: records at PTR, id member ID (ecl.rid),',
      '                       e.g. /records/*:id; with --ndjson, :id makes every line a record',
      '--ndjson               the input is newline-delimited JSON, one value per line',
      '--max-value-bytes N    cap for one targeted value (default 65536)',
      '--max-record-bytes N   cap for one record with --records (default 1048576)',
      '--max-fields-per-record N',
      '                       cap for the values sealed in one record with --records (default 1000)',
      '--body                 seal the whole input as one sealed stream (docs/sealed-stream-format.md)',
      '--content-type TYPE    media type kept inside a sealed body; default application/octet-stream',
      '--record-size N        with --body, plaintext bytes per record (default 65536, as seal-body)',
      '--out, -o FILE         write there (atomically: nothing is left behind on failure); default stdout;',
      '                       not `-`, not the key set or the input',
      '',
      'FILE is read as a stream; without FILE, or with -, stdin. Errors of the sealing itself read',
      '"ecluse: <code>: <reason>" (e.g. json_invalid, value_too_large); no error contains a value of the input.',
    ],
    options: { ...SEALING_OPTIONS, 'content-type': { type: 'string' }, 'record-size': { type: 'string' } },
    positionals: ['FILE'],
    optionalPositionals: 1,
    required: ['keys', 'context'],
    async run(values, positionals, io) {
      const usage = commandUsage(this)
      return await sealOrOpen('seal', sealingArgs(values, positionals, usage), io, usage)
    },
  },
  {
    words: ['open'],
    summary: 'open sealed JSON fields or a sealed body with the private key set, as the trusted sidecar does',
    synopsis:
      '--keys PRIVATE_JWKS --context CTX (--fields PTRS [--records PTR:ID] [--ndjson] | --body [--min-record-size N] [--max-record-size N]) [FILE|-] [--out FILE]',
    details: [
      '--keys, -k JWKS        the private key set (NAME.private.jwks.json); every key in it is accepted',
      '--context CTX          the context the values were sealed for; anything else does not open',
      '                       (a body\'s, as bound: photos-out/A for photos-out/{id})',
      '--fields PTRS          JSON Pointers of the sealed values, comma-separated or repeated',
      '--records PTR:ID       the values were bound to their records (see seal --help)',
      '--ndjson               the input is newline-delimited JSON',
      '--max-value-bytes N    cap for one sealed value (default 98304)',
      '--max-record-bytes N   cap for one record with --records (default 2097152)',
      '--max-fields-per-record N',
      '                       cap for the values opened in one record with --records (default 1000)',
      '--body                 the input is one sealed stream; writes the original bytes',
      '--min-record-size N    with --body, the smallest record size accepted (default 4096, as open-body)',
      '--max-record-size N    with --body, the largest record size accepted (default 1048576, as open-body;',
      '                       up to 16777216, what seal --record-size may make)',
      '--out, -o FILE         write there, mode 0600 (atomically: nothing is left behind on failure);',
      '                       not `-`, not the key set or the input',
      '',
      'Any value that does not open, whatever the reason, is "open_failed" (exit 1). On stdout, output',
      'already written stays written: check the exit status, or use --out.',
    ],
    options: { ...SEALING_OPTIONS, 'min-record-size': { type: 'string' }, 'max-record-size': { type: 'string' } },
    positionals: ['FILE'],
    optionalPositionals: 1,
    required: ['keys', 'context'],
    async run(values, positionals, io) {
      const usage = commandUsage(this)
      return await sealOrOpen('open', sealingArgs(values, positionals, usage), io, usage)
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
  const options: Options = { ...command.options, ...HELP }
  let parsed: { values: Values; positionals: string[]; tokens: Array<{ kind: string; name?: string }> }
  try {
    parsed = parseArgs({ args, options, allowPositionals: true, strict: true, tokens: true }) as typeof parsed
  } catch (err) {
    throw new UsageError(parseArgsMessage(err), commandUsage(command))
  }
  const { values, positionals } = parsed
  // parseArgs keeps the last of a repeated option: `--context a … --context b` would seal for b, `-k
  // public -k private` open with whichever came last. Only the options that take a list repeat.
  const seen = new Set<string>()
  for (const token of parsed.tokens) {
    if (token.kind !== 'option' || token.name === undefined || options[token.name]?.multiple === true) continue
    if (seen.has(token.name)) throw new UsageError(`--${token.name} is given more than once`, commandUsage(command))
    seen.add(token.name)
  }
  if (values['help'] === true) {
    io.stdout.write(commandUsage(command))
    return 0
  }
  if (positionals.length > command.positionals.length) {
    throw new UsageError(`unexpected argument '${positionals[command.positionals.length]}'`, commandUsage(command))
  }
  if (positionals.length < command.positionals.length - (command.optionalPositionals ?? 0)) {
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

/**
 * For the long-running `serve`: an error nobody caught still ends as one line and exit code 1, through
 * `exit` (the logger's `exitAfterLog`: the last log lines are written, or dropped within its deadline).
 */
function installLastResortHandlers(io: CliIo, exit: (code: number) => void): void {
  if (lastResortInstalled) return
  lastResortInstalled = true
  const die = (err: unknown) => {
    reportError(err, io)
    exit(1)
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
    // A line that names the file already (`FILE: key: …`, or a YAML error at `FILE:2:1: …`) as it is.
    .map((line) => (line.startsWith(`${file}:`) ? line : prefix + line))
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

// ---------------------------------------------------------------------------------------------
// keys init, seal, open

/** Key set names become file names: no separators, no leading dot. */
const KEY_SET_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/
/** What src/crypto/keys.ts accepts as a `kid` (it travels in every sealed header and in logs). */
const KID = /^[\x21-\x7e]{1,128}$/

/** The two files of a key set, from `--out` and `--name` (shared by `keys init`, `promote`, `retire`). */
async function keySetPaths(
  values: Values,
  usage: string,
): Promise<{ dir: string; name: string; privateFile: string; publicFile: string }> {
  const { join, resolve } = await import('node:path')
  const outDir = values['out'] as string
  if (outDir.trim() === '') throw new UsageError('--out needs a directory', usage)
  const name = (values['name'] as string | undefined) ?? 'trusted-host'
  if (!KEY_SET_NAME.test(name)) throw new UsageError('--name takes letters, digits, ".", "_" and "-" (64 at most)', usage)
  const dir = resolve(outDir)
  return { dir, name, privateFile: join(dir, `${name}.private.jwks.json`), publicFile: join(dir, `${name}.public.jwks.json`) }
}

/** A private set as found on disk: validated as a whole, and each key's JSON as written (copied as is). */
interface PrivateSetOnDisk {
  readonly set: KeySet
  readonly byKid: ReadonlyMap<string, Record<string, unknown>>
}

async function readPrivateSet(privateFile: string): Promise<PrivateSetOnDisk> {
  const { parseKeySet, readKeySetText } = await import('./crypto/index.js')
  // Read as the gateway reads key files (a regular file, bounded), and validated as a whole (a
  // private set, every key well formed) before any of it is copied.
  const text = await readKeySetText(privateFile)
  const set = parseKeySet(text, { requirePrivate: true, source: privateFile })
  const doc = JSON.parse(text.toString('utf8')) as { keys?: Record<string, unknown>[] } & Record<string, unknown>
  const keys = Array.isArray(doc.keys) ? doc.keys : [doc]
  return { set, byKid: new Map(keys.map((k) => [k['kid'] as string, k])) }
}

/**
 * Says on stderr that a private key file is readable by every user of this host, as `serve` and
 * `config check` do: said, not refused (a container of one user is no exposure). True if it is.
 */
async function warnIfReadableByOthers(file: string, io: CliIo): Promise<boolean> {
  const { isReadableByOthers, READABLE_KEY_FILE_WARNING } = await import('./config/key-file-modes.js')
  if (!(await isReadableByOthers(file))) return false
  io.stderr.write(`warning: ${file}: ${READABLE_KEY_FILE_WARNING}\n`)
  return true
}

/**
 * After a keys command wrote a set, or `certs init` a PKI: each file that every user of the host
 * may write or replace (`--out` a world-writable folder without the sticky bit) is said, as `serve`
 * says it: whoever swaps a public key set or a CA before it is installed decides what every edge
 * seals to, or which clients a gateway trusts.
 */
async function warnIfReplaceableByOthers(files: readonly string[], io: CliIo): Promise<void> {
  const { isReplaceableByOthers, WRITABLE_FILE_WARNING } = await import('./config/key-file-modes.js')
  for (const file of files) {
    if (await isReplaceableByOthers(file)) io.stderr.write(`warning: ${file}: ${WRITABLE_FILE_WARNING}\n`)
  }
}

/** After a keys command rewrote (0600) a private file every user could read: too late for the keys it held. */
function warnKeysWereReadable(io: CliIo, kids: readonly string[]): void {
  const held = kids.length > 0 ? `the keys it held (${kids.join(', ')})` : 'the keys it held'
  io.stderr.write(
    `warning: it is 0600 now, but ${held} could be read until now: ` +
      'if other users may have read it, treat them as exposed (docs/operations.md#an-exposed-key)\n',
  )
}

/**
 * The public file, loaded as a sealing gateway loads it (`publicOnly`: a private member is refused),
 * and checked to be of the same set as the private file: every key it holds is the public half of
 * the private file's key of that kid. No keys command writes anything else (a public file only ever
 * lacks keys, after an interrupted rotation or retire); a public file of another set, installed by
 * mistake, would otherwise be rewritten with other keys under the kids the gateways know.
 */
async function readPublicSet(publicFile: string, own: { set: KeySet; file: string }, op: string): Promise<KeySet> {
  const { isSameRecipientKey, readKeySetFile } = await import('./crypto/index.js')
  const published = await readKeySetFile(publicFile, { publicOnly: true })
  for (const key of published.keys) {
    const ownKey = own.set.get(key.kid)
    if (ownKey !== undefined && isSameRecipientKey(ownKey, key)) continue
    throw new Error(
      `cannot ${op}: ${publicFile} is not the public half of ${own.file}: ` +
        (ownKey === undefined ? `it holds kid "${key.kid}", which ${own.file} lacks` : `kid "${key.kid}" is another key in each`) +
        '; find which public file the gateways load, and what sealed to it, before changing either',
    )
  }
  return published
}

/** The public members of a key, in the order `keys init` writes them. */
function publicMembers(key: import('./crypto/index.js').RecipientKey): Record<string, unknown> {
  const { kid, use, alg, ...material } = key.publicJwk
  return { kid, use, alg, ...material }
}

/**
 * Both documents of a set, checked with the gateway's own parser (count cap, uniform sets, no private
 * member in the public one) before anything is written.
 */
async function keySetDocuments(
  privateKeys: readonly Record<string, unknown>[],
  publicKeys: readonly Record<string, unknown>[],
  current: string,
  files: { privateFile: string; publicFile: string },
): Promise<{ privateText: string; publicText: string }> {
  const { parseKeySet } = await import('./crypto/index.js')
  const privateDoc = { keys: privateKeys, current }
  const publicDoc = { keys: publicKeys, current }
  parseKeySet(privateDoc, { requirePrivate: true, source: files.privateFile })
  parseKeySet(publicDoc, { publicOnly: true, source: files.publicFile })
  return { privateText: `${JSON.stringify(privateDoc, null, 2)}\n`, publicText: `${JSON.stringify(publicDoc, null, 2)}\n` }
}

/** A word as a POSIX shell reads it back: printed commands must be true when pasted. */
function shellWord(word: string): string {
  return /^[A-Za-z0-9_./:@%+=,-]+$/.test(word) ? word : `'${word.replaceAll("'", `'\\''`)}'`
}

/** `--out DIR [--name NAME]` as the user gave them, for the next command to print. */
function keySetArgs(values: Values, name: string): string {
  return `--out=${shellWord(values['out'] as string)}${name === 'trusted-host' ? '' : ` --name=${shellWord(name)}`}`
}

/** What `keys init` does: writes or rotates NAME.private.jwks.json and NAME.public.jwks.json. */
async function keysInit(values: Values, io: CliIo, usage: string): Promise<number> {
  const { mkdir } = await import('node:fs/promises')
  const { CURVES, DEFAULT_CURVE, DEFAULT_KEY_ALG, KEY_ALGORITHMS, generateKeySet } = await import('./crypto/index.js')
  const { dir, name, privateFile, publicFile } = await keySetPaths(values, usage)
  const rotate = values['rotate'] === true
  const stage = values['stage'] === true
  if (rotate && values['force'] === true) throw new UsageError('--rotate and --force exclude each other', usage)
  if (stage && !rotate) throw new UsageError('--stage goes with --rotate: it adds a key to an existing set', usage)
  const algValue = values['alg'] as string | undefined
  if (algValue !== undefined && !Object.hasOwn(KEY_ALGORITHMS, algValue)) {
    throw new UsageError(`--alg must be one of ${Object.keys(KEY_ALGORITHMS).join(', ')}`, usage)
  }
  const crvValue = values['crv'] as string | undefined
  if (crvValue !== undefined && algValue !== undefined && KEY_ALGORITHMS[algValue as KeyAlg].kind !== 'ecdh-es+kw') {
    throw new UsageError(`--crv does not apply to ${algValue}`, usage)
  }
  if (crvValue !== undefined && !Object.hasOwn(CURVES, crvValue)) {
    throw new UsageError(`--crv must be one of ${Object.keys(CURVES).join(', ')}`, usage)
  }
  // Checked here, not left to generateKeySet: a bad --kid is the caller's typo (exit 2), not a failure.
  const kidValue = values['kid'] as string | undefined
  if (kidValue !== undefined && !KID.test(kidValue)) {
    throw new UsageError('--kid takes 1 to 128 visible ASCII characters (no spaces)', usage)
  }
  return await withKeySetLock(dir, name, !rotate, async () => {
    let existing: PrivateSetOnDisk | undefined
    let readable = false
    let replacedKids: readonly string[] = []
    if (rotate) {
      if (!(await exists(privateFile))) {
        throw new Error(`cannot rotate: ${privateFile} does not exist (without --rotate, keys init creates the set)`)
      }
      existing = await readPrivateSet(privateFile)
      readable = await warnIfReadableByOthers(privateFile, io)
      if (await exists(publicFile)) {
        // A key in the private file only: an interrupted keys init --rotate (the private file is written
        // first) or retire (the public one is). A re-run must not add yet another key on top, nor
        // publish a key a retire was removing: the operator says which it was.
        const publishedSet = await readPublicSet(publicFile, { set: existing.set, file: privateFile }, stage ? 'stage' : 'rotate')
        const unpublished = existing.set.kids.filter((k) => publishedSet.get(k) === undefined)
        if (unpublished.length > 0) {
          const list = unpublished.map((k) => `"${k}"`).join(', ')
          throw new Error(
            `cannot rotate: ${privateFile} holds ${list} that ${publicFile} lacks (an interrupted keys init --rotate or keys retire): ` +
              `run an interrupted retire again; after an interrupted rotation, remove the key that was never published with ` +
              `keys retire ${keySetArgs(values, name)} --kid=…, promoting --kid=${shellWord(publishedSet.current.kid)} first if it is current`,
          )
        }
      }
      // Staging keeps the current key; it must be the one the sealers were told about, or writing the
      // public file would switch them to another key (an interrupted promote) in a step meant to
      // change nothing.
      if (stage && (await exists(publicFile))) {
        const published = (await readPublicSet(publicFile, { set: existing.set, file: privateFile }, 'stage')).current.kid
        if (published !== existing.set.current.kid) {
          throw new Error(
            `cannot stage: ${privateFile} has current kid "${existing.set.current.kid}" but ${publicFile} has "${published}" ` +
              `(an interrupted promote? run keys promote ${keySetArgs(values, name)} --kid=${shellWord(existing.set.current.kid)} first)`,
          )
        }
      }
    } else if (values['force'] !== true) {
      for (const file of [privateFile, publicFile]) {
        if (await exists(file)) {
          throw new Error(`${file} already exists: --rotate adds a new current key, --force replaces the set`)
        }
      }
    } else if (await exists(privateFile)) {
      // Replaced, its keys are not gone: whoever read them still opens what was sealed to them.
      readable = await warnIfReadableByOthers(privateFile, io)
      if (readable) replacedKids = (await readPrivateSet(privateFile).catch(() => undefined))?.set.kids ?? []
    }

    // A rotation replaces the current key with one of the same kind unless told otherwise: whoever
    // consumes the public set (perhaps not an Écluse gateway) chose that algorithm for a reason.
    const base = existing?.set.current
    const alg = (algValue as KeyAlg | undefined) ?? (crvValue === undefined ? base?.alg : undefined) ?? DEFAULT_KEY_ALG
    const algorithm = KEY_ALGORITHMS[alg]
    const crv = algorithm.kind === 'ecdh-es+kw' ? ((crvValue as Curve | undefined) ?? base?.curve?.crv ?? DEFAULT_CURVE) : undefined
    const fresh = generateKeySet({ alg, ...(crv === undefined ? {} : { crv }), ...optionalKid(values) })
    const newPrivate = fresh.privateJwks.keys[0]!
    const newPublic = fresh.publicJwks.keys[0]!
    const kid = newPrivate['kid'] as string

    let privateKeys: Record<string, unknown>[] = [newPrivate]
    let publicKeys: Record<string, unknown>[] = [newPublic]
    let older: string[] = []
    let current = kid
    if (existing !== undefined) {
      const set = existing.set
      if (set.get(kid) !== undefined) throw new Error(`cannot rotate: kid "${kid}" is already in ${privateFile}`)
      // The current key first, then the others in their existing order: a reader that ignores our
      // `current` member (RFC 7517 §5 allows it) seals to the first key, so it must be the current one.
      older = [set.current.kid, ...set.kids.filter((k) => k !== set.current.kid)]
      const oldPrivate = older.map((k) => existing.byKid.get(k)!)
      const oldPublic = older.map((k) => publicMembers(set.get(k)!))
      if (stage) {
        // Staged: accepted everywhere once the gateways reload, sealed to by nobody yet. Right behind
        // the current key, which stays current (and first).
        current = set.current.kid
        privateKeys = [oldPrivate[0]!, newPrivate, ...oldPrivate.slice(1)]
        publicKeys = [oldPublic[0]!, newPublic, ...oldPublic.slice(1)]
      } else {
        privateKeys = [newPrivate, ...oldPrivate]
        publicKeys = [newPublic, ...oldPublic]
      }
    }
    const { privateText, publicText } = await keySetDocuments(privateKeys, publicKeys, current, { privateFile, publicFile })

    try {
      await mkdir(dir, { recursive: true, mode: 0o700 })
    } catch (err) {
      throw new Error(`${dir}: cannot create the directory (${(err as NodeJS.ErrnoException).code ?? 'error'})`)
    }
    // The private set first: the opening side must know a key before anything can be sealed to it.
    await writeKeySetFiles([
      { file: privateFile, data: privateText, mode: 0o600 },
      { file: publicFile, data: publicText, mode: 0o644 },
    ])
    if (readable) warnKeysWereReadable(io, existing?.set.kids ?? replacedKids)
    await warnIfReplaceableByOthers([privateFile, publicFile], io)

    const what = `${alg}${crv === undefined ? '' : `, ${crv}`}`
    io.stdout.write(
      stage
        ? `staged kid ${kid} (${what}) in the key set "${name}" in ${dir}: the current kid stays ${current}; accepted for opening: ${[current, kid, ...older.slice(1)].join(', ')}\n`
        : rotate
          ? `rotated the key set "${name}" in ${dir}: new current kid ${kid} (${what}); still accepted for opening: ${older.join(', ')}\n`
          : `wrote the key set "${name}" in ${dir}: current kid ${kid} (${what})\n`,
    )
    io.stdout.write(`  ${privateFile}   private, 0600: keep it on the trusted host only\n`)
    io.stdout.write(`  ${publicFile}   public: give it to every gateway that seals\n`)
    if (stage) {
      io.stdout.write(
        'Next: install the public set wherever it is used (every edge, and the trusted sidecar), reload (SIGHUP)\n' +
          'every gateway, in any order: each then accepts both keys and still seals to the current one. Then:\n' +
          `  ecluse keys promote ${keySetArgs(values, name)} --kid=${shellWord(kid)}\n`,
      )
    } else if (rotate) {
      // The sidecar both opens (requests) and seals (responses): no single reload order works.
      io.stdout.write(
        'Next: in a chain where both sides seal, install in three steps, reloading (SIGHUP) after each: the private\n' +
          'set on the trusted host (it then opens both keys and still seals to the old one), then the public set on\n' +
          'every edge, then the public set on the trusted host. Reloading either side first with both files refuses\n' +
          'traffic; keys init --rotate --stage avoids this (docs/operations.md).\n',
      )
    }
    return 0
  })
}

/**
 * `keys promote` and `keys retire`: rewrite both files of an existing set from its private file (the
 * trusted host's copy is the reference; the public file is always derived from it, as `keys init`
 * writes it, with the keys the public file already has), after checking that the public file as it
 * stands agrees with what is asked. Both take the set's lock (`withKeySetLock`).
 */
async function keysChange(op: 'promote' | 'retire', values: Values, io: CliIo, usage: string): Promise<number> {
  const { dir, name, privateFile, publicFile } = await keySetPaths(values, usage)
  const kid = values['kid'] as string
  if (!KID.test(kid)) throw new UsageError('--kid takes 1 to 128 visible ASCII characters (no spaces)', usage)
  for (const file of [privateFile, publicFile]) {
    if (!(await exists(file))) throw new Error(`cannot ${op}: ${file} does not exist`)
  }
  return await withKeySetLock(dir, name, false, async () => {
    const { set, byKid } = await readPrivateSet(privateFile)
    const readable = await warnIfReadableByOthers(privateFile, io)
    const published = await readPublicSet(publicFile, { set, file: privateFile }, op)
    const target = set.get(kid)
    if (target === undefined) throw new Error(`cannot ${op}: kid "${kid}" is not in ${privateFile} (it holds ${set.kids.join(', ')})`)
    const currentKid = set.current.kid
    /**
     * Both files with the keys in `order` and `current`, the file named by `first` renamed first.
     * The public file keeps the keys it has: a key in the private file only was left there by an
     * interrupted rotation or retire (perhaps the very key a retire was removing), and only a run
     * again of that command, or a retire of it, may settle it; neither step here publishes it.
     */
    const rewrite = async (order: readonly string[], current: string, first: 'private' | 'public'): Promise<void> => {
      const docs = await keySetDocuments(
        order.map((k) => byKid.get(k)!),
        order.filter((k) => published.get(k) !== undefined).map((k) => publicMembers(set.get(k)!)),
        current,
        { privateFile, publicFile },
      )
      const privateDoc = { file: privateFile, data: docs.privateText, mode: 0o600 }
      const publicDoc = { file: publicFile, data: docs.publicText, mode: 0o644 }
      await writeKeySetFiles(first === 'private' ? [privateDoc, publicDoc] : [publicDoc, privateDoc])
      if (readable) warnKeysWereReadable(io, set.kids)
      await warnIfReplaceableByOthers([privateFile, publicFile], io)
    }
    const printFiles = () => {
      io.stdout.write(`  ${privateFile}   private, 0600: keep it on the trusted host only\n`)
      io.stdout.write(`  ${publicFile}   public: install it wherever the previous one is used\n`)
    }

    if (op === 'promote') {
      if (published.get(kid) === undefined) {
        throw new Error(
          `cannot promote: kid "${kid}" is not in ${publicFile}, so the gateways that load it would refuse what is ` +
            'sealed to it; stage it (keys init --rotate --stage) and reload every gateway first',
        )
      }
      if (currentKid === kid && published.current.kid === kid) {
        io.stdout.write(`kid ${kid} is already current in the key set "${name}" in ${dir}; nothing written\n`)
        return 0
      }
      // The promoted key first (readers that ignore `current` seal to the first key), then the one it
      // replaces, then the others in their order.
      const order = [kid, ...[currentKid, ...set.kids.filter((k) => k !== currentKid)].filter((k) => k !== kid)]
      // Both files already hold every key (that is what staging did); only `current` moves. The private
      // file first, the public file last: sealers act on the public file, so until its rename lands it
      // still reads as the staged set, and an interruption in between leaves the sealers where they
      // were (a run again completes it), never a public file ahead of the trusted host's own copy.
      await rewrite(order, kid, 'private')
      const previous = published.current.kid === kid ? currentKid : published.current.kid
      io.stdout.write(
        `promoted kid ${kid} in the key set "${name}" in ${dir}: new values are sealed to it; still accepted for opening: ${order.slice(1).join(', ')}\n`,
      )
      printFiles()
      io.stdout.write(
        'Next: install the public set wherever it is used and reload (SIGHUP) every gateway, in any order\n' +
          '(each already accepts both keys since the staged set was reloaded). Once nothing sealed to the old key\n' +
          'can still arrive:\n' +
          `  ecluse keys retire ${keySetArgs(values, name)} --kid=${shellWord(previous)}\n`,
      )
      return 0
    }

    if (set.keys.length === 1) throw new Error(`cannot retire kid "${kid}": it is the only key in ${privateFile}`)
    if (kid === currentKid || kid === published.current.kid) {
      throw new Error(`cannot retire kid "${kid}": it is the current key (values are sealed to it); promote another key first`)
    }
    if (published.current.kid !== currentKid) {
      // Rewriting the public file would switch its sealers to another key in a step meant not to.
      throw new Error(
        `cannot retire: ${privateFile} has current kid "${currentKid}" but ${publicFile} has "${published.current.kid}" ` +
          `(an interrupted promote? run keys promote ${keySetArgs(values, name)} --kid=${shellWord(currentKid)} first)`,
      )
    }
    const order = [currentKid, ...set.kids.filter((k) => k !== currentKid && k !== kid)]
    // The public file first, the private file last: at every moment each kid in the public file (what
    // sealers may seal to and what require-sealed accepts) is still in the private file, so an
    // interruption in between never leaves a key that is accepted on one side and cannot be opened on
    // the other; a run again completes it.
    await rewrite(order, currentKid, 'public')
    io.stdout.write(`retired kid ${kid} from the key set "${name}" in ${dir}: current kid ${currentKid}; still accepted for opening: ${order.join(', ')}\n`)
    io.stdout.write(
      `warning: a value sealed to ${kid} no longer opens with this set (open_failed), and require-sealed refuses it\n` +
        'once the gateways reload; retire a key only when nothing sealed to it can still arrive.\n',
    )
    printFiles()
    io.stdout.write('Next: install the public set wherever it is used and reload (SIGHUP) every gateway, in any order.\n')
    return 0
  })
}

/**
 * Runs `change` holding `NAME.jwks.lock` in the set's directory (created with `wx`, so by one
 * command at a time). Every keys command reads both files, decides, then writes both: two at once
 * (two operators, a script run twice) would each write a set built from what they read, and the
 * later one would silently drop the earlier one's key — a staged key whose private half vanishes
 * while its public half may already be installed, or two new sets whose files hold different keys.
 * `create`: the directory is made first (0700, as `keys init` makes it), so that a new set is locked
 * too. A lock left by a command killed with SIGKILL must be removed by hand; the error names it.
 */
async function withKeySetLock<T>(dir: string, name: string, create: boolean, change: () => Promise<T>): Promise<T> {
  const { join } = await import('node:path')
  const { mkdir, open, unlink } = await import('node:fs/promises')
  const { removeOnInterrupt } = await import('./write-file-atomic.js')
  // A directory that cannot be made (--out names a file…) is the command's to report, in its words.
  if (create) await mkdir(dir, { recursive: true, mode: 0o700 }).catch(() => {})
  const lock = join(dir, `${name}.jwks.lock`)
  let fh: import('node:fs/promises').FileHandle
  try {
    fh = await open(lock, 'wx', 0o600)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'EEXIST') {
      throw new Error(
        `${lock} exists: another keys command is changing the set "${name}"; run this one when it has finished ` +
          `(if none is running, one was killed before it could remove the lock: check both files, delete any ${name}.*.jwks.json.*.tmp ` +
          'beside them, which may hold private keys, then remove the lock)',
      )
    }
    // No directory, --out not one, or one this user cannot write: the command cannot write either,
    // and says why in its own words (a change that writes nothing, such as promoting the current
    // key again, still runs).
    if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'EACCES' || code === 'EPERM' || code === 'EROFS') return await change()
    throw new Error(`${lock}: cannot create the lock (${code ?? 'error'})`)
  }
  // Registered once it is ours: removing the name on a signal before would take another's lock.
  const release = removeOnInterrupt(lock)
  try {
    try {
      await fh.writeFile(`${process.pid}\n`)
    } finally {
      await fh.close()
    }
    return await change()
  } finally {
    await unlink(lock).catch(() => {})
    release()
  }
}

function optionalKid(values: Values): { kid?: string } {
  const kid = values['kid'] as string | undefined
  return kid === undefined ? {} : { kid }
}

/**
 * Both files of a key set, in the order given, through `writeFilesAtomic` (src/write-file-atomic.ts,
 * loaded when a keys command runs): neither is replaced unless both can be.
 */
async function writeKeySetFiles(files: readonly import('./write-file-atomic.js').FileToWrite[]): Promise<void> {
  const { writeFilesAtomic } = await import('./write-file-atomic.js')
  await writeFilesAtomic(files)
}

/** The parsed arguments of `seal` and `open`. */
interface SealingArgs {
  readonly keys: string
  readonly context: string
  /** JSON Pointer patterns (field mode), or `undefined` (body mode). */
  readonly fields: readonly string[] | undefined
  readonly records: { readonly pattern: string; readonly idMember: string } | undefined
  readonly ndjson: boolean
  readonly maxValueBytes: number | undefined
  readonly maxRecordBytes: number | undefined
  readonly maxFieldsPerRecord: number | undefined
  /** `open --body` only. */
  readonly minRecordSize: number | undefined
  /** `open --body` only. */
  readonly maxRecordSize: number | undefined
  /** `seal --body` only. */
  readonly recordSize: number | undefined
  readonly contentType: string
  /** `undefined` or `-`: stdin. */
  readonly input: string | undefined
  /** `undefined`: stdout. */
  readonly out: string | undefined
}

function sealingArgs(values: Values, positionals: readonly string[], usage: string): SealingArgs {
  const fieldsValue = values['fields'] as unknown as string[] | undefined
  const body = values['body'] === true
  if ((fieldsValue === undefined) === !body) throw new UsageError('give either --fields or --body', usage)
  const context = values['context'] as string
  if (context === '') throw new UsageError('--context must not be empty', usage)
  // An empty path would otherwise surface as a confusing "<empty>: cannot read" failure.
  for (const o of ['keys', 'out']) if (values[o] === '') throw new UsageError(`--${o} needs a file`, usage)
  // A key set pasted in place of its file's name would be echoed back by "cannot be read" (found by review).
  if (isKeyMaterialNotPath(values['keys'] as string)) throw new UsageError(`--keys ${KEY_MATERIAL_NOT_PATH}`, usage)
  // `-` is stdin as FILE; as --out it would be a file named "-" (of plaintext, for open).
  if (values['out'] === '-') throw new UsageError('--out takes a file name; leave --out out to write to stdout', usage)
  if (body) {
    for (const o of ['records', 'ndjson', 'max-value-bytes', 'max-record-bytes', 'max-fields-per-record']) {
      if (values[o] !== undefined) throw new UsageError(`--${o} applies to --fields only`, usage)
    }
  } else {
    for (const o of ['content-type', 'min-record-size', 'max-record-size', 'record-size']) {
      if (values[o] !== undefined) throw new UsageError(`--${o} applies to --body only`, usage)
    }
  }
  // Blanks after a comma are not part of the next pointer (it starts with "/"). Blanks at its end
  // would be (`/c ` names the member "c "), but `/name , /passport` means /name: either reading
  // leaves a member unsealed without a word, so a pointer may not end in one.
  const fields = fieldsValue?.flatMap((v) => v.split(',')).map((f) => f.trimStart())
  if (fields?.some((f) => !f.startsWith('/'))) throw new UsageError('--fields takes JSON Pointers, each starting with "/"', usage)
  if (fields?.some((f) => /\s$/.test(f))) {
    throw new UsageError('--fields: a JSON Pointer may not end in a blank (write "/a,/b"; a member whose name ends in one needs a configuration step)', usage)
  }
  let records: SealingArgs['records']
  const recordsValue = values['records'] as string | undefined
  if (recordsValue !== undefined) {
    // The id member is a plain name; the pattern may contain ':' (a JSON Pointer may), so split last.
    const at = recordsValue.lastIndexOf(':')
    const idMember = recordsValue.slice(at + 1)
    const pattern = recordsValue.slice(0, at)
    // Checked here: the step would report a bad record pattern under `fields`.
    if (at < 0 || idMember === '' || (pattern !== '' && !pattern.startsWith('/'))) {
      throw new UsageError('--records takes PTR:ID, PTR a JSON Pointer (empty: the whole value), e.g. /records/*:id', usage)
    }
    records = { pattern, idMember }
  }
  const contentType = (values['content-type'] as string | undefined) ?? 'application/octet-stream'
  return {
    keys: values['keys'] as string,
    context,
    fields,
    records,
    ndjson: values['ndjson'] === true,
    maxValueBytes: byteCount(values['max-value-bytes'], '--max-value-bytes', usage),
    maxRecordBytes: byteCount(values['max-record-bytes'], '--max-record-bytes', usage),
    maxFieldsPerRecord: positiveCount(values['max-fields-per-record'], '--max-fields-per-record', 'values', usage),
    minRecordSize: byteCount(values['min-record-size'], '--min-record-size', usage),
    maxRecordSize: byteCount(values['max-record-size'], '--max-record-size', usage),
    recordSize: byteCount(values['record-size'], '--record-size', usage),
    contentType,
    input: positionals[0],
    out: values['out'] as string | undefined,
  }
}

/** The one key set of a `seal`/`open` run, under the name the transform options refer to. */
const CLI_KEY_SET = 'cli'
/** The tool's stand-in for a verified client: the transforms only log it. */
const CLI_PRINCIPAL = { id: 'cli:ecluse', attributes: new Set<string>() }

/**
 * `seal` and `open`: the gateway's own transform steps (src/transform/seal.ts, open.ts: the
 * streaming rewriter with `FieldSealer`/`FieldOpener`) or the sealed-stream format for bodies, run
 * over a file or stdin. What the command writes is what a gateway with the same step would send.
 */
async function sealOrOpen(op: 'seal' | 'open', a: SealingArgs, io: CliIo, usage: string): Promise<number> {
  const { pipeline } = await import('node:stream/promises')
  const bodyMode = a.fields === undefined
  if (bodyMode && a.out === undefined && (io.stdout as { isTTY?: boolean }).isTTY === true) {
    // A sealed body is binary; an opened one holds whatever bytes its sealer chose, escape sequences
    // included, which a terminal would act on.
    throw new Error(`refusing to write ${op === 'seal' ? 'a sealed' : 'an opened'} body to a terminal: use --out FILE or redirect stdout`)
  }
  let step: { stream: import('node:stream').Duplex; headers: Record<string, unknown> }
  try {
    const keys = await loadSealingKeys(op, a.keys)
    if (keys.hasPrivateKeys) await warnIfReadableByOthers(a.keys, io)
    step = await beginStep(op, a, keys, usage)
  } catch (err) {
    throw sealingError(err, bodyMode)
  }
  if (a.out !== undefined) await refuseOutputOverInput(a.out, { '--keys': a.keys, FILE: a.input })
  const input = await openInput(a.input)
  const sink = await openOutput(a.out, op === 'open' ? 0o600 : 0o644, io)
  try {
    await pipeline(input, step.stream, sink.stream)
    await sink.commit()
  } catch (err) {
    await sink.abort()
    throw sealingError(err, bodyMode)
  }
  if (a.out !== undefined) {
    // open-body restores the sealed media type on the message, as it would for the proxy.
    const what = bodyMode && op === 'open' ? ` (${String(step.headers['content-type'])})` : ''
    io.stdout.write(`${op === 'seal' ? 'sealed' : 'opened'} ${a.input === undefined || a.input === '-' ? 'stdin' : a.input}${what} into ${a.out}\n`)
  }
  return 0
}

/** `seal` uses only the public halves of whatever set it is given; `open` needs the private set. */
async function loadSealingKeys(op: 'seal' | 'open', file: string): Promise<import('./crypto/index.js').KeySet> {
  const { parseKeySet, readKeySetFile } = await import('./crypto/index.js')
  const { EcluseError } = await import('./errors.js')
  const set = await readKeySetFile(file, { named: '--keys: the file it names' })
  if (op === 'seal') return set.hasPrivateKeys ? parseKeySet(set.publicJwks(), { publicOnly: true, source: file }) : set
  if (!set.hasPrivateKeys) {
    throw new EcluseError('key_material_invalid', `${file} holds public keys only: open needs the private set (*.private.jwks.json)`)
  }
  return set
}

/**
 * The step a route would build (`seal`, `open`, `seal-body` or `open-body`, with this run's key set
 * and options), begun for one message as the proxy begins it; the returned headers are that
 * message's, as the step leaves them.
 */
async function beginStep(
  op: 'seal' | 'open',
  a: SealingArgs,
  keys: import('./crypto/index.js').KeySet,
  usage: string,
): Promise<{ stream: import('node:stream').Duplex; headers: Record<string, unknown> }> {
  const { pino } = await import('pino')
  const { isEcluseError } = await import('./errors.js')
  const log = pino({ level: 'silent' })
  const env = { log, keySets: new Map([[CLI_KEY_SET, keys]]) }
  const keyOption = op === 'seal' ? { recipients: CLI_KEY_SET } : { keys: CLI_KEY_SET }
  let headers: Record<string, string>
  let step: import('./transform/types.js').BodyTransform
  try {
    if (a.fields === undefined) {
      const options = {
        ...keyOption,
        context: a.context,
        ...(a.minRecordSize === undefined ? {} : { minRecordSize: a.minRecordSize }),
        ...(a.maxRecordSize === undefined ? {} : { maxRecordSize: a.maxRecordSize }),
        ...(a.recordSize === undefined ? {} : { recordSize: a.recordSize }),
      }
      if (op === 'seal') {
        const { isMediaType } = await import('./crypto/index.js')
        if (!isMediaType(a.contentType)) throw new UsageError('--content-type takes one media type, e.g. image/jpeg', usage)
        const { createSealBodyTransform } = await import('./transform/seal-body.js')
        headers = { 'content-type': a.contentType }
        step = createSealBodyTransform(options, env)
      } else {
        const { SEALED_MEDIA_TYPE } = await import('./transform/seal-body.js')
        const { createOpenBodyTransform } = await import('./transform/open-body.js')
        headers = { 'content-type': SEALED_MEDIA_TYPE }
        step = createOpenBodyTransform(options, env)
      }
    } else {
      const options: Record<string, unknown> = {
        ...keyOption,
        context: a.context,
        fields: a.fields,
        format: a.ndjson ? 'ndjson' : 'json',
        ...(a.records === undefined ? {} : { records: { pattern: a.records.pattern, id: a.records.idMember } }),
        ...(a.maxValueBytes === undefined ? {} : { maxValueBytes: a.maxValueBytes }),
        ...(a.maxRecordBytes === undefined ? {} : { maxRecordBytes: a.maxRecordBytes }),
        ...(a.maxFieldsPerRecord === undefined ? {} : { maxFieldsPerRecord: a.maxFieldsPerRecord }),
      }
      headers = { 'content-type': a.ndjson ? 'application/x-ndjson' : 'application/json' }
      if (op === 'seal') {
        const { createSealTransform, MAX_SEALED_VALUES } = await import('./transform/seal.js')
        // The operator's own file, not a client's body: the gateway's per-request bound on values
        // (amplification) is not the tool's.
        step = createSealTransform({ ...options, maxValues: MAX_SEALED_VALUES }, env)
      } else {
        const { createOpenTransform, MAX_KEY_AGREEMENTS } = await import('./transform/open.js')
        // As for `seal`: the gateway's per-request bound (here on key agreements) is not the tool's.
        step = createOpenTransform({ ...options, maxKeyAgreements: MAX_KEY_AGREEMENTS }, env)
      }
    }
  } catch (err) {
    // The step's option names are the command's: `fields: …`, `context: …`, `maxValueBytes: …`.
    if (isEcluseError(err) && err.code === 'config_invalid') {
      const first = err.message.split('\n')[0]!.replace(/^(\w+):/, (_m, k: string) => `--${kebab(k)}:`)
      throw new UsageError(first.replace(/\b(?:min|max)RecordSize\b/g, (k) => `--${kebab(k)}`), usage)
    }
    throw err
  }
  const stream = step.begin({ direction: 'request', routeName: a.context, path: '/', requestId: 'cli', principal: CLI_PRINCIPAL, headers, log })
  if (stream === null) throw new Error(`internal: the ${step.type} step declined the input`)
  return { stream, headers }
}

function kebab(name: string): string {
  return name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)
}

/**
 * `--out` naming the key set or the input (by any path, or a hard link) would replace it with the
 * output: `open --out` over the private key set leaves plaintext where the keys were, and nothing
 * to open the rest with.
 */
async function refuseOutputOverInput(out: string, inputs: Record<string, string | undefined>): Promise<void> {
  const { lstat, stat } = await import('node:fs/promises')
  const target = await lstat(out).catch(() => undefined)
  if (target === undefined) return
  for (const [option, file] of Object.entries(inputs)) {
    if (file === undefined || file === '-') continue
    const st = await stat(file).catch(() => undefined)
    if (st !== undefined && st.dev === target.dev && st.ino === target.ino) {
      throw new Error(`${out}: --out is the same file as ${option}; write the output to another file`)
    }
  }
}

/** A file (opened now, so a missing one fails before anything is written) or stdin. */
async function openInput(file: string | undefined): Promise<import('node:stream').Readable> {
  if (file === undefined || file === '-') return process.stdin
  const { open } = await import('node:fs/promises')
  try {
    const fh = await open(file, 'r')
    if ((await fh.stat()).isDirectory()) {
      await fh.close()
      throw Object.assign(new Error('is a directory'), { code: 'EISDIR' })
    }
    return fh.createReadStream()
  } catch (err) {
    throw new Error(`${file}: cannot read (${(err as NodeJS.ErrnoException).code ?? 'error'})`)
  }
}

interface Sink {
  readonly stream: import('node:stream').Writable
  commit(): Promise<void>
  abort(): Promise<void>
}

/**
 * `--out FILE`: a temporary file next to it, renamed over it on success and removed on failure, so
 * a failed run leaves neither a truncated result nor partial plaintext. Without `--out`: stdout,
 * never ended (the process owns it); a test's string sink gets UTF-8 text.
 */
async function openOutput(out: string | undefined, mode: number, io: CliIo): Promise<Sink> {
  const { Writable } = await import('node:stream')
  if (out === undefined) {
    const target = io.stdout
    if (target instanceof Writable) {
      const stream = new Writable({
        write(chunk: Buffer, _enc, cb) {
          if (target.write(chunk)) cb()
          else target.once('drain', () => cb())
        },
      })
      // A closed pipe (`| head`) ends the run instead of hanging on a drain that never comes.
      stdoutFailsTheCommand = true
      const onError = (err: Error) => stream.destroy(err)
      target.once('error', onError)
      stream.once('close', () => target.off('error', onError))
      return { stream, commit: async () => {}, abort: async () => {} }
    }
    const { StringDecoder } = await import('node:string_decoder')
    const decoder = new StringDecoder('utf8')
    const stream = new Writable({
      write(chunk: Buffer, _enc, cb) {
        const text = decoder.write(chunk)
        if (text !== '') target.write(text)
        cb()
      },
      final(cb) {
        const text = decoder.end()
        if (text !== '') target.write(text)
        cb()
      },
    })
    return { stream, commit: async () => {}, abort: async () => {} }
  }
  const { lstat, open, unlink } = await import('node:fs/promises')
  const { NotFlushed, removeOnInterrupt, renameDurably, temporaryPathBeside } = await import('./write-file-atomic.js')
  // The output replaces `out` by a rename: over a device (`--out /dev/null` as root) or any other
  // special file that would leave a regular file of plaintext in its place. Only a regular file, or
  // a new one, is replaced.
  const existing = await lstat(out).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined
    throw new Error(`${out}: cannot write (${err.code ?? 'error'})`)
  })
  if (existing !== undefined && !existing.isFile()) {
    throw new Error(`${out}: not a regular file; --out writes a new file or replaces a regular one (leave --out out to write to stdout)`)
  }
  const tmp = temporaryPathBeside(out)
  // Interrupted (Ctrl-C, a supervisor's SIGTERM) is failed: the partial file, which may hold opened
  // plaintext, is removed before the process dies of the signal.
  const release = removeOnInterrupt(tmp)
  let fh: import('node:fs/promises').FileHandle
  try {
    fh = await open(tmp, 'wx', mode)
  } catch (err) {
    release()
    throw new Error(`${out}: cannot write (${(err as NodeJS.ErrnoException).code ?? 'error'})`)
  }
  // `flush`: on disk before the stream closes it, so before `commit` gives it its name (the caller
  // may delete the source once this exits 0).
  const stream = fh.createWriteStream({ flush: true })
  return {
    stream,
    async commit() {
      try {
        await renameDurably(tmp, out)
      } catch (err) {
        // In place but not flushed: a failure (the source must not be deleted), said as it is.
        if (err instanceof NotFlushed) throw err
        await unlink(tmp).catch(() => {})
        throw new Error(`${out}: cannot write (${(err as NodeJS.ErrnoException).code ?? 'error'})`)
      } finally {
        release()
      }
    },
    async abort() {
      stream.destroy()
      await fh.close().catch(() => {})
      await unlink(tmp).catch(() => {})
      release()
    },
  }
}

/**
 * `<code>: <terse reason>`, never a value of the input: rewriter details carry a reason and an
 * offset, crypto details a reason. `open_failed` is uniform, as on the wire: where, not why.
 */
function sealingError(err: unknown, bodyMode: boolean): unknown {
  if (err instanceof UsageError) return err
  const e = err as { code?: unknown; message?: unknown; syscall?: unknown }
  if (err instanceof Error && err.name === 'EcluseError' && typeof e.code === 'string') {
    if (e.code === 'open_failed') {
      const where = bodyMode ? 'the sealed body' : (/^(\/[^:]*): /.exec(err.message)?.[1] ?? 'a sealed value')
      return new Error(`open_failed: ${where} does not open with these keys for this context (or was moved or altered)`, {
        cause: err,
      })
    }
    return new Error(`${e.code}: ${err.message}`, { cause: err })
  }
  if (typeof e.syscall === 'string' && typeof e.code === 'string') {
    return new Error(`${e.syscall === 'write' ? 'output' : 'input'}: ${e.syscall} failed (${e.code})`, { cause: err })
  }
  return err
}

function byteCount(value: unknown, option: string, usage: string): number | undefined {
  return positiveCount(value, option, 'bytes', usage)
}

function positiveCount(value: unknown, option: string, unit: string, usage: string): number | undefined {
  if (value === undefined) return undefined
  const n = Number(value)
  if (!/^[1-9][0-9]*$/.test(String(value)) || !Number.isSafeInteger(n)) {
    throw new UsageError(`${option} takes a positive number of ${unit}`, usage)
  }
  return n
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

/** Set when stdout failed other than by its reader going away (see `processIo`). */
let stdoutFailed = false
/**
 * Set while `seal` or `open` streams its output to stdout: a failure of stdout, its reader going
 * away included, fails that command, which says so itself (one line, exit 1): the output it was
 * asked for is incomplete.
 */
let stdoutFailsTheCommand = false

function processIo(): CliIo {
  // A reader that went away (`ecluse keys init … | head -c 0`): what is left to print is dropped,
  // as for any Unix filter, and the command's own exit code stands. Unhandled, the EPIPE would end
  // the process with a stack trace after the command had done its work. Any other failure (a full
  // disk, `> /dev/full`) loses output the caller asked for: said in one line, and the exit code is
  // 1 whatever the command's (a stack trace only with ECLUSE_DEBUG=1, as for any error).
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE' || stdoutFailed || stdoutFailsTheCommand) return
    stdoutFailed = true
    // Also set here: the error may be emitted after `main` has returned and its code been set.
    process.exitCode = 1
    reportError(new Error(`cannot write to standard output (${err.code ?? err.name})`, { cause: err }), {
      stdout: process.stdout,
      stderr: process.stderr,
      env: process.env,
    })
  })
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

/**
 * The program: runs `argv` and sets the exit code, failed if standard output could not be written
 * (a command that wrote half its output to a full disk must not exit 0). `bin/ecluse.js`, the
 * installed command, and this file run as a script both end here.
 */
export async function runProgram(argv: readonly string[]): Promise<void> {
  const code = await main([...argv])
  process.exitCode = stdoutFailed && code === 0 ? 1 : code
}

if (isEntryPoint()) await runProgram(process.argv.slice(2))
