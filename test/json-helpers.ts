/**
 * Helpers for the JSON rewriter tests: drive the engine with any chunking, and generate JSON text
 * with arbitrary (valid) spelling — whitespace, escapes, number forms — while recording where every
 * value sits, so expected outputs can be computed independently of the rewriter.
 */
import { Readable, Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import fc from 'fast-check'
import type { EcluseError } from '../src/errors.js'
import { compileRules, type JsonRecordSpec } from '../src/transform/json/pointer.js'
import {
  createJsonRewriter,
  type JsonAction,
  JsonRewriteEngine,
  type JsonRewriterOptions,
  type JsonTarget,
} from '../src/transform/json/rewriter.js'

export type Handler = (t: JsonTarget<string>) => JsonAction
export interface RunOptions extends Partial<Omit<JsonRewriterOptions<string>, 'rules' | 'onValue'>> {
  record?: JsonRecordSpec
}

/** Splits `b` at the given cut points (any order, duplicates and out-of-range ignored). */
export function splitAt(b: Buffer, cuts: readonly number[]): Buffer[] {
  const pts = [...new Set(cuts.filter((c) => c > 0 && c < b.length))].sort((x, y) => x - y)
  const out: Buffer[] = []
  let prev = 0
  for (const p of pts) {
    out.push(b.subarray(prev, p))
    prev = p
  }
  out.push(b.subarray(prev))
  return out
}

export function everyByte(b: Buffer): Buffer[] {
  const out: Buffer[] = []
  for (let i = 0; i < b.length; i++) out.push(b.subarray(i, i + 1))
  return out
}

/** Runs the engine synchronously over chunks; returns the output or the refusal. */
export function runEngine(
  chunks: readonly Buffer[],
  patterns: readonly string[],
  onValue: Handler,
  opts: RunOptions = {},
): { out: string; err?: EcluseError } {
  const { record, ...limits } = opts
  const rules = compileRules({ targets: patterns.map((p) => ({ pattern: p, rule: p })), record })
  const e = new JsonRewriteEngine<string>({ mode: 'document', ...limits, rules, onValue })
  const outs: Buffer[] = []
  try {
    for (const c of chunks) {
      if (e.write(c) !== undefined) throw new Error('unexpected asynchronous action')
      const o = e.takeOutput()
      if (o) outs.push(o)
    }
    e.end()
    const o = e.takeOutput()
    if (o) outs.push(o)
  } catch (err) {
    return { out: Buffer.concat(outs).toString('utf8'), err: err as EcluseError }
  }
  return { out: Buffer.concat(outs).toString('utf8') }
}

/** Runs the `Transform` in a real pipeline; resolves with the output or rejects with the refusal. */
export async function runStream(
  chunks: readonly Buffer[],
  patterns: readonly string[],
  onValue: (t: JsonTarget<string>) => JsonAction | Promise<JsonAction>,
  opts: RunOptions = {},
): Promise<Buffer> {
  const { record, ...limits } = opts
  const rules = compileRules({ targets: patterns.map((p) => ({ pattern: p, rule: p })), record })
  const outs: Buffer[] = []
  await pipeline(
    Readable.from(chunks, { objectMode: false }),
    createJsonRewriter<string>({ mode: 'document', ...limits, rules, onValue }),
    new Writable({
      write(chunk: Buffer, _enc, cb) {
        outs.push(chunk)
        cb()
      },
    }),
  )
  return Buffer.concat(outs)
}

// ---- spelled JSON ----------------------------------------------------------------------------

export type Path = (string | number)[]
export interface Spelled {
  text: string
  /** Every value's location and its [start, end) in `text` (UTF-16 offsets; ASCII-only keys use them as bytes only when text is ASCII). */
  spans: { path: Path; start: number; end: number }[]
}

export interface Spelling {
  ws: () => string
  escape: () => number // 0 raw, 1 short escape when one exists, 2 \u escape
  numberForm: () => number
}

function spellString(s: string, sp: Spelling): string {
  let out = '"'
  for (const ch of s) {
    const cp = ch.codePointAt(0)!
    const mode = sp.escape()
    const short: Record<string, string> = { '"': '\\"', '\\': '\\\\', '\b': '\\b', '\f': '\\f', '\n': '\\n', '\r': '\\r', '\t': '\\t', '/': '\\/' }
    const must = cp < 0x20 || ch === '"' || ch === '\\'
    if (mode === 0 && !must) out += ch
    else if (mode === 1 && short[ch] !== undefined) out += short[ch]
    else if (mode === 0 && short[ch] !== undefined) out += short[ch]
    else if (cp > 0xffff) {
      const hi = 0xd800 + ((cp - 0x10000) >> 10)
      const lo = 0xdc00 + ((cp - 0x10000) & 0x3ff)
      out += `\\u${hi.toString(16).padStart(4, '0')}\\u${lo.toString(16).toUpperCase().padStart(4, '0')}`
    } else out += `\\u${cp.toString(16).padStart(4, '0')}`
  }
  return out + '"'
}

function spellNumber(x: number, form: number): string {
  const s = JSON.stringify(x)
  if (!Number.isInteger(x) || Math.abs(x) > 1e15) return s
  switch (form % 4) {
    case 1:
      return `${s}.0`
    case 2:
      return `${s}e+0`
    case 3:
      return x === 0 ? '-0' : `${s}E0`
    default:
      return s
  }
}

/** Writes `v` as JSON with the given spelling choices, recording every value's span. */
export function spell(v: unknown, sp: Spelling): Spelled {
  const spans: Spelled['spans'] = []
  let text = ''
  const walk = (x: unknown, path: Path): void => {
    const start = text.length
    if (x === null) text += 'null'
    else if (typeof x === 'boolean') text += String(x)
    else if (typeof x === 'number') text += spellNumber(x, sp.numberForm())
    else if (typeof x === 'string') text += spellString(x, sp)
    else if (Array.isArray(x)) {
      text += '[' + sp.ws()
      x.forEach((el, i) => {
        if (i > 0) text += sp.ws() + ',' + sp.ws()
        walk(el, [...path, i])
      })
      text += sp.ws() + ']'
    } else {
      text += '{' + sp.ws()
      Object.entries(x as Record<string, unknown>).forEach(([k, el], i) => {
        if (i > 0) text += sp.ws() + ',' + sp.ws()
        text += spellString(k, sp) + sp.ws() + ':' + sp.ws()
        walk(el, [...path, k])
      })
      text += sp.ws() + '}'
    }
    spans.push({ path, start, end: text.length })
  }
  text += sp.ws()
  walk(v, [])
  text += sp.ws()
  return { text, spans }
}

/** A spelling driven by a seeded stream of choices (so fast-check can shrink it). */
export function spellingFrom(choices: readonly number[]): Spelling {
  let k = 0
  const next = (): number => choices[k++ % choices.length] ?? 0
  const WS = ['', '', '', ' ', '\n', '\t', '\r\n  ', '  ']
  return {
    ws: () => WS[next() % WS.length]!,
    escape: () => next() % 3,
    numberForm: () => next(),
  }
}

export const arbSpelling = fc.array(fc.nat(1000), { minLength: 1, maxLength: 64 }).map(spellingFrom)

/** A JSON value whose object keys are unique (as a `JSON.parse` result always is). */
export const arbJsonValue = (unit: 'grapheme' | 'grapheme-ascii' | 'binary-ascii' = 'grapheme') =>
  fc.jsonValue({ maxDepth: 4, stringUnit: unit }).map((v) => JSON.parse(JSON.stringify(v)) as unknown)

/** Split points for a body of `len` bytes: random cuts, or every byte. */
export const arbCuts = fc.oneof(
  fc.constant('every-byte' as const),
  fc.array(fc.nat(4096), { maxLength: 12 }),
)

export function chunked(b: Buffer, cuts: 'every-byte' | readonly number[]): Buffer[] {
  return cuts === 'every-byte' ? everyByte(b) : splitAt(b, cuts.map((c) => (b.length === 0 ? 0 : c % b.length)))
}

/** Applies RFC 6901-style edits to a parsed value, as the independent oracle. */
export function getAt(v: unknown, path: Path): unknown {
  let x = v
  for (const seg of path) x = (x as Record<string | number, unknown>)[seg]
  return x
}

/** Does a concrete path match a pattern (with `*`)? The oracle's own, naive matcher. */
export function matches(pattern: string, path: Path): boolean {
  if (pattern === '') return path.length === 0
  const segs = pattern
    .slice(1)
    .split('/')
    .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'))
  if (segs.length !== path.length) return false
  return segs.every((s, i) => s === '*' || s === String(path[i]))
}

export function escapeToken(s: string): string {
  return s.replace(/~/g, '~0').replace(/\//g, '~1')
}
