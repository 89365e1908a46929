/**
 * Field patterns match names exactly, but many JSON consumers do not: Go's encoding/json matches
 * names without case (and Unicode folds `ſ` onto s, the Kelvin sign onto k), as do .NET's web
 * defaults and Jackson so configured. A member spelled like a listed field but for case would pass
 * `seal` and `require-sealed` unsealed and be read as that field: such a body is refused
 * (`json_invalid`), as a duplicate member is, and nothing of it crosses. Likewise a name that C
 * parsers end early (a NUL in it: json-c and cJSON read `passportNumber\u0000x` as
 * `passportNumber`), and a decomposed spelling of a listed name (`pre\u0301nom` for `prénom`),
 * which consumers that compare up to canonical equivalence read as the listed one.
 */
import t from 'tap'
import { CANARY, leaksCanary, recordingHandler, SPONSOR_APP, startSealing, tempDir, writeKeyFiles } from '../helpers/sealing.js'

const json = { 'content-type': 'application/json' }
const P = CANARY.passport

t.test('a case variant of a listed name, or of a name on its path, is refused by seal and require-sealed', async (t) => {
  const dir = await tempDir()
  const keys = await writeKeyFiles(dir, 'th')
  const bodies: Buffer[] = []
  const fields = ['/holder/passportNumber', '/holder/prénom', '/holder/straße']
  const s = await startSealing({
    dir,
    handler: recordingHandler(bodies),
    keys: { th: { file: keys.publicPath } },
    routes: [
      { name: 'seal', methods: ['POST'], path: '/v1/seal', allow: [SPONSOR_APP], upstream: 'backend', transforms: { request: [{ type: 'seal', recipients: 'th', fields }] } },
      { name: 'check', methods: ['POST'], path: '/v1/check', allow: [SPONSOR_APP], upstream: 'backend', transforms: { request: [{ type: 'require-sealed', recipients: 'th', fields }] } },
    ],
  })
  t.teardown(s.close)

  const variants: Array<[string, string]> = [
    ['upper-case first letter', `{"holder":{"PassportNumber":"${P}"}}`],
    ['all upper case', `{"holder":{"PASSPORTNUMBER":"${P}"}}`],
    ['ſ (U+017F), which Unicode folds onto s', `{"holder":{"paſſportNumber":"${P}"}}`],
    ['an escaped capital', `{"holder":{"\\u0050assportNumber":"${P}"}}`],
    ['beside the exact name', `{"holder":{"PassportNumber":"${P}","passportNumber":"x"}}`],
    ['a case variant on the path', `{"Holder":{"passportNumber":"${P}"}}`],
    // Go and Jackson (lower-casing) take the capital ẞ for ß, and Unicode's case fold takes ß for ss.
    ['ẞ (U+1E9E) for ß', `{"holder":{"straẞe":"${P}"}}`],
    ['ẞ escaped', `{"holder":{"stra\\u1e9ee":"${P}"}}`],
    ['SS for ß', `{"holder":{"STRASSE":"${P}"}}`],

    // C parsers (json-c, cJSON) end a name at a NUL: to them these are passportNumber.
    ['a NUL after the name', `{"holder":{"passportNumber\\u0000":"${P}"}}`],
    ['a NUL and more after the name', `{"holder":{"passportNumber\\u0000x":"${P}"}}`],
    ['a NUL variant beside the exact name', `{"holder":{"passportNumber\\u0000":"${P}","passportNumber":"x"}}`],
    ['a NUL in a name elsewhere', `{"holder":{"note\\u0000":"x"}}`],
    // Consumers that compare names up to canonical equivalence (Swift) read these as prénom.
    ['the decomposed spelling, escaped', `{"holder":{"pre\\u0301nom":"${P}"}}`],
    ['the decomposed spelling, raw', `{"holder":{"pre\u0301nom":"${P}"}}`],
    ['the decomposed spelling in upper case', `{"holder":{"PRE\u0301NOM":"${P}"}}`],
  ]
  for (const route of ['seal', 'check']) {
    for (const [what, body] of variants) {
      const res = await s.gw.request(`/v1/${route}`, { method: 'POST', headers: json, body })
      t.equal(res.status, 400, `${route}, ${what}: 400`)
      t.same(res.json(), { error: 'json_invalid', requestId: res.headers['x-request-id'] }, `${route}, ${what}: json_invalid`)
    }
  }
  t.equal(bodies.length, 0, 'no variant reached the upstream')
  t.equal(leaksCanary(s.gw.logs.raw.join('\n')), undefined, 'nor the log')

  // Names that only resemble a listed one, and the exact spelling, go on as before.
  const ok = await s.gw.request('/v1/seal', { method: 'POST', headers: json, body: `{"holder":{"passportNumber":"${P}","prénom":"${P}","straße":"${P}","passport":"x","number":"y"},"Passports":1}` })
  t.equal(ok.status, 200)
  t.equal(leaksCanary(bodies[0]!.toString()), undefined, 'the exact names sealed, prénom as composed, straße')
})
