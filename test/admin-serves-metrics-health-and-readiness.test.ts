import { request } from 'node:http'
import t from 'tap'
import { AdminServer, type Readiness } from '../src/admin/server.js'
import { createLogger } from '../src/observability/logger.js'
import { GatewayMetrics } from '../src/observability/metrics.js'

interface Reply {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: string
}

function get(port: number, path: string, method = 'GET'): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method, agent: false }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => {
        body += c
      })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }))
    })
    req.on('error', reject)
    req.end()
  })
}

t.test('serves metrics, liveness and readiness', async (t) => {
  const metrics = new GatewayMetrics({ routes: ['accreditations'] })
  let readiness: Readiness = { ready: true, checks: { certificates: 'ok', 'upstream:trusted': 'ok' } }
  const admin = new AdminServer({
    listen: { host: '127.0.0.1', port: 0 },
    metrics,
    readiness: () => readiness,
    log: createLogger({ level: 'silent' }),
  })
  const { port } = await admin.listen()
  t.teardown(() => admin.close())
  t.ok(port > 0)

  metrics.requestReceived('accreditations')
  const scrape = await get(port, '/metrics')
  t.equal(scrape.status, 200)
  t.equal(scrape.headers['content-type'], 'text/plain; version=0.0.4; charset=utf-8')
  t.equal(scrape.headers['cache-control'], 'no-store')
  t.equal(Number(scrape.headers['content-length']), Buffer.byteLength(scrape.body))
  t.match(scrape.body, /^ecluse_requests_total\{side="sponsor",route="accreditations"\} 1$/m)
  t.match(scrape.body, /^ecluse_open_connections\{side="admin"\} 1$/m, 'the scraper’s own connection is counted')
  t.match(scrape.body, /^ecluse_process_resident_memory_bytes /m)

  const head = await get(port, '/metrics', 'HEAD')
  t.equal(head.status, 200)
  t.equal(head.body, '', 'HEAD has no body')
  t.equal(head.headers['content-type'], metrics.contentType)

  const health = await get(port, '/healthz')
  t.equal(health.status, 200)
  t.equal(health.headers['content-type'], 'application/json')
  t.same(JSON.parse(health.body), { status: 'ok' })
  t.equal((await get(port, '/healthz?probe=1')).status, 200, 'a query string is ignored')

  const ready = await get(port, '/readyz')
  t.equal(ready.status, 200)
  t.same(JSON.parse(ready.body), { status: 'ready', checks: { certificates: 'ok', 'upstream:trusted': 'ok' } })

  readiness = { ready: false, checks: { certificates: 'ok', 'upstream:trusted': 'upstream_refused: connect ECONNREFUSED 10.0.0.7:8443' } }
  const notReady = await get(port, '/readyz')
  t.equal(notReady.status, 503)
  t.same(JSON.parse(notReady.body), { status: 'not_ready', checks: { certificates: 'ok', 'upstream:trusted': 'upstream_refused' } })

  // Liveness does not depend on readiness.
  t.equal((await get(port, '/healthz')).status, 200)

  // Connections are released: after the agent-less requests close, only the gauge's own scrape remains.
  await new Promise((r) => setTimeout(r, 50))
  t.match((await get(port, '/metrics')).body, /^ecluse_open_connections\{side="admin"\} 1$/m)
})
