import t from 'tap'
import { isAllowed } from '../src/identity/authorize.js'
import type { Principal } from '../src/identity/principal.js'
import type { CompiledRoute } from '../src/route/table.js'

const route = (allow: string[]) => ({ allow: new Set(allow) }) as unknown as CompiledRoute
const principal: Principal = {
  id: 'spiffe://sponsor.test/app',
  attributes: new Set(['uri:spiffe://sponsor.test/app', 'dns:app.sponsor.test', 'cn:app', 'ou:accreditation']),
}

const CASES: Array<[string[], boolean, string]> = [
  [[], false, 'an empty allow list admits nobody'],
  [['uri:spiffe://sponsor.test/app'], true, 'a listed URI SAN'],
  [['dns:app.sponsor.test'], true, 'a listed DNS SAN'],
  [['cn:app'], true, 'a listed CN'],
  [['ou:other', 'ou:accreditation'], true, 'any one listed attribute is enough'],
  [['uri:spiffe://sponsor.test/other', 'cn:other'], false, 'nothing listed'],
  [['uri:spiffe://sponsor.test'], false, 'a prefix is not a match'],
  [['uri:spiffe://sponsor.test/app/'], false, 'a longer value is not a match'],
  [['uri:SPIFFE://sponsor.test/app'], false, 'matching is exact, case included'],
  [['spiffe://sponsor.test/app'], false, 'a bare id is not a matcher'],
  [['dns:spiffe://sponsor.test/app'], false, 'the attribute kind is part of the match'],
]

t.plan(CASES.length + 1)
for (const [allow, expected, why] of CASES) t.equal(isAllowed(route(allow), principal), expected, why)
t.equal(isAllowed(route(['cn:app']), { id: 'x', attributes: new Set() }), false, 'a principal without attributes is allowed nowhere')
