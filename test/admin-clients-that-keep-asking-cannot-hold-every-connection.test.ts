/**
 * Found by review: the admin listener takes 64 connections and kept them alive, so 64 clients
 * asking for `/healthz` every few seconds (any process of the pod, or the monitoring namespace the
 * NetworkPolicy lets in) held every slot, and the kubelet's probes and Prometheus were dropped: the
 * container restarted for failing its liveness probe. Now every admin response closes its
 * connection, so a slot is held for one request at most.
 */
import { connect, type Socket } from 'node:net'
import t from 'tap'
import { request } from 'undici'
import { ADMIN_LIMITS, AdminServer } from '../src/admin/server.js'
import { createLogger } from '../src/observability/logger.js'
import { GatewayMetrics } from '../src/observability/metrics.js'

t.test('every admin response closes its connection: clients that keep asking hold no slot', async (t) => {
  const admin = new AdminServer({
    listen: { host: '127.0.0.1', port: 0 },
    metrics: new GatewayMetrics({ routes: [] }),
    readiness: () => ({ ready: true, checks: { certificates: 'ok' } }),
    log: createLogger({ level: 'silent' }),
  })
  const { port } = await admin.listen()
  t.teardown(() => admin.close())

  // As many clients as there are slots, each sending a request and meaning to send more.
  const holders: Array<{ socket: Socket; answer: Promise<string>; closed: Promise<void> }> = []
  for (let i = 0; i < ADMIN_LIMITS.maxConnections; i++) {
    const socket = connect(port, '127.0.0.1')
    socket.on('error', () => {})
    let text = ''
    socket.setEncoding('latin1').on('data', (d: string) => {
      text += d
    })
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()))
    socket.write('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n')
    holders.push({ socket, answer: closed.then(() => text), closed })
  }
  t.teardown(() => {
    for (const h of holders) h.socket.destroy()
  })
  const answers = await Promise.race([
    Promise.all(holders.map((h) => h.answer)),
    new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), 4_000)),
  ])
  t.ok(answers !== undefined, 'the server closed every one of them, well before the keep-alive timeout')
  t.ok(
    answers?.every((a) => /^HTTP\/1\.1 200 /.test(a) && /\r\nconnection: close\r\n/i.test(a)),
    'each after its answer, which said connection: close',
  )
  const probe = await request(`http://127.0.0.1:${port}/healthz`, { headersTimeout: 2_000 })
  t.equal(probe.statusCode, 200, 'a probe right after them finds a slot')
  t.equal(probe.headers['connection'], 'close')
  await probe.body.dump()
})
