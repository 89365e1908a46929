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

t.test('a HEAD goes where its GET would: a GET-only literal is not reached by HEAD through a broader route', async (t) => {
  // Upstreams answer HEAD with their GET handler: routed by the HEAD routes alone, HEAD /docs/secret
  // took the broader route and its ACL, and ran the secret's handler for a client the secret refuses.
  const app = 'uri:spiffe://sponsor.test/accreditation-app'
  const h = await Harness.start({
    routes: [
      { name: 'secret', methods: ['GET'], path: '/docs/secret', allow: ['uri:spiffe://sponsor.test/admin'], upstream: 'backend' },
      { name: 'docs', methods: ['GET', 'HEAD'], path: '/docs/:name', allow: [app], upstream: 'backend' },
    ],
  })
  t.teardown(() => h.close())
  const head = await h.request('/docs/secret', { method: 'HEAD' })
  t.equal(head.status, 405, 'HEAD of the GET-only literal: method_not_allowed')
  const get = await h.request('/docs/secret')
  t.equal(get.status, 403, 'its GET: forbidden to this client')
  t.equal((get.json() as { error: string }).error, 'forbidden')
  t.equal(h.upstream.hits, 0, 'neither reached the upstream')
  const other = await h.request('/docs/readme', { method: 'HEAD' })
  t.equal(other.status, 200, 'HEAD where the broader route is the GET route too')
  t.equal(h.upstream.hits, 1)
})

t.test('a refused path is logged by the routes’ literals only: a value in it never reaches the log', async (t) => {
  // A mistyped URL or a wrong method on a record's path carries the record's identifiers.
  const h = await Harness.start()
  t.teardown(() => h.close())
  const typo = await h.request('/v1/recrods/P12345678/photo')
  t.equal(typo.status, 404)
  const wrongMethod = await h.request('/v1/records/P87654321', { method: 'DELETE' })
  t.equal(wrongMethod.status, 405)
  const long = await h.request(`/v1/records${'/P11223344'.repeat(20)}`, { method: 'DELETE' })
  t.equal(long.status, 405)
  const details = h.logs.find('request refused').map((l) => l['detail'])
  t.strictSame(details, ['GET /v1/*/*/*', 'DELETE /v1/records/*', 'DELETE /v1/records/*/*/*/*/*/*/*/*/*/*/… (10 more segments)'])
  t.notMatch(h.logs.text(), /P\d{8}|recrods|photo/, 'no segment of the paths is in any log line')
  t.equal(h.upstream.hits, 0)
})
