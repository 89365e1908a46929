import t from 'tap'
import { ACCESS_LOG_MSG } from '../../src/observability/logger.js'
import { CANARY, leaksCanary, SPONSOR_APP, startSealing } from '../helpers/sealing.js'

// Regression: the exchange once wrote its own access line beside the allow-listed formatter that
// the logger tests pin, so those tests said nothing about the line the gateway really writes.
t.test('the access line the running gateway writes has exactly the allow-listed fields, for a success and a refusal', async (t) => {
  const s = await startSealing({
    routes: [{ name: 'records', methods: ['POST'], path: '/v1/records', allow: [SPONSOR_APP], upstream: 'backend' }],
  })
  t.teardown(s.close)
  const ok = await s.gw.request(`/v1/records?passport=${encodeURIComponent(CANARY.passport)}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${CANARY.name}` },
    body: JSON.stringify({ passport: CANARY.passport }),
  })
  t.equal(ok.status, 200)
  const refused = await s.gw.request(`/v1/nowhere/${encodeURIComponent(CANARY.phone)}`)
  t.equal(refused.status, 404)

  for (let i = 0; i < 200 && s.gw.logs.find(ACCESS_LOG_MSG).length < 2; i++) await new Promise((r) => setTimeout(r, 10))
  const lines = s.gw.logs.find(ACCESS_LOG_MSG)
  t.equal(lines.length, 2, 'one access line per request')
  const gatewayFields = ['reqId', 'route', 'principal', 'method', 'status', 'aborted', 'bytesIn', 'bytesOut', 'durationMs']
  const pino = ['level', 'time', 'pid', 'hostname', 'service', 'msg']
  const [success, refusal] = lines
  t.same(
    Object.keys(success!).filter((k) => !pino.includes(k)),
    [...gatewayFields, 'upstreamMs'],
    'a proxied request: the fixed fields and the upstream time',
  )
  t.same(Object.keys(refusal!).filter((k) => !pino.includes(k)), [...gatewayFields, 'code'], 'a refusal: the fixed fields and its code')
  t.match(success, { route: 'records', principal: 'uri:spiffe://sponsor.test/accreditation-app', method: 'POST', status: 200, aborted: false })
  t.match(refusal, { route: 'unmatched', status: 404, code: 'route_not_found' })
  t.equal(leaksCanary(JSON.stringify(lines)), undefined, 'no path, query, header or body value in the access lines')
})
