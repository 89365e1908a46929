import t from 'tap'
import { EcluseError } from '../src/errors.js'
import { ANY_SEGMENT, compileRules, formatPointer, type MatchState, parsePattern } from '../src/transform/json/pointer.js'

const targets = (...patterns: string[]) => patterns.map((pattern) => ({ pattern, rule: pattern }))

/** Walks the compiled DFA along a concrete location, as the rewriter does. */
function stateAt(root: MatchState<string> | null, path: (string | number)[]): MatchState<string> | null {
  let s = root
  for (const seg of path) {
    if (s === null) return null
    s = typeof seg === 'number' ? s.element(seg) : s.member(seg)
  }
  return s
}

t.test('parses RFC 6901 tokens with ~0 / ~1 escapes and the * wildcard', async (t) => {
  t.same(parsePattern(''), [])
  t.same(parsePattern('/'), [''])
  t.same(parsePattern('/records/*/passport'), ['records', ANY_SEGMENT, 'passport'])
  // RFC 6901 §4: "~01" is "~1", not "/".
  t.same(parsePattern('/a~1b/m~0n/~01'), ['a/b', 'm~n', '~1'])
  t.same(parsePattern('/**'), ['**'], 'only a segment that is exactly * is the wildcard')
  t.equal(formatPointer(['a/b', 3, 'm~n']), '/a~1b/3/m~0n')
})

t.test('refuses malformed patterns as config_invalid', async (t) => {
  for (const bad of ['records', '/a/~2', '/a~', '/~x']) {
    t.throws(() => parsePattern(bad), { code: 'config_invalid' }, bad)
  }
})

t.test('matches literals, indices and wildcards with one lookup per step', async (t) => {
  const { root } = compileRules({ targets: targets('/records/*/passport', '/contact/phone', '/list/0') })
  t.equal(stateAt(root, ['records', 3, 'passport'])?.target?.pattern, '/records/*/passport')
  t.equal(stateAt(root, ['records', 'x', 'passport'])?.target?.pattern, '/records/*/passport', '* matches members too')
  t.equal(stateAt(root, ['contact', 'phone'])?.target?.pattern, '/contact/phone')
  t.equal(stateAt(root, ['list', 0])?.target?.pattern, '/list/0', 'a canonical index token matches the element')
  t.equal(stateAt(root, ['list', '0'])?.target?.pattern, '/list/0', 'and the member of that name')
  t.equal(stateAt(root, ['list', 1]), null)
  t.equal(stateAt(root, ['contact', 'email']), null, 'dead state: nothing below can match')
  t.equal(stateAt(root, ['records'])?.holdsTargets, false)
  t.equal(stateAt(root, ['records', 0])?.holdsTargets, true, 'a record object may lose its passport member')
})

t.test('a leading wildcard matches any member and any index', async (t) => {
  const { root } = compileRules({ targets: targets('/*/name', '/contact/phone') })
  t.equal(stateAt(root, ['anything', 'name'])?.target?.pattern, '/*/name')
  t.equal(stateAt(root, [7, 'name'])?.target?.pattern, '/*/name', 'an index of a top-level array')
  t.equal(stateAt(root, ['contact', 'name'])?.target?.pattern, '/*/name', 'the wildcard is merged into the literal branch')
  t.equal(stateAt(root, ['contact', 'phone'])?.target?.pattern, '/contact/phone')
  t.equal(stateAt(root, ['other', 'phone']), null)
})

t.test('an index token with a leading zero only names a member', async (t) => {
  const { root } = compileRules({ targets: targets('/a/01') })
  t.equal(stateAt(root, ['a', 1]), null)
  t.equal(stateAt(root, ['a', '01'])?.target?.pattern, '/a/01')
})

t.test('refuses every ambiguous rule set at boot', async (t) => {
  const cases: [string, Parameters<typeof compileRules<string>>[0]][] = [
    ['two patterns for one value', { targets: targets('/*/name', '/contact/name') }],
    ['a wildcard target that can hold another pattern', { targets: targets('/*/name', '/records/*/passport') }],
    ['the same pattern twice', { targets: targets('/a', '/a') }],
    ['a target inside a target', { targets: targets('/contact', '/contact/phone') }],
    ['a wildcard target containing a literal one', { targets: targets('/*', '/a/b') }],
    ['the whole document as a target', { targets: targets('') }],
    ['a record that is a target', { targets: targets('/records/*'), record: { pattern: '/records/*', idMember: 'id' } }],
    ['a record inside a target', { targets: targets('/records'), record: { pattern: '/records/*', idMember: 'id' } }],
    ['a record without an id member name', { targets: [], record: { pattern: '/r/*' } as never }],
  ]
  for (const [name, spec] of cases) {
    const err = t.throws(() => compileRules(spec), { code: 'config_invalid' }, name)
    t.ok(err instanceof EcluseError, `${name}: an EcluseError`)
  }
})

t.test('a record pattern and targets below it compile together', async (t) => {
  const rules = compileRules({ targets: targets('/records/*/passport', '/meta/token'), record: { pattern: '/records/*', idMember: 'id' } })
  t.equal(stateAt(rules.root, ['records', 2])?.isRecord, true)
  t.equal(stateAt(rules.root, ['meta', 'token'])?.target?.pattern, '/meta/token')
  t.same(rules.record, { pattern: '/records/*', idMember: 'id' })
  t.equal(compileRules({ targets: [] }).root, null, 'no pattern: nothing ever matches')
})
