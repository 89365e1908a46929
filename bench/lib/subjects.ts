/**
 * The things a scenario measures, each started in its own process: Écluse (`ecluse serve`, one
 * process or `--workers N`), the bare proxy, the naive field-encrypting proxy, nginx, and the
 * upstream itself ("direct"). Every one speaks mTLS on both sides with the same PKI.
 */
import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdir, writeFile } from 'node:fs/promises'
import { connect, createServer } from 'node:net'
import { join } from 'node:path'
import { stringify } from 'yaml'
import { configSchema } from '../../src/config/schema.js'
import { TLS_CIPHERS } from '../../src/config/tls-policy.js'
import { JsonChild } from './child.js'
import type { BenchKeys } from './keys.js'
import { BENCH_CLIENT_PRINCIPAL, type BenchPki, UPSTREAM_SERVER_NAME } from './pki.js'
import { processTree, rssBytes } from './proc.js'

const MIB = 1024 * 1024

/** Which client certificate the load presents: the sponsor client, or the gateway's (direct). */
export type ClientSide = 'sponsor' | 'trusted'

/** A started subject. */
export interface Subject {
  readonly key: string
  readonly label: string
  readonly port: number
  /** Root of the process tree whose CPU and memory are measured; undefined: not measured. */
  readonly pid: number | undefined
  /** Écluse's admin port (metrics). */
  readonly adminPort?: number
  /** Resident memory of the process tree just after it started, before any load. */
  readonly idleRssMiB?: number
  readonly client: ClientSide
  stop(): Promise<void>
}

/** Knobs shared by Écluse and the baselines, so that both are configured alike. */
export interface ProxyTuning {
  /** Upstream pool connections (Écluse's default 64). */
  readonly upstreamConnections?: number
  /** Upstream headers/body timeouts (Écluse's default 30 s). */
  readonly upstreamTimeoutMs?: number
  /** Sponsor request timeout (Écluse's default 300 s). */
  readonly requestTimeoutMs?: number
}

export interface SubjectEnv {
  readonly pki: BenchPki
  /** The run's sealing keys (bench/lib/keys.ts). */
  readonly keys: BenchKeys
  /** A private directory for configs of this run. */
  readonly dir: string
  readonly upstreamPort: number
  readonly upstreamPid: number
  /**
   * Node options for Écluse's processes only (`--ecluse-node-arg`), after `IMAGE_NODE_ARGS`: the
   * baselines run with `IMAGE_NODE_ARGS` alone.
   */
  readonly ecluseNodeArgs?: readonly string[]
  /**
   * Environment variables for Écluse's processes only (`--ecluse-env`), e.g. glibc's malloc tunables:
   * the baselines keep the runner's environment.
   */
  readonly ecluseEnv?: Readonly<Record<string, string>>
}

/**
 * The Node options the image's `ENTRYPOINT` runs the gateway with (Dockerfile, which also tries them
 * at build time; a test holds the three together): Écluse is measured as it is deployed, before any `--ecluse-node-arg` (V8 takes the last
 * of two contrary flags, so `--ecluse-node-arg=--concurrent-sweeping` measures Node's default).
 * `--no-concurrent-sweeping`: see docs/operations.md, "Processes and cores".
 */
export const IMAGE_NODE_ARGS: readonly string[] = ['--no-concurrent-sweeping']
/** Écluse's cipher list without its TLS 1.3 suites, which nginx's `ssl_ciphers` does not take. */
const TLS12_CIPHERS = TLS_CIPHERS.split(':')
  .filter((c) => !c.startsWith('TLS_'))
  .join(':')
/**
 * The Node baselines (bare and naive proxies) run with the same V8 options as Écluse: any Node
 * proxy could take them, and a ratio must measure the code, not a runtime setting one side has.
 */
const BASELINE_NODE_ARGS: readonly string[] = IMAGE_NODE_ARGS

/** RSS of `pid` and its descendants now, in MiB. */
function idleRss(pid: number): number {
  return rssBytes(processTree(pid)) / MIB
}

/** Écluse's bench configuration: the default settings, one route family, the bench PKI. */
export function ecluseConfig(env: SubjectEnv, tuning: ProxyTuning = {}, logLevel = 'info'): Record<string, unknown> {
  const { paths } = env.pki
  const allow = [BENCH_CLIENT_PRINCIPAL]
  return {
    sponsor: {
      listen: { host: '127.0.0.1', port: 0 },
      tls: { cert: paths.gatewaySponsorServer.cert, key: paths.gatewaySponsorServer.key, clientCa: paths.sponsorCa.cert },
      // The idle timeout must outlast the upstream's (the schema refuses it otherwise): Écluse's
      // default (60 s), or a minute more than a raised upstream timeout.
      limits: {
        requestTimeoutMs: tuning.requestTimeoutMs ?? 300_000,
        ...(tuning.upstreamTimeoutMs === undefined ? {} : { idleTimeoutMs: tuning.upstreamTimeoutMs + 60_000 }),
        maxConnections: 4096,
      },
    },
    upstreams: {
      accreditation: {
        url: `https://127.0.0.1:${env.upstreamPort}`,
        serverName: UPSTREAM_SERVER_NAME,
        tls: { ca: paths.trustedCa.cert, cert: paths.gatewayTrustedClient.cert, key: paths.gatewayTrustedClient.key },
        connections: tuning.upstreamConnections ?? 64,
        headersTimeoutMs: tuning.upstreamTimeoutMs ?? 30_000,
        bodyTimeoutMs: tuning.upstreamTimeoutMs ?? 30_000,
      },
    },
    routes: [
      { name: 'records', methods: ['GET', 'POST'], path: '/v1/records/*', allow, upstream: 'accreditation' },
      { name: 'uploads', methods: ['PUT'], path: '/v1/uploads/:id', allow, upstream: 'accreditation', maxBodyBytes: 65 * 1024 * 1024 },
    ],
    admin: { listen: { host: '127.0.0.1', port: 0 } },
    log: { level: logLevel },
    shutdown: { drainTimeoutMs: 2_000 },
  }
}

let configs = 0

/**
 * `ecluse serve` compiled as the image compiles it and run with plain `node` (`benchBuild`), with the
 * Node options of the image (`IMAGE_NODE_ARGS`). `workers` > 1
 * uses the cluster mode (the workers inherit the primary's Node options).
 * The access log (level info, the default) is part of what is measured; the runner drains it.
 */
export async function startEcluse(
  env: SubjectEnv,
  options: {
    key?: string
    label?: string
    workers?: number
    tuning?: ProxyTuning
    logLevel?: string
    cpuProfileDir?: string
    /**
     * The profile's own directory under `cpuProfileDir` (default the subject key): with `--workers`
     * every process of the cluster writes a profile of its own there, so a fixed file name could be
     * overwritten.
     */
    cpuProfileName?: string
    /** Edits the configuration before it is written (routes with transforms, key sets…). */
    configure?: (config: Record<string, unknown>) => void
  } = {},
): Promise<Subject> {
  const workers = options.workers ?? 1
  const file = join(env.dir, `ecluse-${++configs}.yaml`)
  const config = ecluseConfig(env, options.tuning, options.logLevel)
  options.configure?.(config)
  // A configuration the gateway would refuse fails here, with the schema's words, rather than as a
  // child that exits before its start line.
  const checked = configSchema.safeParse(config)
  if (!checked.success) throw new Error(`the bench's Écluse configuration is invalid: ${checked.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`)
  await writeFile(file, stringify(config))
  const args = ['serve', '--config', file, ...(workers > 1 ? ['--workers', String(workers)] : [])]
  const key = options.key ?? (workers > 1 ? `ecluse-${workers}w` : 'ecluse')
  const nodeArgs = [
    ...IMAGE_NODE_ARGS,
    ...(env.ecluseNodeArgs ?? []),
    ...(options.cpuProfileDir === undefined
      ? []
      : ['--cpu-prof', `--cpu-prof-dir=${join(options.cpuProfileDir, `${options.cpuProfileName ?? key}-${configs}`)}`]),
  ]
  const child = JsonChild.node('écluse', 'src/cli.ts', args, { nodeArgs, env: { ...process.env, ...env.ecluseEnv } })
  const started = await child.waitFor((l) => l['msg'] === (workers > 1 ? 'écluse cluster started' : 'écluse gateway started'))
  const port = (field: string) => Number(String(started[field]).split(':').at(-1))
  return {
    key,
    label: options.label ?? (workers > 1 ? `écluse --workers ${workers}` : 'écluse'),
    port: port('sponsor'),
    adminPort: port('admin'),
    pid: child.pid,
    idleRssMiB: idleRss(child.pid),
    client: 'sponsor',
    stop: async () => {
      await child.stop()
    },
  }
}

function proxyArgs(env: SubjectEnv, tuning: ProxyTuning = {}): string[] {
  return [
    '--pki',
    env.pki.dir,
    '--upstream-port',
    String(env.upstreamPort),
    '--connections',
    String(tuning.upstreamConnections ?? 64),
    '--upstream-timeout-ms',
    String(tuning.upstreamTimeoutMs ?? 30_000),
    '--request-timeout-ms',
    String(tuning.requestTimeoutMs ?? 300_000),
  ]
}

/** Baseline 2, the bare pass-through proxy (bench/baselines/bare-proxy.ts). */
export async function startBareProxy(env: SubjectEnv, tuning?: ProxyTuning): Promise<Subject> {
  const child = JsonChild.node('bare proxy', 'bench/baselines/bare-proxy.ts', proxyArgs(env, tuning), { nodeArgs: BASELINE_NODE_ARGS })
  const ready = await child.waitFor((l) => l['ready'] === true)
  return {
    key: 'bare',
    label: 'bare proxy',
    port: Number(ready['port']),
    pid: child.pid,
    idleRssMiB: idleRss(child.pid),
    client: 'sponsor',
    stop: async () => void (await child.stop()),
  }
}

/**
 * Baseline 3, the naive field-encrypting proxy (bench/baselines/naive-field-proxy.ts). It seals to,
 * and opens with, the run's key (`env.keys`), the same key as Écluse's.
 */
export async function startNaiveFieldProxy(
  env: SubjectEnv,
  mode: { seal: 'request' | 'none'; open: 'response' | 'none'; maxBodyBytes?: number },
  tuning?: ProxyTuning,
): Promise<Subject & { jwk: unknown }> {
  const args = [
    ...proxyArgs(env, tuning),
    '--seal',
    mode.seal,
    '--open',
    mode.open,
    '--jwks',
    env.keys.privateFile,
    ...(mode.maxBodyBytes === undefined ? [] : ['--max-body-bytes', String(mode.maxBodyBytes)]),
  ]
  const child = JsonChild.node('naive field proxy', 'bench/baselines/naive-field-proxy.ts', args, { nodeArgs: BASELINE_NODE_ARGS })
  const ready = await child.waitFor((l) => l['ready'] === true)
  return {
    key: 'naive',
    label: 'naive jose proxy',
    port: Number(ready['port']),
    pid: child.pid,
    idleRssMiB: idleRss(child.pid),
    client: 'sponsor',
    jwk: ready['jwk'],
    stop: async () => void (await child.stop()),
  }
}

/** Baseline 1, the upstream called directly with the gateway's client certificate. */
export function directSubject(env: SubjectEnv): Subject {
  // The upstream is shared by every subject and lives for the whole run: not stopped here, and its
  // CPU is not the figure of a proxy, so it is not reported.
  return { key: 'direct', label: 'upstream direct', port: env.upstreamPort, pid: undefined, client: 'trusted', stop: async () => {} }
}

/** The nginx binary, or undefined (the bench installs nothing itself). */
export function findNginx(): string | undefined {
  for (const dir of [...(process.env['PATH'] ?? '').split(':'), '/usr/sbin', '/usr/local/sbin', '/usr/local/nginx/sbin']) {
    if (dir !== '' && existsSync(join(dir, 'nginx'))) return join(dir, 'nginx')
  }
  return undefined
}

function nginxVersion(bin: string): string {
  // nginx prints its version on stderr, and exits 0: execFileSync would return only the empty stdout.
  const run = spawnSync(bin, ['-v'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
  return /nginx\/[\w.]+/.exec(`${run.stderr ?? ''}${run.stdout ?? ''}`)?.[0] ?? 'nginx'
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as { port: number }).port
      server.close(() => resolve(port))
    })
  })
}

async function waitForPort(port: number, deadlineMs: number): Promise<void> {
  const until = Date.now() + deadlineMs
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = connect(port, '127.0.0.1')
      socket.once('connect', () => {
        socket.destroy()
        resolve(true)
      })
      socket.once('error', () => resolve(false))
    })
    if (ok) return
    if (Date.now() > until) throw new Error(`nginx did not listen on ${port}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

/**
 * Baseline 4, nginx as a TLS reverse proxy with mTLS on both sides, one worker process (the same
 * core budget as one Écluse process), streaming both bodies (no request or response buffering),
 * upstream keep-alive, no access log.
 */
export async function startNginx(env: SubjectEnv, bin: string, tuning: ProxyTuning = {}): Promise<Subject & { version: string }> {
  const dir = join(env.dir, `nginx-${++configs}`)
  await mkdir(join(dir, 'tmp'), { recursive: true })
  const port = await freePort()
  const { paths } = env.pki
  const timeout = `${Math.ceil((tuning.upstreamTimeoutMs ?? 30_000) / 1000)}s`
  const conf = `
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 8192; }
http {
  access_log off;
  client_body_temp_path ${dir}/tmp/body;
  proxy_temp_path ${dir}/tmp/proxy;
  fastcgi_temp_path ${dir}/tmp/fastcgi;
  uwsgi_temp_path ${dir}/tmp/uwsgi;
  scgi_temp_path ${dir}/tmp/scgi;
  upstream accreditation {
    server 127.0.0.1:${env.upstreamPort};
    keepalive ${tuning.upstreamConnections ?? 64};
    keepalive_requests 1000000;
    keepalive_timeout 4s;
  }
  server {
    listen 127.0.0.1:${port} ssl;
    ssl_certificate ${paths.gatewaySponsorServer.cert};
    ssl_certificate_key ${paths.gatewaySponsorServer.key};
    ssl_client_certificate ${paths.sponsorCa.cert};
    ssl_verify_client on;
    ssl_protocols TLSv1.2 TLSv1.3;
    # Écluse's TLS 1.2 suites and security level (src/config/tls-policy.ts); OpenSSL's default TLS
    # 1.3 suites are Écluse's three.
    ssl_ciphers ${TLS12_CIPHERS};
    keepalive_timeout 5s;
    keepalive_requests 1000000;
    client_max_body_size 128m;
    client_body_timeout ${timeout};
    location / {
      proxy_pass https://accreditation;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_request_buffering off;
      proxy_buffering off;
      proxy_read_timeout ${timeout};
      proxy_send_timeout ${timeout};
      proxy_ssl_certificate ${paths.gatewayTrustedClient.cert};
      proxy_ssl_certificate_key ${paths.gatewayTrustedClient.key};
      proxy_ssl_trusted_certificate ${paths.trustedCa.cert};
      proxy_ssl_verify on;
      proxy_ssl_name ${UPSTREAM_SERVER_NAME};
      proxy_ssl_server_name on;
      proxy_ssl_protocols TLSv1.2 TLSv1.3;
      proxy_ssl_ciphers ${TLS12_CIPHERS};
      # As Écluse and the bare proxy: no TLS session resumed with the upstream.
      proxy_ssl_session_reuse off;
    }
  }
}
`
  await writeFile(join(dir, 'nginx.conf'), conf)
  const child = new JsonChild('nginx', bin, ['-p', dir, '-e', join(dir, 'error.log'), '-c', join(dir, 'nginx.conf'), '-g', 'daemon off;'], { group: true })
  await Promise.race([waitForPort(port, 10_000), child.exited().then((code) => Promise.reject(new Error(`nginx exited (${code}): ${child.stderr}`)))])
  return {
    key: 'nginx',
    label: 'nginx (1 worker)',
    version: nginxVersion(bin),
    port,
    pid: child.pid,
    idleRssMiB: idleRss(child.pid),
    client: 'sponsor',
    stop: async () => void (await child.stop()),
  }
}

/** What the upstream must prepare at start-up for the selected scenarios (bench/upstream.ts). */
export interface UpstreamNeeds {
  /** Distinct sealed records to serve under /v1/sealed/ (open-fields). */
  readonly sealedRecords?: number
  /** Size of the plain and sealed blobs under /v1/blobs/ (stream-open). */
  readonly blobBytes?: number
}

/** Starts the shared upstream (bench/upstream.ts); its sealed corpora are sealed for `keys`. */
export async function startUpstream(pki: BenchPki, keys: BenchKeys, needs: UpstreamNeeds = {}): Promise<{ port: number; pid: number; stop(): Promise<void> }> {
  const args = [
    '--pki',
    pki.dir,
    '--keys',
    keys.publicFile,
    // To open a sample of what arrives sealed (bench/lib/verify.ts).
    '--private-keys',
    keys.privateFile,
    '--sealed-records',
    String(needs.sealedRecords ?? 0),
    '--blob-bytes',
    String(needs.blobBytes ?? 0),
  ]
  const child = JsonChild.node('upstream', 'bench/upstream.ts', args)
  // Sealing the corpora (jose, one agreement per field) takes a few seconds on a busy machine.
  const ready = await child.waitFor((l) => l['ready'] === true, 180_000)
  return { port: Number(ready['port']), pid: child.pid, stop: async () => void (await child.stop()) }
}
