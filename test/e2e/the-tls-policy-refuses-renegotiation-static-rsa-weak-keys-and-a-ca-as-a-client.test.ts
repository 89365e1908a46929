/**
 * Found by review: the gateway's TLS contexts ran on Node's defaults, broader than a gateway of
 * sensitive data should accept (src/config/tls-policy.ts):
 * - TLS 1.2 renegotiation was allowed, and the certificate a client presents in one is never
 *   verified (Node checks the peer once); a reload taking a CA out then judged the connection by it;
 * - suites with a static RSA key exchange (no forward secrecy) were negotiated;
 * - a client (or upstream) certificate with an RSA-1024 key was accepted (security level 1);
 * - a CA certificate was accepted as a client's.
 * Each is refused now, on a fresh gateway and after a reload (`setSecureContext` builds its context
 * from the options it is given alone), and nothing reaches the upstream.
 */
import https from 'node:https'
import tls from 'node:tls'
import t from 'tap'
import { issueCertificate } from '../../src/pki/dev-pki.js'
import { makeCertificate, newKeyPair, subjectOf } from '../helpers/handmade-certificates.js'
import { echoHandler, Harness, metricValue, TestUpstream } from '../helpers/harness.js'
import { makeTestPki, weakRsaKeyPem } from '../helpers/pki.js'

const APP = 'spiffe://sponsor.test/accreditation-app'

/** A TLS 1.2 connection that sends one request, then asks to renegotiate: what came of it. */
async function renegotiate(h: Harness): Promise<{ first: string; renegotiation: string }> {
  const socket = tls.connect({ ...h.sponsorTls(), maxVersion: 'TLSv1.2' })
  const errors: string[] = []
  socket.on('error', (err: NodeJS.ErrnoException) => errors.push(err.code ?? err.message))
  await new Promise((resolve) => socket.once('secureConnect', resolve))
  socket.setEncoding('utf8')
  const first = await new Promise<string>((resolve) => {
    socket.once('data', (d: string) => resolve(d.split('\r\n')[0]!))
    socket.write('GET /v1/records/1 HTTP/1.1\r\nhost: localhost\r\n\r\n')
  })
  const renegotiation = await new Promise<string>((resolve) => {
    socket.once('close', () => resolve(`closed: ${errors.join(', ')}`))
    const started = socket.renegotiate({ rejectUnauthorized: false }, (err) => {
      if (err === null) resolve('renegotiated')
    })
    if (!started) resolve('not started')
  })
  socket.destroy()
  return { first, renegotiation }
}

/** Whether a TLS 1.2 handshake offering only `ciphers` completes. */
function handshake(h: Harness, ciphers: string): Promise<string> {
  return new Promise((resolve) => {
    const socket = tls.connect({ ...h.sponsorTls(), maxVersion: 'TLSv1.2', ciphers })
    socket.once('secureConnect', () => {
      resolve(`negotiated ${socket.getCipher().name}`)
      socket.destroy()
    })
    socket.once('error', (err: NodeJS.ErrnoException) => resolve(`refused: ${err.code ?? err.message}`))
  })
}

t.test('renegotiation, static RSA suites, weak or CA client certificates: refused before and after a reload', async (t) => {
  const h = await Harness.start()
  t.teardown(() => h.close())
  const weakClient = issueCertificate(h.pki.sponsorCa, { commonName: 'app', uris: [APP], usage: 'client', keyPem: weakRsaKeyPem(1024) })
  // A CA certificate, issued by the sponsor CA, carrying the allowed identity.
  const caKeys = newKeyPair()
  const caClient = {
    certPem: makeCertificate({
      subject: [{ shortName: 'CN', value: 'Issuing CA with an identity' }],
      issuer: subjectOf(h.pki.sponsorCa.certPem),
      publicKeyPem: caKeys.publicKey,
      signingKeyPem: h.pki.sponsorCa.keyPem,
      ca: true,
      keyUsage: { keyCertSign: true, digitalSignature: true },
      uris: [APP],
    }),
    keyPem: caKeys.privateKey,
  }

  for (const when of ['at boot', 'after a reload']) {
    if (when === 'after a reload') t.equal((await h.gateway.reload()).ok, true, 'reloaded')
    const before = metricValue(await h.metrics(), 'ecluse_tls_handshake_failures_total', { side: 'sponsor', reason: 'untrusted_certificate' })
    const hits = h.upstream.hits

    const r = await renegotiate(h)
    t.equal(r.first, 'HTTP/1.1 200 OK', `${when}: the connection serves a request`)
    t.match(r.renegotiation, /^closed: .*ERR_SSL_NO_RENEGOTIATION/, `${when}: a renegotiation ends it`)

    for (const ciphers of ['AES256-SHA', 'AES128-GCM-SHA256', 'AES256-GCM-SHA384']) {
      t.match(await handshake(h, ciphers), /^refused: /, `${when}: ${ciphers} (static RSA key exchange) is not negotiated`)
    }
    t.equal(await handshake(h, 'ECDHE-RSA-AES128-GCM-SHA256'), 'negotiated ECDHE-RSA-AES128-GCM-SHA256', `${when}: ECDHE is`)

    await t.rejects(h.request('/v1/records/1', { cert: { ...weakClient, certPath: '', keyPath: '' } }), `${when}: an RSA-1024 client certificate is refused`)
    await t.rejects(h.request('/v1/records/1', { cert: { ...caClient, certPath: '', keyPath: '' } }), `${when}: a CA certificate is refused as a client's`)
    t.equal(h.upstream.hits, hits + 1, `${when}: only the first request reached the upstream`)
    const after = metricValue(await h.metrics(), 'ecluse_tls_handshake_failures_total', { side: 'sponsor', reason: 'untrusted_certificate' })
    t.ok(after >= before + 2, `${when}: both counted as untrusted certificates (${before} → ${after})`)
  }
  t.ok(h.logs.find('sponsor client certificate refused: it is a CA certificate').length >= 2, 'the CA certificate is named in the log')
})

t.test('an upstream whose certificate has an RSA-1024 key is refused: 502 upstream_tls', async (t) => {
  // The harness's PKI is the process's (makeTestPki is shared): the same trusted CA issues it.
  const pki = await makeTestPki()
  const weakServer = issueCertificate(pki.trustedCa, {
    commonName: 'accreditation.trusted.test',
    dnsNames: ['accreditation.trusted.test'],
    ips: ['127.0.0.1'],
    usage: 'server',
    keyPem: weakRsaKeyPem(1024),
  })
  const upstream = new TestUpstream(pki, echoHandler, { ...weakServer, certPath: '', keyPath: '' })
  const port = await upstream.listen()
  const h = await Harness.start({ upstreamPort: port })
  t.teardown(async () => {
    await h.close()
    await upstream.close()
  })
  const res = await h.request('/v1/records/1')
  t.equal(res.status, 502)
  t.equal((res.json() as { error: string }).error, 'upstream_tls')
  t.equal(upstream.hits, 0)
})

t.test('an upstream that asks to renegotiate gets no answer to it: the request fails, 502', async (t) => {
  const pki = await makeTestPki()
  const renegotiations: string[] = []
  const upstream = https.createServer(
    {
      cert: pki.trustedServer.certPem,
      key: pki.trustedServer.keyPem,
      ca: pki.trustedCa.certPem,
      requestCert: true,
      rejectUnauthorized: true,
      maxVersion: 'TLSv1.2',
    },
    (req, res) => {
      // Before answering, the upstream asks for a new handshake (a HelloRequest), in which it could
      // present another certificate that nothing would verify.
      const started = (req.socket as tls.TLSSocket).renegotiate({ rejectUnauthorized: true, requestCert: true }, (err) => {
        renegotiations.push(err === null ? 'renegotiated' : 'failed')
        if (err === null) res.end('answered after a renegotiation')
      })
      if (!started) renegotiations.push('not started')
    },
  )
  await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve))
  const h = await Harness.start({ upstreamPort: (upstream.address() as { port: number }).port })
  t.teardown(async () => {
    await h.close()
    upstream.closeAllConnections()
    await new Promise((resolve) => upstream.close(resolve))
  })
  const res = await h.request('/v1/records/1')
  t.equal(res.status, 502, `no answer crossed (${res.body.toString()})`)
  t.notOk(renegotiations.includes('renegotiated'), `the gateway did not renegotiate (${renegotiations.join(', ') || 'no callback yet'})`)
})
