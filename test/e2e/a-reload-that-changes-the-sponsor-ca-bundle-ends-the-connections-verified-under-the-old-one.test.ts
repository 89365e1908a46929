/**
 * Found by review: a reload changed the sponsor CA bundle for new handshakes only, and a keep-alive
 * connection verified under the old bundle went on as long as its client kept it busy: a CA removed
 * from the bundle (compromised, retired) let its clients' requests through for as long as they
 * liked. Now a reload that changes the bundle retires the open connections: an idle one is closed at
 * once, a busy one after its current response (which says `connection: close`). A reload that
 * leaves the bundle as it was (a renewed server certificate) keeps them.
 */
import { copyFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import tls from 'node:tls'
import t from 'tap'
import { createCa } from '../../src/pki/dev-pki.js'
import { echoHandler, Harness } from '../helpers/harness.js'

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

t.test('a reload that changes the sponsor CA bundle ends the open connections; one that does not keeps them', async (t) => {
  // The upstream holds `/v1/records/slow` until released, so one connection is busy during the reload.
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
  const sponsor = h.config['sponsor'] as { tls: Record<string, string> }

  const idle = keepAlive(h)
  await idle.ready
  t.match(await idle.get('/v1/records/1'), /^HTTP\/1\.1 200 /)

  // A renewed server certificate (the same file content, another path): the bundle is unchanged.
  const copy = join(h.dir, 'renewed.crt')
  await copyFile(sponsor.tls['cert']!, copy)
  await h.writeConfig({ ...h.config, sponsor: { ...sponsor, tls: { ...sponsor.tls, cert: copy } } })
  t.same(await h.gateway.reload(), { ok: true })
  t.match(await idle.get('/v1/records/2'), /^HTTP\/1\.1 200 /, 'the same bundle: the connection goes on')
  t.notOk(idle.isClosed())

  const busy = keepAlive(h)
  await busy.ready
  const slow = busy.get('/v1/records/slow')
  await new Promise((r) => setTimeout(r, 200))

  // Another CA added to the bundle: every open connection was verified against the old one.
  const bundle = join(h.dir, 'client-ca-bundle.crt')
  await writeFile(bundle, `${h.pki.sponsorCa.certPem}${createCa('Another sponsor CA').certPem}`)
  const current = h.config['sponsor'] as { tls: Record<string, string> }
  await h.writeConfig({ ...h.config, sponsor: { ...current, tls: { ...current.tls, clientCa: bundle } } })
  t.same(await h.gateway.reload(), { ok: true })
  await Promise.race([idle.closed, new Promise((r) => setTimeout(r, 3_000))])
  t.ok(idle.isClosed(), 'the idle connection is closed by the reload')
  t.notOk(busy.isClosed(), 'the busy one is not cut')
  release()
  const head = await slow
  t.match(head, /^HTTP\/1\.1 200 /, 'its response completes')
  t.match(head, /\r\nconnection: close/i, 'and says it is the last')
  await Promise.race([busy.closed, new Promise((r) => setTimeout(r, 3_000))])
  t.ok(busy.isClosed(), 'then the connection ends')

  const fresh = keepAlive(h)
  await fresh.ready
  t.match(await fresh.get('/v1/records/3'), /^HTTP\/1\.1 200 /, 'a new connection, verified against the new bundle, is served')
  t.notOk(fresh.isClosed())
})
