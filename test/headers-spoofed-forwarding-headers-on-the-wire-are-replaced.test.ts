import { once } from 'node:events'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import { connect } from 'node:net'
import { pino } from 'pino'
import t from 'tap'
import { configSchema } from '../src/config/schema.js'
import { buildUpstreamHeaders } from '../src/proxy/headers.js'
import { compileRouteTable } from '../src/route/table.js'

// Node's own parser produces the rawHeaders here, so the policy is checked on what a real client
// can put on the wire (mixed case, repeats, several Connection lines), not on hand-made arrays.
t.plan(1)

const config = configSchema.parse({
  sponsor: { listen: { port: 0 }, tls: { cert: 'c', key: 'k', clientCa: 'ca' }, principalHeader: 'x-ecluse-principal' },
  upstreams: { svc: { url: 'https://127.0.0.1:8443', serverName: 'svc', tls: { ca: 'ca', cert: 'c', key: 'k' } } },
  admin: { listen: { port: 0 } },
  routes: [{ name: 'r', methods: ['POST'], path: '/v1/a', allow: ['dns:a'], upstream: 'svc', requestHeaders: ['x-tenant'] }],
})
const route = compileRouteTable(config, { log: pino({ level: 'silent' }) }).get('r')!

const server = createServer()
t.teardown(() => server.close())
server.listen(0, '127.0.0.1')
await once(server, 'listening')
const { port } = server.address() as { port: number }

const received = once(server, 'request') as Promise<[IncomingMessage, ServerResponse]>
const socket = connect(port, '127.0.0.1')
t.teardown(() => socket.destroy())
socket.write(
  [
    'POST /v1/a HTTP/1.1',
    'Host: admin.internal',
    'X-Forwarded-For: 10.0.0.1',
    'x-forwarded-for: 10.0.0.2',
    'Forwarded: for=10.0.0.1',
    'X-Real-IP: 10.0.0.1',
    'X-Forwarded-Proto: http',
    'X-Ecluse-Principal: spiffe://sponsor.test/admin',
    'X-Request-Id: chosen-by-client',
    'Connection: keep-alive',
    'Connection: X-Tenant',
    'X-Tenant: should-be-removed',
    'Content-Type: application/json',
    'Content-Length: 2',
    '',
    '{}',
  ].join('\r\n'),
)
const [req, res] = await received
const headers = buildUpstreamHeaders(req.rawHeaders, route, {
  requestId: 'gw-1',
  clientAddress: req.socket.remoteAddress ?? '',
  principal: { id: 'spiffe://sponsor.test/app', attributes: new Set() },
  principalHeader: 'x-ecluse-principal',
  requestIdHeader: 'x-request-id',
})
res.end()
t.strictSame({ ...headers }, {
  'content-type': 'application/json',
  'content-length': '2',
  'x-forwarded-for': '127.0.0.1',
  'x-forwarded-proto': 'https',
  'x-request-id': 'gw-1',
  'x-ecluse-principal': 'spiffe://sponsor.test/app',
})
