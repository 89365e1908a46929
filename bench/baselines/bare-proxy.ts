/**
 * Baseline 2: the bare pass-through proxy a competent engineer would write in an afternoon with
 * Node's https server and undici, with the same TLS settings as Écluse on both sides:
 *
 * - sponsor side: HTTPS/1.1 (ALPN `http/1.1`), client certificate required and verified against the
 *   sponsor CA only, TLS ≥ 1.2, the same header/keep-alive/request timeouts as Écluse's defaults;
 * - trusted side: one undici `Pool` over mTLS, trusted CA only, `servername` pinned, TLS ≥ 1.2, no
 *   TLS session resumed, `pipelining: 1`, the same connection count and keep-alive as Écluse's defaults;
 * - both sides: Écluse's cipher list, security level and no renegotiation (src/config/tls-policy.ts).
 *
 * It streams both bodies with back-pressure and drops hop-by-hop headers, and nothing else: no route
 * table, no ACL, no principal, no path normalisation, no header policy, no limits, no metrics, no
 * access log. The difference between it and Écluse is the price of those.
 *
 *   node --import tsx bench/baselines/bare-proxy.ts --pki DIR --upstream-port N [--connections 64]
 *
 * Prints `{"ready":true,"port":N}` once listening.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import https from 'node:https'
import { pipeline, type Readable } from 'node:stream'
import { createSecureContext } from 'node:tls'
import { type ParseArgsConfig, parseArgs } from 'node:util'
import { type Dispatcher, Pool } from 'undici'
import { TLS_CIPHERS, TLS_SECURE_OPTIONS } from '../../src/config/tls-policy.js'
import { isMain } from '../lib/child.js'
import { type BenchPki, readBenchPki, UPSTREAM_SERVER_NAME } from '../lib/pki.js'

/** RFC 9110 §7.6.1 connection-specific fields, plus `host` (undici sets it from the origin). */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'host'])

export interface BareProxyOptions {
  readonly pki: BenchPki
  readonly upstreamPort: number
  /** Upstream connections (Écluse's default is 64). */
  readonly connections?: number
  /** Écluse's upstream default timeouts are 30 s; the concurrency scenario raises both. */
  readonly upstreamTimeoutMs?: number
  /** Sponsor request timeout (Écluse's default 300 s). */
  readonly requestTimeoutMs?: number
}

function forwardedHeaders(raw: readonly string[]): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {}
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase()
    if (HOP_BY_HOP.has(name)) continue
    const prev = out[name]
    out[name] = prev === undefined ? raw[i + 1]! : Array.isArray(prev) ? [...prev, raw[i + 1]!] : [prev, raw[i + 1]!]
  }
  return out
}

function relayedHeaders(headers: Record<string, string | string[] | undefined>): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {}
  for (const name in headers) {
    const value = headers[name]
    if (value !== undefined && !HOP_BY_HOP.has(name)) out[name] = value
  }
  return out
}

/** The bare proxy; `NaiveFieldProxy` extends it with body rewriting. */
export class BareProxy {
  readonly server: https.Server
  readonly pool: Pool

  constructor(opts: BareProxyOptions) {
    const { pki } = opts
    this.server = https.createServer(
      {
        cert: pki.sponsorServer.certPem,
        key: pki.sponsorServer.keyPem,
        ca: pki.sponsorCaPem,
        requestCert: true,
        rejectUnauthorized: true,
        minVersion: 'TLSv1.2',
        ciphers: TLS_CIPHERS,
        secureOptions: TLS_SECURE_OPTIONS,
        ALPNProtocols: ['http/1.1'],
        handshakeTimeout: 5_000,
        maxHeaderSize: 16 * 1024,
        headersTimeout: 10_000,
        requestTimeout: opts.requestTimeoutMs ?? 300_000,
        keepAliveTimeout: 5_000,
        noDelay: true,
      },
      (req, res) => this.handle(req, res),
    )
    this.server.maxConnections = 4096
    const timeout = opts.upstreamTimeoutMs ?? 30_000
    this.pool = new Pool(`https://127.0.0.1:${opts.upstreamPort}`, {
      connect: {
        secureContext: createSecureContext({
          ca: pki.trustedCaPem,
          cert: pki.trustedClient.certPem,
          key: pki.trustedClient.keyPem,
          minVersion: 'TLSv1.2',
          ciphers: TLS_CIPHERS,
          secureOptions: TLS_SECURE_OPTIONS,
        }),
        servername: UPSTREAM_SERVER_NAME,
        rejectUnauthorized: true,
        ALPNProtocols: ['http/1.1'],
        timeout: 5_000,
        // As Écluse: no upstream TLS session resumed (a resumed session skips verifying the upstream).
        maxCachedSessions: 0,
      } as Pool.Options['connect'],
      connections: opts.connections ?? 64,
      pipelining: 1,
      headersTimeout: timeout,
      bodyTimeout: timeout,
      keepAliveTimeout: 4_000,
      keepAliveMaxTimeout: 4_000,
    })
  }

  listen(): Promise<number> {
    return new Promise((resolve) => {
      this.server.listen(0, '127.0.0.1', () => {
        const addr = this.server.address()
        resolve(typeof addr === 'object' && addr !== null ? addr.port : 0)
      })
    })
  }

  handle(req: IncomingMessage, res: ServerResponse): void {
    const abort = new AbortController()
    res.once('close', () => {
      if (!res.writableFinished) abort.abort()
    })
    const hasBody = req.headers['transfer-encoding'] !== undefined || (req.headers['content-length'] ?? '0') !== '0'
    const headers = forwardedHeaders(req.rawHeaders)
    this.requestBody(req, headers, hasBody).then(
      (body) =>
        this.pool
          .request({
            method: req.method as Dispatcher.HttpMethod,
            path: req.url ?? '/',
            headers,
            body,
            signal: abort.signal,
          })
          .then((up) => this.respond(res, up)),
      (err: unknown) => this.fail(res, err, 400),
    ).catch((err: unknown) => this.fail(res, err, 502))
  }

  /** The body sent upstream: the client's stream as is. */
  protected requestBody(req: IncomingMessage, _headers: Record<string, string | string[]>, hasBody: boolean): Promise<Readable | Buffer | null> {
    return Promise.resolve(hasBody ? req : null)
  }

  protected respond(res: ServerResponse, up: Dispatcher.ResponseData): void | Promise<void> {
    res.writeHead(up.statusCode, relayedHeaders(up.headers))
    pipeline(up.body, res, (err) => {
      if (err) res.destroy()
    })
  }

  protected fail(res: ServerResponse, _err: unknown, status: number): void {
    if (res.headersSent || res.destroyed) {
      res.destroy()
      return
    }
    res.writeHead(status, { 'content-type': 'application/json', connection: 'close' }).end('{"error":"bad_gateway"}')
  }
}

type Flags = NonNullable<ParseArgsConfig['options']>

/** Parses the common flags of the bare-proxy family of baselines, plus `extra` ones (strings). */
export function proxyOptionsFromArgs(extra: Flags = {}): { options: BareProxyOptions; values: Record<string, string | undefined> } {
  const { values } = parseArgs({
    options: {
      pki: { type: 'string' },
      'upstream-port': { type: 'string' },
      connections: { type: 'string', default: '64' },
      'upstream-timeout-ms': { type: 'string', default: '30000' },
      'request-timeout-ms': { type: 'string', default: '300000' },
      ...extra,
    },
  }) as { values: Record<string, string | undefined> }
  const options: BareProxyOptions = {
    pki: readBenchPki(values['pki']!),
    upstreamPort: Number(values['upstream-port']),
    connections: Number(values['connections']),
    upstreamTimeoutMs: Number(values['upstream-timeout-ms']),
    requestTimeoutMs: Number(values['request-timeout-ms']),
  }
  return { options, values }
}

/** Listen, announce the port (and `extra`) in the ready line, close on SIGTERM. */
export async function serveProxy(proxy: BareProxy, extra: Record<string, unknown> = {}): Promise<void> {
  const port = await proxy.listen()
  process.stdout.write(`${JSON.stringify({ ready: true, port, ...extra })}\n`)
  process.once('SIGTERM', () => {
    proxy.server.close()
    proxy.server.closeAllConnections()
    void proxy.pool.destroy().then(() => process.exit(0))
  })
}

if (isMain(import.meta.url)) {
  await serveProxy(new BareProxy(proxyOptionsFromArgs().options))
}
