import t from 'tap'
import { EcluseError } from '../src/errors.js'
import { ANY_SEGMENT, compileRules, DEEP_SEGMENT, formatPointer, MAX_MATCH_STATES, type MatchState, parsePattern, patternsCanOverlap } from '../src/transform/json/pointer.js'

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
  t.same(parsePattern('/***/a*'), ['***', 'a*'], 'only a segment that is exactly * or ** is a wildcard')
  t.same(parsePattern('/**/passport'), [DEEP_SEGMENT, 'passport'])
  t.same(parsePattern('/a/**/*/b/**/c'), ['a', DEEP_SEGMENT, ANY_SEGMENT, 'b', DEEP_SEGMENT, 'c'])
  t.equal(formatPointer(['a/b', 3, 'm~n']), '/a~1b/3/m~0n')
})

t.test('refuses malformed patterns as config_invalid', async (t) => {
  // A trailing ** would target every value below its parent; two in a row say nothing one does not.
  for (const bad of ['records', '/a/~2', '/a~', '/~x', '/**', '/a/**', '/**/**/a', '/a/**/**/b']) {
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

t.test('a ** segment matches any number of members and indices, none included', async (t) => {
  const { root } = compileRules({ targets: targets('/**/passport', '/r/**/x/y') })
  for (const at of [['passport'], ['a', 'passport'], ['records', 3, 'holder', 'passport'], [0, 'passport'], ['passport', 'passport']]) {
    t.equal(stateAt(root, at)?.target?.pattern, '/**/passport', `/${at.join('/')}`)
  }
  t.equal(stateAt(root, ['a', 'passports'])?.target ?? null, null, 'a name is matched exactly')
  t.equal(stateAt(root, ['passport', 'a'])?.target ?? null, null, 'below a match, only another match')
  t.not(stateAt(root, ['a', 'b', 'c']), null, 'never a dead state under **: a match can come at any depth')
  t.equal(stateAt(root, ['a', 'b'])?.holdsTargets, true, 'every object may hold one (strip removes members)')
  for (const at of [['r', 'x', 'y'], ['r', 1, 'x', 'y'], ['r', 'x', 'x', 'y'], ['r', 'q', 'x', 'z', 'x', 'y']]) {
    t.equal(stateAt(root, at)?.target?.pattern, '/r/**/x/y', `/${at.join('/')}`)
  }
  for (const at of [['x', 'y'], ['q', 'r', 'x', 'y'], ['r', 'x', 'z', 'y']]) {
    t.equal(stateAt(root, at)?.target ?? null, null, `not /${at.join('/')}`)
  }
  const folded = stateAt(root, ['deep', 'down'])?.folded
  t.equal(folded?.get('passport'), 'passport', 'the name is case-checked at every depth')
})

t.test('a ** pattern may match inside a targeted value, which takes it along; nothing else may', async (t) => {
  const { root } = compileRules({ targets: targets('/photo', '/**/name') })
  t.equal(stateAt(root, ['photo'])?.target?.pattern, '/photo')
  t.equal(stateAt(root, ['contact', 'name'])?.target?.pattern, '/**/name')
  t.equal(stateAt(root, ['name'])?.target?.pattern, '/**/name', 'the outermost name is the target…')
  t.equal(stateAt(root, ['name', 'name'])?.target?.pattern, '/**/name', '…and one inside it goes with it')

  const cases: [string, Parameters<typeof compileRules<string>>[0]][] = [
    ['a ** pattern and a literal one for one value', { targets: targets('/**/name', '/person/name') }],
    ['two ** patterns for one value', { targets: targets('/**/name', '/a/**/name') }],
    ['a ** target holding a literal pattern', { targets: targets('/**/person', '/person/name') }],
    ['a literal target holding a ** pattern that starts inside it', { targets: targets('/person', '/person/**/name') }],
    ['a record pattern with **', { targets: targets('/x'), record: { pattern: '/**/records', idMember: 'id' } }],
    ['a ** target holding the record', { targets: targets('/**/records'), record: { pattern: '/records/*', idMember: 'id' } }],
    // Patterns that can only ever match inside a value another one takes whole never act.
    ['a ** pattern extending another', { targets: targets('/**/a', '/**/a/b') }],
    ['a ** pattern extending another through **', { targets: targets('/**/a', '/**/a/**/c') }],
    ['a ** pattern below every top-level value', { targets: targets('/*', '/**/x/y') }],
  ]
  for (const [name, spec] of cases) t.throws(() => compileRules(spec), { code: 'config_invalid' }, name)

  // Where a ** pattern meets a record's place, the target takes that value whole.
  const withRecords = compileRules({ targets: targets('/**/name'), record: { pattern: '/records/*', idMember: 'id' } })
  t.equal(stateAt(withRecords.root, ['records', 0])?.isRecord, true, 'records of an array stay records')
  t.equal(stateAt(withRecords.root, ['records', 0, 'name'])?.target?.pattern, '/**/name', 'and their names are targets')
  t.equal(stateAt(withRecords.root, ['records', 'name'])?.isRecord, false, 'records/name of an object is the target, not a record')
  t.equal(stateAt(withRecords.root, ['records', 'name'])?.target?.pattern, '/**/name')
})

t.test('patternsCanOverlap answers whether a location can match both globs', async (t) => {
  const p = parsePattern
  t.equal(patternsCanOverlap(p('/**/id'), p('/records/*/id')), true)
  t.equal(patternsCanOverlap(p('/**/id'), p('/id')), true, '** matches zero segments')
  t.equal(patternsCanOverlap(p('/a/**/id'), p('/b/*/id')), false)
  t.equal(patternsCanOverlap(p('/**/x/**/y'), p('/y/x/q/y')), true)
  t.equal(patternsCanOverlap(p('/**/x/y'), p('/**/z/y')), false, 'the last segments differ')
  t.equal(patternsCanOverlap(p('/**/x'), p('/*/**/x')), true)
  t.equal(patternsCanOverlap(p('/a/b'), p('/a/b/c')), false, 'different depths without **')
  t.equal(patternsCanOverlap(p('/*/*'), p('/a/b')), true)
})

t.test('a pattern that can never act is refused, naming it', async (t) => {
  t.throws(() => compileRules({ targets: targets('/*', '/**/x/y') }), { code: 'config_invalid', message: /"\/\*\*\/x\/y" can never act/ })
  t.doesNotThrow(() => compileRules({ targets: targets('/a/*', '/**/x/y') }), 'it acts outside /a')
})

t.test('the matcher is built without recursion, and its size is capped with a clear refusal', async (t) => {
  const deepLiteral = `/**/a${'/b'.repeat(3000)}`
  t.equal(stateAt(compileRules({ targets: targets(deepLiteral) }).root, ['q', 'a', ...Array(3000).fill('b')])?.target?.pattern, deepLiteral, '3,000 segments after ** compile')
  t.ok(compileRules({ targets: targets('/'.repeat(5000)) }).root, '5,000 empty-named segments compile')
  t.throws(
    () => compileRules({ targets: targets(`/**/a${'/*'.repeat(16)}/b`) }),
    { code: 'config_invalid', message: new RegExp(`more than ${MAX_MATCH_STATES} states`) },
    'wildcards after ** that would need exponentially many states',
  )
  t.throws(
    () => compileRules({ targets: targets('/**/x/*/*/*/*/*/*/*/y', '/**/z/*/*/*/*/*/*/*/w') }),
    { code: 'config_invalid', message: /states/ },
    'two patterns whose wildcards multiply each other’s states',
  )
  t.doesNotThrow(() => compileRules({ targets: targets('/**/a/*/*/*/b') }), 'a few wildcards after ** are fine')
})
