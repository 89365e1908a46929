/**
 * The trusted-side service every scenario ends at, in its own process: HTTPS/1.1 with a client
 * certificate required and verified against the trusted CA only (the same as the demo service).
 *
 *   node --import tsx bench/upstream.ts --pki DIR
 *
 * Routes (small, fixed, no per-request work beyond what a real service does):
 *   GET  /healthz               200 {"status":"ok"}
 *   GET  /v1/records/:n         one ~1 KiB accreditation record (bench/records.ts, seeded), n mod 1024
 *   POST /v1/records[/…]        echoes the JSON body (≤ 1 MiB) with 200: what was sent comes back
 *   PUT  /v1/uploads/:id        reads the whole body, answers {"bytes":N,"sha256":"…"}
 *
 * Prints one line `{"ready":true,"port":N}` once listening; SIGTERM closes it.
 */
import { createHash } from 'node:crypto'
import https from 'node:https'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { parseArgs } from 'node:util'
import { readBenchPki } from './lib/pki.js'
import { generateRecords } from './records.js'

const RECORDS = 1024
const MAX_ECHO_BYTES = 1024 * 1024

const { values } = parseArgs({ options: { pki: { type: 'string' }, port: { type: 'string', default: '0' } } })
const pki = readBenchPki(values.pki!)
const bodies = generateRecords(RECORDS).map((r) => Buffer.from(JSON.stringify(r)))
const OK = Buffer.from('{"status":"ok"}')
const JSON_TYPE = 'application/json'

function send(res: ServerResponse, status: number, body: Buffer): void {
  res.writeHead(status, { 'content-type': JSON_TYPE, 'content-length': body.length })
  res.end(body)
}

function recordIndex(url: string): number {
  // /v1/records/<n>[?…]: digits only, anything else is record 0.
  const tail = url.slice('/v1/records/'.length)
  let n = 0
  for (let i = 0; i < tail.length; i++) {
    const c = tail.charCodeAt(i) - 48
    if (c < 0 || c > 9) break
    n = (n * 10 + c) % RECORDS
  }
  return n
}

function echo(req: IncomingMessage, res: ServerResponse): void {
  const chunks: Buffer[] = []
  let size = 0
  req.on('data', (chunk: Buffer) => {
    size += chunk.length
    if (size > MAX_ECHO_BYTES) {
      req.destroy()
      return
    }
    chunks.push(chunk)
  })
  req.on('end', () => send(res, 200, Buffer.concat(chunks)))
}

function digest(req: IncomingMessage, res: ServerResponse): void {
  const hash = createHash('sha256')
  let bytes = 0
  req.on('data', (chunk: Buffer) => {
    bytes += chunk.length
    hash.update(chunk)
  })
  req.on('end', () => send(res, 200, Buffer.from(JSON.stringify({ bytes, sha256: hash.digest('hex') }))))
}

function handle(req: IncomingMessage, res: ServerResponse): void {
  const url = req.url ?? '/'
  if (req.method === 'GET' && url.startsWith('/v1/records/')) send(res, 200, bodies[recordIndex(url)]!)
  else if (req.method === 'POST' && url.startsWith('/v1/records')) echo(req, res)
  else if (req.method === 'PUT' && url.startsWith('/v1/uploads/')) digest(req, res)
  else if (url === '/healthz') send(res, 200, OK)
  else {
    req.resume()
    send(res, 404, Buffer.from('{"error":"not_found"}'))
  }
}

const server = https.createServer(
  {
    cert: pki.trustedServer.certPem,
    key: pki.trustedServer.keyPem,
    ca: pki.trustedCaPem,
    requestCert: true,
    rejectUnauthorized: true,
    minVersion: 'TLSv1.2',
    noDelay: true,
    // Longer than the proxies' pool keep-alive (4 s): the client side closes idle connections first.
    keepAliveTimeout: 10_000,
    requestTimeout: 0,
  },
  handle,
)
server.listen(Number(values.port), '127.0.0.1', () => {
  const addr = server.address()
  process.stdout.write(`${JSON.stringify({ ready: true, port: typeof addr === 'object' && addr !== null ? addr.port : 0 })}\n`)
})
process.on('SIGTERM', () => {
  server.close(() => process.exit(0))
  server.closeAllConnections()
})
