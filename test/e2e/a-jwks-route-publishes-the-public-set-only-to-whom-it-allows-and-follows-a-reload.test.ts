/**
 * Found by review: nothing pinned the `jwks` route's answer itself. It publishes the set's public
 * keys (never a private member, even from a private set), as `application/jwk-set+json` with its
 * length and a cache lifetime, HEAD without a body, only to the principals its `allow` list names,
 * never calling the upstream; and a reload that rotates the set is what the next GET sees.
 */
import { copyFile, rm } from 'node:fs/promises'
import tls from 'node:tls'
import t from 'tap'
import { request } from 'undici'
import { SPONSOR_APP, startSealing, tempDir, writeKeyFiles } from '../helpers/sealing.js'

const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'k']

t.test('the jwks route: public members only, its headers, HEAD, its ACL, no upstream, and a reload', async (t) => {
  const dir = await tempDir()
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const first = await writeKeyFiles(dir, 'jwks-a')
  const s = await startSealing({
    dir,
    keys: { host: { file: first.privatePath, private: true } },
    routes: [
      { name: 'keys', methods: ['GET', 'HEAD'], path: '/.well-known/jwks.json', allow: [SPONSOR_APP], upstream: 'backend', jwks: 'host' },
      // The set is private (this gateway opens with it): the route must still publish its public half only.
      { name: 'open', methods: ['POST'], path: '/v1/open', allow: [SPONSOR_APP], upstream: 'backend', transforms: { request: [{ type: 'open', keys: 'host', fields: ['/passport'] }] } },
    ],
  })
  t.teardown(() => s.close())

  const got = await s.gw.request('/.well-known/jwks.json')
  t.equal(got.status, 200)
  t.equal(got.headers['content-type'], 'application/jwk-set+json')
  t.equal(Number(got.headers['content-length']), got.body.length)
  t.equal(got.headers['cache-control'], 'max-age=300')
  const published = got.json() as { keys: Array<Record<string, unknown>> }
  t.same(
    published.keys.map((k) => k['kid']),
    (first.publicJwks as { keys: Array<{ kid: string }> }).keys.map((k) => k.kid),
    'the set’s keys, in its order',
  )
  for (const key of published.keys) {
    for (const member of PRIVATE_MEMBERS) t.notOk(member in key, `no "${member}" in ${String(key['kid'])}, though the set is private`)
  }

  // Found by review: every answer said `connection: close` (a GET is not `complete` while it is
  // handled), costing the client a handshake per fetch and dropping what it had pipelined behind.
  const GET = 'GET /.well-known/jwks.json HTTP/1.1\r\nhost: localhost\r\n'
  const pipelined = await new Promise<string>((resolve, reject) => {
    const socket = tls.connect({
      host: '127.0.0.1',
      port: s.gw.gateway.sponsorPort,
      servername: 'localhost',
      ca: s.pki.sponsorCa.certPem,
      cert: s.pki.sponsorClient.certPem,
      key: s.pki.sponsorClient.keyPem,
    })
    let out = ''
    socket.setEncoding('utf8')
    socket.on('secureConnect', () => socket.write(`${GET}\r\n${GET}connection: close\r\n\r\n`))
    socket.on('data', (d: string) => {
      out += d
    })
    socket.on('close', () => resolve(out))
    socket.on('error', reject)
  })
  t.equal(pipelined.match(/HTTP\/1\.1 200 /g)?.length, 2, 'two fetches answered on one connection')
  t.notMatch(pipelined.split('\r\n\r\n')[0]!, /connection: close/i, 'the first answer keeps the connection')

  const head = await s.gw.request('/.well-known/jwks.json', { method: 'HEAD' })
  t.equal(head.status, 200)
  t.equal(head.body.length, 0, 'HEAD: no body')

  const stranger = s.gw.agent(s.pki.otherSponsorClient)
  const denied = await request(`${s.gw.sponsorOrigin}/.well-known/jwks.json`, { dispatcher: stranger })
  t.equal(denied.statusCode, 403, 'a principal the route does not allow gets no key')
  t.same(Object.keys((await denied.body.json()) as object).sort(), ['error', 'requestId'])
  t.equal(s.upstream.hits, 0, 'the upstream was never called')

  // A rotation: the next GET publishes the new set.
  const second = await writeKeyFiles(dir, 'jwks-b')
  await copyFile(second.privatePath, first.privatePath)
  t.match(await s.gw.gateway.reload(), { ok: true })
  const after = (await s.gw.request('/.well-known/jwks.json')).json() as { keys: Array<Record<string, unknown>> }
  t.same(
    after.keys.map((k) => k['kid']),
    (second.publicJwks as { keys: Array<{ kid: string }> }).keys.map((k) => k.kid),
    'the reloaded set',
  )
  t.not(after.keys[0]!['kid'], published.keys[0]!['kid'])
})
