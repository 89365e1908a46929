/**
 * A `*` in a field pattern matches any member, so a body may be keyed by an identifier
 * (`{"people": {"<passport number>": {...}}}`): the member name is then the very value the step
 * protects, and a client chooses it. Refusal details go to the log, so they name where a value sits
 * by its pattern (`/people/*\/passport`), never by the member names a `*` matched; and whatever
 * the client put in a JWE header reaches the log in printable ASCII only.
 */
import t from 'tap'
import { CANARY, leaksCanary, recordingHandler, SPONSOR_APP, startSealing, tempDir, writeKeyFiles } from '../helpers/sealing.js'

/** A member name that is a sensitive value, and characters that would forge or disguise a log line. */
const KEY = `${CANARY.passport}\u2028{"level":60,"msg":"forged"}\u202e\u009b31m`
const UNSAFE = /[\u2028\u2029\u202a-\u202e\u2066-\u2069\u0080-\u009f]/

t.test('refusals name the pattern, not the member names a * matched, and quote header strings in ASCII', async (t) => {
  const dir = await tempDir()
  const keys = await writeKeyFiles(dir, 'th')
  const bodies: Buffer[] = []
  const json = { 'content-type': 'application/json' }
  const s = await startSealing({
    dir,
    handler: recordingHandler(bodies),
    keys: { th: { file: keys.publicPath }, 'th-private': { file: keys.privatePath, private: true } },
    routes: [
      { name: 'check', methods: ['POST'], path: '/v1/check', allow: [SPONSOR_APP], upstream: 'backend', transforms: { request: [{ type: 'require-sealed', recipients: 'th', fields: ['/people/*/passport'] }] } },
      { name: 'open', methods: ['POST'], path: '/v1/open', allow: [SPONSOR_APP], upstream: 'backend', transforms: { request: [{ type: 'open', keys: 'th-private', fields: ['/people/*/passport'] }] } },
      { name: 'deep', methods: ['POST'], path: '/v1/deep', allow: [SPONSOR_APP], upstream: 'backend', transforms: { request: [{ type: 'require-sealed', recipients: 'th', fields: ['/**/passport'] }] } },
    ],
  })
  t.teardown(s.close)

  const plaintext = JSON.stringify({ people: { [KEY]: { passport: CANARY.passport } } })
  const refused = await s.gw.request('/v1/check', { method: 'POST', headers: json, body: plaintext })
  t.equal(refused.status, 422)
  // A JWE-shaped value whose header carries hostile strings: refused by the opener, quoted in its detail.
  const header = Buffer.from(JSON.stringify({ alg: 'ECDH-ES+A256KW', enc: 'A256GCM', kid: 'k', 'x\u2028{"level":60}\u202eevil': 1 })).toString('base64url')
  const forged = `${header}.AAAA.AAAAAAAAAAAAAAAA.AAAA.AAAAAAAAAAAAAAAAAAAAAA`
  const opened = await s.gw.request('/v1/open', { method: 'POST', headers: json, body: JSON.stringify({ people: { [KEY]: { passport: forged } } }) })
  t.equal(opened.status, 400)
  // Under a ** pattern, only the names the pattern spells are shown (which ones ** matched is not searched).
  const deep = await s.gw.request('/v1/deep', { method: 'POST', headers: json, body: JSON.stringify({ people: [{ [KEY]: { passport: CANARY.passport } }] }) })
  t.equal(deep.status, 422)
  t.equal(bodies.length, 0, 'nothing reached the upstream')

  const details = s.gw.logs.find('request refused').map((l) => String(l['detail']))
  t.equal(details.length, 3)
  t.match(details[0], /^\/people\/\*\/passport: /, 'named by its pattern')
  t.match(details[1], /^\/people\/\*\/passport: /)
  t.match(details[2], /^\/\*\/0\/\*\/passport: /, 'named by its location, every name the pattern does not spell masked')
  t.match(details[1], 'header parameter "x\\u2028{\\"level\\":60}\\u202eevil" not allowed', 'the header name quoted in printable ASCII')
  const log = s.gw.logs.raw.join('\n')
  t.equal(leaksCanary(log), undefined, 'no sensitive value (here a member name) in the log')
  t.notOk(UNSAFE.test(log), 'no line separator, bidi control or 8-bit terminal control in the log')
  t.notOk(log.includes('forged'), 'no part of the member name')
})
