/**
 * End-to-end harness: a real gateway (from a YAML file written per test) between a real mTLS test
 * upstream and a real mTLS sponsor client, all on 127.0.0.1 port 0, with the gateway's log captured.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import type { IncomingMessage, ServerResponse } from 'node:http'
import https from 'node:https'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { type Readable, Writable } from 'node:stream'
import tls from 'node:tls'
import { Agent, request as undiciRequest } from 'undici'
import { stringify } from 'yaml'
import { Gateway } from '../../src/main.js'
import { createLogger } from '../../src/observability/logger.js'
import { makeTestPki, type TestCert, type TestPki } from './pki.js'

export type UpstreamHandler = (req: IncomingMessage, res: ServerResponse) => void

/** An mTLS server on the trusted side that records what reached it. */
export class TestUpstream {
  readonly server: https.Server
  readonly seen: Array<{ method: string; url: string; headers: IncomingMessage['headers'] }> = []
  handler: UpstreamHandler
  port = 0

  constructor(pki: TestPki, handler: UpstreamHandler, cert: TestCert = pki.trustedServer) {
    this.handler = handler
    this.server = https.createServer(
      { cert: cert.certPem, key: cert.keyPem, ca: pki.trustedCa.certPem, requestCert: true, rejectUnauthorized: true },
      (req, res) => {
        this.seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers })
        this.handler(req, res)
      },
    )
  }

  get hits(): number {
    return this.seen.length
  }

  async listen(): Promise<number> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve))
    const addr = this.server.address()
    this.port = typeof addr === 'object' && addr !== null ? addr.port : 0
    return this.port
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.close(() => resolve())
      this.server.closeAllConnections()
    })
  }
}

/** Echoes method, path and a JSON summary; the default upstream handler. */
export const echoHandler: UpstreamHandler = (req, res) => {
  const chunks: Buffer[] = []
  req.on('data', (c: Buffer) => chunks.push(c))
  req.on('end', () => {
    const body = JSON.stringify({ method: req.method, url: req.url, bytes: Buffer.concat(chunks).length })
    res.writeHead(200, {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(body),
      server: 'internal/1.0',
      'x-powered-by': 'internals',
      'x-internal-secret': 'trusted-only',
    })
    res.end(body)
  })
}

export class LogCapture {
  readonly lines: Array<Record<string, unknown>> = []
  readonly raw: string[] = []
  readonly stream = new Writable({
    write: (chunk: Buffer, _enc, cb) => {
      for (const line of chunk.toString('utf8').split('\n')) {
        if (line === '') continue
        this.raw.push(line)
        this.lines.push(JSON.parse(line) as Record<string, unknown>)
      }
      cb()
    },
  })

  text(): string {
    return this.raw.join('\n')
  }

  find(msg: string): Array<Record<string, unknown>> {
    return this.lines.filter((l) => l['msg'] === msg)
  }
}

export interface HarnessOptions {
  /** Routes in config form; `upstream` defaults to `backend`. */
  readonly routes?: Array<Record<string, unknown>>
  readonly handler?: UpstreamHandler
  /** Deep-merged into the sponsor section. */
  readonly sponsor?: Record<string, unknown>
  /** Merged into the upstream section. */
  readonly upstream?: Record<string, unknown>
  readonly shutdown?: Record<string, unknown>
  /** Point the upstream at this port instead of a started test upstream (e.g. a closed port). */
  readonly upstreamPort?: number
}

export const DEFAULT_ROUTES: Array<Record<string, unknown>> = [
  {
    name: 'records',
    methods: ['GET', 'POST', 'PUT'],
    path: '/v1/records/*',
    allow: ['uri:spiffe://sponsor.test/accreditation-app'],
    upstream: 'backend',
    maxBodyBytes: 1024 * 1024,
  },
  {
    name: 'list',
    methods: ['GET'],
    path: '/v1/records',
    allow: ['uri:spiffe://sponsor.test/accreditation-app'],
    upstream: 'backend',
  },
]

export class Harness {
  readonly pki: TestPki
  readonly dir: string
  readonly configPath: string
  readonly upstream: TestUpstream
  readonly logs = new LogCapture()
  readonly config: Record<string, unknown>
  gateway!: Gateway
  readonly #agents: Agent[] = []

  private constructor(pki: TestPki, dir: string, upstream: TestUpstream, config: Record<string, unknown>) {
    this.pki = pki
    this.dir = dir
    this.configPath = join(dir, 'gateway.yaml')
    this.upstream = upstream
    this.config = config
  }

  static async start(opts: HarnessOptions = {}): Promise<Harness> {
    const pki = await makeTestPki()
    const dir = await mkdtemp(join(tmpdir(), 'ecluse-harness-'))
    const upstream = new TestUpstream(pki, opts.handler ?? echoHandler)
    const port = opts.upstreamPort ?? (await upstream.listen())
    // `sponsor.tls` is merged key by key: a test sets a TLS option without restating the files.
    const { tls: sponsorTls, ...sponsorRest } = opts.sponsor ?? {}
    const config = {
      sponsor: {
        listen: { host: '127.0.0.1', port: 0 },
        tls: {
          cert: pki.gatewaySponsorServer.certPath,
          key: pki.gatewaySponsorServer.keyPath,
          clientCa: pki.sponsorCa.certPath,
          handshakeTimeoutMs: 2000,
          ...(sponsorTls as Record<string, unknown> | undefined),
        },
        principalHeader: 'x-ecluse-principal',
        ...sponsorRest,
      },
      upstreams: {
        backend: {
          url: `https://127.0.0.1:${port}`,
          serverName: 'accreditation.trusted.test',
          tls: { ca: pki.trustedCa.certPath, cert: pki.gatewayTrustedClient.certPath, key: pki.gatewayTrustedClient.keyPath },
          connectTimeoutMs: 1000,
          headersTimeoutMs: 2000,
          bodyTimeoutMs: 2000,
          ...opts.upstream,
        },
      },
      routes: opts.routes ?? DEFAULT_ROUTES,
      admin: { listen: { host: '127.0.0.1', port: 0 } },
      log: { level: 'debug' },
      ...(opts.shutdown ? { shutdown: opts.shutdown } : {}),
    }
    const h = new Harness(pki, dir, upstream, config)
    await h.writeConfig(config)
    h.gateway = await Gateway.start(h.configPath, { log: createLogger({ level: 'debug', destination: h.logs.stream }) })
    return h
  }

  writeConfig(config: Record<string, unknown>): Promise<void> {
    return writeFile(this.configPath, stringify(config))
  }

  get sponsorOrigin(): string {
    return `https://127.0.0.1:${this.gateway.sponsorPort}`
  }

  get adminOrigin(): string {
    return `http://127.0.0.1:${this.gateway.adminPort}`
  }

  /** An undici agent presenting `cert` (default: the sponsor client) and trusting the sponsor CA. */
  agent(cert: TestCert | null = this.pki.sponsorClient, extra: Record<string, unknown> = {}): Agent {
    const agent = new Agent({
      connect: {
        ca: this.pki.sponsorCa.certPem,
        ...(cert === null ? {} : { cert: cert.certPem, key: cert.keyPem }),
        servername: 'localhost',
        ...extra,
      },
    })
    this.#agents.push(agent)
    return agent
  }

  /** A request as the sponsor client; the body is read as a Buffer. */
  async request(
    path: string,
    /** A `Readable` body goes out chunked. */
    opts: { method?: string; headers?: Record<string, string>; body?: string | Buffer | Readable; cert?: TestCert | null } = {},
  ): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: Buffer; json: () => unknown }> {
    const res = await undiciRequest(`${this.sponsorOrigin}${path}`, {
      method: (opts.method ?? 'GET') as 'GET',
      headers: opts.headers,
      body: opts.body,
      dispatcher: this.agent(opts.cert === undefined ? this.pki.sponsorClient : opts.cert),
    })
    const body = Buffer.from(await res.body.arrayBuffer())
    return { status: res.statusCode, headers: res.headers, body, json: () => JSON.parse(body.toString('utf8')) }
  }

  /** `tls.connect` options of a sponsor client presenting `cert`, for raw connections. */
  sponsorTls(cert: { certPem: string; keyPem: string } = this.pki.sponsorClient): tls.ConnectionOptions {
    return {
      host: '127.0.0.1',
      port: this.gateway.sponsorPort,
      servername: 'localhost',
      ca: this.pki.sponsorCa.certPem,
      cert: cert.certPem,
      key: cert.keyPem,
    }
  }

  /** A raw TLS connection as the sponsor client, for requests undici would refuse to send. */
  raw(bytes: string, cert: TestCert = this.pki.sponsorClient): Promise<string> {
    return new Promise((resolve, reject) => {
      const socket = tls.connect(this.sponsorTls(cert))
      let out = ''
      socket.setEncoding('utf8')
      socket.on('secureConnect', () => socket.write(bytes))
      socket.on('data', (d: string) => {
        out += d
      })
      socket.on('end', () => resolve(out))
      socket.on('close', () => resolve(out))
      socket.on('error', (err) => (out === '' ? reject(err) : resolve(out)))
    })
  }

  /**
   * A raw TLS connection as the sponsor client, which `talk` drives once it is up (writes, ends);
   * resolves to everything received, once the connection has closed. Socket errors are ignored.
   */
  rawSession(talk: (socket: tls.TLSSocket) => void, cert: TestCert = this.pki.sponsorClient): Promise<string> {
    return new Promise((resolve) => {
      let out = ''
      const socket = tls.connect(this.sponsorTls(cert))
      socket.setEncoding('utf8')
      socket.on('data', (d: string) => {
        out += d
      })
      socket.on('error', () => {})
      socket.on('close', () => resolve(out))
      socket.on('secureConnect', () => talk(socket))
    })
  }

  async metrics(): Promise<string> {
    const res = await undiciRequest(`${this.adminOrigin}/metrics`)
    return res.body.text()
  }

  async close(): Promise<void> {
    await Promise.allSettled(this.#agents.map((a) => a.destroy()))
    await this.gateway.shutdown()
    await this.upstream.close()
    await rm(this.dir, { recursive: true, force: true })
  }
}

/** A loopback port that nothing listens on (it was free a moment ago): connections to it are refused. */
export async function closedPort(): Promise<number> {
  const server = net.createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as net.AddressInfo).port
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return port
}

/** The value of one sample line in Prometheus text, or 0 if absent. */
export function metricValue(text: string, name: string, labels: Record<string, string>): number {
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue
    const ok = Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))
    if (ok) return Number(line.slice(line.lastIndexOf(' ') + 1))
  }
  return 0
}

export interface GatewayProcessOptions {
  /** Preload test/helpers/memory-probe.ts, for `GatewayProcess.liveMemory`. */
  readonly probeMemory?: boolean
  /** Arguments after `serve --config FILE` (`--workers 2`). */
  readonly args?: readonly string[]
  /** Node options after `--import tsx` (a test's own preload). */
  readonly nodeArgs?: readonly string[]
}

/** `ecluse serve` from source in its own process, so its memory and signals are its own. */
export class GatewayProcess {
  readonly child: ChildProcess
  readonly lines: Array<Record<string, unknown>> = []
  readonly #waiters: Array<[string, () => void]> = []
  #buffered = ''
  /** Every line of its stdout has been read: a line not seen by then never comes. */
  #closed = false

  constructor(configPath: string, { probeMemory = false, args = [], nodeArgs = [] }: GatewayProcessOptions = {}) {
    const probe = probeMemory ? ['--expose-gc', '--import', new URL('./memory-probe.ts', import.meta.url).href] : []
    this.child = spawn(process.execPath, ['--import', 'tsx', ...probe, ...nodeArgs, 'src/cli.ts', 'serve', '--config', configPath, ...args], {
      stdio: ['ignore', 'pipe', 'inherit'],
    })
    this.child.stdout!.on('data', (chunk: Buffer) => this.#onData(chunk))
    this.child.on('close', () => {
      this.#closed = true
      for (const [, wake] of this.#waiters.splice(0)) wake()
    })
  }

  /**
   * Resolves once a log line with this message has been written; rejects if the process ends
   * without writing it (a gateway that refused its configuration fails the test at once).
   */
  logged(msg: string): Promise<Record<string, unknown>> {
    const find = () => this.lines.find((l) => l['msg'] === msg)
    const seen = find()
    if (seen !== undefined) return Promise.resolve(seen)
    if (this.#closed) return Promise.reject(new Error(`the gateway exited without logging "${msg}"`))
    return new Promise((resolve, reject) =>
      this.#waiters.push([
        msg,
        () => {
          const line = find()
          if (line !== undefined) resolve(line)
          else reject(new Error(`the gateway exited without logging "${msg}"`))
        },
      ]),
    )
  }

  async ports(): Promise<{ sponsor: number; admin: number }> {
    const started = await this.logged('écluse gateway started')
    const port = (field: string) => Number(String(started[field]).split(':').at(-1))
    return { sponsor: port('sponsor'), admin: port('admin') }
  }

  /** Peak and current resident memory of the gateway process, from /proc (Linux). */
  async memory(): Promise<{ peakBytes: number; rssBytes: number }> {
    const status = await readFile(`/proc/${this.child.pid}/status`, 'utf8')
    const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? Number.NaN) * 1024
    return { peakBytes: kb('VmHWM'), rssBytes: kb('VmRSS') }
  }

  /**
   * The gateway's memory right after a full garbage collection (a process started with
   * `probeMemory`): `liveBytes` is the V8 heap in use plus the memory outside it that JavaScript
   * objects hold (Buffers among them), `rssBytes` the resident memory then.
   */
  async liveMemory(): Promise<{ liveBytes: number; rssBytes: number }> {
    const msg = 'memory-probe: after a full gc'
    const next = new Promise<Record<string, unknown>>((resolve) => {
      const seen = this.lines.length
      this.#waiters.push([msg, () => resolve(this.lines.slice(seen).find((l) => l['msg'] === msg)!)])
    })
    this.child.kill('SIGUSR2')
    const line = await next
    return { liveBytes: Number(line['heapUsed']) + Number(line['external']), rssBytes: Number(line['rss']) }
  }

  kill(): void {
    if (this.child.exitCode === null) this.child.kill('SIGKILL')
  }

  #onData(chunk: Buffer): void {
    this.#buffered += chunk.toString('utf8')
    let nl = this.#buffered.indexOf('\n')
    while (nl >= 0) {
      const line = JSON.parse(this.#buffered.slice(0, nl)) as Record<string, unknown>
      this.#buffered = this.#buffered.slice(nl + 1)
      this.lines.push(line)
      for (const [msg, resolve] of this.#waiters) if (line['msg'] === msg) resolve()
      nl = this.#buffered.indexOf('\n')
    }
  }
}

/** Pool size and timeouts of the sponsor client's agent (`startGatewayProcess`). */
export interface SponsorAgentOptions {
  readonly connections?: number
  readonly connectTimeout?: number
  readonly bodyTimeout?: number
  readonly headersTimeout?: number
}

/**
 * `config` written to `dir/gateway.yaml` and served by a gateway in a child process (its resident
 * memory and its signals are its own), with an agent presenting the sponsor client's certificate;
 * both are gone in teardown.
 */
export async function startGatewayProcess(
  t: { teardown(fn: () => unknown): void },
  pki: TestPki,
  dir: string,
  config: object,
  agentOptions: SponsorAgentOptions = {},
  processOptions: GatewayProcessOptions = {},
): Promise<{ gateway: GatewayProcess; ports: { sponsor: number; admin: number }; agent: Agent }> {
  const configPath = join(dir, 'gateway.yaml')
  await writeFile(configPath, stringify(config))
  const gateway = new GatewayProcess(configPath, processOptions)
  t.teardown(() => gateway.kill())
  const ports = await gateway.ports()
  const { connectTimeout, ...pool } = agentOptions
  const agent = new Agent({
    ...pool,
    connect: {
      ca: pki.sponsorCa.certPem,
      cert: pki.sponsorClient.certPem,
      key: pki.sponsorClient.keyPem,
      servername: 'localhost',
      ...(connectTimeout === undefined ? {} : { timeout: connectTimeout }),
    },
  })
  t.teardown(() => agent.destroy())
  return { gateway, ports, agent }
}

/** A gateway config for `backend` at `upstreamPort`, using the test PKI's files. */
export function gatewayConfig(pki: TestPki, upstreamPort: number, routes: Array<Record<string, unknown>>, extra: Record<string, unknown> = {}) {
  return {
    sponsor: {
      listen: { host: '127.0.0.1', port: 0 },
      tls: { cert: pki.gatewaySponsorServer.certPath, key: pki.gatewaySponsorServer.keyPath, clientCa: pki.sponsorCa.certPath },
    },
    upstreams: {
      backend: {
        url: `https://127.0.0.1:${upstreamPort}`,
        serverName: 'accreditation.trusted.test',
        tls: { ca: pki.trustedCa.certPath, cert: pki.gatewayTrustedClient.certPath, key: pki.gatewayTrustedClient.keyPath },
      },
    },
    routes,
    admin: { listen: { host: '127.0.0.1', port: 0 } },
    ...extra,
  }
}
