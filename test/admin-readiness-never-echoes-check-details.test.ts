import { request } from 'node:http'
import { Writable } from 'node:stream'
import t from 'tap'
import { AdminServer, type Readiness } from '../src/admin/server.js'
import { createLogger } from '../src/observability/logger.js'
import { GatewayMetrics } from '../src/observability/metrics.js'

function readyz(port: number): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: '/readyz', agent: false }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => {
        body += c
      })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
    })
    req.on('error', reject)
    req.end()
  })
}

t.test('readiness reports a code per check, never the detail, and fails closed', async (t) => {
  const logs: string[] = []
  const log = createLogger({
    level: 'debug',
    destination: new Writable({
      write(chunk: Buffer, _enc, cb) {
        logs.push(chunk.toString('utf8'))
        cb()
      },
    }),
  })
  let calls = 0
  let provider: () => Readiness | Promise<Readiness> = () => ({ ready: true, checks: {} })
  const admin = new AdminServer({
    listen: { host: '127.0.0.1', port: 0 },
    metrics: new GatewayMetrics({ routes: [], defaultMetrics: false }),
    readiness: () => {
      calls++
      return provider()
    },
    log,
    readinessTimeoutMs: 150,
  })
  const { port } = await admin.listen()
  t.teardown(() => admin.close())

  const SECRET = '-----BEGIN PRIVATE KEY----- MIIEvQ'
  provider = () => ({
    ready: false,
    checks: {
      certificates: `tls_material_invalid: /etc/ecluse/sponsor.key: ${SECRET}`,
      'upstream:trusted': 'upstream_tls: unable to verify the first certificate',
      shutdown: 'draining',
      other: 'Some Free Text',
      'bad name with spaces': 'ok',
    },
  })
  const res = await readyz(port)
  t.equal(res.status, 503)
  t.same(JSON.parse(res.body), {
    status: 'not_ready',
    checks: {
      certificates: 'tls_material_invalid',
      'upstream:trusted': 'upstream_tls',
      shutdown: 'draining',
      other: 'failing',
      invalid_check_name: 'failing',
    },
  })
  t.notOk(res.body.includes('/etc/ecluse'), 'no file path')
  t.notOk(res.body.includes('BEGIN'), 'no file contents')
  t.ok(logs.join('').includes('unable to verify the first certificate'), 'the detail is in the log for the operator')

  // `ready: true` with a failing check is still not ready.
  provider = () => ({ ready: true, checks: { 'upstream:trusted': 'upstream_refused' } })
  t.equal((await readyz(port)).status, 503)

  // Found by a review: past 64 checks the rest were neither shown nor judged. Every one is judged
  // (one failing beyond the 64th, under a provider that says ready, is not ready), 64 are shown,
  // and the answer says how many more there were.
  const many = Object.fromEntries(Array.from({ length: 70 }, (_, i) => [`upstream:u${i}`, i === 68 ? 'upstream_refused' : 'ok']))
  provider = () => ({ ready: true, checks: many })
  const crowded = await readyz(port)
  t.equal(crowded.status, 503, 'the 69th check fails: not ready')
  const shown = JSON.parse(crowded.body) as { checks: Record<string, string>; omittedChecks: number }
  t.equal(Object.keys(shown.checks).length, 64)
  t.equal(shown.omittedChecks, 6)
  provider = () => ({ ready: true, checks: Object.fromEntries(Object.keys(many).map((k) => [k, 'ok'])) })
  const allOk = await readyz(port)
  t.equal(allOk.status, 200)
  t.equal((JSON.parse(allOk.body) as { omittedChecks: number }).omittedChecks, 6)

  provider = () => {
    throw new Error(`boom ${SECRET}`)
  }
  const threw = await readyz(port)
  t.equal(threw.status, 503)
  t.same(JSON.parse(threw.body), { status: 'not_ready', checks: { readiness: 'internal' } })

  provider = () => new Promise<Readiness>(() => {})
  const hung = await readyz(port)
  t.equal(hung.status, 503)
  t.same(JSON.parse(hung.body), { status: 'not_ready', checks: { readiness: 'timeout' } })

  // Concurrent probes share one readiness call.
  let release: (r: Readiness) => void = () => {}
  provider = () =>
    new Promise<Readiness>((resolve) => {
      release = resolve
    })
  calls = 0
  const probes = Promise.all([readyz(port), readyz(port), readyz(port)])
  await new Promise((r) => setTimeout(r, 50))
  release({ ready: true, checks: { certificates: 'ok' } })
  const answers = await probes
  t.same(answers.map((a) => a.status), [200, 200, 200])
  t.equal(calls, 1, 'one call for three concurrent probes')
})
