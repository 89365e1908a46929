/**
 * `ecluse serve --workers N` as a real process tree for the cluster end-to-end tests: the primary's
 * and workers' JSON log lines (they share stdout), stderr, the exit code, and a poll that fails at
 * once, with stderr, if the primary exits.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Agent, request } from 'undici'
import { stringify } from 'yaml'
import { echoHandler, gatewayConfig, TestUpstream } from './harness.js'
import { makeTestPki, type TestPki } from './pki.js'

/**
 * Whether `pid` has exited: gone, or a zombie nobody has reaped yet (its parent was killed). Reads
 * /proc (Linux).
 */
export function hasExited(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z')
  } catch {
    return true
  }
}

/** The pids of `pid`'s children (the workers of a primary), from /proc (Linux). */
export function childPids(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number)
  } catch {
    return []
  }
}

/** The entry that runs `runCluster` with options the CLI does not offer (see that file). */
const SERVE_WITH_OPTIONS = 'test/helpers/cluster-serve.ts'

/** What a test may ask of the cluster beyond the CLI's options, through {@link SERVE_WITH_OPTIONS}. */
export interface ServeOptions {
  /** The primary kills a worker not ready this long after its fork (default: `BOOT_TIMEOUT_MS`). */
  readonly bootTimeoutMs?: number
  /** The primary gives up on a worker's reload answer this long after asking (default: `RELOAD_ASK_MS`). */
  readonly reloadAskMs?: number
  /** The primary sends itself this signal as soon as it holds signals: one during its boot for certain. */
  readonly signalDuringBoot?: NodeJS.Signals
}

/**
 * Teardown for a worker a test stopped or orphaned: SIGKILL it if it is still running this gateway,
 * never a process that took over its pid once it had exited.
 */
export function killIfStillOurs(pid: number): void {
  try {
    if (hasExited(pid)) return
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8')
    if (!cmdline.includes('src/cli.ts') && !cmdline.includes(SERVE_WITH_OPTIONS)) return
    process.kill(pid, 'SIGKILL')
  } catch {
    // gone meanwhile
  }
}

/**
 * A GET through the sponsor listener as the sponsor's application, on a connection of its own,
 * settled as its status and body (status 0 when the transport failed, the body then its message):
 * started, not awaited, so a test can act on the cluster while it is in flight.
 */
export function sponsorGet(t: { teardown(fn: () => unknown): void }, pki: TestPki, url: string): Promise<{ status: number; body: string }> {
  const agent = new Agent({
    connect: { ca: pki.sponsorCa.certPem, cert: pki.sponsorClient.certPem, key: pki.sponsorClient.keyPem, servername: 'localhost' },
  })
  t.teardown(() => agent.destroy())
  return request(url, { dispatcher: agent }).then(
    async (res) => ({ status: res.statusCode, body: await res.body.text() }),
    (err: Error) => ({ status: 0, body: err.message }),
  )
}

export class ClusterProcess {
  readonly child: ChildProcess
  readonly lines: Array<Record<string, unknown>> = []
  readonly exited: Promise<number | null>
  /**
   * Once every writer of its stdout and stderr (the primary and its workers) has gone and every line
   * has been read: `exited` can come before the primary's last lines are read.
   */
  readonly closed: Promise<void>
  #stderr = ''
  #buffered = ''

  /**
   * Spawned from source as `npm start` would run it, with `nodeArgs` before the script (as the
   * image's ENTRYPOINT gives node its options; after tsx, so a preload may be TypeScript); killed
   * (SIGKILL) in teardown if still up. With
   * `serve`, through {@link SERVE_WITH_OPTIONS} instead of the CLI.
   */
  constructor(t: { teardown(fn: () => unknown): void }, configPath: string, workers = 2, nodeArgs: readonly string[] = [], serve?: ServeOptions) {
    const entry =
      serve === undefined
        ? ['src/cli.ts', 'serve', '--config', configPath, '--workers', String(workers)]
        : [SERVE_WITH_OPTIONS, configPath, String(workers)]
    if (serve?.bootTimeoutMs !== undefined) entry.push('--boot-timeout-ms', String(serve.bootTimeoutMs))
    if (serve?.reloadAskMs !== undefined) entry.push('--reload-ask-ms', String(serve.reloadAskMs))
    if (serve?.signalDuringBoot !== undefined) entry.push('--signal-during-boot', serve.signalDuringBoot)
    const argv = ['--import', 'tsx', ...nodeArgs, ...entry]
    this.child = spawn(process.execPath, argv, {
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    // Workers left behind by a killed primary see its IPC channel close, drain and exit on their own.
    t.teardown(() => {
      if (this.child.exitCode === null) this.child.kill('SIGKILL')
    })
    this.child.stderr!.setEncoding('utf8').on('data', (d: string) => {
      this.#stderr += d
    })
    this.child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      this.#buffered += d
      for (let nl = this.#buffered.indexOf('\n'); nl >= 0; nl = this.#buffered.indexOf('\n')) {
        this.lines.push(JSON.parse(this.#buffered.slice(0, nl)) as Record<string, unknown>)
        this.#buffered = this.#buffered.slice(nl + 1)
      }
    })
    this.exited = new Promise((resolve) => this.child.on('exit', (code) => resolve(code)))
    this.closed = new Promise((resolve) => this.child.on('close', () => resolve()))
  }

  get stderr(): string {
    return this.#stderr
  }

  /** The log lines with this message so far. */
  logged(msg: string): Array<Record<string, unknown>> {
    return this.lines.filter((l) => l['msg'] === msg)
  }

  /** Polls `what` every 25 ms; throws with `label` and stderr after 30 s or if the primary exits. */
  async until(what: () => boolean, label: string): Promise<void> {
    const deadline = Date.now() + 30_000
    while (!what()) {
      if (Date.now() > deadline || this.child.exitCode !== null) throw new Error(`${label}; stderr: ${this.#stderr}`)
      await new Promise((r) => setTimeout(r, 25))
    }
  }

  /** The status `/readyz` of `admin` answers, polled every 100 ms until 200 or for 10 s: the last one. */
  async readyStatus(admin: string): Promise<number> {
    let status = 0
    for (const deadline = Date.now() + 10_000; status !== 200 && Date.now() < deadline; ) {
      const res = await request(`${admin}/readyz`)
      await res.body.dump()
      status = res.statusCode
      if (status !== 200) await new Promise((r) => setTimeout(r, 100))
    }
    return status
  }

  /** Waits for `écluse cluster started`; the sponsor and admin origins it names. */
  async started(): Promise<{ line: Record<string, unknown>; sponsor: string; admin: string }> {
    await this.until(() => this.logged('écluse cluster started').length > 0, 'no cluster start line')
    const line = this.logged('écluse cluster started')[0]!
    const port = (field: string) => Number(String(line[field]).split(':').at(-1))
    return { line, sponsor: `https://127.0.0.1:${port('sponsor')}`, admin: `http://127.0.0.1:${port('admin')}` }
  }
}

/**
 * The common cluster setup: a fresh PKI, an echo upstream, and `ecluse serve --workers 2` in front
 * of it with one `records` route (`/v1/records/*`) and a 2 s drain, all torn down by `t`; with
 * `serve`, run through {@link SERVE_WITH_OPTIONS}; with `sponsorLimits`, as `sponsor.limits`.
 */
export async function startEchoCluster(
  t: { teardown(fn: () => unknown): void },
  serve?: ServeOptions,
  sponsorLimits?: Record<string, unknown>,
): Promise<{ pki: TestPki; upstream: TestUpstream; cluster: ClusterProcess }> {
  const pki = await makeTestPki()
  const dir = await mkdtemp(join(tmpdir(), 'ecluse-workers-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const upstream = new TestUpstream(pki, echoHandler)
  await upstream.listen()
  t.teardown(() => upstream.close())
  const routes = [{ name: 'records', methods: ['GET'], path: '/v1/records/*', allow: ['uri:spiffe://sponsor.test/accreditation-app'], upstream: 'backend' }]
  const configPath = join(dir, 'gateway.yaml')
  const config = gatewayConfig(pki, upstream.port, routes, { shutdown: { drainTimeoutMs: 2000 } })
  const withLimits = sponsorLimits === undefined ? config : { ...config, sponsor: { ...config.sponsor, limits: sponsorLimits } }
  await writeFile(configPath, stringify(withLimits))
  return { pki, upstream, cluster: new ClusterProcess(t, configPath, 2, [], serve) }
}

/** Sets `vars` in this process's environment (which a cluster's processes inherit) until the teardown. */
export function withEnv(t: { teardown(fn: () => unknown): void }, vars: Record<string, string>): void {
  const previous = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]))
  Object.assign(process.env, vars)
  t.teardown(() => {
    for (const [k, v] of Object.entries(previous)) {
      if (v === undefined) delete process.env[k]
      else process.env[k] = v
    }
  })
}
