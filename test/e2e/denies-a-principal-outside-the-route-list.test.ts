import t from 'tap'
import { Harness, metricValue } from '../helpers/harness.js'

t.test('a verified principal outside the route list gets 403 forbidden and the upstream is untouched', async (t) => {
  const h = await Harness.start({
    routes: [
      { name: 'records', methods: ['GET'], path: '/v1/records/:id', allow: ['uri:spiffe://sponsor.test/accreditation-app'], upstream: 'backend' },
      { name: 'nobody', methods: ['GET'], path: '/v1/closed', allow: [], upstream: 'backend' },
    ],
  })
  t.teardown(() => h.close())
  const denied = await h.request('/v1/records/1', { cert: h.pki.otherSponsorClient })
  t.equal(denied.status, 403)
  t.same(Object.keys(denied.json() as object).sort(), ['error', 'requestId'])
  t.equal((denied.json() as { error: string }).error, 'forbidden')
  t.notMatch(denied.body.toString(), /other-app/, 'the error does not echo the principal')

  const emptyList = await h.request('/v1/closed')
  t.equal(emptyList.status, 403, 'an empty allow list allows nobody')
  t.equal(h.upstream.hits, 0, 'the upstream saw nothing')

  const metrics = await h.metrics()
  t.equal(metricValue(metrics, 'ecluse_authorization_denials_total', { route: 'records', reason: 'principal_not_allowed' }), 1)
  t.equal(metricValue(metrics, 'ecluse_authorization_denials_total', { route: 'nobody', reason: 'principal_not_allowed' }), 1)
  const line = h.logs.find('request refused').find((l) => l['code'] === 'forbidden')
  t.ok(line, 'the denial is logged with its code')
})
