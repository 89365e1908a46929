/**
 * The configuration loader: YAML text → validated `Config`, with every file path resolved against
 * the configuration file's directory. Anything wrong fails the boot with `config_invalid` and a
 * message that names the file and the key path of each problem, one per line:
 *
 *   config/edge.yaml: routes[2].upstream: unknown upstream "x"
 *   config/edge.yaml: sponsor.tls.cert: required
 */
import { isIP } from 'node:net'
import { dirname, resolve } from 'node:path'
import { type Document, isPair, isScalar, isSeq, parseDocument, visit, type ErrorCode as YamlErrorCode } from 'yaml'
import type { z } from 'zod'
import { EcluseError } from '../errors.js'
import { DEFAULT_RESPONSE_HEADERS, isStandardRequestField } from '../proxy/headers.js'
import { readBoundedFile, unreadable } from '../read-bounded-file.js'
import { type Config, configSchema } from './schema.js'

/** A configuration file larger than this is refused before it is parsed (bounded by default). */
export const MAX_CONFIG_BYTES = 1024 * 1024

/**
 * Aliases resolved while building the value. yaml's default (100) already stops a "billion laughs"
 * document; a gateway configuration needs far fewer, so the cap is tighter.
 */
const MAX_ALIAS_COUNT = 50
/**
 * Items one sequence may hold: far above any real list (routes, methods, allow entries), far below
 * what would overflow the schema validator's stack (≈ 240,000 items of a 1 MiB file).
 */
export const MAX_SEQUENCE_ITEMS = 10_000

/** How many problems one message lists before it stops (a wrong file can produce hundreds). */
const MAX_LISTED_ISSUES = 50

/** What each of yaml's diagnostics says, in our words: its own messages quote the file. */
const YAML_PROBLEMS: Readonly<Record<YamlErrorCode, string>> = {
  ALIAS_PROPS: 'an alias with a tag or an anchor of its own',
  BAD_ALIAS: 'an alias that names no anchor',
  BAD_COLLECTION_TYPE: 'a tag that does not fit its collection',
  BAD_DIRECTIVE: 'a directive that is not %YAML 1.2 or %TAG',
  BAD_DQ_ESCAPE: 'an invalid escape in a double-quoted string',
  BAD_INDENT: 'bad indentation',
  BAD_PROP_ORDER: 'an anchor or a tag in the wrong place',
  BAD_SCALAR_START: 'a plain value that starts with a reserved character',
  BLOCK_AS_IMPLICIT_KEY: 'a block collection used as a key',
  BLOCK_IN_FLOW: 'a block collection inside a flow collection',
  DUPLICATE_KEY: 'a key written twice',
  IMPOSSIBLE: 'a YAML syntax error',
  KEY_OVER_1024_CHARS: 'an implicit key over 1024 characters',
  MISSING_CHAR: 'a missing character (an unclosed quote, bracket or brace?)',
  MULTILINE_IMPLICIT_KEY: 'an implicit key over more than one line',
  MULTIPLE_ANCHORS: 'a node with two anchors',
  MULTIPLE_DOCS: 'more than one YAML document',
  MULTIPLE_TAGS: 'a node with two tags',
  NON_STRING_KEY: 'a key that is not a string',
  RESOURCE_EXHAUSTION: 'too many aliases',
  TAB_AS_INDENT: 'a tab used as indentation',
  TAG_RESOLVE_FAILED: 'a tag outside the YAML 1.2 core schema (no !!binary, !!set, !!timestamp or custom tags)',
  UNEXPECTED_TOKEN: 'unexpected text here (a stray colon, dash or quote?)',
}

/**
 * Headers the gateway can never use to carry its own value (the principal, the request id): they
 * frame the message or describe the connection (RFC 9110 §7.6.1, RFC 9112 §6-7), or the gateway
 * sets them itself (`forwarded`, `x-forwarded-*`). What a route may add to its forwarded or relayed
 * headers is checked by the route table (src/proxy/headers.ts).
 */
const UNUSABLE_HEADERS: ReadonlySet<string> = new Set([
  'connection',
  'content-length',
  'content-type',
  'forwarded',
  'host',
  'keep-alive',
  'proxy-authenticate',
  'proxy-authorization',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
])

/** Response fields with a meaning of their own beside the default relayed set (src/proxy/headers.ts). */
const RESPONSE_MEANINGFUL_HEADERS: ReadonlySet<string> = new Set(['set-cookie', 'location', 'www-authenticate', 'content-disposition', 'content-location', 'age', 'date'])

/** One problem in a configuration: the key path as segments and a readable message. */
interface Problem {
  readonly path: readonly PropertyKey[]
  readonly message: string
}

/**
 * Parses and validates configuration text. `source` names the file in messages. Paths in the result
 * are as written; {@link loadConfigFile} resolves them.
 *
 * @throws EcluseError `config_invalid`, listing every problem as `<source>: <key path>: <message>`.
 * @example
 * const config = parseConfig(await readFile(file, 'utf8'), file)
 */
export function parseConfig(text: string, source: string): Config {
  const data = parseYaml(text, source)
  const result = configSchema.safeParse(data)
  if (!result.success) {
    // One problem per key is enough (z.url() and its refinement both report a bad URL).
    const seen = new Set<string>()
    const problems = result.error.issues
      .flatMap((issue) => describeIssue(issue, data))
      .filter((p) => {
        const key = formatKeyPath(p.path)
        if (seen.has(key)) return false
        seen.add(key)
        return true
      })
    throw configError(source, problems)
  }
  const problems = semanticProblems(result.data)
  if (problems.length > 0) throw configError(source, problems)
  return result.data
}

/**
 * Reads, parses and validates a configuration file, then resolves every file path in it
 * (`sponsor.tls.cert`/`key`/`clientCa`, `upstreams.*.tls.ca`/`cert`/`key`, `keys.*.file`) relative to the file's
 * directory; absolute paths stay as they are.
 *
 * @throws EcluseError `config_invalid`
 * @example
 * const config = await loadConfigFile('config/edge.yaml')
 */
export async function loadConfigFile(file: string): Promise<Config> {
  let text: string
  try {
    text = (await readBoundedFile(file, MAX_CONFIG_BYTES)).toString('utf8')
  } catch (err) {
    throw new EcluseError('config_invalid', `${file}: ${unreadable(err, 'cannot read')}`, { cause: err })
  }
  return resolveConfigPaths(parseConfig(text, file), dirname(resolve(file)))
}

/**
 * Returns a copy of `config` with every file path resolved against `baseDir`. Exported for callers
 * that build a configuration in memory (tests, tools).
 */
export function resolveConfigPaths(config: Config, baseDir: string): Config {
  const at = (p: string) => resolve(baseDir, p)
  const tls = config.sponsor.tls
  const upstreams: Config['upstreams'] = {}
  for (const [name, upstream] of Object.entries(config.upstreams)) {
    const u = upstream.tls
    upstreams[name] = { ...upstream, tls: { ...u, ca: at(u.ca), cert: at(u.cert), key: at(u.key) } }
  }
  const keys: Config['keys'] = {}
  for (const [name, set] of Object.entries(config.keys)) keys[name] = { ...set, file: at(set.file) }
  return {
    ...config,
    sponsor: { ...config.sponsor, tls: { ...tls, cert: at(tls.cert), key: at(tls.key), clientCa: at(tls.clientCa) } },
    upstreams,
    keys,
  }
}

/**
 * `127.0.0.0/8`, `::1` (any spelling), `::ffff:127.x.y.z` and `localhost`. Not with a trailing dot:
 * `listen()` hands the host to the resolver as written, and `localhost.` or `127.0.0.1.` is a
 * fully qualified name that DNS answers, with any address.
 */
export function isLoopbackHost(host: string): boolean {
  if (host.trim().endsWith('.')) return false
  const h = normalizeHost(host)
  if (h === 'localhost') return true
  if (isIP(h) === 4) return h.startsWith('127.')
  if (isIP(h) === 6) return h === '::1' || /^::ffff:127\./.test(h) || /^::ffff:7f[0-9a-f]{2}:/.test(h)
  return false
}

// ---------------------------------------------------------------------------------------------

function parseYaml(text: string, source: string): unknown {
  // `uniqueKeys`: a key written twice is an error, never "the last one wins" — a duplicated
  // `allow:` must not silently replace the first.
  // The YAML 1.2 core schema only: no `<<` merge keys, and no `!!binary`/`!!set`/`!!timestamp`
  // (yaml resolves those "known tags" by default; unresolved, they become warnings and fail below).
  const doc = parseDocument(text, {
    version: '1.2',
    schema: 'core',
    merge: false,
    resolveKnownTags: false,
    // As keys, not as YAML values: `1:` and `"1":` (or `true:` and `"true":`) are one key once the
    // document is a plain object, where the last would silently win (found by review).
    uniqueKeys: (a, b) => a === b || (isScalar(a) && isScalar(b) && String(a.value) === String(b.value)),
    prettyErrors: true,
    strict: true,
  })
  // Warnings (unknown tags, …) are errors too: a value we do not understand is not a value we use.
  const diagnostics = [...doc.errors, ...doc.warnings]
  if (diagnostics.length > 0) {
    const lines = diagnostics.slice(0, MAX_LISTED_ISSUES).map((e) => {
      // Said from the code and the position only: yaml's messages quote the file's text (a value
      // after a stray colon, every scalar after a syntax error, tags and anchor names), which may be
      // a secret, and which a reload failure would write to the log (found by review).
      const pos = e.linePos?.[0]
      const where = pos === undefined ? '' : `${pos.line}:${pos.col}:`
      const problem = YAML_PROBLEMS[e.code] ?? e.code
      const key = e.code === 'DUPLICATE_KEY' ? keyPathAt(doc, e.pos[0]) : undefined
      return key === undefined ? `${source}:${where} ${problem}` : `${source}:${where} ${key}: written twice`
    })
    if (diagnostics.length > MAX_LISTED_ISSUES) lines.push(`${source}: … and ${diagnostics.length - MAX_LISTED_ISSUES} more`)
    throw new EcluseError('config_invalid', lines.join('\n'))
  }
  // A `__proto__` key would become the prototype of its mapping, or vanish, depending on who reads
  // it (the schema dropped it silently under `upstreams` and `keys`): never a name we accept.
  const proto = protoKeyPath(doc)
  if (proto !== undefined) throw new EcluseError('config_invalid', `${source}: ${proto}: "__proto__" is not an accepted key`)
  const long = longSequencePath(doc)
  if (long !== undefined) throw new EcluseError('config_invalid', `${source}: ${long}: more than ${MAX_SEQUENCE_ITEMS} items`)
  try {
    return doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT })
  } catch {
    // Excessive or unresolved aliases end up here (a ReferenceError from yaml, which names the
    // alias: not quoted, nor kept as a cause, whose message the log would write out).
    throw new EcluseError('config_invalid', `${source}: an alias that names no anchor before it, or more than ${MAX_ALIAS_COUNT} aliases`)
  }
}

/**
 * The key path of the last node of `chain` (a visitor's ancestors, then the node), e.g.
 * `routes[0].allow`. Ancestors run from the document down: a Pair contributes its key, a sequence
 * the index of the next node on the way down.
 */
function pathOf(chain: readonly unknown[]): string {
  const segments: PropertyKey[] = []
  chain.forEach((node, i) => {
    if (isPair(node) && isScalar(node.key)) segments.push(String(node.key.value))
    else if (isSeq(node) && i + 1 < chain.length) segments.push(node.items.indexOf(chain[i + 1] as never))
  })
  return formatKeyPath(segments)
}

/** The key path of the first sequence longer than `MAX_SEQUENCE_ITEMS`, if any. */
function longSequencePath(doc: Document): string | undefined {
  let found: string | undefined
  visit(doc, {
    Seq(_key, seq, ancestors) {
      if (seq.items.length <= MAX_SEQUENCE_ITEMS) return undefined
      found = pathOf([...ancestors, seq])
      return visit.BREAK
    },
  })
  return found
}

/** The key path of the first mapping key spelled `__proto__`, if any. */
function protoKeyPath(doc: Document): string | undefined {
  let offset: number | undefined
  visit(doc, {
    Pair(_key, pair) {
      if (!isScalar(pair.key) || pair.key.value !== '__proto__') return undefined
      offset = pair.key.range?.[0]
      return visit.BREAK
    },
  })
  return offset === undefined ? undefined : (keyPathAt(doc, offset) ?? '__proto__')
}

/** The key path of the mapping key that starts at `offset`, e.g. `routes[0].allow`. */
function keyPathAt(doc: Document, offset: number): string | undefined {
  let found: string | undefined
  visit(doc, {
    Pair(_key, pair, ancestors) {
      const key = pair.key
      if (!isScalar(key) || key.range?.[0] !== offset) return undefined
      found = pathOf([...ancestors, pair])
      return visit.BREAK
    },
  })
  return found
}

function configError(source: string, problems: readonly Problem[]): EcluseError {
  const lines = problems.slice(0, MAX_LISTED_ISSUES).map((p) => `${source}: ${formatKeyPath(p.path)}: ${p.message}`)
  if (problems.length > MAX_LISTED_ISSUES) lines.push(`${source}: … and ${problems.length - MAX_LISTED_ISSUES} more`)
  return new EcluseError('config_invalid', lines.join('\n'))
}

/** `['routes', 2, 'upstream']` → `routes[2].upstream`; odd keys are quoted: `upstreams["a b"]`. */
export function formatKeyPath(segments: readonly PropertyKey[]): string {
  let out = ''
  for (const seg of segments) {
    if (typeof seg === 'number') out += `[${seg}]`
    else if (typeof seg === 'string' && /^[A-Za-z_$][\w$-]*$/.test(seg)) out += out === '' ? seg : `.${seg}`
    else out += `[${JSON.stringify(String(seg))}]`
  }
  return out === '' ? '(root)' : out
}

/** Turns one zod issue into readable problems; the input value itself is never echoed. */
function describeIssue(issue: z.core.$ZodIssue, data: unknown): Problem[] {
  const p = issue.path
  switch (issue.code) {
    case 'unrecognized_keys':
      // Name the unknown key itself, not its parent: that is the line the user has to fix.
      return issue.keys.map((key) => ({ path: [...p, key], message: 'unknown key' }))
    case 'invalid_type': {
      const value = valueAt(data, p)
      if (value === undefined) return [{ path: p, message: 'required' }]
      return [{ path: p, message: `expected ${issue.expected}, got ${describeType(value)}` }]
    }
    case 'invalid_value':
      return [{ path: p, message: `must be one of ${issue.values.map((v) => JSON.stringify(v)).join(', ')}` }]
    case 'invalid_key':
      return [{ path: p, message: 'invalid name: must be lower-case letters, digits, "-" or "_", at most 63 characters' }]
    case 'too_small':
      return [{ path: p, message: boundMessage('at least', issue.origin, issue.minimum, issue.inclusive) }]
    case 'too_big':
      return [{ path: p, message: boundMessage('at most', issue.origin, issue.maximum, issue.inclusive) }]
    case 'invalid_format':
      if (issue.format === 'url') return [{ path: p, message: 'must be an https:// URL' }]
      if (issue.format === 'starts_with') {
        return [{ path: p, message: `must start with "${(issue as { prefix?: string }).prefix}"` }]
      }
      return [{ path: p, message: issue.message }]
    default:
      return [{ path: p, message: issue.message }]
  }
}

function boundMessage(
  side: 'at least' | 'at most',
  origin: string,
  bound: number | bigint | Date,
  inclusive: boolean | undefined,
): string {
  const n = Number(bound)
  if (origin === 'string') {
    if (side === 'at least' && n === 1 && inclusive !== false) return 'must not be empty'
    return `must be ${side} ${n} characters long`
  }
  if (origin === 'array' || origin === 'set') return `must have ${side} ${n} item${n === 1 ? '' : 's'}`
  const op = side === 'at least' ? (inclusive === false ? '>' : '>=') : inclusive === false ? '<' : '<='
  return `must be ${op} ${n}`
}

function valueAt(data: unknown, segments: readonly PropertyKey[]): unknown {
  let cur: unknown = data
  for (const seg of segments) {
    if (cur === null || typeof cur !== 'object') return undefined
    cur = (cur as Record<PropertyKey, unknown>)[seg]
  }
  return cur
}

function describeType(value: unknown): string {
  if (value === null) return 'null'
  if (Array.isArray(value)) return 'a list'
  if (typeof value === 'object') return 'a mapping'
  // YAML's .nan and .inf: zod wants a finite number, and "expected number, got number" says nothing.
  if (typeof value === 'number' && !Number.isFinite(value)) return `${value} (not a finite number)`
  return typeof value
}

/** Checks the schema cannot express: each returns problems, never throws. */
function semanticProblems(config: Config): Problem[] {
  const problems: Problem[] = []
  const { sponsor, admin } = config

  // Fail closed (ghostunnel): metrics and health beyond loopback must be asked for explicitly.
  if (!admin.allowNonLoopback && !isLoopbackHost(admin.listen.host)) {
    problems.push({
      path: ['admin', 'listen', 'host'],
      message: `"${admin.listen.host}" is not a loopback address; set admin.allowNonLoopback: true to listen there`,
    })
  }
  if (listenersOverlap(sponsor.listen, admin.listen)) {
    problems.push({
      path: ['admin', 'listen'],
      message: `same address as sponsor.listen (${admin.listen.host}:${admin.listen.port})`,
    })
  }

  const injected: Array<[string, string | undefined]> = [
    ['principalHeader', sponsor.principalHeader],
    ['requestIdHeader', sponsor.requestIdHeader],
  ]
  for (const [key, name] of injected) {
    if (name !== undefined && (UNUSABLE_HEADERS.has(name) || name.startsWith('x-forwarded-'))) {
      problems.push({ path: ['sponsor', key], message: `"${name}" cannot carry a value set by the gateway` })
      continue
    }
    // A field of HTTP's own means something to the upstream or the sponsor beside the gateway's value
    // (`expect` fails every request, `if-match` refuses them, `accept` is dropped on routes with
    // response transforms), and the request id is sent on every response too.
    const dashed = name?.replaceAll('_', '-')
    if (dashed !== undefined && (isStandardRequestField(dashed) || dashed.startsWith('if-') || DEFAULT_RESPONSE_HEADERS.has(dashed) || RESPONSE_MEANINGFUL_HEADERS.has(dashed))) {
      problems.push({ path: ['sponsor', key], message: `"${name}" is a field of HTTP that means something of its own; choose a name of your own, such as x-ecluse-…` })
    }
  }
  if (sponsor.principalHeader !== undefined && sponsor.principalHeader === sponsor.requestIdHeader) {
    problems.push({ path: ['sponsor', 'principalHeader'], message: 'must differ from sponsor.requestIdHeader' })
  }
  return problems
}

type Listen = Config['admin']['listen']

/** True when both listeners would claim the same socket (port 0 asks the kernel: never a clash). */
function listenersOverlap(a: Listen, b: Listen): boolean {
  if (a.port === 0 || a.port !== b.port) return false
  const ha = normalizeHost(a.host)
  const hb = normalizeHost(b.host)
  if (ha === hb) return true
  // A wildcard address takes the port on every interface of its family (and on both with `::`).
  const wildcard = (h: string) => h === '0.0.0.0' || h === '::'
  if (wildcard(ha) || wildcard(hb)) return true
  // `localhost` resolves to a loopback address; count it as the same as any of them.
  return (ha === 'localhost' && isLoopbackHost(hb)) || (hb === 'localhost' && isLoopbackHost(ha))
}

/** Lower-case, without brackets or a trailing dot, IPv6 in its canonical compressed form. */
function normalizeHost(host: string): string {
  let h = host.trim().toLowerCase()
  if (h.startsWith('[') && h.endsWith(']')) h = h.slice(1, -1)
  if (h.endsWith('.')) h = h.slice(0, -1)
  if (isIP(h) === 6 && URL.canParse(`http://[${h}]/`)) {
    // The URL parser canonicalises IPv6 (RFC 5952): `0:0:0:0:0:0:0:1` → `::1`. A zone id
    // (`fe80::1%eth0`) does not parse and is left as written.
    h = new URL(`http://[${h}]/`).hostname.slice(1, -1)
  }
  return h
}

