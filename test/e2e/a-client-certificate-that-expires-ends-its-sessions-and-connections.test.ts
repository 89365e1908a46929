/**
 * A sponsor client certificate is refused the moment it expires, however the client comes back:
 * - a fresh handshake fails verification (OpenSSL's CERT_HAS_EXPIRED);
 * - a resumed session (TLS 1.3 ticket, TLS 1.2 ticket) skips verification, since OpenSSL reports the
 *   first handshake's result: the listener checks notAfter itself and closes the connection;
 * - a keep-alive connection opened before notAfter carries no principal after it: its next request
 *   closes it, and nothing reaches the upstream.
 */
import tls from 'node:tls'
import t from 'tap'
import { Harness, metricValue } from '../helpers/harness.js'
import { issueCertificate } from '../helpers/pki.js'

const LIFETIME_MS = 3_000

interface Exchange {
  reused: boolean
  responses: string[]
  closed: Promise<void>
  socket: tls.TLSSocket
  session: Buffer | undefined
}

/** A raw keep-alive TLS connection as a sponsor client; `send` writes one GET. */
function connect(h: Harness, cert: { certPem: string; keyPem: string }, version: tls.SecureVersion, session?: Buffer): Promise<Exchange & { send(): void }> {
  return new Promise((resolve) => {
    const socket = tls.connect({
      ...h.sponsorTls(cert),
      minVersion: version,
      maxVersion: version,
      ...(session === undefined ? {} : { session }),
    })
    const out: Exchange & { send(): void } = {
      reused: false,
      responses: [],
      socket,
      session: undefined,
      closed: new Promise((r) => socket.on('close', () => r())),
      send: () => socket.write('GET /v1/records/1 HTTP/1.1\r\nhost: gateway\r\n\r\n'),
    }
    socket.on('session', (s: Buffer) => {
      out.session = s
    })
    socket.setEncoding('utf8')
    socket.on('data', (d: string) => {
      for (const line of d.split('\r\n')) if (line.startsWith('HTTP/1.1 ')) out.responses.push(line)
    })
    socket.on('error', () => {})
    socket.once('secureConnect', () => {
      out.reused = socket.isSessionReused()
      resolve(out)
    })
    // A TLS 1.2 client sees the refusal before 'secureConnect' only when the server refuses the
    // handshake itself (a fresh handshake with an expired certificate).
    socket.once('close', () => resolve(out))
  })
}

const until = async (what: () => boolean, ms = 5_000) => {
  const deadline = Date.now() + ms
  while (!what() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20))
}

t.test('past notAfter: no fresh handshake, no resumed session, no further request on an open connection', async (t) => {
  const h = await Harness.start()
  t.teardown(() => h.close())
  const notAfter = new Date(Math.ceil((Date.now() + LIFETIME_MS) / 1000) * 1000)
  const shortLived = issueCertificate(h.pki.sponsorCa, {
    commonName: 'accreditation-app',
    uris: ['spiffe://sponsor.test/accreditation-app'],
    usage: 'client',
    keyPem: h.pki.sponsorClient.keyPem,
    notBefore: new Date(Date.now() - 60_000),
    notAfter,
  })

  // Before notAfter: a session to resume later, and an open keep-alive connection, per version.
  const before = new Map<tls.SecureVersion, { session: Buffer | undefined; open: Exchange & { send(): void } }>()
  for (const version of ['TLSv1.3', 'TLSv1.2'] as const) {
    const first = await connect(h, shortLived, version)
    first.send()
    await until(() => first.responses.length === 1 && first.session !== undefined)
    t.same(first.responses, ['HTTP/1.1 200 OK'], `${version}: served before notAfter`)
    first.socket.end()
    const open = await connect(h, shortLived, version)
    open.send()
    await until(() => open.responses.length === 1)
    t.same(open.responses, ['HTTP/1.1 200 OK'], `${version}: a keep-alive connection, served`)
    before.set(version, { session: first.session, open })
  }
  const hits = h.upstream.hits
  t.ok(Date.now() < notAfter.getTime(), 'all of the above happened before notAfter')
  await new Promise((r) => setTimeout(r, notAfter.getTime() - Date.now() + 300))

  // Both open connections at once, well within the keep-alive timeout (5 s), which must not be
  // what closes them.
  for (const { open } of before.values()) open.send()
  await Promise.race([Promise.all([...before.values()].map(({ open }) => open.closed)), new Promise((r) => setTimeout(r, 2_000))])
  for (const [version, { open }] of before) {
    t.same(open.responses, ['HTTP/1.1 200 OK'], `${version}: the open connection answered nothing more`)
    t.ok(open.socket.destroyed, `${version}: and was closed`)
  }
  for (const version of ['TLSv1.3', 'TLSv1.2'] as const) {
    const { session } = before.get(version)!

    t.ok(session !== undefined, `${version}: a session was issued`)
    const resumed = await connect(h, shortLived, version, session)
    t.ok(resumed.reused, `${version}: the server resumed the session (no verification)`)
    resumed.send()
    await resumed.closed
    t.same(resumed.responses, [], `${version}: the resumed session was closed before any response`)

    const fresh = await connect(h, shortLived, version)
    fresh.send()
    await fresh.closed
    t.same(fresh.responses, [], `${version}: a fresh handshake is refused`)
  }
  t.equal(h.upstream.hits, hits, 'nothing reached the upstream after notAfter')
  const metrics = await h.metrics()
  t.ok(
    metricValue(metrics, 'ecluse_tls_handshake_failures_total', { side: 'sponsor', reason: 'expired_certificate' }) >= 4,
    'each refused handshake counted as expired_certificate',
  )
  t.equal(h.logs.find('connection closed: its client certificate is no longer valid, or its CA was taken out of the sponsor bundle').length, 2, 'each ended connection logged')
})
