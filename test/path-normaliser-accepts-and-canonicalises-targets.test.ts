import t from 'tap'
import { MAX_PATH_LENGTH, normalizeTarget } from '../src/route/path.js'

// [request-target, expected path, expected query]
const ACCEPTED: Array<[string, string, string]> = [
  ['/', '/', ''],
  ['/v1/accreditations', '/v1/accreditations', ''],
  ['/v1/accreditations/', '/v1/accreditations/', ''], // a trailing slash is kept: it names another resource
  ['/v1/accreditations/42?expand=holder&x=%2F', '/v1/accreditations/42', 'expand=holder&x=%2F'], // query as sent
  ['/a?', '/a', ''],
  ['/a?b?c=/../d', '/a', 'b?c=/../d'], // the query is not a path: no segment rules there
  // RFC 3986 §6.2.2.2: escaped unreserved characters are decoded
  ['/%7euser/%41%62%2D%5f%30', '/~user/Ab-_0', ''],
  // RFC 3986 §6.2.2.1: every other escape is kept, in upper-case hex
  // An escaped ":" is the character itself (route literals may hold one, upstreams decode it).
  ['/files/a%20b%3a%40%3F', '/files/a%20b:%40%3F', ''],
  ['/caf%c3%a9/%E2%82%AC/%f0%9f%94%92', '/caf%C3%A9/%E2%82%AC/%F0%9F%94%92', ''], // well-formed UTF-8
  ['/x/%25', '/x/%25', ''], // an encoded "%" that is not followed by two hex digits
  ['/x/50%25off', '/x/50%25off', ''],
  // sub-delims, ":" and "@" are pchar (RFC 3986 §3.3)
  ["/a/!$&'()*+,;=:@", "/a/!$&'()*+,;=:@", ''],
  ['/v1/items:batch', '/v1/items:batch', ''],
  // dots that are not dot segments
  ['/a/.well-known/x', '/a/.well-known/x', ''],
  ['/a/.../b', '/a/.../b', ''],
  ['/a/..b/c.', '/a/..b/c.', ''],
  ['/a/b;.', '/a/b;.', ''],
  [`/${'a'.repeat(MAX_PATH_LENGTH - 1)}`, `/${'a'.repeat(MAX_PATH_LENGTH - 1)}`, ''],
]

t.plan(ACCEPTED.length + 2)
for (const [target, path, query] of ACCEPTED) {
  t.strictSame(normalizeTarget(target), { path, query }, `accepts ${JSON.stringify(target.slice(0, 60))}`)
}

t.equal(
  normalizeTarget('/A%2d%7E').path,
  normalizeTarget('/A-~').path,
  'two spellings of the same path compare equal once normalised',
)
t.equal(normalizeTarget('/%c3%A9').path, normalizeTarget('/%C3%a9').path, 'hex case does not matter')
