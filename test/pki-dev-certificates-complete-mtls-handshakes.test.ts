// The development certificates are accepted by Node's TLS (OpenSSL 3) in both roles, over TLS 1.3
// and TLS 1.2, each side's CA accepts only its own side's certificates, and OpenSSL enforces the
// serverAuth / clientAuth split.
import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import { type ConnectionOptions, connect, createServer, type TLSSocket } from 'node:tls'
import t from 'tap'
import { createCa, DEV_LEAF_SPECS, issueCertificate } from '../src/pki/dev-pki.js'
import { makeTestPki, type TestCert } from './helpers/pki.js'

interface Outcome {
  server: { authorized: boolean; authorizationError?: string; peerSubjectAltName?: string; peerCn?: string }
  client: { authorized?: boolean; error?: string; received: string; peerSubjectAltName?: string }
}

/** One connection to a fresh mTLS server on 127.0.0.1 port 0 (closed before returning). */
async function handshake(
  server: { id: TestCert; ca: TestCert },
  client: Omit<ConnectionOptions, 'host' | 'port'>,
): Promise<Outcome> {
  const srv = createServer({
    cert: server.id.certPem,
    key: server.id.keyPem,
    ca: server.ca.certPem,
    requestCert: true,
    rejectUnauthorized: true,
  })
  const serverSide = new Promise<Outcome['server']>((resolve) => {
    srv.once('secureConnection', (socket: TLSSocket) => {
      const peer = socket.getPeerCertificate()
      resolve({ authorized: socket.authorized, peerSubjectAltName: peer.subjectaltname, peerCn: String(peer.subject?.CN) })
      socket.end('hello over mTLS')
    })
    // Node verifies the client chain after the OpenSSL handshake and destroys the socket on failure,
    // keeping OpenSSL's verdict in authorizationError.
    srv.once('tlsClientError', (_err: Error, socket: TLSSocket) =>
      resolve({ authorized: false, authorizationError: String(socket.authorizationError) }),
    )
  })
  srv.listen(0, '127.0.0.1')
  await once(srv, 'listening')
  try {
    const { port } = srv.address() as AddressInfo
    const clientSide = new Promise<Outcome['client']>((resolve) => {
      const out: Outcome['client'] = { received: '' }
      const socket = connect({ ...client, host: '127.0.0.1', port }, () => {
        out.authorized = socket.authorized
        out.peerSubjectAltName = socket.getPeerCertificate().subjectaltname
      })
      socket.setEncoding('utf8')
      socket.on('data', (d: string) => {
        out.received += d
      })
      socket.on('error', (err: NodeJS.ErrnoException) => {
        out.error ??= err.code
      })
      socket.on('close', () => resolve(out))
    })
    const [c, s] = await Promise.all([clientSide, serverSide])
    return { client: c, server: s }
  } finally {
    srv.close()
  }
}

t.test('dev certificates complete mTLS handshakes with their own side only', async (t) => {
  const pki = await makeTestPki()

  for (const version of ['TLSv1.3', 'TLSv1.2'] as const) {
    t.test(`${version}: a sponsor client and the gateway's sponsor-side server, sponsor CA both ways`, async (t) => {
      t.plan(6)
      const r = await handshake(
        { id: pki.gatewaySponsorServer, ca: pki.sponsorCa },
        {
          cert: pki.sponsorClient.certPem,
          key: pki.sponsorClient.keyPem,
          ca: pki.sponsorCa.certPem,
          servername: 'ecluse.sponsor.test',
          minVersion: version,
          maxVersion: version,
        },
      )
      t.equal(r.client.error, undefined, 'the client accepts the server')
      t.equal(r.client.authorized, true)
      t.equal(r.server.authorized, true, 'the server accepts the client certificate')
      t.equal(r.server.peerSubjectAltName, 'URI:spiffe://sponsor.test/accreditation-app')
      t.equal(r.server.peerCn, 'accreditation-app')
      t.equal(r.client.received, 'hello over mTLS')
    })

    t.test(`${version}: the gateway's trusted-side client and the accreditation service, trusted CA`, async (t) => {
      t.plan(5)
      const r = await handshake(
        { id: pki.trustedServer, ca: pki.trustedCa },
        {
          cert: pki.gatewayTrustedClient.certPem,
          key: pki.gatewayTrustedClient.keyPem,
          ca: pki.trustedCa.certPem,
          servername: 'accreditation.trusted.test',
          minVersion: version,
          maxVersion: version,
        },
      )
      t.equal(r.client.error, undefined, 'the client accepts accreditation.trusted.test')
      t.equal(r.client.authorized, true)
      t.equal(r.server.authorized, true, 'the service accepts the gateway certificate')
      t.equal(r.server.peerSubjectAltName, 'URI:spiffe://trusted.test/ecluse-gateway')
      t.equal(r.client.received, 'hello over mTLS')
    })
  }

  t.test('the sponsor-side server is verified by IP address 127.0.0.1 without a servername', async (t) => {
    t.plan(2)
    const r = await handshake(
      { id: pki.gatewaySponsorServer, ca: pki.sponsorCa },
      { cert: pki.sponsorClient.certPem, key: pki.sponsorClient.keyPem, ca: pki.sponsorCa.certPem },
    )
    t.equal(r.client.error, undefined)
    t.equal(r.server.authorized, true)
  })

  t.test('a client certificate from the trusted CA is refused by the sponsor side', async (t) => {
    t.plan(3)
    const r = await handshake(
      { id: pki.gatewaySponsorServer, ca: pki.sponsorCa },
      { cert: pki.trustedCaClient.certPem, key: pki.trustedCaClient.keyPem, ca: pki.sponsorCa.certPem },
    )
    t.equal(r.server.authorized, false)
    t.equal(r.server.authorizationError, 'UNABLE_TO_VERIFY_LEAF_SIGNATURE')
    t.equal(r.client.received, '', 'nothing reaches the client')
  })

  t.test('a sponsor-CA server posing as the accreditation service is refused by the gateway', async (t) => {
    t.plan(3)
    const r = await handshake(
      // The server chains to the sponsor CA (and sends it: OpenSSL builds the chain from `ca`).
      { id: pki.sponsorCaTrustedServer, ca: pki.sponsorCa },
      {
        cert: pki.gatewayTrustedClient.certPem,
        key: pki.gatewayTrustedClient.keyPem,
        ca: pki.trustedCa.certPem,
        servername: 'accreditation.trusted.test',
      },
    )
    t.equal(r.client.error, 'SELF_SIGNED_CERT_IN_CHAIN', 'a root the client does not trust')
    t.equal(r.client.authorized, undefined, 'no secure connection')
    t.equal(r.client.received, '')
  })

  t.test('a trusted-CA server with the wrong name is refused for accreditation.trusted.test', async (t) => {
    t.plan(2)
    const r = await handshake(
      { id: pki.wrongNameTrustedServer, ca: pki.trustedCa },
      {
        cert: pki.gatewayTrustedClient.certPem,
        key: pki.gatewayTrustedClient.keyPem,
        ca: pki.trustedCa.certPem,
        servername: 'accreditation.trusted.test',
      },
    )
    t.equal(r.client.error, 'ERR_TLS_CERT_ALTNAME_INVALID')
    t.equal(r.client.received, '')
  })

  t.test('extended key usage is enforced: a server certificate is refused as a client certificate', async (t) => {
    t.plan(2)
    const r = await handshake(
      { id: pki.gatewaySponsorServer, ca: pki.sponsorCa },
      { cert: pki.gatewaySponsorServer.certPem, key: pki.gatewaySponsorServer.keyPem, ca: pki.sponsorCa.certPem },
    )
    t.equal(r.server.authorized, false)
    t.equal(r.server.authorizationError, 'INVALID_PURPOSE')
  })

  t.test('extended key usage is enforced: a client certificate is refused as a server certificate', async (t) => {
    t.plan(2)
    const r = await handshake(
      { id: pki.sponsorClient, ca: pki.sponsorCa },
      { cert: pki.sponsorClient.certPem, key: pki.sponsorClient.keyPem, ca: pki.sponsorCa.certPem, servername: 'x' },
    )
    t.equal(r.client.error, 'INVALID_PURPOSE')
    t.equal(r.client.received, '')
  })
})

t.test('a dev CA issues leaves only: an intermediate minted with its key does not verify, unless the CA allows one', async (t) => {
  const pki = await makeTestPki()
  for (const [pathLength, verifies] of [
    [undefined, false],
    [1, true],
  ] as const) {
    const root = createCa('Sponsor dev CA', pathLength === undefined ? {} : { pathLength })
    const intermediate = createCa('Minted issuing CA', { issuer: root })
    const leaf = issueCertificate(intermediate, { ...DEV_LEAF_SPECS.sponsorClient })
    const r = await handshake(
      { id: pki.gatewaySponsorServer, ca: { ...root, certPath: '', keyPath: '' } },
      { cert: `${leaf.certPem}${intermediate.certPem}`, key: leaf.keyPem, ca: pki.sponsorCa.certPem },
    )
    const label = pathLength === undefined ? 'the default, path length 0' : `path length ${pathLength}`
    t.equal(r.server.authorized, verifies, `${label}: ${verifies ? 'verifies' : 'refused'}`)
    if (!verifies) t.equal(r.server.authorizationError, 'PATH_LENGTH_EXCEEDED', 'OpenSSL refuses the path for its length')
  }
})
