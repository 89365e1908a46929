/**
 * The trusted service's answers that are not successes cross with their status and without their
 * body (`routes[].errorBodies: withhold`, the default): an error page's stack trace, or a validation
 * message quoting a value the sidecar opened for the service, would otherwise reach the sponsor in
 * plaintext. The body is the gateway's own (`{"upstreamStatus":…,"requestId":…}`); the fields that
 * describe the withheld body go with it. Only an answer an Écluse gateway upstream wrote itself
 * crosses, re-issued: the edge passes on the sidecar's. `errorBodies: pass` relays them as before.
 */
import { randomUUID } from 'node:crypto'
import { EventEmitter, once } from 'node:events'
import type { ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import tls from 'node:tls'
import t from 'tap'
import { request as undiciRequest } from 'undici'
import { Harness, type UpstreamHandler } from '../helpers/harness.js'
import {
  CANARY,
  canaryRecord,
  EDGE_GATEWAY,
  leaksCanary,
  SENSITIVE_FIELDS,
  SPONSOR_APP,
  startChain,
  startSealing,
  tempDir,
  writeKeyFiles,
} from '../helpers/sealing.js'

const STACK = `Error: passport ${CANARY.passport} refused\n    at validate (/srv/accreditation/src/validate.js:42:11)`
const UPSTREAM_ID = randomUUID()
/** The upstream connection each kind of answer went out on, and whether the long ones were written to their end. */
const socketOf = new Map<string, Socket>()
const wroteToTheEnd = new Set<string>()

/** Resolves once `socket` has closed (at once if it has). */
async function closed(socket: Socket): Promise<void> {
  if (!socket.destroyed) await once(socket, 'close')
}

function send(res: ServerResponse, status: number, type: string, body: string, extra: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body), ...extra }).end(body)
}

/** One answer per path: what a service (or a gateway in front of one) may answer. */
const service: UpstreamHandler = (req, res) => {
  req.resume()
  const path = req.url!.replace(/^\/v1\/(withheld|passed|sealed)\//, '')
  socketOf.set(path, req.socket)
  const describing = { 'content-language': 'fr', etag: '"e1"', 'last-modified': 'Sat, 05 Dec 2026 10:00:00 GMT', 'content-disposition': 'inline; filename="stack.html"' }
  switch (path) {
    case 'stack':
      return send(res, 500, 'text/html', `<pre>${STACK}</pre>`, { 'retry-after': '7', 'cache-control': 'no-store', ...describing })
    case 'missing':
      return send(res, 404, 'application/json', JSON.stringify({ error: 'not_found', holder: CANARY.name }), { 'content-security-policy': "default-src 'none'" })
    case 'range':
      return send(res, 416, 'text/plain', STACK, { 'content-range': 'bytes */5120' })
    case 'redirect':
      return send(res, 302, 'text/html', '<a href="https://admin.trusted.internal/records/7">moved</a>', { location: 'https://admin.trusted.internal/records/7' })
    case 'huge': {
      // Chunked, far longer than what the gateway reads to keep the connection: it is cut instead.
      res.writeHead(503, { 'content-type': 'text/plain' })
      const line = `${STACK}\n`.repeat(1024)
      let left = 64
      const more = () => {
        while (left > 0) {
          left--
          if (!res.write(line)) return void res.once('drain', more)
        }
        res.end()
        wroteToTheEnd.add('huge')
      }
      res.on('error', () => {})
      return more()
    }
    case 'trickle': {
      // A short body of declared length, one byte at a time: it would hold the connection for 6 s.
      res.writeHead(500, { 'content-type': 'text/plain', 'content-length': 20 })
      let left = 20
      const drip = setInterval(() => {
        if (res.destroyed) return void clearInterval(drip)
        res.write('x')
        if (--left === 0) {
          clearInterval(drip)
          res.end()
          wroteToTheEnd.add('trickle')
        }
      }, 300)
      return
    }
    case 'status-600':
      return send(res, 600, 'text/plain', STACK)
    case 'gateway-error':
      return send(res, 502, 'application/json', JSON.stringify({ error: 'upstream_refused', requestId: UPSTREAM_ID }))
    case 'gateway-error-short':
      return send(res, 503, 'application/json', JSON.stringify({ error: 'shutting_down' }))
    case 'gateway-withheld':
      return send(res, 409, 'application/json', JSON.stringify({ upstreamStatus: 409, requestId: UPSTREAM_ID }))
    // Look-alikes: the wrong status for the code, one more member, spacing, another type.
    case 'wrong-status':
      return send(res, 500, 'application/json', JSON.stringify({ error: 'upstream_refused', requestId: UPSTREAM_ID }))
    case 'extra-member':
      return send(res, 502, 'application/json', JSON.stringify({ error: 'upstream_refused', requestId: UPSTREAM_ID, detail: CANARY.phone }))
    case 'spaced':
      return send(res, 409, 'application/json', `{"upstreamStatus": 409, "requestId": "${UPSTREAM_ID}"}`)
    case 'status-mismatch':
      return send(res, 409, 'application/json', JSON.stringify({ upstreamStatus: 410, requestId: UPSTREAM_ID }))
    case 'as-text':
      return send(res, 502, 'text/plain', JSON.stringify({ error: 'upstream_refused', requestId: UPSTREAM_ID }))
    case 'not-modified':
      res.writeHead(304, { etag: '"e1"' }).end()
      return
    default:
      return send(res, 200, 'application/json', JSON.stringify(canaryRecord('r-1')))
  }
}

const route = (name: string, extra: Record<string, unknown> = {}) => ({
  name,
  methods: ['GET', 'HEAD'],
  path: `/v1/${name}/:what`,
  allow: [SPONSOR_APP],
  upstream: 'backend',
  responseHeaders: ['location', 'content-disposition', 'content-security-policy', 'content-range'],
  ...extra,
})

t.test('one gateway: error answers cross with their status and the gateway’s body, unless the route passes them', async (t) => {
  const dir = await tempDir()
  const keys = await writeKeyFiles(dir, 'th')
  const s = await startSealing({
    dir,
    keys: { th: { file: keys.publicPath } },
    handler: service,
    routes: [
      route('withheld'),
      route('passed', { errorBodies: 'pass' }),
      route('sealed', { responseHeaders: ['location', 'content-security-policy'], transforms: { response: [{ type: 'seal', recipients: 'th', fields: ['/passport'] }] } }),
    ],
  })
  t.teardown(s.close)
  const withheld = (status: number, id: string | string[] | undefined) => ({ upstreamStatus: status, requestId: id })

  const stack = await s.gw.request('/v1/withheld/stack')
  t.equal(stack.status, 500, "the upstream's status")
  t.same(stack.json(), withheld(500, stack.headers['x-request-id']), 'the body is the gateway’s: the status and the request id')
  t.equal(stack.headers['content-type'], 'application/json')
  t.equal(stack.headers['content-length'], String(stack.body.length))
  for (const name of ['content-language', 'etag', 'last-modified', 'content-disposition']) t.equal(stack.headers[name], undefined, `${name} described the withheld body`)
  t.equal(stack.headers['retry-after'], '7', 'what describes the answer stays')
  t.equal(stack.headers['cache-control'], 'no-store')

  const missing = await s.gw.request('/v1/withheld/missing')
  t.equal(missing.status, 404)
  t.same(missing.json(), withheld(404, missing.headers['x-request-id']))
  t.equal(missing.headers['content-security-policy'], "default-src 'none'", 'a field the route lists that says how to treat the answer crosses')
  const range = await s.gw.request('/v1/withheld/range')
  t.same([range.status, range.json()], [416, withheld(416, range.headers['x-request-id'])])
  t.equal(range.headers['content-range'], undefined, 'the length a content-range gives is of the withheld body’s representation')
  // A short body of declared length is read to its end: its upstream connection serves on. (Not
  // after a HEAD below: undici closes every connection a HEAD went out on.)
  await sleep(200)
  t.notOk(socketOf.get('missing')!.destroyed, 'the connection of a short withheld body is kept')
  const redirect = await s.gw.request('/v1/withheld/redirect')
  t.equal(redirect.status, 302)
  t.same(redirect.json(), withheld(302, redirect.headers['x-request-id']), 'a redirect’s body names no internal URL')
  t.equal(redirect.headers['location'], 'https://admin.trusted.internal/records/7', 'a field the route lists still crosses')

  const head = await s.gw.request('/v1/withheld/stack', { method: 'HEAD' })
  t.equal(head.status, 500)
  t.equal(head.headers['content-length'], String(Buffer.byteLength(JSON.stringify(withheld(500, head.headers['x-request-id'])))), 'HEAD: the length of the body GET would get')
  t.equal(head.headers['content-language'], undefined)

  // A body far past what the gateway reads is cut upstream; the answer does not wait for it.
  const huge = await s.gw.request('/v1/withheld/huge')
  t.equal(huge.status, 503)
  t.same(huge.json(), withheld(503, huge.headers['x-request-id']))
  await closed(socketOf.get('huge')!)
  t.notOk(wroteToTheEnd.has('huge'), 'its upstream connection was cut before the body was written out')
  // A short body that trickles is cut after a second: it holds no upstream connection for long.
  const trickle = await s.gw.request('/v1/withheld/trickle')
  t.same([trickle.status, trickle.json()], [500, withheld(500, trickle.headers['x-request-id'])])
  await closed(socketOf.get('trickle')!)
  t.notOk(wroteToTheEnd.has('trickle'), 'its upstream connection was cut before the body trickled out')
  // Statuses past 599 (undici takes up to 999) are no success either: since 2026-12-07 they are
  // refused whole (no RFC defines them), before any withholding (test/e2e/an-upstream-status-outside-100-599-is-refused.test.ts).
  const past = await s.gw.request('/v1/withheld/status-600')
  t.same([past.status, past.json()], [502, { error: 'upstream_bad_response', requestId: past.headers['x-request-id'] }], 'a 600 is refused, its body with it')

  // An Écluse gateway's own answers are re-issued under this gateway's request id, and nothing else is.
  const gatewayError = await s.gw.request('/v1/withheld/gateway-error')
  t.equal(gatewayError.status, 502)
  t.same(gatewayError.json(), { error: 'upstream_refused', requestId: gatewayError.headers['x-request-id'] }, 'the code crosses, under this request id')
  const short = await s.gw.request('/v1/withheld/gateway-error-short')
  t.same([short.status, short.json()], [503, { error: 'shutting_down', requestId: short.headers['x-request-id'] }])
  const relayed = await s.gw.request('/v1/withheld/gateway-withheld')
  t.same([relayed.status, relayed.json()], [409, withheld(409, relayed.headers['x-request-id'])])
  for (const [path, status] of [['wrong-status', 500], ['extra-member', 502], ['spaced', 409], ['status-mismatch', 409], ['as-text', 502]] as const) {
    const r = await s.gw.request(`/v1/withheld/${path}`)
    t.same([r.status, r.json()], [status, withheld(status, r.headers['x-request-id'])], `${path}: a look-alike is withheld like any body`)
    t.notOk(r.text.includes(UPSTREAM_ID), `${path}: not even the upstream's request id crosses`)
  }

  // Successes and 304 are not error answers.
  const ok = await s.gw.request('/v1/withheld/ok')
  t.equal(ok.status, 200)
  t.equal((ok.json() as { passport: string }).passport, CANARY.passport, 'a plain route relays a success as it is')
  const notModified = await s.gw.request('/v1/withheld/not-modified')
  t.equal(notModified.status, 304)
  t.equal(notModified.headers['etag'], '"e1"', 'a 304 keeps its validators')

  // On a route with response transforms, the error answer no longer fails its step (HTML is no JSON).
  const sealedStack = await s.gw.request('/v1/sealed/stack')
  t.same([sealedStack.status, sealedStack.json()], [500, withheld(500, sealedStack.headers['x-request-id'])], 'the service’s 500, not the step’s 502')

  // `errorBodies: pass`: the upstream's body and fields, as before.
  const passed = await s.gw.request('/v1/passed/stack')
  t.equal(passed.status, 500)
  t.equal(passed.text, `<pre>${STACK}</pre>`)
  t.equal(passed.headers['content-language'], 'fr')

  for (const text of [stack.text, missing.text, redirect.text, huge.text, trickle.text, past.text, sealedStack.text, s.gw.logs.text()]) {
    t.equal(leaksCanary(text), undefined, 'no canary crossed or was logged')
  }
  t.ok(s.gw.logs.lines.some((l) => l['msg'] === 'upstream answer body withheld (routes[].errorBodies)' && l['status'] === 500), 'the log says a body was withheld, and not what it held')
  t.ok(s.gw.logs.lines.some((l) => l['msg'] === "upstream gateway's own answer re-issued (routes[].errorBodies)" && l['status'] === 502), 'and when an upstream gateway’s own answer was passed on')
})

t.test('an answer the gateway gives meanwhile (a slow upload’s 408, a client gone) is the only one: the withheld answer is dropped', async (t) => {
  const GW_ERR = JSON.stringify({ error: 'upstream_refused', requestId: UPSTREAM_ID })
  const answered = new EventEmitter()
  const h = await Harness.start({
    // The upload guard judges from its first tick on (a grace of 1 ms).
    sponsor: { limits: { minBodyBytesPerSecond: 100, bodyGraceMs: 1 } },
    handler: (req, res) => {
      req.resume()
      // An early answer that may be a gateway's own: JSON, short, of declared length; its body comes later.
      res.writeHead(502, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(GW_ERR) })
      res.flushHeaders()
      answered.emit(req.url!)
      const later = setTimeout(() => res.end(GW_ERR), 3000)
      res.on('close', () => clearTimeout(later))
    },
  })
  t.teardown(() => h.close())

  // A POST at 2 bytes/s: the guard refuses it (408) while the gateway still reads the upstream's answer.
  const out = await new Promise<string>((resolve) => {
    const socket = tls.connect(h.sponsorTls())
    let text = ''
    let drip: NodeJS.Timeout | undefined
    socket.setEncoding('utf8')
    socket.on('secureConnect', () => {
      socket.write('POST /v1/records/early HTTP/1.1\r\nhost: localhost\r\ncontent-length: 100\r\n\r\n')
      drip = setInterval(() => socket.destroyed || socket.write('x'), 500)
    })
    socket.on('data', (d: string) => {
      text += d
    })
    socket.on('error', () => {})
    socket.on('close', () => {
      clearInterval(drip)
      resolve(text)
    })
  })
  t.match(out, /^HTTP\/1\.1 408 /, 'the slow upload is refused 408')
  t.equal(out.match(/HTTP\/1\.1 /g)?.length, 1, 'one status line, and the process did not fall over a second')
  // A guard more than a regression test: the client leaves while the gateway reads the upstream's
  // short answer (its head is there, its body not yet): nothing is written, nothing thrown.
  const gone = new AbortController()
  const headSent = once(answered, '/v1/records/gone')
  const pending = undiciRequest(`${h.sponsorOrigin}/v1/records/gone`, { dispatcher: h.agent(), signal: gone.signal }).catch((err: Error) => err)
  await headSent
  await sleep(100)
  gone.abort()
  await pending
  let access: Record<string, unknown> | undefined
  for (let i = 0; i < 50 && access === undefined; i++) {
    access = h.logs.find('access').find((l) => l['aborted'] === true)
    if (access === undefined) await sleep(100)
  }
  t.match(access, { route: 'records', aborted: true, status: 0 }, 'the access line says the client left')
  const after = await h.request('/v1/records/next')
  t.equal(after.status, 502, 'the gateway serves on')
})

t.test('edge and sidecar: a value opened for the service never comes back in its error answer, and the sidecar’s codes reach the sponsor', async (t) => {
  const dir = await tempDir()
  const keys = await writeKeyFiles(dir, 'trusted-host')
  const fields = SENSITIVE_FIELDS.map((f) => `/records/*${f}`)
  const step = { context: 'accreditations', fields, records: { pattern: '/records/*', id: 'id' } }
  const seenByService: string[] = []
  // The service refuses the batch, quoting the passport number it found invalid: in plaintext,
  // since the sidecar opened it for the service.
  const handler: UpstreamHandler = (req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const doc = JSON.parse(Buffer.concat(chunks).toString()) as { records: Array<{ passport: string }> }
      seenByService.push(doc.records[0]!.passport)
      send(res, 422, 'application/json', JSON.stringify({ error: `invalid passport number ${doc.records[0]!.passport}` }))
    })
  }
  const chain = await startChain({
    dir,
    handler,
    edgeKeys: { 'trusted-host': { file: keys.publicPath } },
    sidecarKeys: { 'trusted-host-private': { file: keys.privatePath, private: true } },
    edgeRoutes: [
      {
        name: 'accreditations',
        methods: ['POST'],
        path: '/v1/accreditations',
        allow: [SPONSOR_APP],
        upstream: 'backend',
        transforms: { request: [{ type: 'seal', recipients: 'trusted-host', ...step }] },
      },
      // The sidecar has no such route: its own refusal comes back.
      { name: 'unrouted', methods: ['GET'], path: '/v1/elsewhere', allow: [SPONSOR_APP], upstream: 'backend' },
    ],
    sidecarRoutes: [
      {
        name: 'accreditations-in',
        methods: ['POST'],
        path: '/v1/accreditations',
        allow: [EDGE_GATEWAY],
        upstream: 'backend',
        transforms: { request: [{ type: 'open', keys: 'trusted-host-private', ...step }] },
      },
    ],
  })
  t.teardown(chain.close)

  const res = await chain.edge.request('/v1/accreditations', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ records: [canaryRecord('r-1')] }),
  })
  t.same(seenByService, [CANARY.passport], 'the service got the value opened, and quoted it in its answer')
  t.equal(res.status, 422, "the service's status reaches the sponsor")
  t.same(res.json(), { upstreamStatus: 422, requestId: res.headers['x-request-id'] }, 'withheld at the sidecar, re-issued by the edge under its own request id')
  for (const text of [res.text, chain.edge.logs.text(), chain.sidecar.logs.text()]) t.equal(leaksCanary(text), undefined, 'no canary crossed or was logged')

  const unrouted = await chain.edge.request('/v1/elsewhere')
  t.same([unrouted.status, unrouted.json()], [404, { error: 'route_not_found', requestId: unrouted.headers['x-request-id'] }], "the sidecar's code crosses the edge")
})
