import t from 'tap'
import { Harness } from '../helpers/harness.js'

t.test('an unknown route is 404 route_not_found, a wrong method 405, and the upstream is untouched', async (t) => {
  const h = await Harness.start()
  t.teardown(() => h.close())
  const unknown = await h.request('/v2/anything')
  t.equal(unknown.status, 404)
  t.equal((unknown.json() as { error: string }).error, 'route_not_found')
  const wrongMethod = await h.request('/v1/records', { method: 'DELETE' })
  t.equal(wrongMethod.status, 405)
  t.equal((wrongMethod.json() as { error: string }).error, 'method_not_allowed')
  t.equal(h.upstream.hits, 0)
})
