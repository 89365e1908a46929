/**
 * The demo's trusted host: a small accreditation service behind mutual TLS (trusted CA only), with an
 * in-memory store. It stands in for the real service in `npm start` and in the tests; it is not part
 * of the gateway.
 *
 * API: `POST /v1/accreditations` (a JSON object; the service adds `id`, `status`, `category` and its
 * own `vetting` notes), `GET /v1/accreditations/:id`, `GET /v1/accreditations?status=` (`{records:
 * […]}`), and a photo per record, stored as sent: `PUT /v1/accreditations/:id/photo` (any media type,
 * 204) and `GET /v1/accreditations/:id/photo`.
 */
import { randomUUID } from 'node:crypto'
import type { IncomingMessage, ServerResponse } from 'node:http'
import https from 'node:https'

export interface AccreditationRecord {
  id: string
  status: 'pending' | 'approved' | 'revoked'
  category: string
  [field: string]: unknown
}

export interface AccreditationServiceOptions {
  readonly cert: Buffer | string
  readonly key: Buffer | string
  /** The trusted CA bundle: the only roots a client (the gateway) may chain to. */
  readonly ca: Buffer | string
  readonly host?: string
  readonly port?: number
  readonly maxBodyBytes?: number
  /** Largest photo accepted (default 5 MiB). */
  readonly maxPhotoBytes?: number
}

/** A stored photo: the bytes and media type exactly as they reached the service. */
export interface StoredPhoto {
  readonly contentType: string
  readonly bytes: Buffer
}

const STATUSES = new Set(['pending', 'approved', 'revoked'])

export class AccreditationService {
  readonly records = new Map<string, AccreditationRecord>()
  readonly photos = new Map<string, StoredPhoto>()
  readonly server: https.Server
  readonly #opts: AccreditationServiceOptions
  port = 0

  constructor(opts: AccreditationServiceOptions) {
    this.#opts = opts
    this.server = https.createServer(
      { cert: opts.cert, key: opts.key, ca: opts.ca, requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.2' },
      (req, res) => this.#handle(req, res),
    )
  }

  listen(): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject)
      this.server.listen(this.#opts.port ?? 0, this.#opts.host ?? '127.0.0.1', () => {
        const addr = this.server.address()
        this.port = typeof addr === 'object' && addr !== null ? addr.port : 0
        resolve(this.port)
      })
    })
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.close(() => resolve())
      this.server.closeAllConnections()
    })
  }

  #handle(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', 'https://accreditation.trusted.test')
    // Internal headers a careless service leaks; the gateway must never relay them to the sponsor.
    res.setHeader('server', 'accreditation-service/1.0')
    res.setHeader('x-powered-by', 'demo')
    res.setHeader('x-internal-trace', 'trusted-side-only')
    const parts = url.pathname.split('/').filter(Boolean)
    if (url.pathname === '/healthz') {
      send(res, 200, { status: 'ok' })
      return
    }
    if (parts[0] === 'v1' && parts[1] === 'accreditations' && parts.length === 4 && parts[3] === 'photo') {
      this.#photo(req, res, parts[2]!)
      return
    }
    if (parts[0] !== 'v1' || parts[1] !== 'accreditations' || parts.length > 3) {
      send(res, 404, { error: 'not_found' })
      return
    }
    const id = parts[2]
    if (req.method === 'GET' && id === undefined) {
      const status = url.searchParams.get('status')
      const records = [...this.records.values()].filter((r) => status === null || r.status === status)
      send(res, 200, { records })
      return
    }
    if (req.method === 'GET' && id !== undefined) {
      const record = this.records.get(id)
      if (record === undefined) send(res, 404, { error: 'not_found' })
      else send(res, 200, record)
      return
    }
    if (req.method === 'POST' && id === undefined) {
      this.#readJson(req, res, (body) => {
        if (typeof body !== 'object' || body === null || Array.isArray(body)) {
          send(res, 400, { error: 'expected an object' })
          return
        }
        const input = body as Record<string, unknown>
        const status = input['status'] ?? 'pending'
        if (typeof status !== 'string' || !STATUSES.has(status)) {
          send(res, 400, { error: 'bad status' })
          return
        }
        const id = randomUUID()
        const record: AccreditationRecord = {
          ...input,
          id,
          status: status as AccreditationRecord['status'],
          category: String(input['category'] ?? 'guest'),
          // The trusted host's own working notes: a profile strips them before anything leaves.
          vetting: { reference: `VET-${id.slice(0, 8).toUpperCase()}`, state: 'queued' },
        }
        this.records.set(record.id, record)
        res.setHeader('location', `/v1/accreditations/${record.id}`)
        send(res, 201, record)
      })
      return
    }
    send(res, 405, { error: 'method_not_allowed' })
  }

  #photo(req: IncomingMessage, res: ServerResponse, id: string): void {
    if (!this.records.has(id)) {
      send(res, 404, { error: 'not_found' })
      return
    }
    if (req.method === 'GET') {
      const photo = this.photos.get(id)
      if (photo === undefined) {
        send(res, 404, { error: 'not_found' })
        return
      }
      res.writeHead(200, { 'content-type': photo.contentType, 'content-length': photo.bytes.length })
      res.end(photo.bytes)
      return
    }
    if (req.method !== 'PUT') {
      send(res, 405, { error: 'method_not_allowed' })
      return
    }
    const contentType = req.headers['content-type'] ?? 'application/octet-stream'
    const max = this.#opts.maxPhotoBytes ?? 5 * 1024 * 1024
    const chunks: Buffer[] = []
    let size = 0
    req.on('data', (chunk: Buffer) => {
      size += chunk.length
      if (size > max) {
        send(res, 413, { error: 'too_large' })
        req.destroy()
        return
      }
      chunks.push(chunk)
    })
    req.on('end', () => {
      if (res.headersSent) return
      this.photos.set(id, { contentType, bytes: Buffer.concat(chunks) })
      res.writeHead(204)
      res.end()
    })
  }

  #readJson(req: IncomingMessage, res: ServerResponse, then: (body: unknown) => void): void {
    const max = this.#opts.maxBodyBytes ?? 1024 * 1024
    const chunks: Buffer[] = []
    let size = 0
    req.on('data', (chunk: Buffer) => {
      size += chunk.length
      if (size > max) {
        send(res, 413, { error: 'too_large' })
        req.destroy()
        return
      }
      chunks.push(chunk)
    })
    req.on('end', () => {
      if (res.headersSent) return
      try {
        then(JSON.parse(Buffer.concat(chunks).toString('utf8')))
      } catch {
        send(res, 400, { error: 'invalid_json' })
      }
    })
  }
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body)
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) })
  res.end(text)
}
