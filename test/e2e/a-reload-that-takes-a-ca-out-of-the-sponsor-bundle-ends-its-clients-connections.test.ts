/**
 * Found by review: a reload changed the sponsor CA bundle for new handshakes only, and a keep-alive
 * connection verified under the old bundle went on as long as its client kept it busy: a CA taken
 * out of the bundle (compromised, retired) let its clients' requests through for as long as they
 * liked, and so did a handshake that began before the reload and ended after it (the context is
 * bound when the connection is accepted). Now a reload that takes a client's CA out of the bundle
 * closes that client's connections: an idle one at once, a busy one after its current response;
 * and checks a handshake in progress against the new bundle. A reload that keeps the client's CA (a
 * renewed server certificate, another CA added beside it) cuts nothing.
 */
import { copyFile } from 'node:fs/promises'
import { connect, type Socket } from 'node:net'
import { join } from 'node:path'
import tls from 'node:tls'
import t from 'tap'
import { createCa } from '../../src/pki/dev-pki.js'
import { echoHandler, Harness } from '../helpers/harness.js'
import { reloadSponsorBundle } from '../helpers/sponsor-connection.js'

/** A raw keep-alive connection of the sponsor client: each `get` writes one request and resolves with its response head. */
function keepAlive(h: Harness) {
  const socket = tls.connect(h.sponsorTls())
  let buffer = ''
  const waiting: Array<(head: string) => void> = []
  socket.setEncoding('latin1')
  socket.on('data', (d: string) => {
    buffer += d
    // Each test response is small and whole: a head, then a body of its content-length.
    for (;;) {
      const end = buffer.indexOf('\r\n\r\n')
      if (end === -1) return
      const head = buffer.slice(0, end)
      const length = Number(/content-length: (\d+)/i.exec(head)?.[1] ?? 0)
      if (buffer.length < end + 4 + length) return
      buffer = buffer.slice(end + 4 + length)
      waiting.shift()?.(head)
    }
  })
  socket.on('error', () => {})
  const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()))
  let isClosed = false
  void closed.then(() => {
    isClosed = true
  })
  return {
    ready: new Promise<void>((resolve) => socket.once('secureConnect', () => resolve())),
    get: (path: string) =>
      new Promise<string>((resolve) => {
        waiting.push(resolve)
        socket.write(`GET ${path} HTTP/1.1\r\nhost: gateway\r\n\r\n`)
      }),
    closed,
    isClosed: () => isClosed,
  }
}

t.test('a reload that takes a CA out of the sponsor bundle ends its clients’ connections; one that keeps it cuts nothing', async (t) => {
  // The upstream holds `/v1/records/slow` until released, so one connection is busy during a reload.
  let release: () => void = () => {}
  const held = new Promise<void>((resolve) => {
    release = resolve
  })
  const h = await Harness.start({
    handler: (req, res) => {
      if (req.url?.endsWith('/slow')) void held.then(() => echoHandler(req, res))
      else echoHandler(req, res)
    },
  })
  t.teardown(() => h.close())
  const withClientCa = async (pem: string) => t.match(await reloadSponsorBundle(h, pem), { ok: true })
  const other = createCa('Another sponsor CA').certPem

  const idle = keepAlive(h)
  await idle.ready
  t.match(await idle.get('/v1/records/1'), /^HTTP\/1\.1 200 /)

  // A renewed server certificate: the bundle is unchanged.
  const sponsor = h.config['sponsor'] as { tls: Record<string, string> }
  const copy = join(h.dir, 'renewed.crt')
  await copyFile(sponsor.tls['cert']!, copy)
  await h.writeConfig({ ...h.config, sponsor: { ...sponsor, tls: { ...sponsor.tls, cert: copy } } })
  t.match(await h.gateway.reload(), { ok: true })
  t.match(await idle.get('/v1/records/2'), /^HTTP\/1\.1 200 /, 'the same bundle: the connection goes on')

  // Another CA added beside the client's: still anchored, nothing cut.
  const busy = keepAlive(h)
  await busy.ready
  let slow = busy.get('/v1/records/slow')
  await new Promise((r) => setTimeout(r, 200))
  await withClientCa(`${h.pki.sponsorCa.certPem}${other}`)
  t.match(await idle.get('/v1/records/3'), /^HTTP\/1\.1 200 /, 'a CA added: the idle connection goes on')
  release()
  t.match(await slow, /^HTTP\/1\.1 200 [\s\S]*connection: keep-alive/i, 'and the busy one, kept alive')

  // The client's CA taken out: its connections end. A busy one finishes its response first.
  let releaseAgain: () => void = () => {}
  const heldAgain = new Promise<void>((resolve) => {
    releaseAgain = resolve
  })
  h.upstream.handler = (req, res) => void heldAgain.then(() => echoHandler(req, res))
  slow = busy.get('/v1/records/slow')
  await new Promise((r) => setTimeout(r, 200))
  // A handshake that begins now, before the reload, and ends after it.
  const raw = await new Promise<Socket>((resolve) => {
    const s = connect(h.gateway.sponsorPort, '127.0.0.1', () => resolve(s))
  })
  await withClientCa(other)
  await Promise.race([idle.closed, new Promise((r) => setTimeout(r, 3_000))])
  t.ok(idle.isClosed(), 'the idle connection is closed at once')
  t.notOk(busy.isClosed(), 'the busy one is not cut')
  releaseAgain()
  t.match(await slow, /^HTTP\/1\.1 200 /, 'its response completes')
  await Promise.race([busy.closed, new Promise((r) => setTimeout(r, 3_000))])
  t.ok(busy.isClosed(), 'then the connection ends')

  const straddling = tls.connect({ ...h.sponsorTls(), socket: raw })
  straddling.on('error', () => {})
  const answered = await new Promise<string>((resolve) => {
    let out = ''
    straddling.setEncoding('latin1')
    straddling.once('secureConnect', () => straddling.write('GET /v1/records/4 HTTP/1.1\r\nhost: gateway\r\n\r\n'))
    straddling.on('data', (d: string) => {
      out += d
    })
    straddling.on('close', () => resolve(out))
  })
  t.equal(answered, '', 'a handshake begun before the reload is checked against the new bundle: refused')
  await t.rejects(h.request('/v1/records/5'), 'a new connection of that client is refused')
  t.equal(h.upstream.seen.filter((s) => s.url === '/v1/records/4' || s.url === '/v1/records/5').length, 0, 'none of its later requests reached the upstream')
})

t.test('a handshake accepted before two quick reloads is judged by the bundle it completes under', async (t) => {
  // Found by review: the check knew only the bundle before the last change, so a handshake begun
  // under the first bundle, whose CA the first reload took out and which a second reload replaced
  // again, was served.
  const h = await Harness.start()
  t.teardown(() => h.close())
  const withClientCa = async (pem: string) => t.match(await reloadSponsorBundle(h, pem), { ok: true })
  const raw = await new Promise<Socket>((resolve) => {
    const s = connect(h.gateway.sponsorPort, '127.0.0.1', () => resolve(s))
  })
  await withClientCa(createCa('Another sponsor CA').certPem)
  await withClientCa(createCa('Yet another sponsor CA').certPem)
  const straddling = tls.connect({ ...h.sponsorTls(), socket: raw })
  straddling.on('error', () => {})
  const answered = await new Promise<{ handshake: boolean; out: string }>((resolve) => {
    let out = ''
    let handshake = false
    straddling.setEncoding('latin1')
    straddling.once('secureConnect', () => {
      handshake = true
      straddling.write('GET /v1/records/6 HTTP/1.1\r\nhost: gateway\r\n\r\n')
    })
    straddling.on('data', (d: string) => {
      out += d
    })
    straddling.on('close', () => resolve({ handshake, out }))
  })
  t.ok(answered.handshake, 'the handshake was verified against the first bundle (the context of its accept)')
  t.equal(answered.out, '', 'and refused once it ended: no answer')
  t.equal(h.upstream.seen.filter((s) => s.url === '/v1/records/6').length, 0, 'nothing reached the upstream')
})
