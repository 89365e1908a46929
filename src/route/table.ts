/**
 * The route table, compiled once at boot (fastify `lib/route.js`, find-my-way): each route's allow
 * list and header allow-lists become `Set`s, its transforms are built, and its path pattern goes
 * into a segment trie per method. The hot path only walks the trie: no regular expression, no
 * closure, no allocation (every possible result object exists before the first request).
 *
 * Patterns: literal segments, `:param` segments (exactly one non-empty segment) and a final `*`
 * (one or more remaining segments). Precedence is decided segment by segment, left to right: a
 * literal beats a param, which beats a wildcard, backtracking when the preferred branch leads
 * nowhere. Two routes whose patterns have the same shape (same literals, params and wildcard in the
 * same places) and share a method could only be told apart by configuration order, so that is a
 * boot error; the same shape on disjoint methods is fine. So are two overlapping routes that an
 * upstream could rank otherwise (`refuseAmbiguousPrecedence`). HEAD is the exception to per-method
 * precedence: it goes where a GET of the same path would (`match`).
 */
import type { Config, PathReading, RouteConfig } from '../config/schema.js'
import { EcluseError } from '../errors.js'
import { DEFAULT_REQUEST_HEADERS, DEFAULT_RESPONSE_HEADERS, headerAdditionRefusal, transformedBodyHeaderRefusal } from '../proxy/headers.js'
import { compileTransformChain } from '../transform/registry.js'
import type { BodyTransform, TransformEnv } from '../transform/types.js'

/** A route as the hot path uses it; every field is resolved at boot. */
export interface CompiledRoute {
  readonly name: string
  /** The configured path pattern, for logs. */
  readonly path: string
  readonly methods: ReadonlySet<string>
  /** Key of `config.upstreams`. */
  readonly upstream: string
  /** The path readings its upstream makes (`pathReadings`), as a mask of `UPSTREAM_READINGS` bits. */
  readonly readings: number
  readonly maxBodyBytes: number
  /** Methods that may carry a request body: POST, PUT, PATCH and the route's `requestBodyOn`. */
  readonly bodyMethods: ReadonlySet<string>
  /** With request transforms: bytes of transformed body held before the upstream is contacted. */
  readonly requestHoldBytes: number
  /** With response transforms: bytes of transformed body held before the status line is sent. */
  readonly responseHoldBytes: number
  /** The body of an upstream answer that is not a success is replaced by the gateway's (`errorBodies: withhold`). */
  readonly withholdErrorBodies: boolean
  /** Principal matchers (`uri:…`, `dns:…`, `cn:…`, `ou:…`); empty allows nobody. */
  readonly allow: ReadonlySet<string>
  /** Request header names forwarded upstream: the default safe set plus the route's additions. */
  readonly requestHeaderAllow: ReadonlySet<string>
  /** Response header names relayed to the sponsor: the default safe set plus the route's additions. */
  readonly responseHeaderAllow: ReadonlySet<string>
  /** Run in this order on the request body. */
  readonly requestTransforms: readonly BodyTransform[]
  /** Already reversed: run in this order on the response body (filters unwind in reverse). */
  readonly responseTransforms: readonly BodyTransform[]
  /**
   * Why a request to a path (normalised) is refused by one of the steps, in either direction
   * (`BodyTransform.refusePath`), or undefined; undefined itself when no step asks.
   */
  readonly pathRefusal: ((path: string) => string | undefined) | undefined
}

/** The outcome of a match: the route, or the stable code to refuse with. */
export type RouteMatch =
  | { readonly route: CompiledRoute }
  | { readonly error: 'route_not_found' | 'method_not_allowed' }

export interface RouteTable {
  /** Every route, in configuration order. */
  readonly routes: readonly CompiledRoute[]
  get(name: string): CompiledRoute | undefined
  /**
   * The route for a method and a path already normalised by `normalizeTarget`. A path that some
   * route matches for other methods gives `method_not_allowed`. HEAD is only routed where listed,
   * and only to the route a GET of the path would take (or one of that shape that lists HEAD):
   * upstreams answer HEAD with their GET handler.
   */
  match(method: string, path: string): RouteMatch
  /**
   * A normalised path as a log line may show it: each segment that is a literal of some route's
   * pattern kept, every other one `*`. A path the routes do not know can carry a record id or a
   * passport number (a mistyped URL, a wrong method on `/v1/records/:id`); a literal comes from the
   * configuration and tells an operator where the path left the routes.
   */
  pathForLog(path: string): string
  /**
   * How the route's upstream may read `path` as another path that this table does not route to
   * `route` (`match` gave `route` for it): the reading and where it goes, or `null`. Upstreams
   * commonly strip `;` path parameters (Tomcat, Jetty, Spring), ignore letter case (Express,
   * ASP.NET Core), ignore a trailing slash (Express, Spring 5) and read a final `.ext` as a format
   * (Rails, Spring before 5.3): `/docs/SECRET`, `/docs/secret/` and `/docs/secret.json` then reach
   * the handler of a literal `/docs/secret` while the gateway routed them, and checked their
   * principal, by a broader `/docs/:name`. Every combination of the readings the route's upstream
   * makes (`upstreams.<name>.pathReadings`) is tried; one is refused when it goes to another route
   * (a HEAD: where a HEAD is routed, even to a GET-only route; a path read ignoring case: among the
   * routes with their literals folded, as the upstream folds its own), or, for a reading that
   * strips `;` parameters, to no route at all or to an empty segment (`/docs/;x` is the unrouted
   * `/docs/` to Tomcat). Letter case, a trailing slash or a suffix read to no route is no concern:
   * the upstream then serves what the operator routed under this very path (`/v1/photos/1.jpg` as
   * `/v1/photos/1`). Where a route to the upstream has a literal with a capital, every path to it is
   * read ignoring case, one in lower case too; a suffix is read from the last dot of the last
   * segment and from its first (Spring's `pattern.*`), the latter not for a route ending in a literal.
   */
  readElsewhere(method: string, path: string, route: CompiledRoute): UpstreamReading | null
}

/** A reading of a path by an upstream that routes it elsewhere (`RouteTable.readElsewhere`). */
export interface UpstreamReading {
  /** What the upstream does to the path, e.g. `without its trailing slash`. */
  readonly reading: string
  /** Where the path read that way goes: `route "secret"`, `no route`, `an empty segment`. */
  readonly goes: string
}

/**
 * Retires a table a reload replaced, once its last request has ended: each transform erases the
 * key material it keeps between messages (`BodyTransform.retire`). The table routes nothing after.
 */
export function retireRouteTable(table: RouteTable): void {
  for (const route of table.routes) {
    for (const step of route.requestTransforms) step.retire?.()
    for (const step of route.responseTransforms) step.retire?.()
  }
}

/**
 * The ways upstream frameworks commonly read a path as another (see `RouteTable.readElsewhere`), in
 * the order they are applied; `name` is the value of `upstreams.<name>.pathReadings`.
 */
const UPSTREAM_READINGS: ReadonlyArray<{ readonly name: PathReading; readonly what: string; applies(path: string): boolean; read(path: string): string }> = [
  // `%3B` too: a proxy between the gateway and a Java upstream (nginx with a URI in `proxy_pass`,
  // Apache's mod_proxy and mod_jk) decodes it into the `;` that Tomcat, Jetty and Spring strip.
  { name: 'parameters', what: 'without its ";" path parameters', applies: (p) => p.includes(';') || p.includes('%3B'), read: (p) => p.replace(/(?:;|%3B)[^/]*/g, '') },
  { name: 'case', what: 'ignoring letter case', applies: (p) => /[A-Z]/.test(p) || FOLDS_TO_ASCII.test(p), read: foldCase },
  { name: 'trailing-slash', what: 'without its trailing slash', applies: (p) => p.length > 1 && p.endsWith('/'), read: (p) => p.slice(0, -1) },
  {
    name: 'suffix',
    what: 'without its final ".ext" suffix',
    // A dot after the last segment's first character: `.well-known` is a name, not a suffix.
    applies: (p) => p.lastIndexOf('.') > p.lastIndexOf('/') + 1,
    read: (p) => p.slice(0, p.lastIndexOf('.')),
  },
  {
    // Spring before 5.3 matches a pattern without a dot as `pattern.*`, where `*` takes dots too:
    // `/docs/secret.x.y` is its `/docs/secret`, which the last-dot reading alone leaves `secret.x`.
    name: 'suffix',
    what: 'without everything from the first "." of its last segment',
    applies: (p) => p.indexOf('.', p.lastIndexOf('/') + 2) !== -1,
    read: (p) => p.slice(0, p.indexOf('.', p.lastIndexOf('/') + 2)),
  },
]
/**
 * The four letters outside ASCII that a case-insensitive match takes for ASCII ones (as the gateway
 * has them: percent-encoded UTF-8, upper-case hex): the Kelvin sign K and the dotted İ, which Java's
 * `Character.toLowerCase` (Spring's case-insensitive `PathPattern`) makes `k` and `i`, and the long
 * ſ and the dotless ı, which `equalsIgnoreCase` takes for `s` and `i`.
 */
const FOLDS_TO_ASCII = /%E2%84%AA|%C4%B0|%C4%B1|%C5%BF/
const EVERY_FOLDED_TO_ASCII = new RegExp(FOLDS_TO_ASCII.source, 'g')
const FOLDED_TO_ASCII: Readonly<Record<string, string>> = { '%E2%84%AA': 'k', '%C4%B0': 'i', '%C4%B1': 'i', '%C5%BF': 's' }

/** A path as an upstream that ignores letter case reads it (`/Files/%E2%84%AAeys` as `/files/keys`). */
function foldCase(p: string): string {
  return p.replace(EVERY_FOLDED_TO_ASCII, (e) => FOLDED_TO_ASCII[e]!).toLowerCase()
}

/** The bit of the `;` reading in a readings mask: a reading with it must keep the same route. */
const PARAMETERS_BIT = 1
/** The index of the letter-case reading in `UPSTREAM_READINGS`. */
const CASE_INDEX = 1
/** The bit of the letter-case reading: a path read so is matched as the upstream matches it, against case-folded literals. */
const CASE_BIT = 1 << CASE_INDEX
/** The bit of the first-dot suffix reading (Spring before 5.3: see `springPrefers`). */
const FIRST_DOT_BIT = 1 << 4

/**
 * Whether Spring before 5.3, which matches a pattern without a dot as `pattern.*`, runs the handler
 * of `route` rather than that of `other` (as `other.*`) for a path both match. Its
 * `AntPatternComparator` takes the pattern with fewer variables and wildcards (it counts none in a
 * final `.*`), then the longer one (a variable counted as one character): `/api/{org}/export.v2.csv`
 * beats `/api/{org}/export.*`, but `/api/internal/export.*` beats it. A wildcard on either side, or
 * a tie, is judged a concern.
 */
function springPrefers(route: readonly Segment[], other: readonly Segment[]): boolean {
  if (route.some((s) => s.kind === 'wildcard') || other.some((s) => s.kind === 'wildcard')) return false
  const variables = (p: readonly Segment[]) => p.filter((s) => s.kind === 'param').length
  const length = (p: readonly Segment[]) => p.reduce((n, s) => n + 1 + (s.kind === 'literal' ? s.text.length : 1), 0)
  if (variables(route) !== variables(other)) return variables(route) < variables(other)
  return length(route) > length(other) + '.*'.length
}

/** The readings of a mask as a log line says them: `ignoring letter case, without its trailing slash`. */
function describeReadings(mask: number): string {
  return UPSTREAM_READINGS.filter((_, i) => (mask & (1 << i)) !== 0)
    .map((r) => r.what)
    .join(', ')
}

/** The readings mask of a `pathReadings` list (a name may stand for more than one reading). */
function readingsMask(readings: readonly PathReading[]): number {
  let mask = 0
  UPSTREAM_READINGS.forEach((r, i) => {
    if (readings.includes(r.name)) mask |= 1 << i
  })
  return mask
}

const ROUTE_NOT_FOUND: RouteMatch = Object.freeze({ error: 'route_not_found' as const })
const METHOD_NOT_ALLOWED: RouteMatch = Object.freeze({ error: 'method_not_allowed' as const })

type Segment = { readonly kind: 'literal'; readonly text: string } | { readonly kind: 'param' } | { readonly kind: 'wildcard' }

const PARAM_NAME = /^:[A-Za-z_][A-Za-z0-9_]*$/

/** Segments `pathForLog` shows before it only counts the rest: a log line stays short. */
const LOGGED_SEGMENTS = 12

/**
 * Above this many literal children a node looks its segment up in a Map (one short slice per
 * lookup); at or below, a length check plus `startsWith` compares the segment in place, which is
 * faster for the few children most nodes have. Decided once, at boot.
 */
const LITERAL_MAP_THRESHOLD = 8

/** One trie node; literal children as parallel arrays, plus a Map when there are many. */
class TrieNode<T> {
  readonly literalTexts: string[] = []
  readonly literalNodes: TrieNode<T>[] = []
  literalMap: Map<string, TrieNode<T>> | null = null
  param: TrieNode<T> | null = null
  /** Value for a `*` ending at this node. */
  wildcard: T | null = null
  /** Value for a pattern ending exactly at this node. */
  terminal: T | null = null

  literalChild(text: string): TrieNode<T> {
    const at = this.literalTexts.indexOf(text)
    if (at !== -1) return this.literalNodes[at]!
    const node = new TrieNode<T>()
    this.literalTexts.push(text)
    this.literalNodes.push(node)
    return node
  }

  /** Builds the lookup maps of this subtree, once every route is inserted. */
  seal(): void {
    if (this.literalTexts.length > LITERAL_MAP_THRESHOLD) {
      this.literalMap = new Map(this.literalTexts.map((text, i) => [text, this.literalNodes[i]!]))
    }
    for (const child of this.literalNodes) child.seal()
    this.param?.seal()
  }
}

function literalChildOf<T>(node: TrieNode<T>, path: string, start: number, length: number): TrieNode<T> | undefined {
  if (node.literalMap !== null) return node.literalMap.get(path.slice(start, start + length))
  const texts = node.literalTexts
  for (let i = 0; i < texts.length; i++) {
    const text = texts[i]!
    if (text.length === length && path.startsWith(text, start)) return node.literalNodes[i]
  }
  return undefined
}

/** Walks the trie from the segment starting at `start`; literal, then param, then wildcard. */
function find<T>(node: TrieNode<T>, path: string, start: number): T | null {
  const slash = path.indexOf('/', start)
  const end = slash === -1 ? path.length : slash
  const length = end - start

  const child = literalChildOf(node, path, start, length)
  if (child !== undefined) {
    const found = slash === -1 ? child.terminal : find(child, path, slash + 1)
    if (found !== null) return found
  }
  if (length === 0) return null // a param or a wildcard never matches an empty segment
  if (node.param !== null) {
    const found = slash === -1 ? node.param.terminal : find(node.param, path, slash + 1)
    if (found !== null) return found
  }
  return node.wildcard
}

/**
 * Inserts `value` for `segments`; returns the value already there, if any, unless `replaces(it)`
 * says the new value takes its place.
 */
function insert<T>(root: TrieNode<T>, segments: readonly Segment[], value: T, replaces?: (existing: T) => boolean): T | null {
  let node = root
  for (let i = 0; i < segments.length; i++) {
    const segment = segments[i]!
    if (segment.kind === 'wildcard') {
      if (node.wildcard !== null && replaces?.(node.wildcard) !== true) return node.wildcard
      node.wildcard = value
      return null
    }
    if (segment.kind === 'literal') {
      node = node.literalChild(segment.text)
    } else {
      node.param ??= new TrieNode<T>()
      node = node.param
    }
  }
  if (node.terminal !== null && replaces?.(node.terminal) !== true) return node.terminal
  node.terminal = value
  return null
}

/** Parses a route's path pattern, or throws `config_invalid` with the key path. */
function parsePattern(pattern: string, keyPath: string): Segment[] {
  const fail = (why: string): never => {
    throw new EcluseError('config_invalid', `${keyPath}: ${why} in "${pattern}"`)
  }
  if (!pattern.startsWith('/')) fail('a path pattern must start with "/"')
  const parts = pattern.slice(1).split('/')
  const params = new Set<string>()
  const segments: Segment[] = []
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i]!
    const last = i === parts.length - 1
    if (part === '*') {
      if (!last) fail('"*" is only allowed as the final segment')
      segments.push({ kind: 'wildcard' })
    } else if (part.includes('*')) {
      fail('"*" must be a whole segment')
    } else if (part.startsWith(':')) {
      if (!PARAM_NAME.test(part)) fail(`invalid parameter "${part}"`)
      if (params.has(part)) fail(`parameter "${part}" appears twice`)
      params.add(part)
      segments.push({ kind: 'param' })
    } else if (part === '') {
      // Only "/" itself or a trailing slash: the normaliser refuses empty segments anywhere else.
      if (!last) fail('empty segment')
      segments.push({ kind: 'literal', text: '' })
    } else if (part === '.' || part === '..') {
      fail('dot segment (such a path is refused before routing)')
    } else {
      segments.push({ kind: 'literal', text: part })
    }
  }
  return segments
}

/** A human-readable shape for errors: `/v1/items/:/*` style, param names dropped. */
function shapeOf(segments: readonly Segment[]): string {
  return `/${segments.map((s) => (s.kind === 'literal' ? s.text : s.kind === 'param' ? ':param' : '*')).join('/')}`
}

function headerAllow(
  defaults: ReadonlySet<string>,
  additions: readonly string[],
  direction: 'request' | 'response',
  sponsor: Config['sponsor'],
  keyPath: string,
): ReadonlySet<string> {
  const allow = new Set(defaults)
  additions.forEach((name, i) => {
    const lower = name.toLowerCase()
    const refusal = headerAdditionRefusal(direction, lower, sponsor)
    if (refusal !== null) throw new EcluseError('config_invalid', `${keyPath}[${i}]: ${refusal}`)
    allow.add(lower)
  })
  return allow
}

function compileRoute(route: RouteConfig, index: number, config: Config, env: TransformEnv): CompiledRoute {
  const key = `routes[${index}]`
  if (!Object.hasOwn(config.upstreams, route.upstream)) {
    throw new EcluseError('config_invalid', `${key}.upstream: unknown upstream "${route.upstream}"`)
  }
  if (route.allow.length === 0) env.log.warn({ route: route.name }, 'route allows no principal: every request to it is refused')
  const routeEnv: TransformEnv = { ...env, routePath: route.path }
  const requestTransforms = compileTransformChain(route.transforms.request, routeEnv, `${key}.transforms.request`, 'request')
  const responseTransforms = compileTransformChain(route.transforms.response, routeEnv, `${key}.transforms.response`, 'response')
  // The fields that describe a body before its transforms do not cross beside the transformed one.
  for (const [direction, steps, names] of [
    ['request', requestTransforms, route.requestHeaders],
    ['response', responseTransforms, route.responseHeaders],
  ] as const) {
    if (steps.length === 0) continue
    const sealsBody = steps.some((step) => step.type === 'seal-body')
    names.forEach((name, i) => {
      const refusal = transformedBodyHeaderRefusal(direction, name.toLowerCase(), sealsBody)
      if (refusal !== null) throw new EcluseError('config_invalid', `${key}.${direction}Headers[${i}]: ${refusal}, and this route's ${direction}s go through transforms`)
    })
  }
  const pathChecks = [...requestTransforms, ...responseTransforms].filter((step) => step.refusePath !== undefined)
  const pathRefusal = (path: string): string | undefined => {
    for (const step of pathChecks) {
      const why = step.refusePath!(path)
      if (why !== undefined) return `${step.type}: ${why}`
    }
    return undefined
  }
  return Object.freeze({
    name: route.name,
    path: route.path,
    methods: new Set(route.methods),
    upstream: route.upstream,
    readings: readingsMask(config.upstreams[route.upstream]!.pathReadings),
    maxBodyBytes: route.maxBodyBytes,
    bodyMethods: new Set(['POST', 'PUT', 'PATCH', ...route.requestBodyOn]),
    requestHoldBytes: route.requestHoldBytes,
    responseHoldBytes: route.responseHoldBytes,
    withholdErrorBodies: route.errorBodies === 'withhold',
    allow: new Set(route.allow),
    requestHeaderAllow: headerAllow(DEFAULT_REQUEST_HEADERS, route.requestHeaders, 'request', config.sponsor, `${key}.requestHeaders`),
    responseHeaderAllow: headerAllow(DEFAULT_RESPONSE_HEADERS, route.responseHeaders, 'response', config.sponsor, `${key}.responseHeaders`),
    requestTransforms: Object.freeze([...requestTransforms]),
    // Envoy's filter-chain order: the last request filter is the first to see the response.
    responseTransforms: Object.freeze([...responseTransforms].reverse()),
    pathRefusal: pathChecks.length === 0 ? undefined : pathRefusal,
  })
}

type Found = { readonly route: CompiledRoute; readonly head: boolean }

/** The tries a method is matched in: one per method, and HEAD's (see `match`). */
type MethodTries = { readonly byMethod: ReadonlyMap<string, TrieNode<Found>>; readonly getOrHead: TrieNode<Found> }

class CompiledRouteTable implements RouteTable {
  readonly routes: readonly CompiledRoute[]
  readonly #byName: ReadonlyMap<string, CompiledRoute>
  /** One trie per method, so a route for another method never shadows a match (no implicit HEAD). */
  readonly #byMethod: ReadonlyMap<string, TrieNode<Found>>
  /**
   * The routes that list GET or HEAD, where a route that lists HEAD takes the place of one of the
   * same shape that does not: a HEAD is routed as a GET of the same path would be (see `match`).
   */
  readonly #getOrHead: TrieNode<Found>
  /** Every route regardless of method: tells 405 from 404. */
  readonly #anyMethod: TrieNode<Found>
  /**
   * The same routes with their literals lower-cased: how an upstream that ignores letter case
   * matches (it folds its own routes as it folds the path), for `readElsewhere`.
   */
  readonly #folded: MethodTries
  /** Every literal segment of every pattern: what `pathForLog` may show. */
  readonly #literals: ReadonlySet<string>
  /**
   * The upstream services (see `upstreamService`) some of whose routes have a literal with an
   * upper-case letter: such a service, if it ignores case, reads a path in lower case differently
   * too (`/docs/secret` is its `/docs/Secret`), so the case reading applies to every path of its
   * routes, not only to one with an upper-case letter. (Another service's routes say nothing of this
   * one's handlers; two upstream entries for one service do, whichever entry names the route.)
   */
  readonly #upperCaseServices: ReadonlySet<string>
  /** The service of each route's upstream. */
  readonly #serviceOf: ReadonlyMap<CompiledRoute, string>
  /** The pattern of each route, for `springPrefers`. */
  readonly #patternOf: ReadonlyMap<CompiledRoute, readonly Segment[]>

  constructor(
    routes: readonly CompiledRoute[],
    tries: MethodTries & { anyMethod: TrieNode<Found>; folded: MethodTries },
    literals: ReadonlySet<string>,
    patterns: readonly (readonly Segment[])[],
    services: readonly string[],
  ) {
    this.routes = Object.freeze([...routes])
    this.#byName = new Map(routes.map((r) => [r.name, r]))
    this.#byMethod = tries.byMethod
    this.#getOrHead = tries.getOrHead
    this.#anyMethod = tries.anyMethod
    this.#folded = tries.folded
    this.#literals = literals
    const capitals = (segments: readonly Segment[]) => segments.some((s) => s.kind === 'literal' && /[A-Z]/.test(s.text))
    this.#upperCaseServices = new Set(services.filter((_, i) => capitals(patterns[i]!)))
    this.#serviceOf = new Map(routes.map((r, i) => [r, services[i]!]))
    this.#patternOf = new Map(routes.map((r, i) => [r, patterns[i]!]))
  }

  /** Whether reading `i` of `UPSTREAM_READINGS` reads `path`, a path of `route`, as something else to look up. */
  #applies(i: number, path: string, route: CompiledRoute): boolean {
    return UPSTREAM_READINGS[i]!.applies(path) || (i === CASE_INDEX && this.#upperCaseServices.has(this.#serviceOf.get(route)!))
  }

  pathForLog(path: string): string {
    const segments = path.split('/').slice(1)
    const shown = segments.slice(0, LOGGED_SEGMENTS).map((s) => (s === '' || this.#literals.has(s) ? s : '*'))
    const more = segments.length - shown.length
    return `/${shown.join('/')}${more > 0 ? `/… (${more} more segments)` : ''}`
  }

  get(name: string): CompiledRoute | undefined {
    return this.#byName.get(name)
  }

  readElsewhere(method: string, path: string, route: CompiledRoute): UpstreamReading | null {
    const readings = route.readings
    // None applies to the path as sent: none can apply after another either (the common case).
    let applicable = false
    for (let i = 0; i < UPSTREAM_READINGS.length; i++) {
      if ((readings & (1 << i)) !== 0 && this.#applies(i, path, route)) applicable = true
    }
    if (!applicable) return null
    // Every combination, each reading applied in order where it applies at that point (dropping a
    // trailing slash can reveal a suffix): pairs too, which an upstream that folds case and slashes
    // but reads no suffix makes (`/x/SECRET.V2/` is its `/x/secret.v2`). A combination's path is
    // the path of the combination without its last reading, read by that one: each reading runs
    // once per combination, whatever the path's length ('' where one does not apply).
    const reads: string[] = [path]
    const tried = new Set<string>()
    for (let combination = 1; combination < 1 << UPSTREAM_READINGS.length; combination++) {
      reads.push('')
      if ((combination & readings) !== combination) continue
      const last = 31 - Math.clz32(combination)
      const before = reads[combination ^ (1 << last)]!
      if (before === '' || !this.#applies(last, before, route)) continue
      const read = UPSTREAM_READINGS[last]!.read(before)
      reads[combination] = read
      const folded = (combination & CASE_BIT) !== 0
      // The same string is another lookup folded (`/docs/secret` unchanged by folding still meets
      // the folded literal `secret` of `/docs/Secret`).
      const key = folded ? `F${read}` : `U${read}`
      if (tried.has(key)) continue
      tried.add(key)
      const parameters = (combination & PARAMETERS_BIT) !== 0
      // Tomcat merges the empty segment that stripping `;x` leaves (`/docs/secret/;a/`), which a
      // wildcard route here would take as well as the literal: no route can say where it goes.
      if (parameters && read.includes('//')) return { reading: describeReadings(combination), goes: 'an empty segment' }
      const goes = this.#goesElsewhere(method, read, route, parameters, folded, (combination & FIRST_DOT_BIT) !== 0)
      if (goes !== null) return { reading: describeReadings(combination), goes }
    }
    return null
  }

  /**
   * Where `path` goes if not to `route`, as `readElsewhere` judges it; `null` when that is no concern.
   * A HEAD goes where `match` sends it (the GET-shaped routes, one that lists HEAD first), whether or
   * not that route lists HEAD: the upstream answers a HEAD with a handler there all the same.
   */
  #goesElsewhere(method: string, path: string, route: CompiledRoute, parameters: boolean, folded: boolean, firstDot: boolean): string | null {
    const tries: MethodTries = folded ? this.#folded : { byMethod: this.#byMethod, getOrHead: this.#getOrHead }
    const trie = method === 'HEAD' ? tries.getOrHead : tries.byMethod.get(method)
    const found = trie === undefined ? null : find(trie, path, 1)
    if (found !== null) {
      if (found.route === route) return null
      // The one upstream that reads the first-dot suffix ranks the two patterns itself.
      if (firstDot && springPrefers(this.#patternOf.get(route)!, this.#patternOf.get(found.route)!)) return null
      return `route "${found.route.name}"`
    }
    return parameters ? 'no route' : null
  }

  match(method: string, path: string): RouteMatch {
    if (path.charCodeAt(0) !== 0x2f) return ROUTE_NOT_FOUND
    if (method === 'HEAD') {
      // Upstreams answer HEAD with their GET handler (Express, Spring, Go, ASP.NET): a HEAD taken by
      // the HEAD routes alone would reach a broader route than its GET (a literal `GET /docs/secret`
      // beside `GET, HEAD /docs/:name`) and run the literal's handler under the other's ACL. So it
      // goes where its GET would, and only if that route lists HEAD.
      const found = find(this.#getOrHead, path, 1)
      if (found !== null) return found.head ? found : METHOD_NOT_ALLOWED
    } else {
      const trie = this.#byMethod.get(method)
      if (trie !== undefined) {
        const found = find(trie, path, 1)
        if (found !== null) return found
      }
    }
    return find(this.#anyMethod, path, 1) === null ? ROUTE_NOT_FOUND : METHOD_NOT_ALLOWED
  }
}

/**
 * Compiles the configured routes once, at boot. Throws `EcluseError('config_invalid')` naming the
 * key (and, for an ambiguity, both routes) on an invalid pattern, a reserved header addition, an
 * unknown upstream, or a transform the registry refuses.
 *
 * @example
 * const table = compileRouteTable(config, { log })
 * const m = table.match('GET', normalizeTarget(req.url).path)
 * if ('error' in m) refuse(m.error)
 */
export function compileRouteTable(config: Config, env: TransformEnv): RouteTable {
  const compiled: CompiledRoute[] = []
  const byMethod = new Map<string, TrieNode<Found>>()
  const getOrHead = new TrieNode<Found>()
  const anyMethod = new TrieNode<Found>()
  const folded = { byMethod: new Map<string, TrieNode<Found>>(), getOrHead: new TrieNode<Found>() }
  const literals = new Set<string>()
  const patterns: Segment[][] = []
  config.routes.forEach((routeConfig, index) => {
    const segments = parsePattern(routeConfig.path, `routes[${index}].path`)
    patterns.push(segments)
    for (const segment of segments) if (segment.kind === 'literal') literals.add(segment.text)
    const route = compileRoute(routeConfig, index, config, env)
    // The one object match() returns for this route: built here, never per request.
    const found: Found = Object.freeze({ route, head: route.methods.has('HEAD') })
    for (const method of route.methods) {
      let trie = byMethod.get(method)
      if (trie === undefined) {
        trie = new TrieNode<Found>()
        byMethod.set(method, trie)
      }
      const clash = insert(trie, segments, found)
      if (clash !== null) {
        throw new EcluseError(
          'config_invalid',
          `routes[${index}].path: routes "${clash.route.name}" and "${route.name}" both match ${method} ${shapeOf(segments)} (same pattern shape and method)`,
        )
      }
    }
    // Two routes of one shape that both list HEAD clashed above; of a GET-only one and a HEAD one,
    // the HEAD one answers HEAD.
    if (found.head || route.methods.has('GET')) insert(getOrHead, segments, found, (existing) => found.head && !existing.head)
    insert(anyMethod, segments, found)
    insertFolded(folded, segments, found, index)
    compiled.push(route)
  })
  for (const trie of [...byMethod.values(), ...folded.byMethod.values()]) trie.seal()
  getOrHead.seal()
  anyMethod.seal()
  folded.getOrHead.seal()
  refuseAmbiguousPrecedence(config, patterns)
  const services = config.routes.map((r) => upstreamService(config, r.upstream))
  const table = new CompiledRouteTable(compiled, { byMethod, getOrHead, anyMethod, folded }, literals, patterns, services)
  refuseUnreachableRoutes(table, config, patterns)
  return table
}

/** How specific a segment is: the order in which `find` tries them. */
const SPECIFICITY = { literal: 2, param: 1, wildcard: 0 } as const

/** Whether some path matches both patterns (a final `*` takes one or more non-empty segments). */
function patternsOverlap(a: readonly Segment[], b: readonly Segment[]): boolean {
  const empty = (s: Segment) => s.kind === 'literal' && s.text === ''
  for (let i = 0; ; i++) {
    const x = a[i]
    const y = b[i]
    if (x === undefined || y === undefined) return x === y
    if (x.kind === 'wildcard') return !empty(y)
    if (y.kind === 'wildcard') return !empty(x)
    if (x.kind === 'literal' && y.kind === 'literal' ? x.text !== y.text : empty(x) || empty(y)) return false
  }
}

/** Whether `a` is at least as specific as `b` at every segment (past a final `*`, the `*`'s). */
function atLeastAsSpecific(a: readonly Segment[], b: readonly Segment[]): boolean {
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    if (SPECIFICITY[(a[i] ?? a.at(-1)!).kind] < SPECIFICITY[(b[i] ?? b.at(-1)!).kind]) return false
  }
  return true
}

/** JSON with object members in sorted order: two spellings of one configuration compare equal. */
function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value).filter(([, v]) => v !== undefined)
    return `{${entries.sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0)).map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`
  }
  return JSON.stringify(value)
}

/**
 * What a route enforces, for `refuseAmbiguousPrecedence`: everything but its name, path and methods,
 * its lists as sets. Its name and path count too when a step binds them into what it seals or opens:
 * no `context` (the route name is bound), or a context that names a path parameter (read from the
 * route's own pattern). Only `strip` binds nothing.
 */
function policyOf(r: RouteConfig): string {
  const steps = [...r.transforms.request, ...r.transforms.response] as ReadonlyArray<Readonly<Record<string, unknown>>>
  const contexts = (step: Readonly<Record<string, unknown>>) => [step['context'], ...(Array.isArray(step['alsoAccept']) ? step['alsoAccept'] : [])]
  const binds = steps.some((step) => step['type'] !== 'strip' && contexts(step).some((c) => typeof c !== 'string' || c.includes('{')))
  const sorted = (list: readonly string[]) => [...new Set(list.map((v) => v.toLowerCase()))].sort()
  return canonicalJson({
    ...r,
    name: binds ? r.name : undefined,
    path: binds ? r.path : undefined,
    methods: undefined,
    allow: [...new Set(r.allow)].sort(),
    requestHeaders: sorted(r.requestHeaders),
    responseHeaders: sorted(r.responseHeaders),
  })
}

/** The service an upstream entry reaches: two entries with one origin and server name are one. */
function upstreamService(config: Config, upstream: string): string {
  const u = config.upstreams[upstream]!
  return `${new URL(u.url).origin} ${u.serverName}`
}

/**
 * Two routes to one upstream service, on a shared method, whose patterns match a common path while
 * neither is at least as specific as the other at every segment (`/v1/records/export/*` and
 * `/v1/records/:id/photo`, both matching `/v1/records/export/photo`): this gateway takes the first
 * literal from the left, Spring the pattern with the fewest parameters and a final `*` last. The
 * upstream may then run one route's handler for a request the gateway admitted under the other's
 * allow list and transforms, so that is a boot error, unless the two routes enforce the same
 * (`policyOf`). HEAD counts as GET, which upstreams answer it with. Two upstream entries with one
 * origin and server name are one service; a `jwks` route is answered by the gateway itself. (An
 * upstream that takes the first route registered, Express, is beyond what this can judge.)
 */
function refuseAmbiguousPrecedence(config: Config, patterns: readonly (readonly Segment[])[]): void {
  // Once per route, not per pair.
  const methods = config.routes.map((r) => new Set(r.methods.map((m) => (m === 'HEAD' ? 'GET' : m))))
  const services = config.routes.map((r) => upstreamService(config, r.upstream))
  config.routes.forEach((b, j) => {
    if (b.jwks !== undefined) return
    for (let i = 0; i < j; i++) {
      const a = config.routes[i]!
      if (a.jwks !== undefined || services[i] !== services[j]) continue
      const shared = [...methods[i]!].filter((m) => methods[j]!.has(m))
      if (shared.length === 0) continue
      const pa = patterns[i]!
      const pb = patterns[j]!
      if (!patternsOverlap(pa, pb) || atLeastAsSpecific(pa, pb) || atLeastAsSpecific(pb, pa)) continue
      if (policyOf(a) === policyOf(b)) continue
      const sample = Array.from({ length: Math.max(pa.length, pb.length) }, (_, k) => {
        const literal = [pa[k], pb[k]].find((s) => s?.kind === 'literal')
        return literal?.kind === 'literal' ? literal.text : 'x'
      })
      throw new EcluseError(
        'config_invalid',
        `routes[${j}].path: routes "${a.name}" (${a.path}) and "${b.name}" (${b.path}) both match ${shared[0]} /${sample.join('/')}, and neither is at least as specific as the other at every segment: upstreams rank such routes differently from this gateway (literal first, from the left), so upstream "${b.upstream}" could run one's handler for a request admitted under the other's allow list and transforms; make one more specific at every segment, or give both the same policy (and contexts that bind neither route's name nor its path)`,
      )
    }
  })
}

/**
 * Adds a route to the case-folded tries. Two routes that fold to one shape on a shared method are
 * one resource to an upstream that ignores letter case (`/v1/Records` and `/v1/records`): a boot
 * error when either route's upstream reads case; otherwise the first stays.
 */
function insertFolded(folded: { byMethod: Map<string, TrieNode<Found>>; getOrHead: TrieNode<Found> }, segments: readonly Segment[], found: Found, index: number): void {
  const lower = segments.map((s) => (s.kind === 'literal' ? { kind: 'literal' as const, text: s.text.toLowerCase() } : s))
  const route = found.route
  for (const method of route.methods) {
    let trie = folded.byMethod.get(method)
    if (trie === undefined) {
      trie = new TrieNode<Found>()
      folded.byMethod.set(method, trie)
    }
    const clash = insert(trie, lower, found)
    if (clash !== null && ((clash.route.readings | route.readings) & CASE_BIT) !== 0) {
      throw new EcluseError(
        'config_invalid',
        `routes[${index}].path: routes "${clash.route.name}" and "${route.name}" both match ${method} ${shapeOf(lower)} to an upstream that ignores letter case (its pathReadings)`,
      )
    }
  }
  if (found.head || route.methods.has('GET')) insert(folded.getOrHead, lower, found, (existing) => found.head && !existing.head)
}

/**
 * A route whose own paths an upstream may read as another route's (`readElsewhere`) would refuse
 * every request it gets: say so at boot, naming both. Checked on a path of the pattern's shape (each
 * param a plain lower-case segment, a wildcard two), for each of its methods the table routes that
 * path to it on.
 */
function refuseUnreachableRoutes(table: RouteTable, config: Config, patterns: readonly (readonly Segment[])[]): void {
  // A sample segment for params and wildcards that no literal spells, in any case, with no dot.
  const spelt = new Set(config.routes.flatMap((r) => r.path.toLowerCase().split('/')))
  let plain = 'x'
  while (spelt.has(plain)) plain += 'x'
  config.routes.forEach((routeConfig, index) => {
    const route = table.routes[index]!
    // A wildcard as two segments: `/files/x` is `/files/:name`'s beside `/files/*`, not its own.
    const sample = patterns[index]!
      .map((segment) => (segment.kind === 'literal' ? segment.text : segment.kind === 'param' ? plain : `${plain}/${plain}`))
      .join('/')
    for (const method of route.methods) {
      // Only a path the route is given is read by its upstream (another route's sample is judged there).
      const matched = table.match(method, `/${sample}`)
      if (!('route' in matched) || matched.route !== route) continue
      const elsewhere = table.readElsewhere(method, `/${sample}`, route)
      if (elsewhere !== null) {
        throw new EcluseError(
          'config_invalid',
          `routes[${index}].path: "${routeConfig.path}" read ${elsewhere.reading}, as upstream "${route.upstream}" may read paths (its pathReadings), goes to ${elsewhere.goes}: every ${method} to "${route.name}" would be refused (path_rejected); name its literal segments so that no such reading reaches another route, or list only the readings that upstream makes`,
        )
      }
    }
  })
}
