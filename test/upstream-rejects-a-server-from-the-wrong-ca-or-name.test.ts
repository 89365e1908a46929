import { once } from 'node:events'
import { createServer, type Server } from 'node:https'
import type { AddressInfo } from 'node:net'
import t from 'tap'
import { upstreamSchema } from '../src/config/schema.js'
import { EcluseError } from '../src/errors.js'
import { type UpstreamErrorCode, UpstreamPool } from '../src/upstream/pool.js'
import { makeTestPki, type TestCert } from './helpers/pki.js'

const pki = await makeTestPki()

/** An mTLS upstream presenting `cert`, counting the requests that reached its handler. */
async function upstream(
  cert: TestCert,
  maxVersion: 'TLSv1.2' | 'TLSv1.3' = 'TLSv1.3',
): Promise<{ server: Server; port: number; handled: () => number }> {
  let handled = 0
  const server = createServer(
    {
      cert: cert.certPem,
      key: cert.keyPem,
      ca: pki.trustedCa.certPem,
      requestCert: true,
      rejectUnauthorized: true,
      maxVersion,
    },
    (_req, res) => {
      handled++
      res.end('secret accreditation data')
    },
  )
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => {
    server.closeAllConnections()
    server.close()
  })
  return { server, port: (server.address() as AddressInfo).port, handled: () => handled }
}

function poolFor(port: number, errors: UpstreamErrorCode[], minVersion: 'TLSv1.2' | 'TLSv1.3' = 'TLSv1.2', host?: string): UpstreamPool {
  const cfg = upstreamSchema.parse({
    url: `https://127.0.0.1:${port}`,
    serverName: 'accreditation.trusted.test',
    ...(host === undefined ? {} : { host }),
    tls: { ca: 'unused.pem', cert: 'unused.pem', key: 'unused.pem', minVersion },
  })
  const pool = new UpstreamPool(
    'accreditation',
    cfg,
    {
      ca: Buffer.from(pki.trustedCa.certPem),
      cert: Buffer.from(pki.gatewayTrustedClient.certPem),
      key: Buffer.from(pki.gatewayTrustedClient.keyPem),
    },
    { onError: (code) => errors.push(code) },
  )
  t.teardown(() => pool.destroy())
  return pool
}

function get(pool: UpstreamPool, headers: Record<string, string> = {}) {
  return pool.request({ method: 'GET', path: '/v1/accreditations/1', headers, body: null, signal: new AbortController().signal })
}

t.test('control: the right server at an IP URL verifies against serverName', async (t) => {
  const { port, handled } = await upstream(pki.trustedServer)
  const errors: UpstreamErrorCode[] = []
  const res = await get(poolFor(port, errors))
  t.equal(res.statusCode, 200)
  t.equal(await res.body.setEncoding('utf8').toArray().then((c) => c.join('')), 'secret accreditation data')
  t.equal(handled(), 1)
  t.same(errors, [])
})

t.test('a server certificate from the sponsor CA is refused with upstream_tls', async (t) => {
  const { port, handled } = await upstream(pki.sponsorCaTrustedServer)
  const errors: UpstreamErrorCode[] = []
  const err = await get(poolFor(port, errors)).then(
    () => t.fail('must not connect'),
    (e: unknown) => e,
  )
  t.type(err, EcluseError)
  t.equal((err as EcluseError).code, 'upstream_tls')
  t.equal((err as EcluseError).status, 502)
  // The name is right (accreditation.trusted.test): only the chain is wrong.
  t.equal(((err as EcluseError).cause as { code?: string }).code, 'UNABLE_TO_VERIFY_LEAF_SIGNATURE')
  t.equal(handled(), 0, 'no request reached the impostor')
  t.same(errors, ['upstream_tls'])
})

t.test('a trusted-CA certificate for another name is refused, even though it has the IP SAN of the URL', async (t) => {
  // wrongNameTrustedServer carries IP:127.0.0.1 and DNS:localhost: checking the URL host would pass.
  const { port, handled } = await upstream(pki.wrongNameTrustedServer)
  const errors: UpstreamErrorCode[] = []
  const err = (await get(poolFor(port, errors)).catch((e: unknown) => e)) as EcluseError
  t.equal(err.code, 'upstream_tls')
  t.equal((err.cause as { code?: string }).code, 'ERR_TLS_CERT_ALTNAME_INVALID')
  t.equal(handled(), 0)
  t.same(errors, ['upstream_tls'])
})

t.test('a Host header cannot change the name the upstream certificate is checked against', async (t) => {
  // undici derives SNI and the verified name from a Host header unless the pool pins servername.
  // wrong.trusted.test is a name the impostor's certificate carries: verified against it, it would pass.
  const { port, handled } = await upstream(pki.wrongNameTrustedServer)
  const errors: UpstreamErrorCode[] = []
  const err = (await get(poolFor(port, errors), { host: 'wrong.trusted.test' }).catch((e: unknown) => e)) as EcluseError
  t.equal(err.code, 'upstream_tls')
  t.equal((err.cause as { code?: string }).code, 'ERR_TLS_CERT_ALTNAME_INVALID')
  t.equal(handled(), 0)
})

t.test("nor can the upstream's configured host: it names the Host field only, serverName is still what is verified", async (t) => {
  const { port, handled } = await upstream(pki.wrongNameTrustedServer)
  const errors: UpstreamErrorCode[] = []
  // localhost, like wrong.trusted.test, is a name the impostor's certificate carries.
  const err = (await get(poolFor(port, errors, 'TLSv1.2', 'localhost')).catch((e: unknown) => e)) as EcluseError
  t.equal(err.code, 'upstream_tls')
  t.equal((err.cause as { code?: string }).code, 'ERR_TLS_CERT_ALTNAME_INVALID')
  t.equal(handled(), 0)
  t.same(errors, ['upstream_tls'])
})

t.test('an upstream below the configured minVersion is refused with upstream_tls', async (t) => {
  const { port, handled } = await upstream(pki.trustedServer, 'TLSv1.2')
  const errors: UpstreamErrorCode[] = []
  const err = (await get(poolFor(port, errors, 'TLSv1.3')).catch((e: unknown) => e)) as EcluseError
  t.equal(err.code, 'upstream_tls')
  t.equal(handled(), 0)
  t.same(errors, ['upstream_tls'])
})
