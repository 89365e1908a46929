/**
 * Multi-core mode, `ecluse serve --workers N` (Node's `cluster`).
 *
 *   primary ── admin listener (metrics aggregated across workers, readiness = every worker ready)
 *      ├── worker 1 ── Gateway (sponsor listener on the shared port, its own upstream pools)
 *      └── worker N ── …
 *
 * - Boot: the primary validates the configuration, certificates and routes exactly as `config check`
 *   does, opens the admin listener, then forks. Until every worker has reported ready once, a worker
 *   that exits fails the whole boot (exit 1): a broken deployment must not crash-loop quietly. A
 *   worker that has not reported ready {@link BOOT_TIMEOUT_MS} after its fork is killed: the boot
 *   fails as well, or, once the cluster has started, the worker is restarted as after a crash.
 * - Sharing the port: workers `listen()` through the primary (Node's round-robin handle on Linux), so
 *   a configured port 0 is the same random port for every worker.
 * - Signals: SIGHUP and SIGTERM/SIGINT are relayed to every worker (reload; drain then exit). A
 *   reload is asked for over IPC and each worker answers with its outcome, so the primary's file
 *   watcher tries a change that failed to load again as a single process does. The primary exits
 *   once every worker has exited: 0 when all drained cleanly (or, not yet ready, had nothing to
 *   drain), 1 otherwise. A worker that outlives its drain deadline by {@link KILL_GRACE_MS} is killed
 *   (the deadline each worker reported at boot and after each reload: `shutdown.drainTimeoutMs`
 *   applies on SIGHUP).
 * - Crashes after boot: the worker is restarted with an exponential back-off per slot (250 ms, 500 ms,
 *   … capped at 30 s); a worker that got ready and served {@link STABLE_AFTER_MS} after it resets its
 *   slot's back-off.
 * - Hangs after boot: every {@link LIVENESS_INTERVAL_MS} the primary asks each ready worker for a
 *   sign of life; a worker whose event loop has not answered {@link LIVENESS_MISSES} times in a row
 *   is killed, and restarted as after a crash. Until then it counts as not ready.
 * - A worker whose primary goes away (IPC channel closed) drains and exits: no orphans.
 * - Divergence: each worker reports a digest of the files it runs with `ready` and after every
 *   reload; while the ready workers' digests differ (a worker restarted after a change its siblings
 *   refused boots from the new files), `/readyz` is 503 `workers_diverged` and
 *   `ecluse_cluster_workers_config_diverged` is 1. Fixing the files and reloading, or a restart, ends it.
 *
 * One worker (`--workers 1`, the default) does not use this module: `runGateway` serves in-process.
 */
import cluster, { type Worker } from 'node:cluster'
import type { Logger } from 'pino'
import { AggregatorRegistry, Counter, Gauge, Registry } from 'prom-client'
import { AdminServer, type Readiness } from './admin/server.js'
import { BootSignals } from './boot-signals.js'
import { LOADED_AGAIN, loadSettledFiles } from './config/load-settled.js'
import type { Config } from './config/schema.js'
import type { ChangeOutcome, ConfigWatcher } from './config/watch.js'
import { Gateway, logIgnoredSignal, startWatcher, watcherFor } from './main.js'
import { createLogger, exitAfterLog } from './observability/logger.js'
import { GatewayMetrics } from './observability/metrics.js'
import { compileRouteTable } from './route/table.js'
import { DEFAULT_PROBE_TIMEOUT_MS } from './upstream/pool.js'

/** The most workers `--workers` accepts (bounded by default; more than this is a typo). */
export const MAX_WORKERS = 256
/** A worker that outlives its drain deadline by this much is killed. */
export const KILL_GRACE_MS = 5_000
/** A worker that got ready and lived at least this long starts its slot's back-off again from the first step. */
export const STABLE_AFTER_MS = 10_000
/** How long the primary waits for one worker's metrics answer or sign of life. */
const READINESS_ASK_MS = 2_000
/**
 * How long the primary waits for one worker's readiness: longer than the worker's upstream probe,
 * so that an upstream that does not answer is said (`upstream:<name>: upstream_timeout`) instead of
 * every worker's `no_answer`; shorter than the admin listener's readiness timeout (3 s).
 */
const READINESS_ANSWER_MS = DEFAULT_PROBE_TIMEOUT_MS + 600
/** How long the primary waits for one worker's reload outcome (no answer: not retried). */
const RELOAD_ASK_MS = 60_000
/** How often the primary asks each ready worker for a sign of life (each ask waits `READINESS_ASK_MS`). */
export const LIVENESS_INTERVAL_MS = 5_000
/** Unanswered asks in a row after which a worker is killed and restarted: ≈ 15 s of a stuck event loop. */
export const LIVENESS_MISSES = 3
/**
 * How long a worker may take from its fork to reporting ready before it is killed. Liveness asks only
 * ready workers, so without it a worker stuck in its boot would keep the pod unready for good while
 * the primary's `/healthz` stays green. A boot reads files and listens, nothing remote: a minute is
 * far beyond a slow one.
 */
export const BOOT_TIMEOUT_MS = 60_000

/** Options for {@link runCluster}. */
export interface ClusterOptions {
  /** Worker processes, 2 … {@link MAX_WORKERS}. */
  readonly workers: number
  /** First restart delay after a crash; doubles per consecutive crash. Default 250 ms. */
  readonly restartDelayMs?: number
  /** Ceiling of the restart back-off. Default 30 s. */
  readonly maxRestartDelayMs?: number
  /** How long a worker may boot before it is killed. Default {@link BOOT_TIMEOUT_MS}. */
  readonly bootTimeoutMs?: number
  /** How long the primary waits for a worker's answer to a reload. Default {@link RELOAD_ASK_MS}. */
  readonly reloadAskMs?: number
  /** How long a worker must serve, once ready, for its crash to start the back-off over. Default {@link STABLE_AFTER_MS}. */
  readonly stableAfterMs?: number
}

/** The restart delay after `failures` consecutive crashes of one slot (1 → `base`). */
export function restartDelay(failures: number, baseMs = 250, maxMs = 30_000): number {
  return Math.min(maxMs, baseMs * 2 ** Math.max(0, Math.min(failures - 1, 30)))
}

// ---- IPC messages (prom-client uses its own `type` field on the same channel; ours use `ecluse`)

/**
 * `configDigest` in a worker's messages: the digest of the files the configuration it runs was loaded
 * from (`Gateway.configDigest`); `bootDigest`, of the settings it booted with that a reload keeps
 * (`Gateway.bootDigest`). Sent with `ready` and after every reload, applied or refused, so the
 * primary sees workers that run different files, or the same files with other boot settings.
 */
interface ReadyMessage {
  readonly ecluse: 'ready'
  readonly sponsorPort: number
  readonly drainTimeoutMs: number
  readonly configDigest: string
  readonly bootDigest: string
}
/**
 * Sent by a worker after a reload it was signalled for directly (not asked by the primary), whatever
 * its outcome: the drain deadline and configuration it now has.
 */
interface DrainMessage {
  readonly ecluse: 'drain'
  readonly drainTimeoutMs: number
  readonly configDigest: string
  readonly bootDigest: string
}
/** The primary asks a ready worker to reload (SIGHUP to the primary, or its file watcher). */
interface ReloadQuery {
  readonly ecluse: 'reload?'
  readonly id: number
}
/**
 * A worker's answer: whether its reload applied (`null`: not tried, the worker is draining), and the
 * drain deadline and configuration it now has.
 */
interface ReloadAnswer {
  readonly ecluse: 'reloaded'
  readonly id: number
  readonly ok: boolean | null
  readonly drainTimeoutMs: number
  readonly configDigest: string
  readonly bootDigest: string
}
interface ReadinessQuery {
  readonly ecluse: 'readiness?'
  readonly id: number
}
interface ReadinessAnswer {
  readonly ecluse: 'readiness'
  readonly id: number
  readonly readiness: Readiness
}
/** The primary asks a ready worker for a sign of life: its event loop answers, or it is stuck. */
interface LivenessQuery {
  readonly ecluse: 'alive?'
  readonly id: number
}
interface LivenessAnswer {
  readonly ecluse: 'alive'
  readonly id: number
}
/** The primary asks a ready worker for its registry, as prom-client's JSON (to aggregate). */
interface MetricsQuery {
  readonly ecluse: 'metrics?'
  readonly id: number
}
interface MetricsAnswer {
  readonly ecluse: 'metrics'
  readonly id: number
  readonly metrics: RegistryJson
}
/** A registry as `getMetricsAsJSON()` gives it: what `AggregatorRegistry.aggregate` sums. */
type RegistryJson = Awaited<ReturnType<Registry['getMetricsAsJSON']>>
type WorkerMessage = ReadyMessage | DrainMessage | ReadinessAnswer | MetricsAnswer | ReloadAnswer | LivenessAnswer

function isWorkerMessage(msg: unknown): msg is WorkerMessage {
  return typeof msg === 'object' && msg !== null && typeof (msg as { ecluse?: unknown }).ecluse === 'string'
}

/**
 * `ecluse serve --workers N`: in the primary, validates, opens the admin listener and forks; in a
 * worker (the same command line, re-run by `cluster.fork()`), starts the gateway on the shared port.
 * Resolves once started; the process then lives until a signal.
 *
 * @throws EcluseError `config_invalid` / `tls_material_invalid` from the primary's boot check, or the
 *   admin listener's bind error.
 * @example
 * await runCluster('config/gateway.yaml', { workers: 4 })
 */
export async function runCluster(configPath: string, options: ClusterOptions, signals: BootSignals = new BootSignals()): Promise<void> {
  if (cluster.isWorker) {
    try {
      await runWorker(configPath, signals)
    } catch (err) {
      // The IPC channel would keep this process alive after the CLI reports the error: let it go.
      cluster.worker?.disconnect()
      throw err
    }
    return
  }
  let watcher: ConfigWatcher | undefined
  let primary: ClusterPrimary
  try {
    // The primary watches the files (workers do not): a change is relayed as SIGHUP is. It starts
    // from the files as the primary loaded them, before any worker did: a change after that reaches
    // every worker through a relayed reload.
    primary = await ClusterPrimary.start(configPath, options)
    const started = primary
    watcher = watcherFor(configPath, primary.config, primary.configDigest, () => started.runningDigest())
  } catch (err) {
    signals.failed()
    throw err
  }
  let stopping = false
  const stop = (signal: NodeJS.Signals) => {
    stopping = true
    watcher?.stop()
    primary.stop(signal)
  }
  signals.started({ reload: () => void primary.reload(), stop, ignored: (signal, closed) => logIgnoredSignal(primary.log, signal, closed) })
  // Each worker logs its own reload (and counts it for the failed-reload alert); the primary retries
  // a change that failed in any of them.
  if (!stopping) startWatcher(watcher, () => primary.reload(), primary.log)
}

// ---------------------------------------------------------------------------------------------
// Primary

interface Slot {
  readonly index: number
  worker: Worker | undefined
  startedAt: number
  /** When its worker first reported ready (a reload's report does not move it). */
  readyAt: number
  ready: boolean
  /** Kills its worker if it has not reported ready by `bootTimeoutMs` after its fork. */
  bootTimer: NodeJS.Timeout | undefined
  /** The worker the boot timer killed: a `ready` of its still in the IPC pipe is ignored. */
  bootKilled: Worker | undefined
  /** Consecutive crashes of this slot (reset once a worker that got ready stays up STABLE_AFTER_MS). */
  failures: number
  restartTimer: NodeJS.Timeout | undefined
  sponsorPort: number
  /** The worker's own drain deadline, as it last reported it (a reload may change it). */
  drainTimeoutMs: number
  /** The digest of the files its worker runs, as it last reported it (see `ReadyMessage`); none before it did. */
  configDigest: string | undefined
  /** The digest of its boot settings a reload keeps, as it last reported it (see `ReadyMessage`). */
  bootDigest: string | undefined
  /** A reload was asked for while this slot's worker was booting: asked once it reports ready. */
  reloadPending: boolean
  /** Who waits for the outcome of that deferred reload (settled with nothing if the worker goes). */
  reloadWaiters: Array<(answer: ReloadAnswer | undefined) => void>
  /** The registry its worker last gave a scrape: stands in for it when it does not answer in time. */
  lastMetrics: RegistryJson | undefined
  /** Liveness asks its worker left unanswered in a row (see `#checkLiveness`). */
  missedAsks: number
  /** A liveness ask is out: the next tick does not pile another on a worker that is slow. */
  asking: boolean
}

/** A registry's counters and histograms only: what stays counted once its worker has gone. */
function cumulativeOnly(metrics: RegistryJson): RegistryJson {
  // prom-client's typings say an enum; at run time `type` is the exposition's word.
  return metrics.filter((m) => ['counter', 'histogram'].includes(String(m.type)))
}

/** The gateway families the primary counts itself, added to its workers' in its scrape. */
const PRIMARY_GATEWAY_FAMILIES = new Set(['ecluse_open_connections', 'ecluse_log_lines_dropped_total'])
/** Node's default metrics (prom-client's, under our prefix), which the primary adds for its own process. */
const NODE_DEFAULT_FAMILY = /^ecluse_(process|nodejs)_/

/**
 * The primary's admin metrics: the workers' registries (see `ClusterPrimary.#workerMetrics`),
 * aggregated by prom-client's `AggregatorRegistry.aggregate`, followed by the primary's own cluster
 * series. A worker still booting, or stalled, never fails the scrape (prom-client's
 * `clusterMetrics()` waits for every worker, then fails the whole scrape after 5 s). A subclass of
 * `GatewayMetrics` so that `AdminServer` can use it as is: of its own gateway families only the admin
 * listener's connections and the primary's dropped log lines count (every request is counted in a
 * worker), summed with the workers'.
 */
class ClusterAdminMetrics extends GatewayMetrics {
  readonly #own: Registry
  readonly #workers: () => Promise<RegistryJson[]>
  /** The scrape being put together now, which every scrape that comes meanwhile shares. */
  #rendering: Promise<string> | undefined

  constructor(own: Registry, workers: () => Promise<RegistryJson[]>) {
    // Node's default metrics of the primary too: the pod's memory and CPU are its workers' and its own.
    super({ routes: [], defaultMetrics: true })
    setAggregators(this.registry)
    this.#own = own
    this.#workers = workers
  }

  /**
   * One round of questions to the workers at a time: scrapes that come together (several
   * Prometheus replicas, a client that hangs up and asks again) share it, so that neither the
   * workers' answers nor the primary's memory grow with the rate of scrapes.
   */
  override render(): Promise<string> {
    this.#rendering ??= this.#renderOnce().finally(() => {
      this.#rendering = undefined
    })
    return this.#rendering
  }

  async #renderOnce(): Promise<string> {
    const [workers, mine] = await Promise.all([this.#workers(), this.registry.getMetricsAsJSON()])
    // The primary's own families even when no worker has answered yet (all booting, or stalled).
    const primary = mine.filter((m) => PRIMARY_GATEWAY_FAMILIES.has(m.name) || NODE_DEFAULT_FAMILY.test(m.name))
    return (await AggregatorRegistry.aggregate([...workers, primary]).metrics()) + (await this.#own.metrics())
  }
}

class ClusterPrimary {
  readonly #configPath: string
  readonly #config: Config
  /** The digest of the files as the primary loaded them at boot (its watcher's baseline). */
  readonly configDigest: string
  readonly #log: Logger
  readonly #slots: Slot[] = []
  readonly #byWorkerId = new Map<number, Slot>()
  readonly #admin: AdminServer
  readonly #restartDelayMs: number
  readonly #maxRestartDelayMs: number
  readonly #stableAfterMs: number
  readonly #bootTimeoutMs: number
  readonly #reloadAskMs: number
  /** Questions to workers awaiting an answer, by query id, with the worker asked. */
  readonly #pending = new Map<number, { readonly workerId: number; readonly done: (answer: unknown) => void }>()
  readonly #restarts: Counter
  /**
   * The counters and histograms of workers that have exited, as of their last scrape, in parts that
   * each scrape folds into one. Summed with the live workers', they keep the cluster's counters from
   * ever going down: Prometheus would read a drop as a reset and `increase()` would count every
   * other worker's total again, firing alerts for events long past.
   */
  #retired: RegistryJson[] = []
  #nextQueryId = 0
  #adminPort = 0
  #started = false
  #stopping = false
  #cleanExit = true
  #killTimer: NodeJS.Timeout | undefined
  #livenessTimer: NodeJS.Timeout | undefined
  /** Reloads being relayed now: their workers change one after the other (see `#judgeDigests`). */
  #reloadsInFlight = 0
  /** The ready workers run different files (see `#judgeDigests`): how, or nothing while they agree. */
  #divergence: { readonly key: string; readonly detail: string } | undefined

  private constructor(configPath: string, config: Config, configDigest: string, log: Logger, options: ClusterOptions) {
    this.#configPath = configPath
    this.#config = config
    this.configDigest = configDigest
    this.#log = log
    this.#restartDelayMs = options.restartDelayMs ?? 250
    this.#maxRestartDelayMs = options.maxRestartDelayMs ?? 30_000
    this.#stableAfterMs = options.stableAfterMs ?? STABLE_AFTER_MS
    this.#bootTimeoutMs = options.bootTimeoutMs ?? BOOT_TIMEOUT_MS
    this.#reloadAskMs = options.reloadAskMs ?? RELOAD_ASK_MS
    if (!Number.isInteger(this.#reloadAskMs) || this.#reloadAskMs < 100 || this.#reloadAskMs > 3_600_000) {
      throw new RangeError('reloadAskMs must be a whole number of milliseconds from 100 to 3600000')
    }
    // A timer of NaN, 0 or over 2^31 − 1 ms fires at once: every worker would be killed in its boot.
    if (!Number.isInteger(this.#bootTimeoutMs) || this.#bootTimeoutMs < 1000 || this.#bootTimeoutMs > 3_600_000) {
      throw new RangeError('bootTimeoutMs must be a whole number of milliseconds from 1000 to 3600000')
    }
    for (let index = 0; index < options.workers; index++) {
      this.#slots.push({
        index,
        worker: undefined,
        startedAt: 0,
        readyAt: 0,
        ready: false,
        bootTimer: undefined,
        bootKilled: undefined,
        reloadPending: false,
        reloadWaiters: [],
        lastMetrics: undefined,
        missedAsks: 0,
        asking: false,
        failures: 0,
        restartTimer: undefined,
        sponsorPort: 0,
        drainTimeoutMs: config.shutdown.drainTimeoutMs,
        configDigest: undefined,
        bootDigest: undefined,
      })
    }
    const own = new Registry()
    const slots = this.#slots
    new Gauge<'state'>({
      name: 'ecluse_cluster_workers',
      help: 'Worker processes: configured, and ready (listening and reported ready).',
      labelNames: ['state'],
      registers: [own],
      collect() {
        this.set({ state: 'configured' }, slots.length)
        // A worker that stopped answering is not ready, whatever it reported at boot.
        this.set({ state: 'ready' }, slots.filter((s) => s.ready && s.missedAsks === 0).length)
      },
    })
    this.#restarts = new Counter({
      name: 'ecluse_cluster_worker_restarts_total',
      help: 'Workers restarted by the primary after an unexpected exit.',
      registers: [own],
    })
    const diverged = () => this.#divergence !== undefined
    new Gauge({
      name: 'ecluse_cluster_workers_config_diverged',
      help: '1 while the ready workers run configurations loaded from different files (not ready meanwhile), 0 when they agree.',
      registers: [own],
      collect() {
        this.set(diverged() ? 1 : 0)
      },
    })
    this.#admin = new AdminServer({
      listen: config.admin.listen,
      metrics: new ClusterAdminMetrics(own, () => this.#workerMetrics()),
      readiness: () => this.readiness(),
      log,
    })
  }

  get log(): Logger {
    return this.#log
  }

  /** The configuration the primary checked at boot (it never reloads its own copy). */
  get config(): Config {
    return this.#config
  }

  static async start(configPath: string, options: ClusterOptions): Promise<ClusterPrimary> {
    if (!Number.isInteger(options.workers) || options.workers < 2 || options.workers > MAX_WORKERS) {
      throw new RangeError(`workers must be an integer from 2 to ${MAX_WORKERS}`)
    }
    // The same checks as `config check`, once, before any fork: a broken file fails here with the
    // loader's message instead of N workers failing with it. The key sets are read for the check
    // (profile, files, every step's key set) and dropped: only workers seal and open.
    const { config, keySets, configDigest, loads } = await loadSettledFiles(configPath)
    const log = createLogger({ level: config.log.level }).child({ role: 'primary' })
    if (loads > 1) log.info({ loads }, LOADED_AGAIN)
    compileRouteTable(config, { log, keySets })
    const primary = new ClusterPrimary(configPath, config, configDigest, log, options)
    primary.#adminPort = (await primary.#admin.listen()).port
    cluster.on('message', (worker, msg: unknown) => primary.#onMessage(worker, msg))
    cluster.on('exit', (worker, code, signal) => primary.#onExit(worker, code, signal))
    for (const slot of primary.#slots) primary.#fork(slot)
    primary.#livenessTimer = setInterval(() => primary.#checkLiveness(), LIVENESS_INTERVAL_MS)
    primary.#livenessTimer.unref()
    return primary
  }

  /**
   * Asks every ready worker for a sign of life. Exits are seen by the `exit` event; a worker whose
   * event loop is stuck (an endless loop, a deadlock in native code, SIGSTOP) exits nothing: it holds
   * its share of the connections the shared port hands out and keeps the pod unready, while the
   * primary's own `/healthz` stays green. After `LIVENESS_MISSES` unanswered asks it is killed, and
   * the exit restarts it with the slot's back-off.
   */
  #checkLiveness(): void {
    if (this.#stopping) return
    for (const slot of this.#slots) {
      const worker = slot.worker
      if (worker === undefined || !slot.ready || slot.asking) continue
      slot.asking = true
      void this.#ask(worker, 'alive?').then((answer) => {
        slot.asking = false
        if (slot.worker !== worker || this.#stopping) return
        if (answer !== undefined) {
          if (slot.missedAsks > 0) this.#log.info({ worker: worker.id, missed: slot.missedAsks }, 'worker answers again')
          slot.missedAsks = 0
          return
        }
        slot.missedAsks++
        if (slot.missedAsks < LIVENESS_MISSES) {
          this.#log.warn({ worker: worker.id, missed: slot.missedAsks }, 'worker did not answer the primary')
          return
        }
        this.#log.error({ worker: worker.id, missed: slot.missedAsks }, 'worker unresponsive; killing it')
        worker.process.kill('SIGKILL')
      })
    }
  }

  /** Ready when every worker is up and answers ready; each worker's failing checks are shown. */
  async readiness(): Promise<Readiness> {
    const checks: Record<string, string> = {}
    if (this.#stopping) checks['shutdown'] = 'draining'
    // Captured before awaiting: a worker may exit while the others answer.
    const live = this.#slots.filter((s) => s.ready && s.worker !== undefined).map((s) => s.worker!)
    checks['workers'] = live.length === this.#slots.length ? 'ok' : `workers_not_ready: ${live.length} of ${this.#slots.length}`
    if (this.#divergence !== undefined) checks['workers_diverged'] = `workers_diverged: ${this.#divergence.detail}`
    const answers = await Promise.all(live.map((w) => this.#ask(w, 'readiness?', READINESS_ANSWER_MS) as Promise<Readiness | undefined>))
    answers.forEach((answer, i) => {
      const id = live[i]!.id
      if (answer === undefined) {
        checks[`worker:${id}`] = 'no_answer'
        return
      }
      // One entry per check name across workers: the first failure wins.
      for (const [name, value] of Object.entries(answer.checks)) {
        if (checks[name] === undefined || checks[name] === 'ok') checks[name] = value
      }
      if (!answer.ready && Object.values(answer.checks).every((v) => v === 'ok')) checks[`worker:${id}`] = 'not_ready'
    })
    // Again after the workers answered: a SIGTERM that came while they did turns this answer too.
    if (this.#stopping) checks['shutdown'] = 'draining'
    return { ready: Object.values(checks).every((v) => v === 'ok'), checks }
  }

  /**
   * SIGHUP or a change of the files: every worker reloads on its own (a broken file keeps each
   * worker's old state) and answers with its outcome. A worker still booting is asked once it reports
   * ready (the files may have changed after its boot read them), and its outcome counts too. Once
   * all have answered, their digests are compared (`#judgeDigests`): a reload refused by some
   * workers only leaves them on different configurations.
   *
   * @returns `ok: false` when any worker's reload failed, `ok: true` when every worker asked answered
   *   that it applied, nothing otherwise (no worker, no answer in time, a worker gone or draining)
   */
  async reload(): Promise<ChangeOutcome> {
    if (this.#stopping) return undefined
    this.#log.info({ workers: this.#liveWorkers().length }, 'relaying a reload to the workers')
    const asked: Array<Promise<ReloadAnswer | undefined>> = []
    let afterBoot = 0
    for (const slot of this.#slots) {
      if (slot.worker === undefined) continue
      if (slot.ready) asked.push(this.#askReload(slot.worker))
      else {
        asked.push(this.#reloadAfterBoot(slot))
        afterBoot++
      }
    }
    this.#reloadsInFlight++
    let answers: Array<ReloadAnswer | undefined>
    try {
      answers = await Promise.all(asked)
    } finally {
      this.#reloadsInFlight--
    }
    const failed = answers.filter((a) => a?.ok === false).length
    const applied = answers.filter((a) => a?.ok === true).length
    const outcome = { applied, failed, asked: asked.length, afterBoot }
    if (failed > 0) {
      this.#log.warn(
        outcome,
        applied > 0
          ? 'a reload applied in some workers and failed in others, which keep their previous configuration'
          : 'a reload failed in some workers; they keep their previous configuration',
      )
    } else if (applied < asked.length) {
      // Gone, draining or silent for RELOAD_ASK_MS: not retried. A worker that went away is replaced,
      // and its replacement reads the files as it boots; one whose reload is merely slow (a file
      // system that hangs) may still be on its previous state: the warning says to look.
      this.#log.warn(outcome, 'a reload got no answer from some workers; a worker restarted later reads the files as it boots')
    } else {
      this.#log.info(outcome, 'workers reloaded')
    }
    this.#judgeDigests()
    if (failed > 0) return { ok: false }
    return applied === asked.length && applied > 0 ? { ok: true } : undefined
  }

  /**
   * Compares the digests of the files the ready workers run (see `ReadyMessage`). Workers that run
   * different files (one restarted after a change its siblings refused to reload boots from the new
   * files; a reload applied by some workers only; files changed between two workers' boots) would
   * each answer a request by their own configuration, one refusing a client the other serves: until
   * they agree again the pod is not ready (`workers_diverged`), the gauge says 1 and one warning per
   * divergence names how many workers run which digest. Workers that run the same files but booted
   * with different settings a reload keeps (`bootDigest`: one restarted after a change to the listen
   * address, which its siblings reloaded without applying, listens where they do not) diverge too,
   * until the pod restarts. Not judged while a relayed reload is in
   * flight (its workers change one after the other; it judges once all answered, at most
   * RELOAD_ASK_MS later), nor once stopping (draining says not ready already).
   */
  #judgeDigests(): void {
    if (this.#reloadsInFlight > 0 || this.#stopping) return
    // By the files' digest, and by the boot settings' too once those differ between workers.
    const ready = this.#slots.filter((slot) => slot.ready && slot.worker !== undefined && slot.configDigest !== undefined && slot.bootDigest !== undefined)
    const byBoot = new Set(ready.map((slot) => slot.bootDigest)).size > 1
    const byDigest = new Map<string, { digest: string; bootDigest?: string; ids: number[] }>()
    for (const slot of ready) {
      const runs = byBoot ? `${slot.configDigest} ${slot.bootDigest}` : slot.configDigest!
      const group = byDigest.get(runs) ?? { digest: slot.configDigest!, ...(byBoot ? { bootDigest: slot.bootDigest! } : {}), ids: [] }
      group.ids.push(slot.worker!.id)
      byDigest.set(runs, group)
    }
    if (byDigest.size <= 1) {
      if (this.#divergence !== undefined) {
        const [only] = byDigest.values()
        this.#log.info({ digest: only?.digest, workers: only?.ids.length ?? 0 }, 'workers run the same configuration again')
      }
      this.#divergence = undefined
      return
    }
    const digests = [...byDigest.values()].map(({ ids, ...runs }) => ({ ...runs, workers: ids.length, workerIds: ids }))
    const key = JSON.stringify(digests.map(({ digest, bootDigest, workers }) => [digest, bootDigest, workers]))
    if (key === this.#divergence?.key) return
    this.#divergence = { key, detail: `${byDigest.size} configurations among ${ready.length} ready workers` }
    this.#log.warn({ digests }, 'workers run different configurations; not ready until they agree')
  }

  /**
   * The digest of the files every ready worker runs, as they last reported it; nothing while none is
   * ready or two run different files (the watcher then judges by its own reads alone). A worker still
   * booting, or restarting, reads the files as they are: it is no reason to reload the others.
   */
  runningDigest(): string | undefined {
    const digests = new Set(this.#slots.filter((s) => s.ready).map((s) => s.configDigest))
    return digests.size === 1 ? [...digests][0] : undefined
  }

  /** SIGTERM/SIGINT: no more restarts; every worker drains and exits; then the primary exits. */
  stop(signal: NodeJS.Signals | 'boot_failed'): void {
    if (this.#stopping) {
      this.#log.info({ signal }, 'shutdown already in progress')
      return
    }
    this.#stopping = true
    this.#log.info({ signal, workers: this.#liveWorkers().length }, 'shutdown requested')
    clearInterval(this.#livenessTimer)
    for (const slot of this.#slots) {
      clearTimeout(slot.restartTimer)
      slot.restartTimer = undefined
      // A worker still booting now gets the drain deadline and its grace, as every other.
      clearTimeout(slot.bootTimer)
      slot.bootTimer = undefined
    }
    for (const worker of this.#liveWorkers()) worker.process.kill('SIGTERM')
    // The longest deadline any worker has now: a reload (SIGHUP) may have lengthened the drain, and
    // the primary never reloads its own copy of the file.
    const drainMs = Math.max(this.#config.shutdown.drainTimeoutMs, ...this.#slots.filter((s) => s.worker !== undefined).map((s) => s.drainTimeoutMs))
    this.#killTimer = setTimeout(() => {
      for (const worker of this.#liveWorkers()) {
        this.#log.warn({ worker: worker.id }, 'worker still running after its drain deadline; killing it')
        worker.process.kill('SIGKILL')
      }
    }, drainMs + KILL_GRACE_MS)
    this.#maybeExit()
  }

  #liveWorkers(): Worker[] {
    const out: Worker[] = []
    for (const slot of this.#slots) if (slot.worker !== undefined) out.push(slot.worker)
    return out
  }

  #fork(slot: Slot): void {
    slot.restartTimer = undefined
    slot.ready = false
    slot.missedAsks = 0
    // A new worker reads the files as they are now: a reload meant for the one it replaces is moot.
    slot.reloadPending = false
    this.#settleReloadWaiters(slot, undefined)
    slot.startedAt = Date.now()
    // cluster.fork() re-runs this command line (same argv and execArgv); `runCluster` sees
    // `cluster.isWorker` there and starts a gateway instead of a primary.
    const worker = cluster.fork({ ECLUSE_WORKER_SLOT: String(slot.index) })
    slot.worker = worker
    slot.bootKilled = undefined
    this.#byWorkerId.set(worker.id, slot)
    slot.bootTimer = setTimeout(() => this.#onBootTimeout(slot, worker), this.#bootTimeoutMs)
  }

  /**
   * A worker that has not reported ready in time is killed; its exit fails the boot, or restarts it
   * once the cluster has started. Liveness asks only ready workers: nothing else would see it.
   */
  #onBootTimeout(slot: Slot, worker: Worker): void {
    slot.bootTimer = undefined
    if (slot.worker !== worker || slot.ready || this.#stopping) return
    this.#log.error({ worker: worker.id, bootTimeoutMs: this.#bootTimeoutMs }, 'worker did not report ready in time; killing it')
    slot.bootKilled = worker
    worker.process.kill('SIGKILL')
  }

  #onMessage(worker: Worker, msg: unknown): void {
    if (!isWorkerMessage(msg)) return
    if (msg.ecluse === 'readiness' || msg.ecluse === 'metrics' || msg.ecluse === 'reloaded' || msg.ecluse === 'alive') {
      // What a reload answer says the worker runs is taken as it arrives, before any later message of
      // the same read (a `drain` after it, newer) is: not once the question's continuation runs.
      if (msg.ecluse === 'reloaded') this.#noteReload(worker, msg)
      const pending = this.#pending.get(msg.id)
      if (pending !== undefined) pending.done(msg.ecluse === 'readiness' ? msg.readiness : msg.ecluse === 'metrics' ? msg.metrics : msg)
      // An answer after its question timed out (reloadAskMs: a file system that hung, say) counts all the same.
      else if (msg.ecluse === 'reloaded') this.#judgeDigests()
      return
    }
    const slot = this.#byWorkerId.get(worker.id)
    if (slot === undefined || slot.worker !== worker) return
    slot.drainTimeoutMs = msg.drainTimeoutMs
    slot.configDigest = msg.configDigest
    slot.bootDigest = msg.bootDigest
    if (msg.ecluse === 'drain') {
      // A SIGHUP sent to this worker alone may have changed its files and not its siblings'.
      this.#judgeDigests()
      return
    }
    // Ready too late: it is being killed, and its exit must count as a boot that never ended.
    if (slot.bootKilled === worker) return
    if (!slot.ready) slot.readyAt = Date.now()
    slot.ready = true
    clearTimeout(slot.bootTimer)
    slot.bootTimer = undefined
    slot.sponsorPort = msg.sponsorPort
    if (slot.reloadPending) {
      slot.reloadPending = false
      const waiters = slot.reloadWaiters.splice(0)
      void this.#askReload(worker).then((answer) => {
        for (const settle of waiters) settle(answer)
        this.#judgeDigests()
      })
    }
    // A worker restarted after a change its siblings refused boots from the new files.
    this.#judgeDigests()
    if (!this.#started && this.#slots.every((s) => s.ready)) {
      this.#started = true
      const { sponsor, admin } = this.#config
      this.#log.info(
        {
          sponsor: `${sponsor.listen.host}:${slot.sponsorPort}`,
          admin: `${admin.listen.host}:${this.#adminPort}`,
          workers: this.#slots.length,
          config: this.#configPath,
        },
        'écluse cluster started',
      )
    }
  }

  /** What a worker runs after a reload: its drain deadline and digest, if it is still its slot's worker. */
  #noteReload(worker: Worker, answer: ReloadAnswer): void {
    const slot = this.#byWorkerId.get(worker.id)
    if (slot === undefined || slot.worker !== worker) return
    slot.drainTimeoutMs = answer.drainTimeoutMs
    slot.configDigest = answer.configDigest
    slot.bootDigest = answer.bootDigest
  }

  #onExit(worker: Worker, code: number | null, signal: string | null): void {
    // Its unanswered questions get no answer: waiting for their timeouts would stall the watcher.
    for (const { workerId, done } of [...this.#pending.values()]) if (workerId === worker.id) done(undefined)
    const slot = this.#byWorkerId.get(worker.id)
    this.#byWorkerId.delete(worker.id)
    if (slot === undefined || slot.worker !== worker) return
    const wasReady = slot.ready
    slot.worker = undefined
    slot.ready = false
    clearTimeout(slot.bootTimer)
    slot.bootTimer = undefined
    if (slot.lastMetrics !== undefined) this.#retired.push(cumulativeOnly(slot.lastMetrics))
    slot.lastMetrics = undefined
    this.#settleReloadWaiters(slot, undefined)
    slot.configDigest = undefined
    slot.bootDigest = undefined
    // The workers left may agree.
    this.#judgeDigests()
    const clean = code === 0 && signal === null
    if (this.#stopping) {
      // A worker signalled before its boot holds signals (src/boot-signals.ts), just forked, dies of
      // the signal's default action: it had nothing to drain, which is a clean stop.
      const nothingToDrain = !wasReady && (signal === 'SIGTERM' || signal === 'SIGINT')
      if (!clean && !nothingToDrain) this.#cleanExit = false
      this.#log.info({ worker: worker.id, code, signal }, 'worker exited')
      this.#maybeExit()
      return
    }
    if (!this.#started) {
      // Boot failure: the worker wrote its own one-line reason to stderr, or the boot timer's line
      // (`worker did not report ready in time`) is in the log.
      this.#log.error({ worker: worker.id, code, signal }, 'a worker failed to start; stopping')
      this.#cleanExit = false
      this.stop('boot_failed')
      return
    }
    const uptime = Date.now() - slot.startedAt
    // Stable is serving that long once ready: a worker that never got ready was never stable, and
    // one whose boot took most of that time is not either (its uptime counted the boot).
    slot.failures = wasReady && Date.now() - slot.readyAt >= this.#stableAfterMs ? 1 : slot.failures + 1
    const delayMs = restartDelay(slot.failures, this.#restartDelayMs, this.#maxRestartDelayMs)
    this.#restarts.inc()
    this.#log.warn({ worker: worker.id, code, signal, uptimeMs: uptime, restartInMs: delayMs }, 'worker exited unexpectedly; restarting')
    slot.restartTimer = setTimeout(() => this.#fork(slot), delayMs)
  }

  #maybeExit(): void {
    if (this.#liveWorkers().length > 0) return
    clearTimeout(this.#killTimer)
    void this.#admin.close().then(() => {
      this.#log.info({ clean: this.#cleanExit }, 'stopped')
      exitAfterLog(this.#cleanExit ? 0 : 1)
    })
  }

  /**
   * The registries to aggregate: each ready worker's answer within `READINESS_ASK_MS`, or the last
   * one it gave if it does not answer in time (a counter never drops because a worker is slow
   * once), and the exited workers' counters and histograms.
   */
  async #workerMetrics(): Promise<RegistryJson[]> {
    const slots = this.#slots.filter((s) => s.ready && s.worker !== undefined)
    const answers = await Promise.all(
      slots.map(async (slot) => {
        const worker = slot.worker!
        const metrics = (await this.#ask(worker, 'metrics?')) as RegistryJson | undefined
        if (metrics !== undefined && slot.worker === worker) slot.lastMetrics = metrics
        return { slot, worker, metrics: metrics ?? slot.lastMetrics }
      }),
    )
    const parts = this.#retired
    const count = parts.length
    if (count > 1) {
      const folded = await AggregatorRegistry.aggregate(parts.slice(0, count)).getMetricsAsJSON()
      // A worker that exited meanwhile pushed its part after these; a concurrent scrape may have folded first.
      if (this.#retired === parts) this.#retired = [folded, ...parts.slice(count)]
    }
    // Judged in the step that reads `#retired`: a worker that answered, then exited while the others
    // were awaited, is in `#retired` now with that very answer (#onExit), and counts there only.
    const live: RegistryJson[] = []
    for (const { slot, worker, metrics } of answers) if (slot.worker === worker && metrics !== undefined) live.push(metrics)
    return [...live, ...this.#retired]
  }

  /** The outcome of a reload a booting worker is asked for once ready (nothing after `RELOAD_ASK_MS`). */
  #reloadAfterBoot(slot: Slot): Promise<ReloadAnswer | undefined> {
    slot.reloadPending = true
    return new Promise((resolve) => {
      const timer = setTimeout(() => settle(undefined), this.#reloadAskMs)
      const settle = (answer: ReloadAnswer | undefined) => {
        clearTimeout(timer)
        resolve(answer)
      }
      slot.reloadWaiters.push(settle)
    })
  }

  #settleReloadWaiters(slot: Slot, answer: ReloadAnswer | undefined): void {
    for (const settle of slot.reloadWaiters.splice(0)) settle(answer)
  }

  /** Asks one worker to reload; its answer (noted as it arrives, `#noteReload`) also carries the drain deadline it now has. */
  async #askReload(worker: Worker): Promise<ReloadAnswer | undefined> {
    return (await this.#ask(worker, 'reload?', this.#reloadAskMs)) as ReloadAnswer | undefined
  }

  /** One worker's answer to `kind`, or undefined if it does not answer within `timeoutMs`. */
  #ask(worker: Worker, kind: (ReadinessQuery | MetricsQuery | ReloadQuery | LivenessQuery)['ecluse'], timeoutMs = READINESS_ASK_MS): Promise<unknown> {
    const id = this.#nextQueryId++
    return new Promise((resolve) => {
      const timer = setTimeout(() => done(undefined), timeoutMs)
      const done = (answer: unknown) => {
        clearTimeout(timer)
        this.#pending.delete(id)
        resolve(answer)
      }
      this.#pending.set(id, { workerId: worker.id, done })
      const query: ReadinessQuery | MetricsQuery | ReloadQuery | LivenessQuery = { ecluse: kind, id }
      if (!worker.isConnected()) return done(undefined)
      worker.send(query, (err: Error | null) => {
        if (err) done(undefined)
      })
    })
  }
}

// ---------------------------------------------------------------------------------------------
// Worker

/**
 * Gauges whose workers' values must not be summed (prom-client's default) nor averaged: every worker
 * reports the same build and certificates, and readiness and the event loop's lag are judged by the
 * worst worker (or the primary, whose lag is in the scrape too).
 */
const PROCESS_AGGREGATORS: Readonly<Record<string, 'first' | 'min' | 'max'>> = {
  ecluse_build_info: 'first',
  // The soonest expiry is the one to alert on (workers that run different files make the pod not
  // ready: `workers_diverged`).
  ecluse_certificate_expiry_timestamp_seconds: 'min',
  // An upstream is ready for the process only if every worker reaches it.
  ecluse_upstream_ready: 'min',
  // Each process has its own limit of file descriptors: the tightest, not their sum.
  ecluse_process_max_fds: 'min',
  // prom-client averages the event loop's lag across workers, which would dilute one saturated
  // worker N-fold under the alert on its p99: the worst worker is the one to see.
  ecluse_nodejs_eventloop_lag_seconds: 'max',
  ecluse_nodejs_eventloop_lag_mean_seconds: 'max',
  ecluse_nodejs_eventloop_lag_stddev_seconds: 'max',
  ecluse_nodejs_eventloop_lag_p50_seconds: 'max',
  ecluse_nodejs_eventloop_lag_p90_seconds: 'max',
  ecluse_nodejs_eventloop_lag_p99_seconds: 'max',
}

/** Sets {@link PROCESS_AGGREGATORS} on the families of `registry` that have one. */
function setAggregators(registry: Registry): void {
  for (const [name, aggregator] of Object.entries(PROCESS_AGGREGATORS)) {
    const metric = registry.getSingleMetric(name) as { aggregator?: string } | undefined
    if (metric !== undefined) metric.aggregator = aggregator
  }
}

async function runWorker(configPath: string, signals: BootSignals): Promise<void> {
  // `signals` holds, from the command's first moment, a SIGHUP relayed while this worker boots (the
  // primary's file watcher, an operator), which would otherwise take SIGHUP's default action and
  // kill it, and the primary's SIGTERM to a worker still booting (a stop, a restart after a crash),
  // which would make it exit by signal, an unclean stop. Both wait for the gateway to start.
  let gateway: Gateway
  try {
    gateway = await Gateway.start(configPath, { logBindings: { worker: cluster.worker?.id }, adminListener: false })
  } catch (err) {
    signals.failed()
    throw err
  }
  const log = gateway.log

  // Answer the primary's metrics requests with this gateway's own registry.
  const registry = gateway.metrics.registry
  setAggregators(registry)
  const send = (answer: ReadinessAnswer | MetricsAnswer | ReloadAnswer | DrainMessage | LivenessAnswer) => {
    if (process.connected) process.send?.(answer)
  }
  process.on('message', (msg: unknown) => {
    if (typeof msg !== 'object' || msg === null) return
    const { ecluse, id } = msg as Partial<ReadinessQuery | MetricsQuery | ReloadQuery | LivenessQuery>
    if (typeof id !== 'number') return
    if (ecluse === 'alive?') send({ ecluse: 'alive', id })
    else if (ecluse === 'readiness?') void gateway.readiness().then((readiness) => send({ ecluse: 'readiness', id, readiness }))
    else if (ecluse === 'metrics?') void registry.getMetricsAsJSON().then((metrics) => send({ ecluse: 'metrics', id, metrics }))
    else if (ecluse === 'reload?') {
      // A draining worker reloads nothing, and that is no failure of the files to retry.
      if (stopping) send({ ecluse: 'reloaded', id, ok: null, drainTimeoutMs: gateway.drainTimeoutMs, configDigest: gateway.configDigest, bootDigest: gateway.bootDigest })
      else void gateway.reload().then(({ ok }) => send({ ecluse: 'reloaded', id, ok, drainTimeoutMs: gateway.drainTimeoutMs, configDigest: gateway.configDigest, bootDigest: gateway.bootDigest }))
    }
  })

  let stopping = false
  const stop = (reason: string) => {
    // Idempotent: a group signal (Ctrl-C) arrives both directly and relayed by the primary.
    if (stopping) return
    stopping = true
    log.info({ reason }, 'shutdown requested')
    gateway.shutdown().then(
      () => exitAfterLog(0),
      (err: unknown) => {
        log.error({ err }, 'shutdown failed')
        exitAfterLog(1)
      },
    )
  }
  // A SIGHUP sent to this worker directly: its new drain deadline is all the primary needs.
  const reloadOnSignal = () => {
    if (stopping) return
    void gateway.reload().then(() => send({ ecluse: 'drain', drainTimeoutMs: gateway.drainTimeoutMs, configDigest: gateway.configDigest, bootDigest: gateway.bootDigest }))
  }
  signals.started({ reload: reloadOnSignal, stop, ignored: (signal, closed) => logIgnoredSignal(log, signal, closed) })
  // The primary went away (crash or SIGKILL): drain and exit rather than serve unsupervised. Node's
  // own worker code exits at once (code 0) on a disconnect it did not ask for, before this listener
  // could drain, dropping every request in flight (lib/internal/cluster/child.js): marked as
  // expected, the disconnect leaves the exit to `stop`. Nothing else reads the mark in the worker.
  cluster.worker!.exitedAfterDisconnect = true
  process.on('disconnect', () => stop('primary_gone'))

  // A stop held during boot is draining already: such a worker is not ready to serve.
  if (stopping) return
  const ready: ReadyMessage = { ecluse: 'ready', sponsorPort: gateway.sponsorPort, drainTimeoutMs: gateway.drainTimeoutMs, configDigest: gateway.configDigest, bootDigest: gateway.bootDigest }
  process.send?.(ready)
}
