/**
 * Found by a review: a body on GET, HEAD, DELETE or OPTIONS was forwarded. RFC 9110 gives such a body
 * no meaning, and an upstream that answers without reading it (a static handler, a redirect, some
 * front proxies: the "CL.0" class) reads the body as the next request on the connection, one the
 * gateway never routed nor authorised, carrying whatever principal header the client wrote. Such a
 * request is refused `400 request_framing` before the upstream is contacted, unless the route lists
 * the method in `requestBodyOn`.
 */
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { stringify } from 'yaml'
import { runCli } from '../helpers/cli.js'
import { echoHandler, gatewayConfig, Harness, metricValue } from '../helpers/harness.js'
import { makeTestPki } from '../helpers/pki.js'

const APP = 'uri:spiffe://sponsor.test/accreditation-app'
const SMUGGLED = 'GET /admin/keys HTTP/1.1\r\nhost: x\r\nx-ecluse-principal: uri:spiffe://trusted.test/admin\r\n\r\n'

t.test('a body on a method without content is refused before the upstream, unless the route takes it', async (t) => {
  const seen: string[] = []
  const h = await Harness.start({
    routes: [
      { name: 'records', methods: ['GET', 'HEAD', 'POST', 'DELETE', 'OPTIONS'], path: '/v1/records/*', allow: [APP], upstream: 'backend' },
      { name: 'bulk-delete', methods: ['DELETE'], path: '/v1/bulk', allow: [APP], upstream: 'backend', requestBodyOn: ['DELETE'] },
    ],
    handler: (req, res) => {
      seen.push(`${req.method} ${req.url}`)
      echoHandler(req, res)
    },
  })
  t.teardown(() => h.close())

  const length = Buffer.byteLength(SMUGGLED)
  for (const method of ['GET', 'HEAD', 'DELETE', 'OPTIONS']) {
    for (const [framing, head, body] of [
      ['content-length', `content-length: ${length}`, SMUGGLED],
      ['chunked', 'transfer-encoding: chunked', `${length.toString(16)}\r\n${SMUGGLED}\r\n0\r\n\r\n`],
    ] as const) {
      const response = await h.raw(`${method} /v1/records/1 HTTP/1.1\r\nhost: localhost\r\n${head}\r\n\r\n${body}`)
      t.match(response, /^HTTP\/1\.1 400 /, `${method}, ${framing}: 400`)
      if (method !== 'HEAD') t.match(response, /\r\n\r\n\{"error":"request_framing","requestId":"[^"]+"\}$/, `${method}, ${framing}: the stable code`)
      t.notMatch(response, /admin/, `${method}, ${framing}: nothing of the body echoed`)
    }
  }
  t.same(seen, [], 'the upstream saw nothing: neither the request nor the one in its body')
  t.equal(metricValue(await h.metrics(), 'ecluse_rejected_requests_total', { reason: 'request_framing' }), 8, 'every refusal counted')

  // Controls: no body, an empty length, the content methods, and a route that takes DELETE bodies.
  t.equal((await h.request('/v1/records/1')).status, 200, 'GET without a body')
  t.match(await h.raw('GET /v1/records/2 HTTP/1.1\r\nhost: localhost\r\ncontent-length: 0\r\nconnection: close\r\n\r\n'), /^HTTP\/1\.1 200 /, 'GET with content-length: 0')
  t.equal((await h.request('/v1/records/3', { method: 'POST', body: '{"a":1}', headers: { 'content-type': 'application/json' } })).status, 200, 'POST with a body')
  const bulk = await h.request('/v1/bulk', { method: 'DELETE', body: '{"ids":[1,2]}', headers: { 'content-type': 'application/json' } })
  t.equal(bulk.status, 200, 'DELETE with a body on a route with requestBodyOn: [DELETE]')
  t.match(bulk.json(), { method: 'DELETE', bytes: 13 }, 'its body reached the upstream')
  t.same(seen, ['GET /v1/records/1', 'GET /v1/records/2', 'POST /v1/records/3', 'DELETE /v1/bulk'])
})

t.test('requestBodyOn names only methods of its route', async (t) => {
  const pki = await makeTestPki()
  const file = join(t.testdir(), 'gateway.yaml')
  const route = { name: 'records', methods: ['GET'], path: '/v1/records/*', allow: [APP], upstream: 'backend', requestBodyOn: ['DELETE'] }
  await writeFile(file, stringify(gatewayConfig(pki, 9443, [route])))
  const r = await runCli(['config', 'check', file])
  t.equal(r.code, 1)
  t.match(r.stderr, /routes\[0\]\.requestBodyOn: DELETE is not in the route's methods/)
  await writeFile(file, stringify(gatewayConfig(pki, 9443, [{ ...route, requestBodyOn: ['HEAD'] }])))
  t.match((await runCli(['config', 'check', file])).stderr, /routes\[0\]\.requestBodyOn\[0\]/, 'HEAD never takes a body')
})
