/**
 * A reload that changes an upstream's settings builds a new pool and retires the old one. The old
 * pool was closed at once, while an exchange that began before the reload still held it: on a route
 * with request transforms the upstream is only called once the transformed body is held whole (or
 * `requestHoldBytes` of it), so a slow upload that straddled the reload failed with
 * `upstream_unavailable` (undici's closed client). A retired pool now closes once no request that
 * could still use it is in flight.
 */
import { PassThrough } from 'node:stream'
import t from 'tap'
import { Harness } from '../helpers/harness.js'

t.test('an upload that straddles a reload replacing its upstream pool completes through the pool it began with', async (t) => {
  const h = await Harness.start({
    routes: [
      {
        name: 'records',
        methods: ['POST'],
        path: '/v1/records/*',
        allow: ['uri:spiffe://sponsor.test/accreditation-app'],
        upstream: 'backend',
        transforms: { request: [{ type: 'strip', fields: ['/internal'] }] },
      },
    ],
  })
  t.teardown(() => h.close())

  const body = new PassThrough()
  const answer = h.request('/v1/records/1', { method: 'POST', headers: { 'content-type': 'application/json' }, body })
  body.write('{"name":"a",')
  for (let i = 0; i < 200 && h.gateway.proxy.inFlight === 0; i++) await new Promise((r) => setTimeout(r, 10))
  t.equal(h.gateway.proxy.inFlight, 1, 'the upload is in the gateway, its body held by the transform')
  t.equal(h.upstream.hits, 0, 'and the upstream not yet called')

  // New settings for the upstream: a new pool, the old one retired.
  const upstreams = h.config['upstreams'] as Record<string, Record<string, unknown>>
  await h.writeConfig({ ...h.config, upstreams: { backend: { ...upstreams['backend'], connectTimeoutMs: 1500 } } })
  t.match(await h.gateway.reload(), { ok: true }, 'the reload applies')
  t.equal(h.gateway.proxy.retiredPools.length, 1, 'the old pool waits for the upload')

  body.end('"internal":"x","age":3}')
  const res = await answer
  t.equal(res.status, 200, 'the upload completes')
  // The upstream echoes the length of what it received: the body with `internal` stripped.
  t.same(res.json(), { method: 'POST', url: '/v1/records/1', bytes: Buffer.byteLength('{"name":"a","age":3}') }, 'transformed, through the pool it began with')

  for (let i = 0; i < 200 && h.gateway.proxy.inFlight > 0; i++) await new Promise((r) => setTimeout(r, 10))
  t.equal(h.gateway.proxy.retiredPools.length, 0, 'and closes once the upload is done')

  const after = await h.request('/v1/records/2', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"internal":1}' })
  t.equal(after.status, 200, 'a request after the reload goes through the new pool')
  t.equal(h.upstream.hits, 2)
})

t.test('a reload that a shutdown overtakes while it reads its files applies nothing', async (t) => {
  // The reload reads the files (async), the shutdown begins meanwhile: the reload's new pool would
  // have outlived the close, and the drain would have gone on with half the new state.
  const h = await Harness.start()
  t.teardown(() => h.close())
  const before = h.gateway.config
  const upstreams = h.config['upstreams'] as Record<string, Record<string, unknown>>
  await h.writeConfig({ ...h.config, upstreams: { backend: { ...upstreams['backend'], connectTimeoutMs: 1500 } } })
  const reloading = h.gateway.reload()
  const stopping = h.gateway.shutdown()
  t.same(await reloading, { ok: false, error: 'shutting down' }, 'not applied')
  t.equal(h.gateway.config, before, 'the configuration in use is the one it had')
  t.equal(h.gateway.proxy.retiredPools.length, 0, 'no pool was swapped out')
  await stopping
})
