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

t.test('found by review: connections that say nothing cannot hold every slot; a probe takes the oldest one’s', async (t) => {
  // 64 sockets that connect and send nothing held every slot until their header deadline (5 s), and
  // opened again as they closed kept /healthz unreachable: the kubelet restarted the container.
  const admin = new AdminServer({
    listen: { host: '127.0.0.1', port: 0 },
    metrics: new GatewayMetrics({ routes: [] }),
    readiness: () => ({ ready: true, checks: { certificates: 'ok' } }),
    log: createLogger({ level: 'silent' }),
  })
  const { port } = await admin.listen()
  t.teardown(() => admin.close())
  const silent: Array<{ socket: Socket; closed: boolean }> = []
  const openSilent = async (): Promise<void> => {
    const socket = connect(port, '127.0.0.1')
    const entry = { socket, closed: false }
    socket.on('error', () => {})
    socket.once('close', () => {
      entry.closed = true
    })
    silent.push(entry)
    await new Promise<void>((resolve) => socket.once('connect', () => resolve()))
  }
  t.teardown(() => {
    for (const s of silent) s.socket.destroy()
  })
  for (let i = 0; i < ADMIN_LIMITS.maxConnections; i++) await openSilent()
  await new Promise((r) => setTimeout(r, 100))
  t.equal(silent.filter((s) => !s.closed).length, ADMIN_LIMITS.maxConnections, 'every slot is held by a silent connection')

  for (let i = 0; i < 5; i++) {
    const probe = await request(`http://127.0.0.1:${port}/healthz`, { headersTimeout: 2_000 })
    t.equal(probe.statusCode, 200, `probe ${i + 1} is answered`)
    await probe.body.dump()
  }
  await new Promise((r) => setTimeout(r, 100))
  // The first probe took the oldest's slot; each closed after its answer, leaving that slot to the next.
  t.same(
    silent.map((s) => s.closed).slice(0, 2),
    [true, false],
    'the oldest silent connection gave its slot',
  )
  t.equal(silent.filter((s) => !s.closed).length, ADMIN_LIMITS.maxConnections - 1, 'the others keep theirs')
  // Silent newcomers: the first takes the free slot; the next, the oldest silent one's.
  await openSilent()
  await openSilent()
  await new Promise((r) => setTimeout(r, 100))
  t.equal(silent[1]!.closed, true, 'the oldest still open gave its slot')
  t.same(
    silent.slice(-2).map((s) => s.closed),
    [false, false],
    'the newcomers hold theirs',
  )
  t.equal(silent.filter((s) => !s.closed).length, ADMIN_LIMITS.maxConnections, 'never more than the cap')
})

t.test('at the cap with every connection being answered, a newcomer is closed, and none of them is', async (t) => {
  let release: () => void = () => {}
  const slow = new Promise<void>((resolve) => {
    release = resolve
  })
  const admin = new AdminServer({
    listen: { host: '127.0.0.1', port: 0 },
    metrics: new GatewayMetrics({ routes: [] }),
    // Every /readyz waits here: 64 requests in flight, each holding its connection.
    readiness: async () => {
      await slow
      return { ready: true, checks: { certificates: 'ok' } }
    },
    readinessTimeoutMs: 10_000,
    log: createLogger({ level: 'silent' }),
  })
  const { port } = await admin.listen()
  t.teardown(() => admin.close())
  const asking = Array.from({ length: ADMIN_LIMITS.maxConnections }, () => request(`http://127.0.0.1:${port}/readyz`, { reset: true }))
  await new Promise((r) => setTimeout(r, 300))
  const newcomer = connect(port, '127.0.0.1')
  newcomer.on('error', () => {})
  const closed = await new Promise<boolean>((resolve) => {
    newcomer.once('close', () => resolve(true))
    setTimeout(() => resolve(false), 2_000)
  })
  t.ok(closed, 'the newcomer is closed')
  release()
  const answers = await Promise.all(asking)
  t.same(
    answers.map((a) => a.statusCode),
    Array(ADMIN_LIMITS.maxConnections).fill(200),
    'every request in flight is answered',
  )
  await Promise.all(answers.map((a) => a.body.dump()))
})
