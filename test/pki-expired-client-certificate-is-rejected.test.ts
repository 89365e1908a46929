// A client certificate past its notAfter is refused by a real TLS server with OpenSSL's
// CERT_HAS_EXPIRED, and the application never sees the connection.
import { X509Certificate } from 'node:crypto'
import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import { connect, createServer, type TLSSocket } from 'node:tls'
import t from 'tap'
import { makeTestPki } from './helpers/pki.js'

t.test('an expired sponsor client certificate is rejected with CERT_HAS_EXPIRED', async (t) => {
  const pki = await makeTestPki()
  const expired = new X509Certificate(pki.expiredSponsorClient.certPem)
  t.ok(Date.parse(expired.validTo) < Date.now(), 'the fixture is expired')
  t.ok(expired.checkIssued(new X509Certificate(pki.sponsorCa.certPem)), 'and otherwise issued by the sponsor CA')

  for (const version of ['TLSv1.3', 'TLSv1.2'] as const) {
    t.test(version, async (t) => {
      t.plan(4)
      const srv = createServer({
        cert: pki.gatewaySponsorServer.certPem,
        key: pki.gatewaySponsorServer.keyPem,
        ca: pki.sponsorCa.certPem,
        requestCert: true,
        rejectUnauthorized: true,
      })
      t.teardown(() => srv.close())
      srv.on('secureConnection', () => t.fail('the application must not see the connection'))
      const rejected = once(srv, 'tlsClientError') as Promise<[Error, TLSSocket]>
      srv.listen(0, '127.0.0.1')
      await once(srv, 'listening')

      let received = ''
      const client = connect({
        host: '127.0.0.1',
        port: (srv.address() as AddressInfo).port,
        cert: pki.expiredSponsorClient.certPem,
        key: pki.expiredSponsorClient.keyPem,
        ca: pki.sponsorCa.certPem,
        minVersion: version,
        maxVersion: version,
      })
      client.setEncoding('utf8')
      client.on('data', (d: string) => {
        received += d
      })
      client.on('error', () => {}) // TLS 1.2: the reset surfaces as a client error; either way it closes
      // Not events.once: it would reject on the 'error' that TLS 1.2 emits before 'close'.
      const closed = new Promise<void>((resolve) => client.on('close', () => resolve()))

      const [, socket] = await rejected
      t.equal(socket.authorized, false)
      t.equal(socket.authorizationError, 'CERT_HAS_EXPIRED')
      await closed
      t.equal(received, '', 'nothing was sent to the client')
      t.ok(client.destroyed, 'the client connection is closed')
    })
  }
})
