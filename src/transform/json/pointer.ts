/**
 * JSON Pointer patterns (RFC 6901 with wildcard segments) compiled once at boot into a
 * deterministic matcher, so the rewriter's hot path does one `Map` lookup per member or element.
 *
 * A pattern is an RFC 6901 pointer (`/records/0/passport`, `~0` for `~`, `~1` for `/`) in which a
 * segment that is exactly `*` matches any member name and any array index, and a segment that is
 * exactly `**` matches any number of them, none included (`/**\/passport`: a `passport` member at
 * any depth). A literal segment that is a canonical array index (`0`, `17`, never `01` or `-`)
 * matches that array index as well as the member of that name (RFC 6901 §4: a reference token
 * applies to whichever container it meets).
 *
 * The patterns are compiled into a trie and then, by subset construction, into a DFA whose states
 * already know every pattern they may be in: a wildcard and a literal that both match are merged at
 * boot, never searched at run time.
 */
import { EcluseError } from '../../errors.js'

/** A location in a JSON document: member names and array indices, outermost first. */
export type JsonPointer = readonly (string | number)[]

/** The wildcard segment of a pattern (`*`): one member name or array index. */
export const ANY_SEGMENT: unique symbol = Symbol('json-pointer-any')

/** The deep wildcard segment of a pattern (`**`): any number of member names and array indices. */
export const DEEP_SEGMENT: unique symbol = Symbol('json-pointer-deep')

/** One parsed pattern segment: a member name / index token, or a wildcard. */
export type PatternSegment = string | typeof ANY_SEGMENT | typeof DEEP_SEGMENT

/** A target pattern and the data the action receives when it matches (an action name, key id…). */
export interface JsonTargetSpec<R> {
  readonly pattern: string
  readonly rule: R
}

/**
 * Record binding: every container value at `pattern` is a record; it is buffered whole (bounded)
 * and the string or safe-integer member `idMember` directly inside it is handed to the actions of
 * every targeted value inside the same record. In NDJSON, `''` makes every line a record.
 */
export interface JsonRecordSpec {
  readonly pattern: string
  readonly idMember: string
}

export interface JsonRulesSpec<R> {
  readonly targets: readonly JsonTargetSpec<R>[]
  readonly record?: JsonRecordSpec
}

/** One compiled target pattern. */
export interface CompiledTarget<R> {
  readonly pattern: string
  readonly segments: readonly PatternSegment[]
  readonly rule: R
}

/**
 * A DFA state: where a value sits relative to every pattern at once. `null` stands for the dead
 * state (no pattern can match at or below this location), which the rewriter treats as plain
 * validation and pass-through.
 */
export class MatchState<R> {
  /** Transitions on explicit member names (wildcard transitions already merged in). */
  names: Map<string, MatchState<R>> | null = null
  /** Transition for any other member name or array index (the wildcard), or dead. */
  other: MatchState<R> | null = null
  /**
   * The names of `names` by their case fold (`foldName`): a member spelled like one of them but for
   * case is refused by the rewriter, since consumers that match names without case (Go's
   * encoding/json, .NET, Jackson so configured) would read it as that member.
   */
  folded: Map<string, string> | null = null
  /** Some key in `names` is a canonical array index: arrays must look their index up. */
  indexNames = false
  /** The value here is targeted by this pattern. */
  target: CompiledTarget<R> | null = null
  /** A container value here is a record. */
  isRecord = false
  /** Some direct child may be a target: members must be held until the action is known (removal). */
  holdsTargets = false

  /** The state of the member `name` of an object in this state. */
  member(name: string): MatchState<R> | null {
    if (this.names !== null) {
      const s = this.names.get(name)
      if (s !== undefined) return s
    }
    return this.other
  }

  /** The state of element `index` of an array in this state. */
  element(index: number): MatchState<R> | null {
    if (this.indexNames) {
      const s = this.names!.get(String(index))
      if (s !== undefined) return s
    }
    return this.other
  }
}

const DOTTED_I = /i\u0307/g
const CAPITAL_SHARP_S = /\u1e9e/g

/**
 * A member name as case-insensitive consumers compare it: upper-cased then lower-cased, so that the
 * letters that fold onto ASCII ones do too (`ſ` → s, the Kelvin sign → k, dotless `ı` → i), and
 * the dotted capital `İ` as i: the root locale lower-cases it to i + U+0307, a Turkish one to i.
 * The capital `ẞ` is made `ß` first: `ß` upper-cases to SS but `ẞ` to itself, so the round trip
 * alone gave `straße` for `straẞe` and `strasse` for `straße`, which Go and Jackson take as one
 * name (a review found that split). Composed first (NFC): consumers that compare strings up to
 * canonical equivalence (Swift's `String`, and any that normalise their input) read `pre\u0301nom`
 * as `prénom`.
 */
export function foldName(name: string): string {
  return name.normalize('NFC').replace(CAPITAL_SHARP_S, '\u00df').toUpperCase().toLowerCase().normalize('NFC').replace(DOTTED_I, 'i')
}

/** A rule set compiled at boot; share it between every stream of a route. */
export interface CompiledRules<R = unknown> {
  /** The state of a top-level value, or `null` when nothing can ever match. */
  readonly root: MatchState<R> | null
  readonly targets: readonly CompiledTarget<R>[]
  readonly record: JsonRecordSpec | null
}

const INDEX_TOKEN = /^(0|[1-9][0-9]{0,15})$/

/**
 * Most matcher states one rule set may compile to. Plain patterns need about one per segment; a
 * `**` followed by `*` segments can double them per `*`, and several such patterns multiply each
 * other's (a location can be part-way through any subset of them). A configuration must not be
 * able to stall the boot or a reload.
 */
export const MAX_MATCH_STATES = 10_000

function invalid(detail: string): EcluseError {
  return new EcluseError('config_invalid', detail)
}

/**
 * Parses one pattern. `''` is the whole document; otherwise every segment starts with `/`. A `**`
 * must be followed by a segment other than `**`: `/a/**` would target every value below `/a`, and
 * `/**\/**` says nothing `/**` does not.
 *
 * @example
 * parsePattern('/records/*\/pass~1port') // ['records', ANY_SEGMENT, 'pass/port']
 * parsePattern('/**\/passport')          // [DEEP_SEGMENT, 'passport']
 */
export function parsePattern(pattern: string): PatternSegment[] {
  if (typeof pattern !== 'string') throw invalid('a JSON pointer pattern must be a string')
  if (pattern === '') return []
  if (pattern.charCodeAt(0) !== 0x2f) throw invalid(`JSON pointer pattern "${pattern}" must start with "/"`)
  const out: PatternSegment[] = []
  for (const raw of pattern.slice(1).split('/')) {
    if (raw === '*') {
      out.push(ANY_SEGMENT)
      continue
    }
    if (raw === '**') {
      if (out.at(-1) === DEEP_SEGMENT) throw invalid(`JSON pointer pattern "${pattern}" has "**" twice in a row`)
      out.push(DEEP_SEGMENT)
      continue
    }
    // RFC 6901 §3: "~" is only valid as "~0" or "~1"; §4: decode "~1" before "~0".
    if (/~(?![01])/.test(raw)) throw invalid(`JSON pointer pattern "${pattern}" has an invalid "~" escape`)
    out.push(raw.replace(/~1/g, '/').replace(/~0/g, '~'))
  }
  if (out.at(-1) === DEEP_SEGMENT) throw invalid(`JSON pointer pattern "${pattern}" ends with "**": name what it stands before`)
  return out
}

/** Whether `segments` has a `**` (its values' locations then vary in depth). */
export function isDeepPattern(segments: readonly PatternSegment[]): boolean {
  return segments.includes(DEEP_SEGMENT)
}

/**
 * Whether some location matches both patterns (each may have `*` and `**` segments): a glob against
 * a glob, decided over every pair of suffixes, last first (no recursion: patterns are configuration).
 */
export function patternsCanOverlap(a: readonly PatternSegment[], b: readonly PatternSegment[]): boolean {
  const w = b.length + 1
  // can[i * w + j]: some location suffix matches both a[i..] and b[j..].
  const can = new Uint8Array((a.length + 1) * w)
  for (let i = a.length; i >= 0; i--) {
    for (let j = b.length; j >= 0; j--) {
      const x = a[i]
      const y = b[j]
      let ok: boolean
      if (x === undefined && y === undefined) ok = true
      else if (x === DEEP_SEGMENT || y === DEEP_SEGMENT) {
        // A `**` matches nothing more, or one segment more (which the other side must match too).
        ok =
          (x === DEEP_SEGMENT && can[(i + 1) * w + j] === 1) ||
          (y === DEEP_SEGMENT && can[i * w + j + 1] === 1) ||
          (x === DEEP_SEGMENT && y !== undefined && y !== DEEP_SEGMENT && can[i * w + j + 1] === 1) ||
          (y === DEEP_SEGMENT && x !== undefined && x !== DEEP_SEGMENT && can[(i + 1) * w + j] === 1)
      } else {
        ok = x !== undefined && y !== undefined && (x === ANY_SEGMENT || y === ANY_SEGMENT || x === y) && can[(i + 1) * w + j + 1] === 1
      }
      can[i * w + j] = ok ? 1 : 0
    }
  }
  return can[0] === 1
}

/** Formats a location as an RFC 6901 pointer string (for logs; member names are not secrets). */
export function formatPointer(pointer: JsonPointer): string {
  let s = ''
  for (const seg of pointer) {
    s += '/' + (typeof seg === 'number' ? String(seg) : seg.replace(/~/g, '~0').replace(/\//g, '~1'))
  }
  return s
}

class TrieNode {
  readonly id: number
  readonly children = new Map<string, TrieNode>()
  any: TrieNode | null = null
  /** The `**` after this node: a location here is also at `deep`, which stays on any segment. */
  deep: TrieNode | null = null
  readonly targets: number[] = []
  record = false
  /** At or below a `**`: reached only by patterns that have one. */
  readonly underDeep: boolean
  /** A `**` node itself: it matches one more segment of any kind, so it stays on every one. */
  readonly loops: boolean
  constructor(id: number, underDeep: boolean, loops = false) {
    this.id = id
    this.underDeep = underDeep
    this.loops = loops
  }
}

/**
 * Compiles target patterns (and an optional record pattern) into a matcher. Refuses, as
 * `config_invalid`, every ambiguous set: two patterns that can match the same location (which
 * action would win?), a target at the document root (use whole-body sealing), a target that can
 * contain another target or the record (the inner one would never be seen, since a targeted value
 * is handed over whole), a record pattern that can match a targeted value, and a record pattern
 * with `**` (records sit at fixed places). What a `**` pattern meets is allowed: it may match inside
 * a targeted value (`/**\/name` inside a `name`, or inside `/photo`), which takes it along whole, and
 * where it matches a record's place (`/records/name` of records in an object) the target takes the
 * record whole; otherwise no `**` pattern could sit beside another field or a record pattern.
 *
 * @example
 * const rules = compileRules({
 *   targets: [{ pattern: '/records/*\/passport', rule: 'seal' }],
 *   record: { pattern: '/records/*', idMember: 'id' },
 * })
 */
export function compileRules<R>(spec: JsonRulesSpec<R>): CompiledRules<R> {
  if (spec === null || typeof spec !== 'object' || !Array.isArray(spec.targets)) {
    throw invalid('JSON rules need a "targets" list')
  }
  let nextId = 0
  const trie = new TrieNode(nextId++, false)
  const walk = (segments: readonly PatternSegment[]): TrieNode => {
    let node = trie
    for (const seg of segments) {
      if (seg === ANY_SEGMENT) {
        node.any ??= new TrieNode(nextId++, node.underDeep)
        node = node.any
      } else if (seg === DEEP_SEGMENT) {
        node.deep ??= new TrieNode(nextId++, true, true)
        node = node.deep
      } else {
        let child = node.children.get(seg)
        if (child === undefined) {
          child = new TrieNode(nextId++, node.underDeep)
          node.children.set(seg, child)
        }
        node = child
      }
    }
    return node
  }

  const targets: CompiledTarget<R>[] = []
  for (const t of spec.targets) {
    const segments = parsePattern(t.pattern)
    if (segments.length === 0) throw invalid('a target cannot be the whole document ("" pattern); seal the body instead')
    targets.push({ pattern: t.pattern, segments, rule: t.rule })
    walk(segments).targets.push(targets.length - 1)
  }

  let record: JsonRecordSpec | null = null
  if (spec.record !== undefined) {
    const { pattern, idMember } = spec.record
    if (typeof idMember !== 'string') throw invalid('a record needs an "idMember" name')
    const segments = parsePattern(pattern)
    if (isDeepPattern(segments)) throw invalid(`the record pattern "${pattern}" cannot have "**": records sit at fixed places`)
    walk(segments).record = true
    record = { pattern, idMember }
  }

  // Subset construction: a DFA state is the set of trie nodes a location can be in. A node with a
  // `**` after it puts that `**` node in the set too (it matches zero segments), and a `**` node
  // stays in the set on every segment (it matches one more). A worklist, not recursion: patterns
  // are configuration, and their depth must not be bounded by the stack.
  const memo = new Map<string, MatchState<R>>()
  const pending: Array<{ readonly state: MatchState<R>; readonly nodes: readonly TrieNode[] }> = []
  /** The state of the locations in `reached` (closed under `**`), made and queued on first sight. */
  const stateOf = (reached: readonly TrieNode[]): MatchState<R> | null => {
    const nodes = [...new Set(reached)]
    for (let k = 0; k < nodes.length; k++) {
      const deep = nodes[k]!.deep
      if (deep !== null && !nodes.includes(deep)) nodes.push(deep)
    }
    if (nodes.length === 0) return null
    nodes.sort((a, b) => a.id - b.id)
    const key = nodes.map((n) => n.id).join(',')
    const known = memo.get(key)
    if (known !== undefined) return known
    if (memo.size >= MAX_MATCH_STATES) {
      throw invalid(
        `JSON patterns too complex: their matcher would need more than ${MAX_MATCH_STATES} states ("*" segments after a "**" multiply them, the more so across several such patterns)`,
      )
    }
    const state = new MatchState<R>()
    memo.set(key, state)

    const hits: number[] = []
    for (const n of nodes) {
      hits.push(...n.targets)
      if (n.record) state.isRecord = true
    }
    if (hits.length > 1) {
      throw invalid(`JSON patterns "${targets[hits[0]!]!.pattern}" and "${targets[hits[1]!]!.pattern}" can match the same value`)
    }
    if (hits.length === 1) state.target = targets[hits[0]!]!
    if (state.target !== null && state.isRecord) {
      // `/**\/name` can meet `/records/name` where records sit in an object: the target takes that
      // value whole, as it takes anything it contains. A fixed pattern there is a mistake.
      if (!isDeepPattern(state.target.segments)) throw invalid(`the record pattern can match the targeted value "${state.target.pattern}"`)
      state.isRecord = false
    }
    // What can match inside a targeted value: only `**` patterns may (the value takes them along).
    if (state.target !== null && nodes.some((n) => !n.underDeep && (n.children.size > 0 || n.any !== null || n.deep !== null))) {
      throw invalid(`the targeted value "${state.target.pattern}" can contain another target or the record`)
    }
    pending.push({ state, nodes })
    return state
  }

  const root = targets.length === 0 && record === null ? null : stateOf([trie])
  while (pending.length > 0) {
    const { state, nodes } = pending.pop()!
    const anyNext: TrieNode[] = []
    const names = new Set<string>()
    for (const n of nodes) {
      if (n.any !== null) anyNext.push(n.any)
      if (n.loops) anyNext.push(n)
      for (const k of n.children.keys()) names.add(k)
    }
    state.other = stateOf(anyNext)
    if (names.size > 0) {
      state.names = new Map()
      for (const name of names) {
        const next = [...anyNext]
        for (const n of nodes) {
          const c = n.children.get(name)
          if (c !== undefined) next.push(c)
        }
        state.names.set(name, stateOf(next)!)
        if (INDEX_TOKEN.test(name)) state.indexNames = true
      }
      state.folded = new Map([...names].map((name) => [foldName(name), name]))
    }
    const children = state.names === null ? [] : [...state.names.values()]
    if (state.other !== null) children.push(state.other)
    state.holdsTargets = children.some((c) => c.target !== null)
  }
  refuseUnreachableTargets(root, targets)
  return { root, targets, record }
}

/**
 * A pattern that can only match inside a value another pattern takes whole never acts (`/**\/a` with
 * `/**\/a/b`, or `/*` with `/**\/x/y`): a configuration that says it would is refused. The live
 * targets are those met from the root without entering a targeted value.
 */
function refuseUnreachableTargets<R>(root: MatchState<R> | null, targets: readonly CompiledTarget<R>[]): void {
  const live = new Set<CompiledTarget<R>>()
  const seen = new Set<MatchState<R>>()
  const queue: MatchState<R>[] = root === null ? [] : [root]
  while (queue.length > 0) {
    const state = queue.pop()!
    if (seen.has(state)) continue
    seen.add(state)
    if (state.target !== null) {
      live.add(state.target)
      continue
    }
    if (state.other !== null) queue.push(state.other)
    if (state.names !== null) queue.push(...state.names.values())
  }
  const dead = targets.find((t) => !live.has(t))
  if (dead !== undefined) throw invalid(`the pattern "${dead.pattern}" can never act: every value it matches is inside a value another pattern takes whole`)
}
