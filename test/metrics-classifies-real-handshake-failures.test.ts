import { connect as netConnect } from 'node:net'
import { type ConnectionOptions, connect, createServer, type TLSSocket, type TlsOptions } from 'node:tls'
import t from 'tap'
import { classifyTlsFailure, type TlsFailureReason } from '../src/observability/metrics.js'
import { makeTestPki } from './helpers/pki.js'

/**
 * Real handshakes on 127.0.0.1, both roles: the server's view (what the sponsor listener records)
 * and the client's view (what the upstream pool records). The server inspects authorizationError
 * with rejectUnauthorized: false, as the sponsor listener does, unless a case says otherwise.
 */
interface Outcome {
  server: TlsFailureReason | 'ok'
  client: TlsFailureReason | 'ok'
}

async function handshake(serverOpts: TlsOptions, clientOpts: ConnectionOptions | 'silent-tcp'): Promise<Outcome> {
  const server = createServer({ requestCert: true, rejectUnauthorized: false, handshakeTimeout: 300, ...serverOpts })
  const serverSide = new Promise<TlsFailureReason | 'ok'>((resolve) => {
    server.on('tlsClientError', (err) => resolve(classifyTlsFailure(err)))
    server.on('secureConnection', (socket: TLSSocket) => {
      resolve(socket.authorized ? 'ok' : classifyTlsFailure(socket.authorizationError))
      socket.end()
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as { port: number }).port
  try {
    let clientSide: Promise<TlsFailureReason | 'ok'>
    if (clientOpts === 'silent-tcp') {
      const socket = netConnect(port, '127.0.0.1')
      socket.on('error', () => {})
      clientSide = serverSide.then(() => {
        socket.destroy()
        return 'ok' as const
      })
    } else {
      clientSide = new Promise((resolve) => {
        const socket = connect({ host: '127.0.0.1', port, ...clientOpts })
        let outcome: TlsFailureReason | 'ok' = 'ok'
        socket.on('error', (err) => {
          outcome = classifyTlsFailure(err)
        })
        socket.on('data', () => {})
        socket.on('close', () => resolve(outcome))
      })
    }
    const [s, c] = await Promise.all([serverSide, clientSide])
    return { server: s, client: c }
  } finally {
    server.close()
  }
}

t.test('classifies the failures of real handshakes', async (t) => {
  const pki = await makeTestPki()
  const sponsorServer = {
    cert: pki.gatewaySponsorServer.certPem,
    key: pki.gatewaySponsorServer.keyPem,
    ca: pki.sponsorCa.certPem,
  }
  const asClient = (cert: { certPem: string; keyPem: string }) => ({
    cert: cert.certPem,
    key: cert.keyPem,
    ca: pki.sponsorCa.certPem,
    servername: 'localhost',
  })

  t.same(await handshake(sponsorServer, asClient(pki.sponsorClient)), { server: 'ok', client: 'ok' }, 'control: a good client')

  t.match(
    await handshake(sponsorServer, asClient(pki.expiredSponsorClient)),
    { server: 'expired_certificate' },
    'expired client certificate',
  )
  t.match(
    await handshake(sponsorServer, asClient(pki.trustedCaClient)),
    { server: 'untrusted_certificate' },
    'client certificate from the other side’s CA',
  )
  t.same(
    await handshake({ ...sponsorServer, rejectUnauthorized: true }, { ca: pki.sponsorCa.certPem, servername: 'localhost' }),
    { server: 'no_certificate', client: 'no_certificate' },
    'no client certificate: the server’s error and the client’s certificate_required alert',
  )
  t.same(
    await handshake({ ...sponsorServer, minVersion: 'TLSv1.3' }, { ...asClient(pki.sponsorClient), maxVersion: 'TLSv1.2' }),
    { server: 'protocol', client: 'protocol' },
    'no common TLS version',
  )
  t.match(await handshake(sponsorServer, 'silent-tcp'), { server: 'handshake_timeout' }, 'a client that never speaks')

  // The upstream role: the gateway verifies the trusted side's server certificate.
  const trustedClient = {
    cert: pki.gatewayTrustedClient.certPem,
    key: pki.gatewayTrustedClient.keyPem,
    ca: pki.trustedCa.certPem,
    servername: 'accreditation.trusted.test',
  }
  t.match(
    await handshake({ cert: pki.wrongNameTrustedServer.certPem, key: pki.wrongNameTrustedServer.keyPem }, trustedClient),
    { client: 'untrusted_certificate' },
    'upstream certificate for another name',
  )
  t.match(
    await handshake({ cert: pki.sponsorCaTrustedServer.certPem, key: pki.sponsorCaTrustedServer.keyPem }, trustedClient),
    { client: 'untrusted_certificate' },
    'upstream certificate from the wrong CA',
  )
})
