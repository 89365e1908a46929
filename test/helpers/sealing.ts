/**
 * Helpers for the sealing e2e tests: throw-away key sets written as JWKS files, and gateways started
 * from a config with a `keys` section (the shared harness has no such section), each with its own
 * captured log. Everything listens on 127.0.0.1 port 0 and is closed by `close()`.
 */
import { createHash, type Hash } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { pino } from 'pino'
import { Agent, request as undiciRequest } from 'undici'
import { stringify } from 'yaml'
import { type GenerateKeySetOptions, generateKeySet, type Jwks, parseKeySet } from '../../src/crypto/keys.js'
import { Gateway } from '../../src/main.js'
import { createLogger } from '../../src/observability/logger.js'
import type { TransformEnv } from '../../src/transform/types.js'
import { echoHandler, LogCapture, TestUpstream, type UpstreamHandler } from './harness.js'
import { makeTestPki, type TestCert, type TestPki } from './pki.js'

export const SPONSOR_APP = 'uri:spiffe://sponsor.test/accreditation-app'
export const EDGE_GATEWAY = 'uri:spiffe://trusted.test/ecluse-gateway'

/** Distinctive plaintext values: each must never show up in a log, an error body or /metrics. */
export const CANARY = {
  name: 'CANARY-NAME-Zoé Quintard-7731',
  birthDate: '1911-11-11-CANARY',
  passport: 'CANARY-PASSPORT-19XK44210',
  email: 'canary.mail.4412@example.invalid',
  phone: '+33-CANARY-0612345678',
  policeUnit: 'CANARY-UNIT-Brigade-17',
} as const
export const CANARY_VALUES: readonly string[] = Object.values(CANARY)
export const SENSITIVE_FIELDS = ['/name', '/birthDate', '/passport', '/email', '/phone', '/policeUnit'] as const

/** A record with every sensitive field set to a canary (suffixed, so each record differs). */
export function canaryRecord(id: string | number, suffix = ''): Record<string, unknown> {
  return {
    id,
    name: CANARY.name + suffix,
    birthDate: CANARY.birthDate + suffix,
    passport: CANARY.passport + suffix,
    email: CANARY.email + suffix,
    phone: CANARY.phone + suffix,
    policeUnit: CANARY.policeUnit + suffix,
    status: 'pending',
  }
}

/** A fresh key pair written as a private and a public JWKS file under `dir`. */
export interface KeyFiles {
  readonly privatePath: string
  readonly publicPath: string
  readonly privateJwks: Jwks
  readonly publicJwks: Jwks
}

export async function writeKeyFiles(dir: string, name: string, options: GenerateKeySetOptions = {}): Promise<KeyFiles> {
  const { privateJwks, publicJwks } = generateKeySet(options)
  const privatePath = join(dir, `${name}.private.jwks.json`)
  const publicPath = join(dir, `${name}.public.jwks.json`)
  await writeFile(privatePath, JSON.stringify(privateJwks), { mode: 0o600 })
  await writeFile(publicPath, JSON.stringify(publicJwks))
  return { privatePath, publicPath, privateJwks, publicJwks }
}

/** A temporary directory for one test file, removed at exit of the returned cleanup. */
export async function tempDir(prefix = 'ecluse-sealing-'): Promise<string> {
  return mkdtemp(join(tmpdir(), prefix))
}

/**
 * What a step's factory needs to be built outside a gateway (its options checked): a silent log and
 * a fresh key pair as `th` (public) and `th-private`, removed at the test's end.
 */
export async function keySetEnv(t: { teardown(fn: () => unknown): void }): Promise<TransformEnv> {
  const dir = await tempDir()
  const keys = await writeKeyFiles(dir, 'th')
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  return {
    log: pino({ level: 'silent' }),
    keySets: new Map([
      ['th', parseKeySet(keys.publicJwks)],
      ['th-private', parseKeySet(keys.privateJwks, { requirePrivate: true })],
    ]),
  }
}

export interface GatewaySetup {
  readonly pki: TestPki
  readonly dir: string
  readonly routes: Array<Record<string, unknown>>
  readonly keys?: Record<string, { file: string; private?: boolean }>
  /** The upstream this gateway calls: a port, its CA and the client certificate it presents. */
  readonly upstream: { port: number; ca: TestCert; cert: TestCert; serverName?: string }
  /** The sponsor side: the server certificate and the CA clients must chain to. */
  readonly sponsor?: { cert: TestCert; clientCa: TestCert }
  readonly name?: string
}

/** One gateway under test with its captured log. */
export class TestGateway {
  readonly gateway: Gateway
  readonly logs: LogCapture
  readonly configPath: string
  readonly config: Record<string, unknown>
  readonly #pki: TestPki
  readonly #agents: Agent[] = []

  private constructor(gateway: Gateway, logs: LogCapture, configPath: string, config: Record<string, unknown>, pki: TestPki) {
    this.gateway = gateway
    this.logs = logs
    this.configPath = configPath
    this.config = config
    this.#pki = pki
  }

  static config(s: GatewaySetup): Record<string, unknown> {
    const sponsor = s.sponsor ?? { cert: s.pki.gatewaySponsorServer, clientCa: s.pki.sponsorCa }
    return {
      sponsor: {
        listen: { host: '127.0.0.1', port: 0 },
        tls: { cert: sponsor.cert.certPath, key: sponsor.cert.keyPath, clientCa: sponsor.clientCa.certPath, handshakeTimeoutMs: 2000 },
      },
      upstreams: {
        backend: {
          url: `https://127.0.0.1:${s.upstream.port}`,
          serverName: s.upstream.serverName ?? 'accreditation.trusted.test',
          tls: { ca: s.upstream.ca.certPath, cert: s.upstream.cert.certPath, key: s.upstream.cert.keyPath },
          connectTimeoutMs: 2000,
          headersTimeoutMs: 5000,
          bodyTimeoutMs: 5000,
        },
      },
      routes: s.routes,
      ...(s.keys === undefined ? {} : { keys: s.keys }),
      admin: { listen: { host: '127.0.0.1', port: 0 } },
      log: { level: 'debug' },
    }
  }

  static async start(s: GatewaySetup): Promise<TestGateway> {
    const config = TestGateway.config(s)
    const configPath = join(s.dir, `${s.name ?? 'gateway'}.yaml`)
    await writeFile(configPath, stringify(config))
    const logs = new LogCapture()
    const gateway = await Gateway.start(configPath, { log: createLogger({ level: 'debug', destination: logs.stream }) })
    return new TestGateway(gateway, logs, configPath, config, s.pki)
  }

  get sponsorOrigin(): string {
    return `https://127.0.0.1:${this.gateway.sponsorPort}`
  }

  agent(cert: TestCert = this.#pki.sponsorClient, ca: TestCert = this.#pki.sponsorCa): Agent {
    const agent = new Agent({ connect: { ca: ca.certPem, cert: cert.certPem, key: cert.keyPem, servername: 'localhost' } })
    this.#agents.push(agent)
    return agent
  }

  async request(
    path: string,
    opts: { method?: string; headers?: Record<string, string | string[]>; body?: string | Buffer | Readable } = {},
  ): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: Buffer; text: string; json: () => unknown }> {
    const res = await undiciRequest(`${this.sponsorOrigin}${path}`, {
      method: (opts.method ?? 'GET') as 'GET',
      headers: opts.headers,
      body: opts.body,
      dispatcher: this.#agents[0] ?? this.agent(),
    })
    const body = Buffer.from(await res.body.arrayBuffer())
    const text = body.toString('utf8')
    return { status: res.statusCode, headers: res.headers, body, text, json: () => JSON.parse(text) }
  }

  async metrics(): Promise<string> {
    const res = await undiciRequest(`http://127.0.0.1:${this.gateway.adminPort}/metrics`)
    return res.body.text()
  }

  async close(): Promise<void> {
    await Promise.allSettled(this.#agents.map((a) => a.destroy()))
    await this.gateway.shutdown()
  }
}

/**
 * The common single-gateway setup: a test upstream (trusted CA) behind one gateway with the given
 * routes and key sets.
 */
export async function startSealing(opts: {
  routes: Array<Record<string, unknown>>
  keys?: Record<string, { file: string; private?: boolean }>
  handler?: UpstreamHandler
  dir?: string
}): Promise<{ gw: TestGateway; upstream: TestUpstream; pki: TestPki; dir: string; close: () => Promise<void> }> {
  const pki = await makeTestPki()
  const dir = opts.dir ?? (await tempDir())
  const upstream = new TestUpstream(pki, opts.handler ?? echoHandler)
  const port = await upstream.listen()
  let gw: TestGateway
  try {
    gw = await TestGateway.start({
      pki,
      dir,
      routes: opts.routes,
      ...(opts.keys === undefined ? {} : { keys: opts.keys }),
      upstream: { port, ca: pki.trustedCa, cert: pki.gatewayTrustedClient },
    })
  } catch (err) {
    await upstream.close()
    throw err
  }
  return {
    gw,
    upstream,
    pki,
    dir,
    close: async () => {
      await gw.close()
      await upstream.close()
      await rm(dir, { recursive: true, force: true })
    },
  }
}

/**
 * One gateway, two GET routes to the same upstream: `/v1/sealed`, whose responses have the six
 * sensitive fields of every record under `/records/*` sealed for the key set `th`, and `/v1/plain`,
 * with no transform. `headers` widens both routes' header lists alike.
 */
export async function startSealedAndPlainRoutes(
  handler: UpstreamHandler,
  headers: { requestHeaders?: string[]; responseHeaders?: string[]; plainResponseHeaders?: string[] } = {},
): Promise<Awaited<ReturnType<typeof startSealing>>> {
  const dir = await tempDir()
  const keys = await writeKeyFiles(dir, 'th')
  const { plainResponseHeaders, ...both } = headers
  const route = { methods: ['GET'], allow: [SPONSOR_APP], upstream: 'backend', ...both }
  return startSealing({
    dir,
    keys: { th: { file: keys.publicPath } },
    handler,
    routes: [
      {
        ...route,
        name: 'sealed',
        path: '/v1/sealed',
        transforms: { response: [{ type: 'seal', recipients: 'th', fields: SENSITIVE_FIELDS.map((f) => `/records/*${f}`) }] },
      },
      // Fields a route with response transforms may not relay (content-range): the plain route's only.
      { ...route, name: 'plain', path: '/v1/plain', ...(plainResponseHeaders === undefined ? {} : { responseHeaders: [...(both.responseHeaders ?? []), ...plainResponseHeaders] }) },
    ],
  })
}

/** An upstream handler that records each request body and answers with a fixed JSON body. */
export function recordingHandler(
  bodies: Buffer[],
  reply: { status?: number; type?: string; body?: string | Buffer } = {},
): UpstreamHandler {
  return (req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      bodies.push(Buffer.concat(chunks))
      const body = reply.body ?? '{"ok":true}'
      res.writeHead(reply.status ?? 200, { 'content-type': reply.type ?? 'application/json', 'content-length': Buffer.byteLength(body) })
      res.end(body)
    })
  }
}

/** True if any canary value (or the given extra values) appears in `text`. */
export function leaksCanary(text: string, extra: readonly string[] = []): string | undefined {
  for (const v of [...CANARY_VALUES, ...extra]) if (text.includes(v)) return v
  // JSON-escaped forms too (a value logged inside a JSON string).
  for (const v of [...CANARY_VALUES, ...extra]) {
    const escaped = JSON.stringify(v).slice(1, -1)
    if (escaped !== v && text.includes(escaped)) return v
  }
  return undefined
}

/**
 * Two gateways in a chain, as deployed: the sponsor-side *edge* (public keys: seals, verifies) calls
 * the trusted host's *sidecar* (private keys: opens), which calls the test upstream.
 *
 *   sponsor client ─mTLS(sponsor CA)→ edge ─mTLS(trusted CA)→ sidecar ─mTLS(sponsor CA as a stand-in
 *   for the trusted host's internal CA)→ upstream
 */
export async function startChain(opts: {
  edgeRoutes: Array<Record<string, unknown>>
  sidecarRoutes: Array<Record<string, unknown>>
  edgeKeys?: Record<string, { file: string; private?: boolean }>
  sidecarKeys?: Record<string, { file: string; private?: boolean }>
  handler?: UpstreamHandler
  dir: string
}): Promise<{ edge: TestGateway; sidecar: TestGateway; upstream: TestUpstream; pki: TestPki; close: () => Promise<void> }> {
  const pki = await makeTestPki()
  const upstream = new TestUpstream(pki, opts.handler ?? echoHandler, pki.sponsorCaTrustedServer)
  const port = await upstream.listen()
  const sidecar = await TestGateway.start({
    pki,
    dir: opts.dir,
    name: 'sidecar',
    routes: opts.sidecarRoutes,
    ...(opts.sidecarKeys === undefined ? {} : { keys: opts.sidecarKeys }),
    sponsor: { cert: pki.trustedServer, clientCa: pki.trustedCa },
    upstream: { port, ca: pki.sponsorCa, cert: pki.gatewayTrustedClient },
  })
  const edge = await TestGateway.start({
    pki,
    dir: opts.dir,
    name: 'edge',
    routes: opts.edgeRoutes,
    ...(opts.edgeKeys === undefined ? {} : { keys: opts.edgeKeys }),
    upstream: { port: sidecar.gateway.sponsorPort, ca: pki.trustedCa, cert: pki.gatewayTrustedClient },
  })
  return {
    edge,
    sidecar,
    upstream,
    pki,
    close: async () => {
      await edge.close()
      await sidecar.close()
      await upstream.close()
      await rm(opts.dir, { recursive: true, force: true })
    },
  }
}

/**
 * A deterministic body of `total` bytes generated on the fly in 64 KiB chunks (every chunk differs,
 * so a dropped or reordered chunk changes the hash), hashed into `hash` as it is produced: neither
 * end of a test ever holds it whole, and the SHA-256 of what was sent needs no second pass.
 */
export function generatedBody(total: number, seed: number, hash?: Hash): Readable {
  const chunk = 64 * 1024
  const block = Buffer.alloc(chunk)
  for (let i = 0; i < chunk; i++) block[i] = (i * 31 + seed) & 0xff
  let sent = 0
  return new Readable({
    read() {
      if (sent >= total) return void this.push(null)
      const out = Buffer.from(block.subarray(0, Math.min(chunk, total - sent)))
      out.writeUInt32BE((sent / chunk) >>> 0, 0)
      sent += out.length
      hash?.update(out)
      this.push(out)
    },
  })
}

/** SHA-256 (hex) and length of everything `stream` yields. */
export async function digestOf(stream: AsyncIterable<unknown>): Promise<{ sha256: string; bytes: number }> {
  const hash = createHash('sha256')
  let bytes = 0
  for await (const chunk of stream) {
    hash.update(chunk as Buffer)
    bytes += (chunk as Buffer).length
  }
  return { sha256: hash.digest('hex'), bytes }
}

/**
 * Reads a response body to its end or its abort, keeping every byte that did arrive: a test of a
 * fail-closed response checks both that it did not complete and what crossed before it stopped.
 */
export async function readUntilAbort(body: AsyncIterable<unknown>): Promise<{ completed: boolean; received: Buffer; error?: Error }> {
  const parts: Buffer[] = []
  try {
    for await (const chunk of body) parts.push(chunk as Buffer)
    return { completed: true, received: Buffer.concat(parts) }
  } catch (err) {
    return { completed: false, received: Buffer.concat(parts), error: err as Error }
  }
}

/**
 * A sealed stream's header built by hand (docs/sealed-stream-format.md §1): magic, version 1, no
 * flags, `rs`, and the key JWE as given, for streams our sealer would not write.
 */
export function streamHeaderByHand(jwe: string, rs: number): Buffer {
  const header = Buffer.alloc(12 + jwe.length)
  header.write('ECLS', 0, 'latin1')
  header[4] = 1
  header.writeUInt32BE(rs, 6)
  header.writeUInt16BE(jwe.length, 10)
  header.write(jwe, 12, 'latin1')
  return header
}
