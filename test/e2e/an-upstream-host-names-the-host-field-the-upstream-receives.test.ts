/**
 * `upstreams.<name>.host`: an upstream reached at an address but routing by name (a virtual host
 * behind nginx or an ingress) gets that name in `Host`, on proxied requests and on the readiness
 * probe alike. Without it the upstream sees the URL's host[:port], never the sponsor's own Host.
 * Whether it changes the name the upstream's certificate is checked against (it does not) is
 * tested in test/upstream-rejects-a-server-from-the-wrong-ca-or-name.test.ts.
 */
import t from 'tap'
import { request } from 'undici'
import { parseConfig } from '../../src/config/load.js'
import { EcluseError } from '../../src/errors.js'
import { Harness } from '../helpers/harness.js'

t.test('a configured host is the Host of every request and probe the upstream receives', async (t) => {
  const h = await Harness.start({ upstream: { host: 'accreditation.trusted.example:8443' } })
  t.teardown(() => h.close())
  const res = await h.request('/v1/records/42', { headers: { host: 'localhost' } })
  t.equal(res.status, 200)
  t.equal(h.upstream.seen[0]?.headers.host, 'accreditation.trusted.example:8443', 'the configured host, not the sponsor’s nor the URL’s')
  const ready = await request(`${h.adminOrigin}/readyz`)
  await ready.body.dump()
  t.equal(ready.statusCode, 200)
  const probe = h.upstream.seen.find((s) => s.url === '/healthz')
  t.equal(probe?.headers.host, 'accreditation.trusted.example:8443', 'the readiness probe names it too')
})

t.test('without one, the upstream receives the URL’s host and port', async (t) => {
  const h = await Harness.start()
  t.teardown(() => h.close())
  const res = await h.request('/v1/records/42', { headers: { host: 'localhost' } })
  t.equal(res.status, 200)
  t.equal(h.upstream.seen[0]?.headers.host, `127.0.0.1:${h.upstream.port}`)
})

t.test('a host that is no host[:port] is refused at load, naming the key', async (t) => {
  const file = (host: string) =>
    `sponsor:\n  listen: { port: 8443 }\n  tls: { cert: a, key: b, clientCa: c }\nupstreams:\n  u:\n    url: https://127.0.0.1:9443\n    serverName: s\n    host: ${JSON.stringify(host)}\n    tls: { ca: a, cert: b, key: c }\nroutes: [{ name: r, methods: [GET], path: /, allow: [], upstream: u }]\nadmin: { listen: { port: 9090 } }\n`
  for (const good of ['accreditation.trusted.example', 'svc:8443', '10.0.0.5', '[::1]:443', 'a-b.c1', 'my_service:8443', 'svc.example.', 'SVC.Example']) {
    t.equal(parseConfig(file(good), 'g.yaml').upstreams['u']!.host, good, `${good} is accepted`)
  }
  const bad = ['a b', 'evil.example\r\nx-injected: 1', 'user@host', 'host:0', 'host:65536', 'host/path', '-lead.example', '', 'host:', '[::1', 'caf\u00e9.example', '[1.2.3.4]']
  for (const value of bad) {
    const err = (() => {
      try {
        parseConfig(file(value), 'b.yaml')
      } catch (e) {
        return e
      }
      return undefined
    })()
    t.type(err, EcluseError, `${JSON.stringify(value)} is refused`)
    t.equal((err as EcluseError).code, 'config_invalid')
    t.match((err as EcluseError).message, /b\.yaml: upstreams\.u\.host: /, 'the message names the key')
  }
})
