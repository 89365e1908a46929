import { Writable } from 'node:stream'
import t from 'tap'
import type { Principal } from '../src/identity/principal.js'
import { ACCESS_LOG_MSG, accessLogFields, createLogger, writeAccessLog } from '../src/observability/logger.js'

const principal: Principal = { id: 'uri:spiffe://sponsor.test/app', attributes: new Set(['cn:app']) }

t.test('the access record is built from an allow-list and has a fixed shape', async (t) => {
  const input = {
    reqId: 'req-1',
    route: 'accreditations',
    principal,
    method: 'POST',
    status: 201,
    bytesIn: 120,
    bytesOut: 3400,
    durationMs: 12.3456789,
    upstreamMs: 7.0000004,
    // None of these may be copied.
    path: '/v1/accreditations/42?ssn=1850512345678',
    headers: { authorization: 'Bearer secret' },
    body: '{"ssn":"1850512345678"}',
  }
  const line = accessLogFields(input)
  t.same(line, {
    reqId: 'req-1',
    route: 'accreditations',
    principal: 'uri:spiffe://sponsor.test/app',
    method: 'POST',
    status: 201,
    aborted: false,
    bytesIn: 120,
    bytesOut: 3400,
    durationMs: 12.346,
    upstreamMs: 7,
    code: undefined,
  })
  t.same(Object.keys(line), ['reqId', 'route', 'principal', 'method', 'status', 'aborted', 'bytesIn', 'bytesOut', 'durationMs', 'upstreamMs', 'code'])
})

t.test('refusals, unmatched requests and hostile values', async (t) => {
  const line = accessLogFields({
    reqId: 'x'.repeat(200),
    principal: undefined,
    method: 'BREW',
    status: 404,
    bytesIn: 0,
    bytesOut: 26,
    durationMs: 0.2,
    code: 'route_not_found',
  })
  t.equal(line.reqId, '-', 'an over-long request id is not echoed')
  t.equal(line.route, 'unmatched')
  t.equal(line.principal, null)
  t.equal(line.method, 'OTHER')
  t.equal(line.code, 'route_not_found')
  t.equal(line.upstreamMs, undefined)
  t.equal(accessLogFields({ reqId: 'a\nb', status: 200, bytesIn: 0, bytesOut: 0, durationMs: 1 }).reqId, '-', 'control characters refused')
  t.equal(accessLogFields({ reqId: 'r', principal: 'cn:x', status: 200, bytesIn: 0, bytesOut: 0, durationMs: 1 }).principal, 'cn:x')
})

t.test('writeAccessLog writes one line at info, nothing when info is off', async (t) => {
  const lines: string[] = []
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      lines.push(...chunk.toString('utf8').split('\n').filter(Boolean))
      cb()
    },
  })
  const input = { reqId: 'r1', route: 'a', principal, method: 'GET', status: 200, bytesIn: 0, bytesOut: 5, durationMs: 1 }
  writeAccessLog(createLogger({ level: 'info', destination: stream }), input)
  writeAccessLog(createLogger({ level: 'warn', destination: stream }), input)
  t.equal(lines.length, 1)
  const line = JSON.parse(lines[0]!)
  t.equal(line.msg, ACCESS_LOG_MSG)
  t.equal(line.route, 'a')
  t.notOk('upstreamMs' in line, 'absent optional fields are not written')
  t.notOk('code' in line)
})
