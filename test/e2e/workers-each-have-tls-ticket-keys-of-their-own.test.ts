/**
 * Found by review: Node's cluster hands every worker that listens, a replacement after a crash
 * included, the session ticket keys of the first worker, which the primary keeps for the life of the
 * listening handle. A ticket issued before a reload that removed its client's CA was refused by the
 * reloaded workers and resumed again on a worker restarted after it. Each worker now sets keys of
 * its own once it listens: a ticket resumes only on the worker that issued it.
 */
import tls from 'node:tls'
import t from 'tap'
import { startEchoCluster } from '../helpers/cluster.js'

t.test('a TLS 1.3 ticket of one worker does not resume on another', { skip: process.platform !== 'linux' && 'round-robin scheduling' }, async (t) => {
  const { pki, cluster } = await startEchoCluster(t)
  const { sponsor } = await cluster.started()
  const port = Number(new URL(sponsor).port)

  /** One request on a new connection offering `session`: whether it resumed, and its first ticket. */
  const exchange = (session?: Buffer) =>
    new Promise<{ reused: boolean; ticket: Buffer | undefined }>((resolve, reject) => {
      let ticket: Buffer | undefined
      let reused = false
      const socket = tls.connect({
        host: '127.0.0.1',
        port,
        servername: 'localhost',
        minVersion: 'TLSv1.3',
        ca: pki.sponsorCa.certPem,
        cert: pki.sponsorClient.certPem,
        key: pki.sponsorClient.keyPem,
        ...(session === undefined ? {} : { session }),
      })
      socket.on('session', (s: Buffer) => {
        ticket ??= s
      })
      socket.on('error', reject)
      socket.once('secureConnect', () => {
        reused = socket.isSessionReused()
        socket.end('GET /v1/records/1 HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n')
      })
      socket.resume()
      socket.on('close', () => resolve({ reused, ticket }))
    })

  const first = await exchange()
  t.ok(first.ticket, 'a ticket from a full handshake')
  // The primary deals connections to the two workers in turn: of six offering the same ticket,
  // those that reach the other worker cannot resume it.
  const offered: boolean[] = []
  for (let i = 0; i < 6; i++) offered.push((await exchange(first.ticket)).reused)
  t.ok(offered.some(Boolean), `the issuing worker resumes it (${offered.join(', ')})`)
  t.ok(offered.some((r) => !r), 'the other worker does not: its keys are its own')
})
