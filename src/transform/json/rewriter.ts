/**
 * The streaming JSON rewriter: a hand-written incremental tokenizer over UTF-8 bytes that validates
 * the whole body (RFC 8259, plus the I-JSON rules of RFC 7493 that matter for security) and hands
 * each targeted value to an action, without ever holding more than one targeted value, one member
 * prefix or one record.
 *
 * Output is produced as slices (`subarray`) of the input chunks: untargeted bytes are never
 * re-encoded nor retained past the chunk they arrived in (a chunk with edits is concatenated once,
 * a chunk without goes out as the same buffer); held bytes are copied into one staging buffer. The only bytes held across chunks are
 *  - a member being decided in a container that holds targets (its separator, name and, for a
 *    target, its value), so that a removal can also remove the right comma;
 *  - a whole record when record binding is configured (its id may come after the targets).
 *
 * Everything that is not valid JSON fails the stream with `EcluseError('json_invalid')`; a value,
 * member prefix or record over its cap with `EcluseError('value_too_large')`. The proxy aborts the
 * message on a stream error, so a body that is refused never arrives truncated-but-complete.
 * Error details carry a reason and a byte offset only, never the bytes themselves.
 */
import { Transform, type TransformCallback } from 'node:stream'
import { EcluseError, type ErrorCode, isEcluseError } from '../../errors.js'
import { type CompiledRules, type CompiledTarget, compileRules, foldName, type JsonPointer, type MatchState } from './pointer.js'

/** JSON type of a targeted value, from its first byte. */
export type JsonValueType = 'string' | 'number' | 'object' | 'array' | 'boolean' | 'null'

/** The record a targeted value sits in, when record binding is configured. */
export interface JsonRecordRef {
  /** Where the record is, e.g. `['records', 3]` (`[]` for an NDJSON line). */
  readonly pointer: JsonPointer
  /** The record's id member: a string, or a number that is a safe integer; absent → `undefined`. */
  readonly id: string | number | undefined
}

/** What an action receives for one targeted value. */
export interface JsonTarget<R = unknown> {
  /** The data attached to the matching pattern. */
  readonly rule: R
  /** The matching pattern, as configured. */
  readonly pattern: string
  /** The actual location, e.g. `['records', 3, 'passport']`. */
  readonly pointer: JsonPointer
  /** The value's exact JSON text as received (already validated). May be a view of an input chunk: copy it to keep it. */
  readonly raw: Buffer
  readonly type: JsonValueType
  /** The parsed value (`JSON.parse` of `raw`, on first access only). */
  readonly value: unknown
  /** The index of the top-level value: always 0 for a document, the line's value index in NDJSON. */
  readonly documentIndex: number
  /** The enclosing record, with record binding. */
  readonly record: JsonRecordRef | undefined
  /** Shorthand for `record?.id`. */
  readonly recordId: string | number | undefined
}

/**
 * The decision for one targeted value: pass it through unchanged, remove the member (or array
 * element) with its separator, or replace it with other JSON text (one complete JSON value, checked).
 * Throwing an `EcluseError` fails the stream.
 */
export type JsonAction = 'keep' | 'remove' | { readonly replace: string | Uint8Array }

export type JsonValueHandler<R> = (target: JsonTarget<R>) => JsonAction | PromiseLike<JsonAction>

export interface JsonRewriterOptions<R = unknown> {
  readonly rules: CompiledRules<R>
  /** `document`: exactly one JSON text. `ndjson`: one JSON value per `\n`-terminated line. */
  readonly mode: 'document' | 'ndjson'
  /** Cap for one targeted value's JSON text (default 64 KiB). */
  readonly maxValueBytes?: number
  /** Cap for nested containers (default 64). */
  readonly maxDepth?: number
  /** Cap for one member name, as escaped on the wire (default 1 KiB). */
  readonly maxMemberNameBytes?: number
  /** Cap for one buffered record (default 1 MiB); only used with a record pattern. */
  readonly maxRecordBytes?: number
  /** Cap for targeted values in one record (default 1000); only used with a record pattern. */
  readonly maxRecordTargets?: number
  /** Cap for member names remembered at once across all open objects, for duplicate detection (default 10 000). */
  readonly maxMembers?: number
  /**
   * Cap for the whitespace held with a member of a container that holds targets: the bytes from its
   * separator to its value may not exceed `maxMemberNameBytes + maxGapBytes` (default 4 KiB).
   */
  readonly maxGapBytes?: number
  /** Called for each targeted value, in document order (within a record: at the record's end). */
  readonly onValue: JsonValueHandler<R>
}

/** Default limits (documented in docs/json-rewriter.md). */
export const JSON_REWRITER_DEFAULTS = Object.freeze({
  maxValueBytes: 64 * 1024,
  maxDepth: 64,
  maxMemberNameBytes: 1024,
  maxRecordBytes: 1024 * 1024,
  maxRecordTargets: 1000,
  maxMembers: 10_000,
  maxGapBytes: 4096,
})

// ---- byte constants and tables ---------------------------------------------------------------

const QUOTE = 0x22
const BSLASH = 0x5c
const COMMA = 0x2c
const COLON = 0x3a
const LBRACE = 0x7b
const RBRACE = 0x7d
const LBRACK = 0x5b
const RBRACK = 0x5d
const MINUS = 0x2d
const ZERO = 0x30
const PLUS = 0x2b
const DOT = 0x2e
const LF = 0x0a
const CR = 0x0d
const SP = 0x20
const TAB = 0x09

/** String bytes that need no attention: printable ASCII except `"` and `\`. */
const STR_PLAIN = new Uint8Array(256)
for (let c = 0x20; c < 0x80; c++) STR_PLAIN[c] = c === QUOTE || c === BSLASH ? 0 : 1

const HEX = new Uint8Array(256).fill(255)
for (let c = 0; c < 10; c++) HEX[0x30 + c] = c
for (let c = 0; c < 6; c++) {
  HEX[0x41 + c] = 10 + c
  HEX[0x61 + c] = 10 + c
}

/** RFC 8259 §2 whitespace. */
const WS_DOC = new Uint8Array(256)
WS_DOC[SP] = WS_DOC[TAB] = WS_DOC[LF] = WS_DOC[CR] = 1
/** Inside an NDJSON line only space and tab: a line break inside a value would split it in two. */
const WS_LINE = new Uint8Array(256)
WS_LINE[SP] = WS_LINE[TAB] = 1

const EMPTY = Buffer.alloc(0)
/** A staging buffer up to this size is kept between the values and records it holds. */
const HELD_KEEP_BYTES = 64 * 1024
const NAME_CACHE_SLOTS = 256
const NAME_CACHE_MAX_LEN = 32

/**
 * Interned member names: bytes and string per slot (a hash of the bytes picks the slot, a full
 * comparison confirms it). Member names are not secrets; the cache is bounded by its slots.
 */
interface NameCache {
  readonly bytes: (Uint8Array | undefined)[]
  readonly names: (string | undefined)[]
}

const NAME_CACHES = new WeakMap<object, NameCache>()

function nameCacheFor(rules: object): NameCache {
  let c = NAME_CACHES.get(rules)
  if (c === undefined) {
    c = { bytes: new Array(NAME_CACHE_SLOTS), names: new Array(NAME_CACHE_SLOTS) }
    NAME_CACHES.set(rules, c)
  }
  return c
}
const LIT_TRUE = Buffer.from('true')
const LIT_FALSE = Buffer.from('false')
const LIT_NULL = Buffer.from('null')

// ---- parser states ----------------------------------------------------------------------------

const S_VALUE = 0 // a value is expected (after ':' or after ',' in an array)
const S_ARR_FIRST = 1 // after '[': a value or ']'
const S_OBJ_FIRST = 2 // after '{': a name or '}'
const S_OBJ_NAME = 3 // after ',' in an object: a name
const S_COLON = 4
const S_AFTER = 5 // after a value inside a container: ',' or the closing bracket
const S_STRING = 6
const S_NAME = 7
const S_NUMBER = 8
const S_LITERAL = 9
const S_DOC_START = 10
const S_DOC_END = 11
const S_LINE_START = 12
const S_LINE_WS = 13 // NDJSON: leading space/tab on a line
const S_LINE_END = 14 // NDJSON: after the line's value
const S_LINE_CR = 15 // NDJSON: after '\r', '\n' must follow
const S_FAILED = 16

// number sub-states (RFC 8259 §6)
const N_MINUS = 1
const N_ZERO = 2
const N_INT = 3
const N_DOT = 4
const N_FRAC = 5
const N_E = 6
const N_ESIGN = 7
const N_EXP = 8

const A_KEEP = 0
const A_REMOVE = 1
const A_REPLACE = 2

// ---- small classes (pooled per depth / per stream; no closures on the hot path) ---------------

/** Per container that holds targets: what removals have done to its separators so far. */
class SepState {
  kept = 0
  /** The previous members were all removed: the next kept member's leading comma must go. */
  skip = false
  // Inside a record, while it is scanned: only the first untargeted member after a targeted one can
  // need an edit (its comma, when every targeted member before it is removed); later ones are
  // kept after a kept member and need none, so they get no entry.
  /** A targeted member has been seen. */
  sawTarget = false
  /** An untargeted member has been seen. */
  sawKept = false
}

class Frame<R> {
  isArray = false
  state: MatchState<R> | null = null
  sep: SepState | null = null
  readonly names = new Set<string>()
  key = ''
  index = -1
  /** Offset of the last ',' (the current member's separator), or -1 for the first member. */
  sepPos = -1
}

/** A member (or element) of a container that holds targets, while its fate is undecided. */
class Entry<R> {
  sep: SepState = new SepState()
  holdStart = 0
  hasComma = false
  target: CompiledTarget<R> | null = null
  valueStart = 0
  valueEnd = 0
  type: JsonValueType = 'null'
  pointer: JsonPointer = []
  action = A_KEEP
  data: Buffer | null = null
}

class Target<R> implements JsonTarget<R> {
  readonly rule: R
  readonly pattern: string
  readonly pointer: JsonPointer
  readonly raw: Buffer
  readonly type: JsonValueType
  readonly documentIndex: number
  readonly record: JsonRecordRef | undefined
  #parsed = false
  #value: unknown
  constructor(e: Entry<R>, raw: Buffer, documentIndex: number, record: JsonRecordRef | undefined) {
    this.rule = e.target!.rule
    this.pattern = e.target!.pattern
    this.pointer = e.pointer
    this.raw = raw
    this.type = e.type
    this.documentIndex = documentIndex
    this.record = record
  }
  get value(): unknown {
    if (!this.#parsed) {
      const raw = this.raw
      // A string without escapes is the UTF-8 between its quotes (already validated): no JSON.parse,
      // which for a sealed value would copy and scan a few hundred characters for nothing.
      this.#value = this.type === 'string' && raw.indexOf(BSLASH) < 0 ? raw.toString('utf8', 1, raw.length - 1) : JSON.parse(raw.toString('utf8'))
      this.#parsed = true
    }
    return this.#value
  }
  get recordId(): string | number | undefined {
    return this.record?.id
  }
}

function positiveInt(name: string, v: number | undefined, dflt: number): number {
  if (v === undefined) return dflt
  if (!Number.isSafeInteger(v) || v <= 0) throw new EcluseError('config_invalid', `JSON rewriter option ${name} must be a positive integer`)
  return v
}

/**
 * Longest number, in characters, a body may hold. The grammar has no bound, but consumers do:
 * Jackson refuses numbers over 1,000 characters by default (StreamReadConstraints), CPython
 * integers over 4,300 digits (`sys.int_max_str_digits`). A body one of them refuses, the gateway
 * refuses too, rather than pass it as valid (found by review).
 */
export const MAX_NUMBER_CHARS = 1000

/** A JSON number (RFC 8259 §6): sign, integer part, fraction, exponent. */
const JSON_NUMBER = /^(-?)(0|[1-9][0-9]*)(?:\.([0-9]+))?(?:[eE]([+-]?[0-9]+))?$/

/**
 * The value of a JSON number's text if it is exactly an integer of at most 2^53 − 1 in magnitude,
 * else `undefined`: exact on the decimal digits, where `Number(text)` rounds (`1.0000000000000001`
 * to 1, `1e-400` to 0). Integral spellings are their value (`1.0e3` is 1000, `-0` is 0).
 */
export function exactSafeInteger(text: string): number | undefined {
  const m = JSON_NUMBER.exec(text)
  if (m === null) return undefined
  const [, sign, whole, fraction = '', exponent = '0'] = m
  // The value is `digits` × 10^`power`, `digits` without leading or trailing zeros. Found by loops,
  // not `/0+$/`: a regular expression retries at every zero of a long run, quadratic in an id of
  // a megabyte (found by review: minutes of the event loop for one request body).
  const all = whole! + fraction
  let first = 0
  while (first < all.length && all.charCodeAt(first) === ZERO) first++
  if (first === all.length) return 0
  let end = all.length
  while (all.charCodeAt(end - 1) === ZERO) end--
  const digits = all.slice(first, end)
  const power = Number(exponent) - fraction.length + (all.length - end)
  // A fraction is left (`digits` ends in a non-zero digit); 10^16 is beyond 2^53 already.
  if (power < 0 || digits.length + power > 16) return undefined
  const value = BigInt(digits) * 10n ** BigInt(power)
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) return undefined
  return sign === '-' ? -Number(value) : Number(value)
}

function isThenable(x: unknown): x is PromiseLike<unknown> {
  return x !== null && typeof x === 'object' && typeof (x as { then?: unknown }).then === 'function'
}

const PLAIN_JSON_STRING = /^"[\x20\x21\x23-\x5b\x5d-\x7e]*"$/

/** A quoted string of printable ASCII without escapes: the shape of every sealed value (a JWE). */
export function isPlainJsonString(b: Uint8Array): boolean {
  const n = b.length
  if (n < 2 || b[0] !== QUOTE || b[n - 1] !== QUOTE) return false
  let i = 1
  // Four bytes at a time where the bytes are 4-aligned (a sealed value is a few hundred of them):
  // a word passes if none of its bytes is ≥ 0x80, < 0x20, '"' or '\\' (the classic "has a zero
  // byte" tests, exact as yes/no answers), which is STR_PLAIN's rule.
  const first = (4 - ((b.byteOffset + 1) & 3)) & 3
  if (n > 64) {
    for (const stop = 1 + first; i < stop; i++) if (STR_PLAIN[b[i]!] !== 1) return false
    const words = new Int32Array(b.buffer, b.byteOffset + i, (n - 1 - i) >> 2)
    for (let k = 0; k < words.length; k++) {
      const w = words[k]!
      const q = w ^ 0x22222222
      const s = w ^ 0x5c5c5c5c
      if ((w | ((w - 0x20202020) & ~w) | ((q - 0x01010101) & ~q) | ((s - 0x01010101) & ~s)) & 0x80808080) return false
    }
    i += words.length * 4
  }
  for (; i < n - 1; i++) if (STR_PLAIN[b[i]!] !== 1) return false
  return true
}

const UNICODE_LINE_BREAKS = [Buffer.from([0xc2, 0x85]), Buffer.from([0xe2, 0x80, 0xa8]), Buffer.from([0xe2, 0x80, 0xa9])]

/** U+0085, U+2028 or U+2029 as raw UTF-8 (escaped, they are no line break). */
function hasUnicodeLineBreak(b: Uint8Array): boolean {
  const buf = Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength)
  return UNICODE_LINE_BREAKS.some((seq) => buf.indexOf(seq) >= 0)
}

/** Rules that target nothing: the engine then only checks its input (`isOneStrictJsonValue`). */
const NO_TARGETS = compileRules<never>({ targets: [] })

/**
 * Whether `b` is exactly one JSON value by this rewriter's own input rules: valid UTF-8, no
 * unpaired surrogate escape, no duplicate member name, at most `maxDepth` levels (what is left of
 * `JSON_REWRITER_DEFAULTS.maxDepth` where it goes in); with `oneLine`, no line break either (in NDJSON one would split the record). A
 * replacement must pass them, or the body it goes into would carry what the rewriter refuses on
 * input because parsers read it differently (`JSON.parse` accepts all four). The common case, a
 * string of printable ASCII without escapes, is checked byte-wise.
 */
export function isOneStrictJsonValue(b: Uint8Array, oneLine: boolean, maxDepth: number = JSON_REWRITER_DEFAULTS.maxDepth): boolean {
  if (isPlainJsonString(b)) return true
  if (oneLine && (b.indexOf(LF) >= 0 || b.indexOf(CR) >= 0 || hasUnicodeLineBreak(b))) return false
  // At the cap itself no container may open: nothing but a scalar fits there.
  if (maxDepth < 1) {
    const first = b.find((c) => c !== 0x20 && c !== 0x09 && c !== LF && c !== CR)
    if (first === 0x5b || first === 0x7b) return false
  }
  const engine = new JsonRewriteEngine<never>({ rules: NO_TARGETS, mode: 'document', onValue: () => 'keep', maxDepth: Math.max(1, maxDepth) })
  try {
    engine.write(Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength))
    engine.end()
    return true
  } catch {
    return false
  }
}

/**
 * The replacement text must be exactly one JSON value, or the output would change shape (JSON
 * injection through a faulty action), and one the rewriter itself would accept
 * (`isOneStrictJsonValue`).
 */
function toReplacement(r: unknown, oneLine: boolean): Buffer {
  let b: Buffer
  if (typeof r === 'string') {
    if (PLAIN_JSON_STRING.test(r)) return Buffer.from(r, 'latin1')
    b = Buffer.from(r, 'utf8')
  } else if (r instanceof Uint8Array) b = Buffer.isBuffer(r) ? r : Buffer.from(r.buffer, r.byteOffset, r.byteLength)
  else throw new EcluseError('internal', 'JSON action "replace" needs a string or bytes')
  if (!isOneStrictJsonValue(b, oneLine)) throw new EcluseError('internal', 'JSON action replacement is not exactly one JSON value on one line')
  return b
}

/** @internal The byte-level engine, separate from the stream so it can be driven directly. */
export class JsonRewriteEngine<R = unknown> {
  // ---- configuration, decided at construction
  private readonly root: MatchState<R> | null
  private readonly idMember: string | null
  /** `idMember` case-folded: a record member spelled like it but for case is refused (see `onKey`). */
  private readonly idFolded: string | null
  /**
   * Whether an ASCII name must be as long as the id member to fold onto it: only when the id member
   * is ASCII itself, since folding changes lengths elsewhere (`straße` and `STRASSE`; found by review).
   */
  private readonly idFoldsByLength: boolean
  private readonly ndjson: boolean
  private readonly ws: Uint8Array
  private readonly topStart: number
  private readonly topEnd: number
  private readonly maxValue: number
  private readonly maxDepth: number
  private readonly maxName: number
  private readonly maxRecord: number
  private readonly maxRecordTargets: number
  private readonly maxMembers: number
  private readonly maxPrefix: number
  /** The most that is ever retained at once: a record, or a member prefix with its value. */
  private readonly maxHeld: number
  private readonly onValue: JsonValueHandler<R>

  // ---- tokenizer
  private state: number
  private depth = 0
  private readonly frames: Frame<R>[] = []
  private openMembers = 0
  private numState = 0
  /** Where the number being read began (absolute offset), for {@link MAX_NUMBER_CHARS}. */
  private numStart = 0
  private lit: Buffer = LIT_NULL
  private litPos = 0
  // string scanning (values and names)
  private esc = 0
  private hex = 0
  private pendHigh = false
  private u8need = 0
  private u8lo = 0x80
  private u8hi = 0xbf
  /**
   * NDJSON only, a Unicode line break in a string (`scanString`): 1 after a lead 0xC2 (U+0085 is
   * C2 85), 2 after a lead 0xE2, 3 after E2 80 (U+2028 and U+2029 are E2 80 A8 and A9).
   */
  private u8brk = 0
  private sawEsc = false
  private sawHigh = false
  // member names
  private nameStart = 0
  private nameLen = 0
  /** Scratch for a name split across chunks, and for unescaping one: made on first need. */
  private nameBuf: Buffer = EMPTY
  private decodeBuf: Buffer = EMPTY
  private child: MatchState<R> | null = null
  private readonly names: NameCache
  private curEntry: Entry<R> | null = null
  private idPending = false
  private documentIndex = -1

  // ---- input and output
  private buf: Buffer = EMPTY
  private base = 0
  private n = 0
  private i = 0
  private emitFrom = 0
  private out: Buffer[] = []
  private outLen = 0

  // ---- retention: bytes from retainStart are held; those of earlier chunks are copied into one
  // staging buffer (`held`, its first `heldLen` bytes), so what is held costs its bytes whatever
  // the chunking: a client sending one byte per chunk must not make each byte a Buffer of its own.
  private retaining = false
  private retainStart = 0
  private held: Buffer = EMPTY
  private heldLen = 0
  private region: Buffer = EMPTY
  private regionStart = 0

  // ---- watched values: the innermost of capture / id / record whose end we wait for
  private watch = -1
  private capDepth = -1
  private capEntry: Entry<R> | null = null
  private idDepth = -1
  private idStart = -1
  private idEnd = -1
  private recDepth = -1
  private recStart = 0
  private recPointer: JsonPointer = []

  // ---- undecided members (one online, all of a record's in record mode) and the edits they make
  private readonly entries: Entry<R>[] = []
  private entryCount = 0
  /** Targeted values in the current record. */
  private recordTargets = 0
  private editCount = 0
  private readonly editStart: number[] = []
  private readonly editEnd: number[] = []
  private readonly editData: (Buffer | null)[] = []

  // ---- asynchronous actions
  private pending: PromiseLike<unknown> | null = null
  private waitingRecord = false
  private waitingEntry: Entry<R> | null = null
  private waitingEnd = 0

  constructor(opts: JsonRewriterOptions<R>) {
    if (opts.mode !== 'document' && opts.mode !== 'ndjson') throw new EcluseError('config_invalid', 'JSON rewriter mode must be "document" or "ndjson"')
    if (typeof opts.onValue !== 'function') throw new EcluseError('config_invalid', 'JSON rewriter needs an onValue action')
    const d = JSON_REWRITER_DEFAULTS
    this.root = opts.rules.root
    this.idMember = opts.rules.record?.idMember ?? null
    this.idFolded = this.idMember === null ? null : foldName(this.idMember)
    this.idFoldsByLength = this.idMember !== null && /^[\x00-\x7f]*$/.test(this.idMember)
    this.ndjson = opts.mode === 'ndjson'
    this.ws = this.ndjson ? WS_LINE : WS_DOC
    this.topStart = this.ndjson ? S_LINE_START : S_DOC_START
    this.topEnd = this.ndjson ? S_LINE_END : S_DOC_END
    this.maxValue = positiveInt('maxValueBytes', opts.maxValueBytes, d.maxValueBytes)
    this.maxDepth = positiveInt('maxDepth', opts.maxDepth, d.maxDepth)
    this.maxName = positiveInt('maxMemberNameBytes', opts.maxMemberNameBytes, d.maxMemberNameBytes)
    this.maxRecord = positiveInt('maxRecordBytes', opts.maxRecordBytes, d.maxRecordBytes)
    this.maxRecordTargets = positiveInt('maxRecordTargets', opts.maxRecordTargets, d.maxRecordTargets)
    this.maxMembers = positiveInt('maxMembers', opts.maxMembers, d.maxMembers)
    // separator, quotes, colon + the name + the whitespace allowance
    this.maxPrefix = this.maxName + positiveInt('maxGapBytes', opts.maxGapBytes, d.maxGapBytes) + 4
    this.maxHeld = Math.max(this.maxRecord, this.maxPrefix + this.maxValue)
    this.onValue = opts.onValue
    this.names = nameCacheFor(opts.rules)
    this.state = this.topStart
  }

  // ---- driving ------------------------------------------------------------------------------

  /** Feeds one chunk. Returns a promise when an asynchronous action must settle first (then call `resume`). */
  write(chunk: Buffer): PromiseLike<unknown> | undefined {
    if (this.state === S_FAILED) throw new EcluseError('json_invalid', 'write after failure')
    this.base += this.n
    this.buf = chunk
    this.n = chunk.length
    this.i = 0
    this.emitFrom = this.base
    return this.run()
  }

  /** Applies the settled result of the pending action and continues the current chunk. */
  resume(result: unknown): PromiseLike<unknown> | undefined {
    this.pending = null
    try {
      if (this.waitingRecord) {
        this.waitingRecord = false
        this.finishRecord(result as unknown[], this.waitingEnd)
      } else {
        const e = this.waitingEntry!
        this.waitingEntry = null
        this.setAction(e, result)
        this.finishOnline(e)
      }
    } catch (err) {
      throw this.failWith(err)
    }
    return this.run()
  }

  /** Refuses the number being read if it already runs to `end` past {@link MAX_NUMBER_CHARS}. */
  private numberFits(end: number): void {
    if (end - this.numStart > MAX_NUMBER_CHARS) this.fail('json_invalid', `a number longer than ${MAX_NUMBER_CHARS} characters`, this.numStart)
  }

  /** Ends the input: checks that the body is complete. Throws on any refusal. */
  end(): void {
    if (this.state === S_FAILED) throw new EcluseError('json_invalid', 'end after failure')
    try {
      if (this.state === S_NUMBER) {
        const ns = this.numState
        if (ns !== N_ZERO && ns !== N_INT && ns !== N_FRAC && ns !== N_EXP) this.fail('json_invalid', 'truncated number', this.base + this.n)
        this.numberFits(this.base + this.n)
        this.valueEnd(this.base + this.n)
      }
      const s = this.state
      const ok = this.ndjson ? s === S_LINE_START || s === S_LINE_END : s === S_DOC_END
      if (!ok) {
        this.fail('json_invalid', s === S_DOC_START ? 'empty body' : s === S_LINE_WS ? 'whitespace-only line' : 'truncated JSON', this.base + this.n)
      }
      // Nothing is retained at the end of a complete body (regions close before the top level does).
      this.emitTo(this.base + this.n)
    } catch (err) {
      throw this.failWith(err)
    }
  }

  /** Bytes of output produced and not taken yet. */
  get outputBytes(): number {
    return this.outLen
  }

  /** Takes the output produced so far (one buffer, or `null`). */
  takeOutput(): Buffer | null {
    const out = this.out
    if (out.length === 0) return null
    const b = out.length === 1 ? out[0]! : Buffer.concat(out, this.outLen)
    this.out = []
    this.outLen = 0
    return b
  }

  /** Marks the engine failed (after an error from `write`/`resume`/`end`, or a rejected action). */
  failWith(err: unknown): EcluseError {
    this.state = S_FAILED
    this.held = EMPTY
    this.heldLen = 0
    this.out = []
    if (isEcluseError(err)) return err
    return new EcluseError('internal', 'JSON value action failed', { cause: err })
  }

  // ---- the tokenizer loop ---------------------------------------------------------------------

  private run(): PromiseLike<unknown> | undefined {
    const buf = this.buf
    const n = this.n
    const ws = this.ws
    let i = this.i
    try {
      while (i < n) {
        let c = buf[i]!
        switch (this.state) {
          case S_STRING: {
            const q = this.scanString(buf, i, n)
            if (q < 0) {
              i = n
              break
            }
            i = q + 1
            this.valueEnd(this.base + i)
            break
          }
          case S_AFTER: {
            if (ws[c] === 1) {
              i++
              while (i < n && ws[buf[i]!] === 1) i++
              break
            }
            const f = this.frames[this.depth - 1]!
            if (c === COMMA) {
              if (f.sep !== null) {
                const pos = this.base + i
                f.sepPos = pos
                if (this.recDepth < 0) {
                  this.retaining = true
                  this.retainStart = pos
                }
              }
              this.state = f.isArray ? S_VALUE : S_OBJ_NAME
              i++
            } else if (c === (f.isArray ? RBRACK : RBRACE)) {
              this.close(i)
              i++
            } else {
              this.fail('json_invalid', 'expected "," or the end of the container', this.base + i)
            }
            break
          }
          case S_VALUE:
          case S_ARR_FIRST: {
            if (ws[c] === 1) {
              i++
              while (i < n && ws[buf[i]!] === 1) i++
              break
            }
            if (c === RBRACK && this.state === S_ARR_FIRST) {
              this.close(i)
              i++
              break
            }
            i = this.beginValue(i, c)
            break
          }
          case S_OBJ_FIRST:
          case S_OBJ_NAME: {
            if (ws[c] === 1) {
              i++
              while (i < n && ws[buf[i]!] === 1) i++
              break
            }
            if (c === QUOTE) {
              this.beginName(i)
              i++
            } else if (c === RBRACE && this.state === S_OBJ_FIRST) {
              this.close(i)
              i++
            } else {
              this.fail('json_invalid', 'expected a member name', this.base + i)
            }
            break
          }
          case S_NAME: {
            const q = this.scanString(buf, i, n)
            if (q < 0) {
              i = n
              break
            }
            this.endName(buf, q)
            i = q + 1
            break
          }
          case S_COLON: {
            if (ws[c] === 1) {
              i++
              while (i < n && ws[buf[i]!] === 1) i++
              break
            }
            if (c !== COLON) this.fail('json_invalid', 'expected ":"', this.base + i)
            this.state = S_VALUE
            i++
            break
          }
          case S_NUMBER: {
            let ns = this.numState
            for (;;) {
              const digit = c >= 0x30 && c <= 0x39
              if (digit) {
                if (ns === N_INT || ns === N_FRAC || ns === N_EXP) {
                  // the common case: a run of digits
                } else if (ns === N_MINUS) ns = c === 0x30 ? N_ZERO : N_INT
                else if (ns === N_DOT) ns = N_FRAC
                else if (ns === N_E || ns === N_ESIGN) ns = N_EXP
                else this.fail('json_invalid', 'leading zero in a number', this.base + i) // N_ZERO
              } else if (c === DOT && (ns === N_ZERO || ns === N_INT)) ns = N_DOT
              else if ((c === 0x65 || c === 0x45) && (ns === N_ZERO || ns === N_INT || ns === N_FRAC)) ns = N_E
              else if ((c === PLUS || c === MINUS) && ns === N_E) ns = N_ESIGN
              else if (ns === N_ZERO || ns === N_INT || ns === N_FRAC || ns === N_EXP) {
                // The number ends before this byte, which the next state reads again.
                this.numState = 0
                this.numberFits(this.base + i)
                this.valueEnd(this.base + i)
                break
              } else this.fail('json_invalid', 'malformed number', this.base + i)
              if (++i >= n) {
                this.numState = ns
                // Checked at each chunk's end too: a run of digits is refused within a chunk of the cap.
                this.numberFits(this.base + i)
                break
              }
              c = buf[i]!
            }
            break
          }
          case S_LITERAL: {
            const lit = this.lit
            if (c !== lit[this.litPos]) this.fail('json_invalid', 'malformed literal', this.base + i)
            i++
            if (++this.litPos === lit.length) this.valueEnd(this.base + i)
            break
          }
          case S_DOC_START: {
            if (WS_DOC[c] === 1) {
              i++
              break
            }
            if (c === 0xef && this.base + i === 0) this.fail('json_invalid', 'a byte order mark', 0)
            i = this.beginValue(i, c)
            break
          }
          case S_DOC_END: {
            if (WS_DOC[c] !== 1) this.fail('json_invalid', 'trailing data after the JSON value', this.base + i)
            i++
            while (i < n && WS_DOC[buf[i]!] === 1) i++
            break
          }
          case S_LINE_START: {
            if (c === LF) i++ // an empty line
            else if (c === CR) {
              this.state = S_LINE_CR
              i++
            } else if (c === SP || c === TAB) {
              this.state = S_LINE_WS
              i++
            } else {
              if (c === 0xef && this.base + i === 0) this.fail('json_invalid', 'a byte order mark', 0)
              i = this.beginValue(i, c)
            }
            break
          }
          case S_LINE_WS: {
            if (c === SP || c === TAB) i++
            else if (c === LF || c === CR) this.fail('json_invalid', 'whitespace-only line', this.base + i)
            else i = this.beginValue(i, c)
            break
          }
          case S_LINE_END: {
            if (c === SP || c === TAB) i++
            else if (c === LF) {
              this.state = S_LINE_START
              i++
            } else if (c === CR) {
              this.state = S_LINE_CR
              i++
            } else this.fail('json_invalid', 'more than one JSON value on a line', this.base + i)
            break
          }
          case S_LINE_CR: {
            if (c !== LF) this.fail('json_invalid', '"\\r" not followed by "\\n"', this.base + i)
            this.state = S_LINE_START
            i++
            break
          }
          default:
            throw new EcluseError('json_invalid', 'stream already failed')
        }
        if (this.pending !== null) {
          this.i = i
          return this.pending
        }
      }
      this.i = n
      this.endChunk()
    } catch (err) {
      throw this.failWith(err)
    }
    return undefined
  }

  private fail(code: ErrorCode, reason: string, offset: number): never {
    throw new EcluseError(code, `${reason} at byte ${offset}`)
  }

  // ---- strings --------------------------------------------------------------------------------

  /**
   * Scans string content from `i`; returns the index of the closing quote, or -1 when the chunk
   * ends first (state kept for the next chunk). Validates UTF-8 (RFC 3629 §4: no overlongs, no
   * surrogates, nothing above U+10FFFF), escapes, and refuses unpaired surrogate escapes everywhere
   * (RFC 7493 §2.1): a lone surrogate has no UTF-8 form, so parsers disagree about what it means.
   */
  private scanString(buf: Buffer, i: number, n: number): number {
    let esc = this.esc
    let need = this.u8need
    let lo = this.u8lo
    let hi = this.u8hi
    let pendHigh = this.pendHigh
    let brk = this.u8brk
    while (i < n) {
      const c = buf[i]!
      if (need !== 0) {
        if (c < lo || c > hi) this.fail('json_invalid', 'invalid UTF-8 in a string', this.base + i)
        if (brk !== 0) {
          // Python's splitlines(), JavaScript's line terminators and some NDJSON readers split
          // lines there: in NDJSON such a string would read as two records to them.
          if ((brk === 1 && c === 0x85) || (brk === 3 && (c === 0xa8 || c === 0xa9))) {
            this.fail('json_invalid', 'Unicode line break in a string (NDJSON)', this.base + i)
          }
          brk = brk === 2 && c === 0x80 ? 3 : 0
        }
        need--
        lo = 0x80
        hi = 0xbf
        i++
        continue
      }
      if (esc === 0) {
        if (pendHigh && c !== BSLASH) this.fail('json_invalid', 'unpaired surrogate escape', this.base + i)
        if (STR_PLAIN[c] === 1) {
          i++
          while (i < n && STR_PLAIN[buf[i]!] === 1) i++
          continue
        }
        if (c === QUOTE) {
          this.esc = 0
          this.u8need = 0
          this.u8brk = 0
          this.pendHigh = false
          return i
        }
        if (c === BSLASH) {
          esc = 1
          this.sawEsc = true
          i++
          continue
        }
        if (c < 0x20) this.fail('json_invalid', 'control character in a string', this.base + i)
        if (c >= 0xc2 && c <= 0xdf) need = 1
        else if (c === 0xe0) {
          need = 2
          lo = 0xa0
        } else if ((c >= 0xe1 && c <= 0xec) || c === 0xee || c === 0xef) need = 2
        else if (c === 0xed) {
          need = 2
          hi = 0x9f
        } else if (c === 0xf0) {
          need = 3
          lo = 0x90
        } else if (c >= 0xf1 && c <= 0xf3) need = 3
        else if (c === 0xf4) {
          need = 3
          hi = 0x8f
        } else this.fail('json_invalid', 'invalid UTF-8 in a string', this.base + i)
        if (this.ndjson) brk = c === 0xc2 ? 1 : c === 0xe2 ? 2 : 0
        this.sawHigh = true
        i++
        continue
      }
      if (esc === 1) {
        if (c === 0x75) {
          esc = 2
          this.hex = 0
        } else if (pendHigh) this.fail('json_invalid', 'unpaired surrogate escape', this.base + i)
        else if (c === QUOTE || c === BSLASH || c === 0x2f || c === 0x62 || c === 0x66 || c === 0x6e || c === 0x72 || c === 0x74) esc = 0
        else this.fail('json_invalid', 'invalid escape', this.base + i)
        i++
        continue
      }
      const d = HEX[c]!
      if (d === 255) this.fail('json_invalid', 'invalid \\u escape', this.base + i)
      const h = (this.hex << 4) | d
      this.hex = h
      i++
      if (esc < 5) {
        esc++
        continue
      }
      esc = 0
      if (pendHigh) {
        if (h < 0xdc00 || h > 0xdfff) this.fail('json_invalid', 'unpaired surrogate escape', this.base + i)
        pendHigh = false
      } else if (h >= 0xd800 && h <= 0xdbff) pendHigh = true
      else if (h >= 0xdc00 && h <= 0xdfff) this.fail('json_invalid', 'unpaired surrogate escape', this.base + i)
    }
    this.esc = esc
    this.u8need = need
    this.u8lo = lo
    this.u8hi = hi
    this.u8brk = brk
    this.pendHigh = pendHigh
    return -1
  }

  private resetString(): void {
    this.esc = 0
    this.u8need = 0
    this.u8lo = 0x80
    this.u8hi = 0xbf
    this.u8brk = 0
    this.pendHigh = false
    this.sawEsc = false
    this.sawHigh = false
  }

  // ---- member names ---------------------------------------------------------------------------

  private beginName(i: number): void {
    const pos = this.base + i
    const f = this.frames[this.depth - 1]!
    if (f.sep !== null) this.openEntry(f, pos)
    this.resetString()
    this.state = S_NAME
    this.nameStart = pos + 1
    this.nameLen = 0
  }

  /** The closing quote of a member name is at `q`. */
  private endName(buf: Buffer, q: number): void {
    const end = this.base + q
    if (end - this.nameStart > this.maxName) this.fail('json_invalid', 'member name over its cap', end)
    let src = buf
    let s = this.nameStart - this.base
    let e = q
    if (s < 0) {
      // The name began in an earlier chunk: finish the copy in the scratch buffer.
      buf.copy(this.nameScratch(), this.nameLen, 0, q)
      src = this.nameBuf
      s = 0
      e = this.nameLen + q
    }
    // Names are compared after unescaping (RFC 8259 §8.3): "pass\u0070ort" is "passport".
    const key = this.sawEsc ? this.unescape(src, s, e) : this.sawHigh ? src.toString('utf8', s, e) : this.ascii(src, s, e)
    // C parsers (json-c, cJSON) keep names as C strings: `"passportNumber\u0000x"` is
    // `passportNumber` to them, a value that would have crossed unsealed and unchecked here. A NUL
    // can only come escaped (a raw control character is refused as a string's).
    if (this.sawEsc && key.includes('\0')) this.fail('json_invalid', 'member name holds a NUL', end)
    const f = this.frames[this.depth - 1]!
    // RFC 8259 §4 leaves duplicate names to the parser; parsers disagree on which one wins, so a
    // duplicate could smuggle a plaintext value past a check that reads the other one. Refused.
    const names = f.names
    const size = names.size
    names.add(key)
    if (names.size === size) this.fail('json_invalid', 'duplicate member name', end)
    if (++this.openMembers > this.maxMembers) this.fail('json_invalid', 'too many members held for duplicate detection', end)
    f.key = key
    const folded = f.state?.folded
    // A name spelled exactly like a transition is that transition: only the others need folding.
    if (folded != null && f.state!.names!.get(key) === undefined) {
      const spelled = folded.get(this.folded(key))
      if (spelled !== undefined && spelled !== key) this.fail('json_invalid', 'member name differs from a targeted name only by case or composition', end)
    }
    const child = f.state === null ? null : f.state.member(key)
    this.child = child
    this.state = S_COLON
    if (this.recDepth >= 0 && this.depth === this.recDepth + 1) {
      if (key === this.idMember) this.idPending = true
      // `{"id":"A","ID":"B"}`: a consumer that matches names without case (Go's encoding/json,
      // Jackson's case-insensitive mode) reads the id as "B", and a value bound to record A would
      // open in record B. As for targeted names, a spelling that differs only by case is refused.
      else if ((key.length === this.idMember!.length || !this.idFoldsByLength || this.sawHigh || this.sawEsc) && this.folded(key) === this.idFolded) {
        this.fail('json_invalid', 'member name differs from the record id member only by case or composition', end)
      }
    }
    if (f.sep !== null) {
      const entry = this.entries[this.entryCount - 1]!
      if (this.recDepth < 0 && end + 1 - entry.holdStart > this.maxPrefix) {
        this.fail('value_too_large', 'member prefix over its cap', end)
      }
      if (child !== null && child.target !== null) {
        entry.target = child.target
        this.curEntry = entry
        if (this.recDepth >= 0) this.recordTarget(entry, end)
      } else if (this.recDepth < 0) {
        this.resolveKept(end + 1)
      } else {
        this.recordKept(entry)
      }
    }
  }

  private nameScratch(): Buffer {
    if (this.nameBuf.length === 0) this.nameBuf = Buffer.allocUnsafe(this.maxName)
    return this.nameBuf
  }

  /**
   * An unescaped ASCII name as a string. Records and messages repeat the same few names, so short
   * ones are interned in a small byte-keyed cache shared by the streams of one rule set (a message
   * of one record would otherwise start cold every time): no string is created, and the reused
   * string keeps its hash for the `Set` and `Map` lookups that follow.
   */
  private ascii(src: Buffer, s: number, e: number): string {
    const len = e - s
    if (len > NAME_CACHE_MAX_LEN) return src.toString('latin1', s, e)
    let h = 0x811c9dc5 ^ len
    for (let k = s; k < e; k++) h = Math.imul(h ^ src[k]!, 0x01000193)
    const slot = (h >>> 0) & (NAME_CACHE_SLOTS - 1)
    const cache = this.names
    const cached = cache.bytes[slot]
    if (cached !== undefined && cached.length === len) {
      let k = 0
      while (k < len && cached[k] === src[s + k]) k++
      if (k === len) return cache.names[slot]!
    }
    const str = src.toString('latin1', s, e)
    const bytes = new Uint8Array(len)
    for (let k = 0; k < len; k++) bytes[k] = src[s + k]!
    cache.bytes[slot] = bytes
    cache.names[slot] = str
    return str
  }

  /** Decodes an escaped name (already validated by `scanString`) to a string. */
  private unescape(src: Buffer, s: number, e: number): string {
    if (this.decodeBuf.length === 0) this.decodeBuf = Buffer.allocUnsafe(this.maxName)
    const dst = this.decodeBuf
    let o = 0
    let k = s
    while (k < e) {
      const c = src[k]!
      if (c !== BSLASH) {
        dst[o++] = c
        k++
        continue
      }
      const x = src[k + 1]!
      if (x !== 0x75) {
        dst[o++] = x === 0x62 ? 0x08 : x === 0x66 ? 0x0c : x === 0x6e ? LF : x === 0x72 ? CR : x === 0x74 ? TAB : x
        k += 2
        continue
      }
      let cp = (HEX[src[k + 2]!]! << 12) | (HEX[src[k + 3]!]! << 8) | (HEX[src[k + 4]!]! << 4) | HEX[src[k + 5]!]!
      k += 6
      if (cp >= 0xd800 && cp <= 0xdbff) {
        const low = (HEX[src[k + 2]!]! << 12) | (HEX[src[k + 3]!]! << 8) | (HEX[src[k + 4]!]! << 4) | HEX[src[k + 5]!]!
        k += 6
        cp = 0x10000 + ((cp - 0xd800) << 10) + (low - 0xdc00)
      }
      if (cp < 0x80) dst[o++] = cp
      else if (cp < 0x800) {
        dst[o++] = 0xc0 | (cp >> 6)
        dst[o++] = 0x80 | (cp & 0x3f)
      } else if (cp < 0x10000) {
        dst[o++] = 0xe0 | (cp >> 12)
        dst[o++] = 0x80 | ((cp >> 6) & 0x3f)
        dst[o++] = 0x80 | (cp & 0x3f)
      } else {
        dst[o++] = 0xf0 | (cp >> 18)
        dst[o++] = 0x80 | ((cp >> 12) & 0x3f)
        dst[o++] = 0x80 | ((cp >> 6) & 0x3f)
        dst[o++] = 0x80 | (cp & 0x3f)
      }
    }
    return dst.toString('utf8', 0, o)
  }

  // ---- values ---------------------------------------------------------------------------------

  /** A value starts with byte `c` at `i`; returns the index to continue from. */
  private beginValue(i: number, c: number): number {
    const pos = this.base + i
    const depth = this.depth
    let child: MatchState<R> | null
    let entry: Entry<R> | null = null
    if (depth === 0) {
      child = this.root
      this.documentIndex++
    } else {
      const f = this.frames[depth - 1]!
      if (f.isArray) {
        const index = ++f.index
        child = f.state === null ? null : f.state.element(index)
        if (f.sep !== null) {
          entry = this.openEntry(f, pos)
          if (child !== null && child.target !== null) {
            entry.target = child.target
            if (this.recDepth >= 0) this.recordTarget(entry, pos)
          } else {
            if (this.recDepth < 0) this.resolveKept(pos)
            else this.recordKept(entry)
            entry = null
          }
        }
      } else {
        child = this.child
        entry = this.curEntry
        this.curEntry = null
      }
    }

    let type: JsonValueType
    let next: number
    if (c === QUOTE) {
      type = 'string'
      next = S_STRING
      this.resetString()
    } else if (c === LBRACE) {
      type = 'object'
      next = S_OBJ_FIRST
    } else if (c === LBRACK) {
      type = 'array'
      next = S_ARR_FIRST
    } else if ((c >= 0x30 && c <= 0x39) || c === MINUS) {
      type = 'number'
      next = S_NUMBER
      this.numState = c === MINUS ? N_MINUS : c === 0x30 ? N_ZERO : N_INT
      this.numStart = this.base + i
    } else if (c === 0x74 || c === 0x66 || c === 0x6e) {
      type = c === 0x6e ? 'null' : 'boolean'
      next = S_LITERAL
      this.lit = c === 0x74 ? LIT_TRUE : c === 0x66 ? LIT_FALSE : LIT_NULL
      this.litPos = 1
    } else {
      return this.fail('json_invalid', 'expected a JSON value', pos)
    }

    if (this.idPending) {
      this.idPending = false
      if (type !== 'string' && type !== 'number') this.fail('json_invalid', 'record id is neither a string nor a number', pos)
      this.idStart = pos
      this.idDepth = depth
      this.setWatch()
    }
    if (entry !== null) {
      // A targeted value: held whole, matched no further (no pattern can lie inside it).
      if (this.recDepth < 0 && pos - entry.holdStart > this.maxPrefix) this.fail('value_too_large', 'member prefix over its cap', pos)
      entry.valueStart = pos
      entry.type = type
      entry.pointer = this.pointerHere()
      this.capDepth = depth
      this.capEntry = entry
      this.setWatch()
      child = null
    } else if (child?.isRecord && (c === LBRACE || c === LBRACK)) {
      this.recDepth = depth
      this.recStart = pos
      this.recPointer = this.pointerHere()
      this.idStart = -1
      this.retaining = true
      this.retainStart = pos
      this.setWatch()
    }

    if (next === S_OBJ_FIRST || next === S_ARR_FIRST) {
      if (depth >= this.maxDepth) this.fail('json_invalid', 'nesting deeper than its cap', pos)
      let f = this.frames[depth]
      if (f === undefined) {
        f = new Frame<R>()
        this.frames.push(f)
      }
      f.isArray = next === S_ARR_FIRST
      f.state = child
      f.sep = child?.holdsTargets ? new SepState() : null
      f.index = -1
      f.sepPos = -1
      this.depth = depth + 1
    }
    this.state = next
    return i + 1
  }

  /** The current container closes with the byte at `i`. */
  private close(i: number): void {
    const f = this.frames[--this.depth]!
    if (!f.isArray) {
      this.openMembers -= f.names.size
      f.names.clear()
    }
    f.state = null
    f.sep = null
    this.valueEnd(this.base + i + 1)
  }

  /** A value ended just before `end`. */
  private valueEnd(end: number): void {
    const depth = this.depth
    if (depth === 0) {
      this.state = this.topEnd
    } else {
      this.state = S_AFTER
    }
    if (depth !== this.watch) return
    if (depth === this.idDepth) {
      this.idEnd = end
      this.idDepth = -1
    }
    if (depth === this.capDepth) {
      const e = this.capEntry!
      this.capDepth = -1
      this.capEntry = null
      this.setWatch()
      e.valueEnd = end
      if (end - e.valueStart > this.maxValue) this.fail('value_too_large', 'targeted value over its cap', end)
      if (this.recDepth < 0) this.dispatchOnline(e)
      return
    }
    if (depth === this.recDepth) {
      this.recDepth = -1
      this.setWatch()
      if (end - this.recStart > this.maxRecord) this.fail('value_too_large', 'record over its cap', end)
      this.dispatchRecord(end)
      return
    }
    this.setWatch()
  }

  private setWatch(): void {
    this.watch = this.capDepth >= 0 ? this.capDepth : this.idDepth >= 0 ? this.idDepth : this.recDepth
  }

  /** The member name just scanned, case-folded: an ASCII one (no high byte, no escape) by lower-casing alone. */
  private folded(key: string): string {
    return this.sawHigh || this.sawEsc ? foldName(key) : key.toLowerCase()
  }

  private pointerHere(): (string | number)[] {
    const p: (string | number)[] = []
    for (let k = 0; k < this.depth; k++) {
      const f = this.frames[k]!
      p.push(f.isArray ? f.index : f.key)
    }
    return p
  }

  // ---- undecided members, actions and edits ---------------------------------------------------

  private openEntry(f: Frame<R>, pos: number): Entry<R> {
    let e = this.entries[this.entryCount]
    if (e === undefined) {
      e = new Entry<R>()
      this.entries.push(e)
    }
    this.entryCount++
    e.sep = f.sep!
    e.hasComma = f.sepPos >= 0
    e.holdStart = e.hasComma ? f.sepPos : pos
    e.target = null
    e.action = A_KEEP
    e.data = null
    f.sepPos = -1
    if (this.recDepth < 0 && !this.retaining) {
      this.retaining = true
      this.retainStart = e.holdStart
    }
    return e
  }

  /** Inside a record: the open member (the last entry) is targeted; the record may hold only so many. */
  private recordTarget(e: Entry<R>, pos: number): void {
    if (++this.recordTargets > this.maxRecordTargets) this.fail('value_too_large', 'more targeted values in a record than its cap', pos)
    e.sep.sawTarget = true
  }

  /**
   * Inside a record: the open member (the last entry) is not targeted, so it is kept. Only the first
   * such member after a targeted one of its container keeps its entry (see `SepState`); one before
   * any targeted member counts as kept at once, as if replayed first. The entries of a record are
   * then at most two per targeted value, whatever the record's length.
   */
  private recordKept(e: Entry<R>): void {
    const st = e.sep
    if (st.sawKept || !st.sawTarget) {
      if (!st.sawKept) st.kept = 1
      st.sawKept = true
      this.entryCount--
      return
    }
    st.sawKept = true
  }

  /** Outside records: the open member is not targeted, so it is kept; let it go up to `end`. */
  private resolveKept(end: number): void {
    const e = this.entries[0]!
    this.entryCount = 0
    const st = e.sep
    if (st.skip && e.hasComma) this.addEdit(e.holdStart, e.holdStart + 1, null)
    st.kept++
    st.skip = false
    this.release(end)
  }

  private setAction(e: Entry<R>, a: unknown): void {
    if (a === 'keep') e.action = A_KEEP
    else if (a === 'remove') e.action = A_REMOVE
    else if (a !== null && typeof a === 'object' && 'replace' in a) {
      e.action = A_REPLACE
      e.data = toReplacement((a as { replace: unknown }).replace, this.ndjson)
    } else throw new EcluseError('internal', 'JSON value action returned an unknown decision')
  }

  private call(e: Entry<R>, raw: Buffer, record: JsonRecordRef | undefined): JsonAction | PromiseLike<JsonAction> {
    try {
      return this.onValue(new Target(e, raw, this.documentIndex, record))
    } catch (err) {
      throw this.failWith(err)
    }
  }

  private dispatchOnline(e: Entry<R>): void {
    this.materialize(e.valueEnd)
    const r = this.region
    const raw = r.subarray(e.valueStart - this.regionStart, e.valueEnd - this.regionStart)
    const a = this.call(e, raw, undefined)
    if (isThenable(a)) {
      this.waitingEntry = e
      this.pending = a
      return
    }
    this.setAction(e, a)
    this.finishOnline(e)
  }

  private finishOnline(e: Entry<R>): void {
    this.entryCount = 0
    this.replayOne(e)
    this.release(e.valueEnd)
  }

  private dispatchRecord(end: number): void {
    this.materialize(end)
    const r = this.region
    const rs = this.regionStart
    let id: string | number | undefined
    if (this.idStart >= 0) {
      const text = r.toString('utf8', this.idStart - rs, this.idEnd - rs)
      if (text.charCodeAt(0) === QUOTE) id = JSON.parse(text) as string
      else {
        // A record id binds sealed values to their record: a number is judged by its text, since
        // a double would make `1` and `0.99999999999999999`, or 2^53 and 2^53 + 1, one id where an
        // upstream reading numbers exactly (BigDecimal, Python's Decimal, Go's json.Number) sees two.
        id = exactSafeInteger(text)
        if (id === undefined) this.fail('json_invalid', 'record id is not a safe integer', this.idStart)
      }
    }
    const ref: JsonRecordRef = { pointer: this.recPointer, id }
    let results: unknown[] | null = null
    let async = false
    for (let k = 0; k < this.entryCount; k++) {
      const e = this.entries[k]!
      if (e.target === null) continue
      const a = this.call(e, r.subarray(e.valueStart - rs, e.valueEnd - rs), ref)
      results ??= []
      results.push(a)
      if (isThenable(a)) async = true
    }
    if (async) {
      this.waitingRecord = true
      this.waitingEnd = end
      this.pending = Promise.all(results!)
      return
    }
    this.finishRecord(results, end)
  }

  private finishRecord(results: unknown[] | null, end: number): void {
    let t = 0
    for (let k = 0; k < this.entryCount; k++) {
      const e = this.entries[k]!
      if (e.target !== null) this.setAction(e, results![t++])
      this.replayOne(e)
    }
    this.entryCount = 0
    this.recordTargets = 0
    this.idStart = -1
    this.release(end)
  }

  /**
   * Turns one member's decision into edits. A removed member takes its leading comma with it; when
   * it has none (it is the first one left), the comma after it must go instead, which is the next
   * kept member's leading comma (`skip`). So `{"a":1,"b":2}` minus `a` is `{"b":2}`, minus `b` is
   * `{"a":1}`, minus both is `{}`.
   */
  private replayOne(e: Entry<R>): void {
    const st = e.sep
    if (e.action === A_REMOVE) {
      this.addEdit(e.holdStart, e.valueEnd, null)
      if (st.kept === 0) st.skip = true
      return
    }
    if (st.skip && e.hasComma) this.addEdit(e.holdStart, e.holdStart + 1, null)
    if (e.action === A_REPLACE) this.addEdit(e.valueStart, e.valueEnd, e.data)
    st.kept++
    st.skip = false
  }

  private addEdit(start: number, end: number, data: Buffer | null): void {
    const k = this.editCount++
    this.editStart[k] = start
    this.editEnd[k] = end
    this.editData[k] = data
  }

  // ---- output ---------------------------------------------------------------------------------

  private push(b: Buffer): void {
    if (b.length === 0) return
    this.out.push(b)
    this.outLen += b.length
  }

  /** Passes through everything not yet emitted up to `end` (nothing is retained). */
  private emitTo(end: number): void {
    if (end > this.emitFrom) this.push(this.buf.subarray(this.emitFrom - this.base, end - this.base))
    this.emitFrom = end
  }

  /** Makes the unemitted bytes up to `end` one contiguous buffer (`region`, from `regionStart`). */
  private materialize(end: number): void {
    if (this.heldLen === 0) {
      this.region = this.buf.subarray(this.emitFrom - this.base, end - this.base)
      this.regionStart = this.emitFrom
    } else {
      // A copy, not a view of `held`: its slices go out, and `held` is reused.
      this.region = Buffer.concat([this.held.subarray(0, this.heldLen), this.buf.subarray(0, end - this.base)])
      this.regionStart = this.retainStart
      this.dropHeld()
      this.emitFrom = this.base
    }
  }

  /** Stops retaining at `end`: emits what was held, with the pending edits applied. */
  private release(end: number): void {
    this.retaining = false
    if (this.region === EMPTY) {
      if (this.editCount === 0) {
        if (this.heldLen > 0) this.push(Buffer.from(this.held.subarray(0, this.heldLen)))
        this.dropHeld()
        return
      }
      this.materialize(end)
    } else if (this.editCount === 0 && this.regionStart >= this.base) {
      // A view of the current chunk, materialized for an action that kept the value: it is still
      // pending pass-through from `emitFrom`, nothing to copy.
      this.region = EMPTY
      return
    }
    const r = this.region
    const rs = this.regionStart
    let cur = rs
    for (let k = 0; k < this.editCount; k++) {
      const s = this.editStart[k]!
      if (s > cur) this.push(r.subarray(cur - rs, s - rs))
      const d = this.editData[k]!
      if (d !== null) this.push(d)
      this.editData[k] = null
      cur = this.editEnd[k]!
    }
    if (end > cur) this.push(r.subarray(cur - rs, end - rs))
    this.editCount = 0
    this.region = EMPTY
    this.emitFrom = end
  }

  /** At the end of a chunk: pass through what is not held, copy what is (bounded by the caps). */
  private endChunk(): void {
    const end = this.base + this.n
    if (this.state === S_NAME) {
      const from = Math.max(this.nameStart - this.base, 0)
      if (end - this.nameStart > this.maxName) this.fail('json_invalid', 'member name over its cap', end)
      this.nameLen += this.buf.copy(this.nameScratch(), this.nameLen, from, this.n)
    }
    if (!this.retaining) {
      this.emitTo(end)
      return
    }
    if (this.capDepth >= 0 && end - this.capEntry!.valueStart > this.maxValue) this.fail('value_too_large', 'targeted value over its cap', end)
    if (this.recDepth >= 0) {
      if (end - this.recStart > this.maxRecord) this.fail('value_too_large', 'record over its cap', end)
    } else if (this.capDepth < 0 && end - this.retainStart > this.maxPrefix) {
      this.fail('value_too_large', 'member prefix over its cap', end)
    }
    const from = Math.max(this.retainStart, this.base)
    if (this.heldLen === 0) this.emitTo(from)
    // Copied: a small tail must not keep a large input chunk alive.
    if (end > from) this.hold(this.buf.subarray(from - this.base, this.n))
    this.emitFrom = end
  }

  /** Empties the staging buffer; one grown past a typical record is freed rather than kept for the stream's life. */
  private dropHeld(): void {
    this.heldLen = 0
    if (this.held.length > HELD_KEEP_BYTES) this.held = EMPTY
  }

  /**
   * Appends to the staging buffer, doubling it as needed but never past what the caps allow to be
   * held (checked before this is called), so that its size stays within them.
   */
  private hold(bytes: Buffer): void {
    const need = this.heldLen + bytes.length
    if (need > this.held.length) {
      const grown = Buffer.allocUnsafe(Math.max(need, Math.min(2 * this.held.length, this.maxHeld), 1024))
      this.held.copy(grown, 0, 0, this.heldLen)
      this.held = grown
    }
    this.heldLen += bytes.copy(this.held, this.heldLen)
  }
}

/**
 * Output of one chunk past which the rewriter hands it on while an action is pending, rather than
 * at the chunk's end. Far above what a chunk of records makes (64 KiB of 1 KiB records with six
 * sealed fields: ≈ 160 KB), so that a short body refused at its end is still refused before any of
 * it went out, inside a response's hold window (found by re-review: pushing at every pause sent the
 * status line of such a body, then aborted it); and a bound on what a chunk of many small values
 * holds (64 KiB of `[1,1,…]` sealed: ≈ 13 MB).
 */
export const PUSH_WHILE_PENDING_BYTES = 1024 * 1024

/** `JsonRewriter`'s "no action result is waiting for the reader". */
const NOT_PARKED: unique symbol = Symbol('not parked')

/**
 * The rewriter as a `Transform` (bytes in, bytes out). Back-pressure is the stream's: a chunk's
 * callback is called once its output is pushed, and not before an asynchronous action settles.
 * While an action is pending, the output produced so far goes out once it passes
 * {@link PUSH_WHILE_PENDING_BYTES}, and the engine resumes only once the reader has room for more: a
 * small value grows ≈ 200 × when sealed (`1` becomes ≈ 420 bytes), and holding a chunk's whole
 * output made memory follow its number of values, not the configuration (found by review).
 * Any refusal destroys the stream with an `EcluseError`.
 */
export class JsonRewriter<R = unknown> extends Transform {
  readonly #engine: JsonRewriteEngine<R>
  #cb: TransformCallback | null = null
  readonly #onSettled: (v: unknown) => void
  readonly #onRejected: (err: unknown) => void
  /** Whether the output pushed during the pending action filled the reader's buffer. */
  #readerFull = false
  /** An action's result held until the reader has room (`_read`), or `NOT_PARKED`. */
  #parked: unknown = NOT_PARKED

  constructor(opts: JsonRewriterOptions<R>) {
    super()
    this.#engine = new JsonRewriteEngine(opts)
    // Bound once: the only closures, used only by asynchronous actions.
    this.#onSettled = (v) => this.#settled(v)
    this.#onRejected = (err) => this.#rejected(err)
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    let p: PromiseLike<unknown> | undefined
    try {
      p = this.#engine.write(chunk)
    } catch (err) {
      cb(err as Error)
      return
    }
    this.#after(p, cb)
  }

  override _flush(cb: TransformCallback): void {
    try {
      this.#engine.end()
    } catch (err) {
      cb(err as Error)
      return
    }
    const out = this.#engine.takeOutput()
    cb(null, out ?? undefined)
  }

  #after(p: PromiseLike<unknown> | undefined, cb: TransformCallback): void {
    if (p === undefined) {
      const out = this.#engine.takeOutput()
      cb(null, out ?? undefined)
      return
    }
    this.#cb = cb
    // What the engine has emitted is final (held bytes stay in the engine): past the bound, it goes now.
    if (this.#engine.outputBytes >= PUSH_WHILE_PENDING_BYTES) this.#readerFull = !this.push(this.#engine.takeOutput())
    p.then(this.#onSettled, this.#onRejected)
  }

  override _read(size: number): void {
    if (this.#parked !== NOT_PARKED) {
      const v = this.#parked
      this.#parked = NOT_PARKED
      this.#resume(v)
    }
    super._read(size)
  }

  #settled(v: unknown): void {
    if (this.destroyed) return
    if (this.#readerFull && this.readableLength >= this.readableHighWaterMark) {
      this.#parked = v
      return
    }
    this.#resume(v)
  }

  #resume(v: unknown): void {
    const cb = this.#cb!
    this.#cb = null
    this.#readerFull = false
    if (this.destroyed) return
    let p: PromiseLike<unknown> | undefined
    try {
      p = this.#engine.resume(v)
    } catch (err) {
      cb(err as Error)
      return
    }
    this.#after(p, cb)
  }

  #rejected(err: unknown): void {
    const cb = this.#cb!
    this.#cb = null
    if (this.destroyed) return
    cb(this.#engine.failWith(err))
  }
}


/**
 * Creates the rewriter for one message body.
 *
 * @example
 * const rules = compileRules({ targets: [{ pattern: '/records/*\/passport', rule: 'strip' }] })
 * const t = createJsonRewriter({ rules, mode: 'document', onValue: () => 'remove' })
 * await pipeline(req, t, upstreamBody)
 */
export function createJsonRewriter<R>(opts: JsonRewriterOptions<R>): JsonRewriter<R> {
  return new JsonRewriter(opts)
}
