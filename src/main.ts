/**
 * Boot: config → TLS material → route table → upstream pools → listeners → signals.
 * SIGHUP reloads certificates and configuration atomically (a broken file keeps the old state and
 * says why); SIGTERM/SIGINT stop accepting, drain in-flight requests within a deadline, then exit.
 */
import { createHash } from 'node:crypto'
import { setDefaultHighWaterMark } from 'node:stream'
import type { SecureContext } from 'node:tls'
import type { Logger } from 'pino'
import { AdminServer, type Readiness } from './admin/server.js'
import { BootSignals } from './boot-signals.js'
import { fileModeWarnings } from './config/key-file-modes.js'
import { LOADED_AGAIN, loadSettledFiles } from './config/load-settled.js'
import { type Config, idleTimeoutProblems } from './config/schema.js'
import type { AllTlsMaterial, ClientTlsMaterial } from './config/tls-material.js'
import { type ChangeOutcome, ConfigWatcher, filesOf } from './config/watch.js'
import type { KeySet } from './crypto/keys.js'
import { EcluseError } from './errors.js'
import { SponsorListener } from './listener/sponsor.js'
import { createLogger, exitAfterLog } from './observability/logger.js'
import { classifyTlsFailure, GatewayMetrics } from './observability/metrics.js'
import { ProxyHandler, type ProxyState } from './proxy/exchange.js'
import { compileRouteTable, type RouteTable } from './route/table.js'
import './transform/builtin.js'
import { jwksDocuments } from './transform/key-sets.js'
import type { TransformEnv } from './transform/types.js'
import { UpstreamPool } from './upstream/pool.js'

/**
 * What the gateway now runs with, for the boot and reload log lines: each certificate's SHA-256
 * fingerprint, a digest of each CA bundle, and for each key set its current kid and every kid it
 * accepts. A reload of files the kubelet had not refreshed yet succeeds with the old material: this
 * line is how an operator tells (a staged key does not change the current kid: only `kids` shows it
 * arrived, the check before promoting it). Public facts only: no key material.
 */
export function loadedMaterial(
  tls: AllTlsMaterial,
  keySets: ReadonlyMap<string, KeySet>,
): {
  certificates: Record<string, string>
  caBundles: Record<string, string>
  keySets: Array<{ name: string; current: string; kids: string[] }>
} {
  const certificates: Record<string, string> = { sponsor_server: tls.sponsor.fingerprint256 }
  const caBundles: Record<string, string> = { sponsor_clients: bundleDigest(tls.sponsor.ca) }
  for (const [name, material] of tls.upstreams) {
    certificates[`upstream:${name}`] = material.fingerprint256
    caBundles[`upstream:${name}`] = bundleDigest(material.ca)
  }
  // A list, not an object keyed by name: a set named like a credential (`token`) would have its
  // entry censored by the log's redaction.
  const sets = [...keySets].map(([name, set]) => ({ name, current: set.current.kid, kids: set.kids }))
  return { certificates, caBundles, keySets: sets }
}

function bundleDigest(pem: Buffer): string {
  return `sha256:${createHash('sha256').update(pem).digest('hex')}`
}

/**
 * What a reload did: swapped everything for the files of `configDigest` (see `Gateway.configDigest`),
 * or kept the previous state for `error`.
 */
export type ReloadResult = { ok: true; configDigest: string } | { ok: false; error: string }

export interface GatewayOptions {
  /** Overrides the configured logger (tests capture logs this way). */
  readonly log?: Logger
  /**
   * Fields on every line of the logger the gateway makes from the configuration it loaded (a
   * cluster worker's `worker` id): the level comes from that load, not from a read of its own.
   */
  readonly logBindings?: Record<string, unknown>
  /**
   * Open the admin listener (default true). Cluster workers pass false: the primary serves admin for
   * all of them (src/cluster.ts), and a second listener on the same address could not bind.
   */
  readonly adminListener?: boolean
}

/** The logger of `log.level`, with `bindings` on every line when given. */
function configuredLogger(config: Config, bindings: Record<string, unknown> | undefined): Logger {
  const log = createLogger({ level: config.log.level })
  return bindings === undefined ? log : log.child(bindings)
}

/** How long a readiness answer is reused, so scrapes and probes do not hammer the upstream. */
const READINESS_TTL_MS = 2_000

/**
 * The default high-water mark of byte streams, pinned for the whole process: every socket, request,
 * response and stage buffers up to this much. Node 22 raised its default from 16 to 64 KiB, which
 * measured 50–70 MiB more at 500 concurrent uploads (docs/benchmarks.md); pinned, memory per
 * connection is the same on Node 20 and 22, and a TLS record (at most 16 KiB) still fits.
 */
export const STREAM_HIGH_WATER_MARK = 16 * 1024

/**
 * A running gateway. `Gateway.start(path)` boots it from a configuration file.
 *
 * @example
 * const gw = await Gateway.start('config/edge.yaml')
 * console.log(gw.sponsorPort, gw.adminPort)
 * await gw.shutdown()
 */
export class Gateway {
  readonly configPath: string
  readonly log: Logger
  readonly metrics: GatewayMetrics
  readonly proxy: ProxyHandler
  readonly sponsor: SponsorListener
  readonly admin: AdminServer
  sponsorPort = 0
  adminPort = 0
  #config: Config
  #upstreams: Map<string, UpstreamPool>
  #readiness: { at: number; value: Readiness } | undefined
  /** Moved on by each reload and by a drain: a readiness probed before it is stale. */
  #readinessEpoch = 0
  /**
   * When the sponsor side stops working on its own, by the material it runs: the presented chain's
   * soonest expiry (no client accepts it after) and each client CA's validity (with none valid, no
   * client certificate can be verified: all expired, or the only one left not valid yet). Both are
   * refused at boot and reload, but only then.
   */
  #sponsorExpiry: { chain: number; clientCa: ReadonlyArray<readonly [number, number]> } = { chain: 0, clientCa: [] }
  #shutdown: Promise<void> | undefined
  /** The reload running now, and the one queued behind it (see `reload`). */
  #reloading: Promise<ReloadResult> | undefined
  #reloadQueued: Promise<ReloadResult> | undefined
  #configDigest: string
  /** {@link bootSettingsDigest} of the configuration this process booted with: a reload keeps it. */
  readonly bootDigest: string

  private constructor(
    configPath: string,
    config: Config,
    log: Logger,
    metrics: GatewayMetrics,
    state: ProxyState,
    sponsorTls: AllTlsMaterial['sponsor'],
    configDigest: string,
  ) {
    this.configPath = configPath
    this.#config = config
    this.#configDigest = configDigest
    this.bootDigest = bootSettingsDigest(config)
    this.log = log
    this.metrics = metrics
    this.#upstreams = state.upstreams as Map<string, UpstreamPool>
    this.proxy = new ProxyHandler(state, metrics, log)
    this.sponsor = new SponsorListener({ config: config.sponsor, tls: sponsorTls, handler: this.proxy, metrics, log })
    this.admin = new AdminServer({
      listen: config.admin.listen,
      metrics,
      readiness: () => this.readiness(),
      log,
    })
  }

  static async start(configPath: string, options: GatewayOptions = {}): Promise<Gateway> {
    setDefaultHighWaterMark(false, STREAM_HIGH_WATER_MARK)
    const { config, tls, keySets, configDigest, loads } = await loadSettledFiles(configPath)
    const log = options.log ?? configuredLogger(config, options.logBindings)
    const metrics = new GatewayMetrics({ routes: config.routes.map((r) => r.name) })
    const env: TransformEnv = { log, keySets, metrics: metrics.crypto }
    const routes = compileRouteTable(config, env)
    metrics.bindLiveRoutes(routeSeries(routes))
    const jwks = jwksDocuments(config, keySets)
    const modeWarnings = await fileModeWarnings(config, configPath)
    const upstreams = new Map<string, UpstreamPool>()
    for (const [name, cfg] of Object.entries(config.upstreams)) {
      upstreams.set(name, Gateway.#pool(name, cfg, tls.upstreams.get(name)!, metrics))
    }
    const gateway = new Gateway(configPath, config, log, metrics, { routes, upstreams, sponsor: config.sponsor, jwks }, tls.sponsor, configDigest)
    gateway.#recordCertificates(tls)
    try {
      gateway.sponsorPort = (await gateway.sponsor.listen()).port
      if (options.adminListener !== false) gateway.adminPort = (await gateway.admin.listen()).port
    } catch (err) {
      await gateway.#closeAll()
      throw err
    }
    log.info(
      {
        sponsor: `${config.sponsor.listen.host}:${gateway.sponsorPort}`,
        admin: options.adminListener === false ? undefined : `${config.admin.listen.host}:${gateway.adminPort}`,
        routes: routes.routes.length,
        loaded: loadedMaterial(tls, keySets),
        configDigest,
        bootDigest: gateway.bootDigest,
      },
      'écluse gateway started',
    )
    if (loads > 1) log.info({ loads }, LOADED_AGAIN)
    warnOfFileModes(modeWarnings, log)
    return gateway
  }

  static #pool(name: string, cfg: Config['upstreams'][string], tls: ClientTlsMaterial, metrics: GatewayMetrics): UpstreamPool {
    // Bound now, so every error series exists at 0 before the first failure: an alert on
    // `increase()` cannot see a series that appears already at 1.
    const upstreamMetrics = metrics.forUpstream(name)
    return new UpstreamPool(name, cfg, tls, {
      onError: (code, err, underBody) => {
        upstreamMetrics.error(code)
        // The handshake with the trusted side failed: why, by the same reasons as the sponsor side.
        // (A TLS failure under an answer's body came long after its handshake.)
        if (code === 'upstream_tls' && !underBody) metrics.tlsHandshakeFailure('upstream', classifyTlsFailure(err))
      },
      onRetry: () => upstreamMetrics.retry(),
      onWait: (seconds) => upstreamMetrics.poolWait(seconds),
    })
  }

  /**
   * Ready when certificates are loaded (they are, once started), the gateway is not draining, and
   * every upstream answers. The probes' answer is cached `READINESS_TTL_MS`. A draining gateway says
   * so at once, without probing (the load balancer's cue to stop sending). An answer a reload
   * overtook (`#readinessEpoch`: the pools it probed may be retired) is neither cached nor given:
   * the new pools are probed, once; if reloads overtake that too, its answer is given, uncached.
   */
  async readiness(): Promise<Readiness> {
    for (let attempt = 0; ; attempt++) {
      if (this.proxy.draining) return { ready: false, checks: { certificates: 'ok', shutdown: 'draining' } }
      const now = Date.now()
      const cached = this.#readiness
      if (cached !== undefined && now - cached.at < READINESS_TTL_MS) return cached.value
      const epoch = this.#readinessEpoch
      const checks: Record<string, string> = { certificates: this.#certificatesCheck(now) }
      const upstreamReady = new Map<string, boolean>()
      await Promise.all(
        [...this.#upstreams].map(async ([name, pool]) => {
          const probe = await pool.probe()
          checks[`upstream:${name}`] = probe.ok ? 'ok' : probe.detail
          upstreamReady.set(name, probe.ok)
        }),
      )
      const value: Readiness = { ready: Object.values(checks).every((c) => c === 'ok'), checks }
      if (epoch === this.#readinessEpoch) {
        this.metrics.upstreamReadiness(upstreamReady)
        // From when the answer came: a probe that took its whole timeout is still reused.
        this.#readiness = { at: Date.now(), value }
      } else if (attempt === 0 || this.proxy.draining) continue
      return value
    }
  }

  /**
   * `ok` while the sponsor side's material can still make a connection. An upstream's is exercised
   * by its probe (a fresh connection); the sponsor side has no probe, and a pod whose certificate
   * expired would stay in the load balancer, every handshake failing (and a restart refused).
   */
  #certificatesCheck(now: number): string {
    const { chain, clientCa } = this.#sponsorExpiry
    if (now > chain) return `certificate_expired: sponsor.tls.cert: a certificate of the chain expired on ${new Date(chain).toISOString()}`
    if (!clientCa.some(([from, to]) => from <= now && now <= to)) return 'certificate_expired: sponsor.tls.clientCa: no CA certificate of the bundle is within its validity'
    return 'ok'
  }

  /** Forgets the cached readiness, and makes any probe in flight start over (see `readiness`). */
  #readinessChanged(): void {
    this.#readiness = undefined
    this.#readinessEpoch++
  }

  /**
   * The digest of the files the configuration in use was loaded from (the configuration file, every
   * certificate, CA bundle, key and key set it names), as they were from the start to the end of that
   * load. A reload that failed leaves it as it was.
   */
  get configDigest(): string {
    return this.#configDigest
  }

  /** The configuration in use (the boot one, or the last one a reload applied). */
  get config(): Config {
    return this.#config
  }

  /**
   * Re-reads the configuration file, every certificate and every key set, then swaps routes, key
   * sets, pools and the sponsor certificate in one step. Anything broken keeps the old state and the error says why. Listener
   * addresses are fixed at boot: a change to them needs a restart (reported, not applied).
   */
  reload(): Promise<ReloadResult> {
    // A draining gateway builds nothing new: pools made now would outlive the close.
    if (this.#shutdown !== undefined) return Promise.resolve({ ok: false, error: 'shutting down' })
    // One at a time: two reloads run side by side could finish out of order and leave the older
    // files' state in place. A reload asked for while one runs runs after it (the files may have
    // changed since it read them); any number asked for meanwhile share that one.
    if (this.#reloading === undefined) {
      this.#reloading = this.#reloadOnce().finally(() => {
        this.#reloading = undefined
      })
      return this.#reloading
    }
    this.#reloadQueued ??= this.#reloading.then(() => {
      this.#reloadQueued = undefined
      return this.reload()
    })
    return this.#reloadQueued
  }

  async #reloadOnce(): Promise<ReloadResult> {
    try {
      // One version of the files, read whole (see src/config/load-settled.ts).
      const { config, tls, keySets, configDigest, loads } = await loadSettledFiles(this.configPath)
      // The file's own idle timeout passed the schema, but the listener keeps the one it booted with:
      // upstream timeouts raised past it would have their 504s cut (see idleTimeoutProblems).
      const running = this.sponsor.idleTimeoutMs
      const tooShort = idleTimeoutProblems(running, config.upstreams)
      if (tooShort.length > 0) {
        throw new EcluseError(
          'config_invalid',
          `sponsor.limits.idleTimeoutMs as running (${running}; a reload does not change it, a restart does) ${tooShort[0]}`,
        )
      }
      const routes = compileRouteTable(config, { log: this.log, keySets, metrics: this.metrics.crypto })
      const jwks = jwksDocuments(config, keySets)
      // Asked before the swap, said after it: from the swap to the answer nothing but logging runs.
      const modeWarnings = await fileModeWarnings(config, this.configPath)
      const old = this.#config
      const listenersChanged =
        JSON.stringify(old.sponsor.listen) !== JSON.stringify(config.sponsor.listen) ||
        JSON.stringify(old.admin) !== JSON.stringify(config.admin)
      // Everything that can fail is built before anything changes, so that a failed reload keeps the
      // whole previous state. (The sponsor context cannot fail below: loadAllTls has had OpenSSL
      // build it from the same material.)
      // Pools: same settings → rotate certificates in place; new or changed → a new pool.
      const upstreams = new Map<string, UpstreamPool>()
      const rotations: Array<{ pool: UpstreamPool; context: SecureContext }> = []
      const created: UpstreamPool[] = []
      const retired: UpstreamPool[] = []
      try {
        for (const [name, cfg] of Object.entries(config.upstreams)) {
          const existing = this.#upstreams.get(name)
          const material = tls.upstreams.get(name)!
          if (existing !== undefined && JSON.stringify(old.upstreams[name]) === JSON.stringify(cfg)) {
            rotations.push({ pool: existing, context: existing.secureContextFor(material) })
            upstreams.set(name, existing)
          } else {
            const pool = Gateway.#pool(name, cfg, material, this.metrics)
            created.push(pool)
            upstreams.set(name, pool)
            if (existing !== undefined) retired.push(existing)
          }
        }
      } catch (err) {
        // Pools made for this reload never served: close them with it.
        for (const pool of created) void pool.destroy()
        throw err
      }
      for (const [name, pool] of this.#upstreams) if (!upstreams.has(name)) retired.push(pool)
      // A shutdown that began while the files were read closes the pools it knows: the ones built
      // here would outlive it, and a drain would go on with half the new state.
      if (this.#shutdown !== undefined) {
        for (const pool of created) void pool.destroy()
        return { ok: false, error: 'shutting down' }
      }

      // From here on nothing throws: the swap is whole. The new routes' series are bound only now,
      // so a reload that failed leaves no series behind for routes that never served.
      this.metrics.bindLiveRoutes(routeSeries(routes))
      for (const { pool, context } of rotations) pool.reloadWith(context)
      this.sponsor.reloadTls(tls.sponsor)
      this.proxy.state = { routes, upstreams, sponsor: { ...config.sponsor, listen: old.sponsor.listen }, jwks }
      this.#upstreams = upstreams
      this.#config = { ...config, sponsor: { ...config.sponsor, listen: old.sponsor.listen }, admin: old.admin }
      this.#readinessChanged()
      this.#recordCertificates(tls)
      this.#configDigest = configDigest
      // Retired pools finish what they carry, then close, once no request in flight can still call them.
      this.proxy.retirePools(retired)
      this.metrics.reload('ok')
      this.log.info(
        { routes: routes.routes.length, listenersChanged, loaded: loadedMaterial(tls, keySets), configDigest },
        listenersChanged ? 'reloaded; listener address changes need a restart' : 'reloaded',
      )
      if (loads > 1) this.log.info({ loads }, LOADED_AGAIN)
      warnOfFileModes(modeWarnings, this.log)
      return { ok: true, configDigest }
    } catch (err) {
      this.metrics.reload('failed')
      const error = err instanceof Error ? err.message : String(err)
      this.log.error({ error }, 'reload failed; keeping the previous configuration and certificates')
      return { ok: false, error }
    }
  }

  /** The drain deadline a shutdown would use now (`shutdown.drainTimeoutMs`, as last reloaded). */
  get drainTimeoutMs(): number {
    return this.#config.shutdown.drainTimeoutMs
  }

  /** Stop accepting, let in-flight requests finish within the drain deadline, then close everything. */
  shutdown(): Promise<void> {
    this.#shutdown ??= this.#drainAndClose()
    return this.#shutdown
  }

  async #drainAndClose(): Promise<void> {
    const deadline = this.#config.shutdown.drainTimeoutMs
    this.proxy.draining = true
    this.#readinessChanged()
    this.log.info({ inFlight: this.proxy.inFlight, deadlineMs: deadline }, 'draining')
    const stopped = this.sponsor.stopAccepting()
    let timer: NodeJS.Timeout | undefined
    const timedOut = await Promise.race([
      this.proxy.idle().then(() => false),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(true), deadline)
        timer.unref()
      }),
    ])
    clearTimeout(timer)
    if (timedOut) this.log.warn({ inFlight: this.proxy.inFlight }, 'drain deadline reached; closing remaining connections')
    this.sponsor.destroyAll()
    await stopped
    await this.#closeAll()
    this.log.info('stopped')
  }

  async #closeAll(): Promise<void> {
    // A boot that failed after the sponsor listener bound (the admin port taken) must not leave it
    // listening: the process would go on answering mTLS clients with no admin listener, and never
    // exit. After a drain it is closed already, and closing it again does nothing.
    const closed = this.sponsor.stopAccepting()
    this.sponsor.destroyAll()
    const pools = [...this.#upstreams.values(), ...this.proxy.retiredPools]
    await Promise.allSettled([closed, this.admin.close(), ...pools.map((p) => p.destroy())])
  }

  #recordCertificates(tls: AllTlsMaterial): void {
    this.#sponsorExpiry = { chain: tls.sponsor.chainNotAfter.getTime(), clientCa: tls.sponsor.caValidity }
    // The set of names changes with the configuration: a removed upstream's expiry must not stay
    // behind for an alert to fire on.
    this.metrics.clearCertificateExpiry()
    this.metrics.certificateExpiry('sponsor', 'sponsor_server', tls.sponsor.notAfter)
    // A CA that expires breaks every connection it vouches for, like an expired leaf.
    this.metrics.certificateExpiry('sponsor', 'sponsor_client_ca', tls.sponsor.caNotAfter)
    for (const [name, material] of tls.upstreams) {
      this.metrics.certificateExpiry('upstream', `upstream:${name}`, material.notAfter)
      this.metrics.certificateExpiry('upstream', `upstream_ca:${name}`, material.caNotAfter)
    }
  }
}

/** One warning per private key file every user of the host can read, or file any can replace (`fileModeWarnings`). */
function warnOfFileModes(warnings: Awaited<ReturnType<typeof fileModeWarnings>>, log: Logger): void {
  for (const { key, file, warning } of warnings) log.warn({ setting: key, file }, warning)
}

/** What the metrics bind per live route: its name, and whether a transform can refuse on it. */
function routeSeries(table: RouteTable): Array<{ name: string; transformed: boolean }> {
  return table.routes.map((r) => ({ name: r.name, transformed: r.requestTransforms.length + r.responseTransforms.length > 0 }))
}

/**
 * A digest of the settings a reload keeps at their boot values that decide how the sponsor listener
 * serves (docs/operations.md): its address, its limits, its TLS version floor and handshake timeout.
 * The files' digest does not tell two workers apart on these: one restarted after a change to them,
 * which its siblings reloaded without applying, listens by the new values (a new address, say) with
 * the same files (found by review). With `--workers`, each worker reports it beside its files'. Not
 * the admin listener (the primary's alone) nor the log level, which change no answer (found by
 * re-review: they made workers that serve alike diverge).
 */
export function bootSettingsDigest(config: Config): string {
  const { listen, limits, tls } = config.sponsor
  const kept = { listen, limits, minVersion: tls.minVersion, handshakeTimeoutMs: tls.handshakeTimeoutMs }
  return `sha256:${createHash('sha256').update(JSON.stringify(kept)).digest('hex')}`
}

/**
 * The file watcher of `reload.watchIntervalMs` (fixed at boot) of the configuration a process
 * loaded, or nothing when it is 0. Built from that configuration, not from another read of the file:
 * one caught mid-write there would leave a gateway that asks for a watcher without one. `loaded` is
 * the digest of the files that load read (the same before and after it), `running` the digest of
 * what runs now (see `ConfigWatcher`).
 */
export function watcherFor(configPath: string, config: Config, loaded: string, running: () => string | undefined): ConfigWatcher | undefined {
  if (config.reload.watchIntervalMs === 0) return undefined
  return new ConfigWatcher(configPath, filesOf(config), config.reload.watchIntervalMs, loaded, running)
}

/** Starts a prepared watcher's checks; `onChange` is what SIGHUP does in the same process. */
export function startWatcher(watcher: ConfigWatcher | undefined, onChange: () => ChangeOutcome | PromiseLike<ChangeOutcome>, log: Logger): void {
  if (watcher === undefined) return
  watcher.start(onChange, log)
  log.info({ watchIntervalMs: watcher.intervalMs }, 'watching the configuration files for changes')
}

/**
 * SIGUSR1 (src/boot-signals.ts): said, so that whoever sent it learns the inspector stays shut, or
 * was shut (`inspectorClosed`: one came during the boot, before the process could catch it).
 */
export function logIgnoredSignal(log: Logger, signal: NodeJS.Signals, inspectorClosed = false): void {
  if (inspectorClosed) log.warn({ signal }, 'inspector opened by a signal during the boot; closed')
  else log.warn({ signal }, 'signal ignored: it would open the Node inspector; start with --inspect to debug')
}

/**
 * `ecluse serve`: start, wire signals, and exit when drained. `signals` holds those that arrived
 * since the command began (the CLI makes it before it loads this module).
 */
export async function runGateway(configPath: string, signals: BootSignals = new BootSignals()): Promise<void> {
  let gateway: Gateway
  try {
    gateway = await Gateway.start(configPath)
  } catch (err) {
    signals.failed()
    throw err
  }
  const watcher = watcherFor(configPath, gateway.config, gateway.configDigest, () => gateway.configDigest)
  let stopping = false
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) {
      gateway.log.info({ signal }, 'shutdown already in progress')
      return
    }
    stopping = true
    watcher?.stop()
    gateway.log.info({ signal }, 'shutdown requested')
    gateway.shutdown().then(
      () => exitAfterLog(0),
      (err: unknown) => {
        gateway.log.error({ err }, 'shutdown failed')
        exitAfterLog(1)
      },
    )
  }
  signals.started({ reload: () => void gateway.reload(), stop, ignored: (signal, closed) => logIgnoredSignal(gateway.log, signal, closed) })
  if (!stopping) startWatcher(watcher, () => gateway.reload(), gateway.log)
}
