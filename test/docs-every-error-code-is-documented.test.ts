import { readFile } from 'node:fs/promises'
import t from 'tap'
import { ERROR_CODES, type ErrorCode, publicErrorBody } from '../src/errors.js'

// docs/errors.md is the operator's reference for every code a client or an operator can see. A code
// added to ERROR_CODES without a row there (or with a stale status) fails the suite.
const doc = await readFile(new URL('../docs/errors.md', import.meta.url), 'utf8')

/** Table rows of the doc whose first cell is a code: `| \`code\` | status | …`. */
const rows = new Map<string, { status: number; cells: string[] }[]>()
for (const line of doc.split('\n')) {
  const m = /^\| `([a-z_]+)` \| (\d{3}) \|(.*)\|\s*$/.exec(line)
  if (m === null) continue
  const cells = m[3]!.split(' | ').map((c) => c.trim())
  const list = rows.get(m[1]!) ?? []
  list.push({ status: Number(m[2]), cells })
  rows.set(m[1]!, list)
}

const codes = Object.keys(ERROR_CODES) as ErrorCode[]

t.test('every error code has exactly one table row in docs/errors.md, with its HTTP status', async (t) => {
  t.plan(codes.length * 3)
  for (const code of codes) {
    const found = rows.get(code) ?? []
    t.equal(found.length, 1, `${code}: one row (found ${found.length})`)
    t.equal(found[0]?.status, ERROR_CODES[code].status, `${code}: documented status is ${ERROR_CODES[code].status}`)
    // Meaning, typical causes, where raised: a row with empty cells documents nothing.
    t.ok(found[0] !== undefined && found[0].cells.length >= 3 && found[0].cells.every((c) => c.length > 0), `${code}: every column filled`)
  }
})

t.test('the doc lists no code that does not exist', async (t) => {
  const unknown = [...rows.keys()].filter((code) => !(code in ERROR_CODES))
  t.same(unknown, [], 'every documented code is in ERROR_CODES')
})

t.test('the documented client body is the one publicErrorBody writes', async (t) => {
  const id = '0b6f7c1e-4f2a-4d0e-9a51-3c8f2d7e9b10'
  t.ok(doc.includes(publicErrorBody('forbidden', id)), 'the example body, byte for byte')
  t.ok(doc.includes(publicErrorBody('request_framing')), 'and the short form, without a request id')
})
