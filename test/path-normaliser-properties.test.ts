import fc from 'fast-check'
import t from 'tap'
import { EcluseError } from '../src/errors.js'
import { normalizeTarget } from '../src/route/path.js'

/** Building blocks chosen to hit every rule: dots, escapes (good, bad, mixed case), separators. */
const PIECES = [
  '/', '.', '..', '%', '2', 'e', 'E', 'f', 'F', '5', 'c', 'C', '0', 'a', 'Z', '~', '-', '_', ';', ':', '@', '+',
  '%2e', '%2E', '%2f', '%2F', '%5c', '%25', '%252e', '%41', '%61', '%30', '%7e', '%7E', '%3b', '%3A', '%20', '%00', '%c3%a9',
  '%C3%A9', '%c0%ae', '%e2%82%ac', '%zz', '\\', ' ', '?', '#', 'é', '\u0000', '\r',
]
const pathLike = fc.array(fc.constantFrom(...PIECES), { maxLength: 24 }).map((parts) => `/${parts.join('')}`)
const anyTarget = fc.oneof(pathLike, fc.string({ maxLength: 40 }).map((s) => `/${s}`), fc.string({ maxLength: 40 }))

function tryNormalize(target: string): string | null {
  try {
    return normalizeTarget(target).path
  } catch (err) {
    if (!(err instanceof EcluseError) || err.code !== 'path_rejected') throw err
    return null
  }
}

const RUNS = { numRuns: 3000 }

t.test('normalisation is idempotent', async (t) => {
  fc.assert(
    fc.property(anyTarget, (target) => {
      const path = tryNormalize(target)
      return path === null || normalizeTarget(path).path === path
    }),
    RUNS,
  )
  t.pass()
})

t.test('a normalised path carries no ambiguous spelling', async (t) => {
  fc.assert(
    fc.property(anyTarget, (target) => {
      const path = tryNormalize(target)
      if (path === null) return true
      return (
        path.startsWith('/') &&
        !path.includes('//') &&
        !path.includes('/./') &&
        !path.includes('/../') &&
        !path.endsWith('/.') &&
        !path.endsWith('/..') &&
        !/%2f|%2e|%5c|%00|%25[0-9a-f]{2}/i.test(path) &&
        !/%[0-9A-F]?[a-f]/.test(path) && // escapes are upper case
        !path.includes('\\') &&
        /^[\x21-\x7e]+$/.test(path)
      )
    }),
    RUNS,
  )
  t.pass()
})

t.test('any target with a dot segment is refused', async (t) => {
  const segment = fc.stringMatching(/^[A-Za-z0-9_~-]{1,8}$/)
  fc.assert(
    fc.property(
      fc.array(segment, { maxLength: 5 }),
      fc.array(segment, { maxLength: 5 }),
      fc.constantFrom('.', '..', '..;x', '.;'),
      fc.boolean(),
      (before, after, dots, trailingSlash) => {
        const target = `/${[...before, dots, ...after].join('/')}${trailingSlash ? '/' : ''}`
        return tryNormalize(target) === null
      },
    ),
    RUNS,
  )
  t.pass()
})

t.test('escaping unreserved characters, in either hex case, does not change the normalised path', async (t) => {
  const unreservedPath = fc
    .array(fc.stringMatching(/^[A-Za-z0-9_~-]{1,8}$/), { minLength: 1, maxLength: 6 })
    .map((segments) => `/${segments.join('/')}`)
  fc.assert(
    fc.property(unreservedPath, fc.infiniteStream(fc.integer({ min: 0, max: 2 })), (path, choices) => {
      const iterator = choices[Symbol.iterator]()
      let spelled = ''
      for (const ch of path) {
        const choice = iterator.next().value as number
        const hex = ch.charCodeAt(0).toString(16).padStart(2, '0')
        spelled += ch === '/' || choice === 0 ? ch : `%${choice === 1 ? hex.toLowerCase() : hex.toUpperCase()}`
      }
      return normalizeTarget(spelled).path === path
    }),
    { numRuns: 1000 },
  )
  t.pass()
})
