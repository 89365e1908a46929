/**
 * Found by review: a resumed TLS session skips chain verification, and TLS 1.3 hands out a fresh
 * ticket at each resumption, so a client that came back within every 300 s (Node's session timeout)
 * was never verified again: 350 s after its CA had expired it still got 200. The sponsor listener
 * now replaces its ticket keys as often as sessions time out, so every client goes through a full
 * handshake, its chain verified, at least that often. Here with a lifetime of 2 s instead of 300.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import tls from 'node:tls'
import { pino } from 'pino'
import t from 'tap'
import { sponsorSchema } from '../../src/config/schema.js'
import { loadServerTls } from '../../src/config/tls-material.js'
import { SponsorListener } from '../../src/listener/sponsor.js'
import { GatewayMetrics } from '../../src/observability/metrics.js'
import { makeTestPki } from '../helpers/pki.js'

const LIFETIME_MS = 2_000

t.test('a TLS 1.3 ticket chain resumes until the keys rotate, then the client is verified again', async (t) => {
  const pki = await makeTestPki()
  const config = sponsorSchema.parse({
    listen: { host: '127.0.0.1', port: 0 },
    tls: { cert: pki.gatewaySponsorServer.certPath, key: pki.gatewaySponsorServer.keyPath, clientCa: pki.sponsorCa.certPath, minVersion: 'TLSv1.3' },
  })
  const listener = new SponsorListener({
    config,
    tls: await loadServerTls(config.tls),
    handler: { handle: (_req, res) => res.end('ok') },
    metrics: new GatewayMetrics({ routes: [], defaultMetrics: false }),
    log: pino({ level: 'silent' }),
    ticketKeyLifetimeMs: LIFETIME_MS,
  })
  const { port } = await listener.listen()
  t.teardown(async () => {
    listener.destroyAll()
    await listener.stopAccepting()
  })

  /** One request on a fresh connection, offering `session`: whether it was resumed, and the ticket it got. */
  const exchange = (session?: Buffer) =>
    new Promise<{ reused: boolean; ticket: Buffer | undefined; answer: string }>((resolve, reject) => {
      let ticket: Buffer | undefined
      let answer = ''
      const socket = tls.connect({
        host: '127.0.0.1',
        port,
        servername: 'localhost',
        ca: pki.sponsorCa.certPem,
        cert: pki.sponsorClient.certPem,
        key: pki.sponsorClient.keyPem,
        ...(session === undefined ? {} : { session }),
      })
      socket.on('session', (s: Buffer) => {
        ticket = s
      })
      socket.on('error', reject)
      socket.setEncoding('latin1')
      socket.on('data', (d: string) => {
        answer += d
      })
      let reused = false
      socket.once('secureConnect', () => {
        reused = socket.isSessionReused()
        socket.write('GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n')
      })
      socket.on('close', () => resolve({ reused, ticket, answer }))
    })

  const started = Date.now()
  const first = await exchange()
  t.notOk(first.reused, 'the first connection is a full handshake')
  t.ok(first.ticket, 'and gets a ticket')
  let ticket = first.ticket!
  // Resumed, each time with the ticket the previous resumption handed out, as a client that keeps
  // coming back would.
  const resumed: boolean[] = []
  while (Date.now() - started < LIFETIME_MS / 2) {
    const next = await exchange(ticket)
    resumed.push(next.reused)
    t.match(next.answer, /^HTTP\/1\.1 200 /)
    if (next.ticket !== undefined) ticket = next.ticket
    await sleep(100)
  }
  t.ok(resumed.length > 0 && resumed.every(Boolean), `within the lifetime every connection resumed (${resumed.length})`)

  await sleep(LIFETIME_MS * 1.2 - (Date.now() - started))
  const after = await exchange(ticket)
  t.notOk(after.reused, 'past the lifetime the newest ticket no longer resumes')
  t.match(after.answer, /^HTTP\/1\.1 200 /, 'the client is verified in a full handshake and served')
  const again = await exchange(after.ticket)
  t.ok(again.reused, 'and resumes the ticket of that handshake')

  // A rotation drops every ticket at once.
  listener.rotateTicketKeys()
  t.notOk((await exchange(again.ticket)).reused, 'no ticket survives a rotation')

  // A connection is retired after the lifetime (plus up to a fifth, at random): its next response,
  // served whole, says `connection: close`, and the client's next connection is a new handshake.
  const kept = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ca: pki.sponsorCa.certPem, cert: pki.sponsorClient.certPem, key: pki.sponsorClient.keyPem })
  kept.on('error', () => {})
  kept.setEncoding('latin1')
  let received = ''
  kept.on('data', (d: string) => {
    received += d
  })
  const keptClosed = new Promise<void>((resolve) => kept.on('close', () => resolve()))
  await new Promise<void>((resolve) => kept.once('secureConnect', () => resolve()))
  const ask = async () => {
    const before = received.length
    kept.write('GET / HTTP/1.1\r\nhost: x\r\n\r\n')
    while (!received.slice(before).includes('\r\n\r\nok')) await sleep(10)
    return received.slice(before)
  }
  t.match(await ask(), /^HTTP\/1\.1 200 [\s\S]*connection: keep-alive/i, 'a young connection is kept alive')
  await sleep(LIFETIME_MS * 1.25)
  const last = await ask()
  t.match(last, /^HTTP\/1\.1 200 /, 'past its lifetime the request is still served')
  t.match(last, /connection: close/i, 'with the last response of its connection')
  t.equal(await Promise.race([keptClosed.then(() => 'closed'), sleep(3_000).then(() => 'open')]), 'closed', 'which then closes')
})
