/**
 * `reload.watchIntervalMs`: the configuration file and every file it names (certificates, keys, CA
 * bundles, key sets) are checked this often, and a change reloads the gateway as `SIGHUP` does.
 * Kubernetes updates a mounted Secret or ConfigMap by swapping a symlink some time after the object
 * changed, and cert-manager renews certificates on its own schedule: nobody is there to send the
 * signal at the right moment.
 *
 * A check reads the files and compares a SHA-256 of their contents, not their times (a symlink swap
 * keeps the target's mtime; a copy with `cp -p` keeps it too). The list of files comes from the
 * configuration file as it reads now, so a key set added by a change is watched from then on. A
 * change that fails to load is tried again with a growing delay (twice the interval, then four
 * times, … up to ten minutes) while the files stay as they are: a failure can go away by itself (a
 * renewed certificate not valid yet on a skewed clock), and retrying at every check would fill the
 * log. Files that are what the gateway runs already (a SIGHUP, or a reload that read them after a
 * second edit, applied them first) are no change: comparing with its own last read only, the watcher
 * would reload them once more.
 *
 * A new change is reloaded only when the next check finds the files as this one did: a check that
 * lands while a tool writes a file in place (`cat >`, `scp`, an editor that does not rename) reads a
 * prefix that may well parse (a route cut before its `transforms` is a route without them), and a
 * load of it would hold still for the few milliseconds it takes (src/config/load-settled.ts). A
 * writer that pauses longer than the interval is still read as it stood: files are to be replaced
 * whole (a rename, a Kubernetes symlink swap).
 *
 * The same digest ({@link filesDigest}) says what a gateway runs: taken before and after it loads
 * the files (src/config/load-settled.ts), it is the watcher's starting point and what it compares
 * with what runs; with `--workers` it is each worker's report to the primary, which compares them
 * (src/cluster.ts).
 */
import { createHash } from 'node:crypto'
import type { Logger } from 'pino'
import { readBoundedFile } from '../read-bounded-file.js'
import { loadConfigFile, MAX_CONFIG_BYTES } from './load.js'
import type { Config } from './schema.js'

/** The largest file the gateway reads (configuration, PEM and key set files share this bound). */
const MAX_WATCHED_BYTES = MAX_CONFIG_BYTES
/** After this many checks in a row found the files changed again, the watcher says so (once a streak). */
const UNSETTLED_CHECKS_SAID = 3
/** The longest wait between two tries of a change that is not running after its reload. */
const MAX_RETRY_DELAY_MS = 10 * 60_000

/** What the action on a change reports: a reload's result, or nothing (a relayed reload some workers did not answer). */
export type ChangeOutcome = { readonly ok: boolean } | undefined

/** A file a configuration names: the setting that names it, and whether it holds a private key. */
export interface NamedFile {
  readonly key: string
  readonly file: string
  readonly privateKey: boolean
}

/** Every file a configuration names, with its setting, in a stable order. */
export function namedFilesOf(config: Config): NamedFile[] {
  const t = config.sponsor.tls
  const files: NamedFile[] = [
    { key: 'sponsor.tls.cert', file: t.cert, privateKey: false },
    { key: 'sponsor.tls.key', file: t.key, privateKey: true },
    { key: 'sponsor.tls.clientCa', file: t.clientCa, privateKey: false },
  ]
  for (const name of Object.keys(config.upstreams).sort()) {
    const u = config.upstreams[name]!.tls
    files.push(
      { key: `upstreams.${name}.tls.ca`, file: u.ca, privateKey: false },
      { key: `upstreams.${name}.tls.cert`, file: u.cert, privateKey: false },
      { key: `upstreams.${name}.tls.key`, file: u.key, privateKey: true },
    )
  }
  for (const name of Object.keys(config.keys).sort()) {
    const set = config.keys[name]!
    files.push({ key: `keys.${name}.file`, file: set.file, privateKey: set.private })
  }
  return files
}

/** Every file a configuration names, in a stable order. */
export function filesOf(config: Config): string[] {
  return namedFilesOf(config).map((f) => f.file)
}

/**
 * A digest of the configuration file and every file it names, in one SHA-256 (`sha256:<hex>`): no
 * file's content can be read back from it. A file that cannot be read counts as its error.
 */
export async function filesDigest(configPath: string, files: readonly string[]): Promise<string> {
  const hash = createHash('sha256')
  for (const file of [configPath, ...files]) {
    hash.update(file).update('\0')
    try {
      hash.update(await readBoundedFile(file, MAX_WATCHED_BYTES))
    } catch (err) {
      // Why it could not be read (an errno code, or the bounded reader's reason): a file that
      // turns from missing into a FIFO is a change too.
      const e = err as { code?: unknown; reason?: unknown; message?: unknown }
      hash.update(`unreadable: ${String(e.code ?? e.reason ?? e.message)}`)
    }
    hash.update('\0')
  }
  return `sha256:${hash.digest('hex')}`
}

/**
 * {@link filesDigest} of the files the configuration names as it reads now; a configuration that
 * does not load (caught mid-write) counts as its own bytes alone, which no loadable state matches.
 */
export async function configFilesDigest(configPath: string): Promise<string> {
  let files: string[] = []
  try {
    files = filesOf(await loadConfigFile(configPath))
  } catch {
    // its bytes alone
  }
  return filesDigest(configPath, files)
}

export class ConfigWatcher {
  readonly #configPath: string
  readonly #intervalMs: number
  readonly #running: () => string | undefined
  #onChange: () => ChangeOutcome | PromiseLike<ChangeOutcome> = () => undefined
  #log: Logger | undefined
  #files: string[]
  /** The files as the last check read them (at first, as the gateway loaded them). */
  #fingerprint: string
  #timer: NodeJS.Timeout | undefined
  #checking = false
  #stopped = false
  /** A change seen by one check only: reloaded if the next one finds the files the same. */
  #pending: string | undefined
  /** Checks in a row that found the files changed again since the last: said once it reaches {@link UNSETTLED_CHECKS_SAID}. */
  #unsettled = 0
  /** A change that is not running after its reload: when to try it again, and the delay after that. */
  #retryAt: number | undefined
  #retryDelayMs = 0

  /**
   * @param files the files the configuration names (its own path aside)
   * @param loaded the digest of the files as the gateway loaded them at boot (`Gateway.configDigest`)
   * @param running the digest of the files the gateway runs now, or nothing when that is not one
   *   (with `--workers`, while the workers do not all run the same)
   */
  constructor(configPath: string, files: string[], intervalMs: number, loaded: string, running: () => string | undefined) {
    this.#configPath = configPath
    this.#files = files
    this.#intervalMs = intervalMs
    this.#fingerprint = loaded
    this.#running = running
  }

  get intervalMs(): number {
    return this.#intervalMs
  }

  /**
   * Checks every interval from now on.
   *
   * @param onChange called once per detected change (the gateway's reload, or the cluster's relay);
   *   a reload that reports `ok: false` is tried again later
   */
  start(onChange: () => ChangeOutcome | PromiseLike<ChangeOutcome>, log: Logger): void {
    this.#onChange = onChange
    this.#log = log
    this.#timer = setInterval(() => void this.check(), this.#intervalMs)
    // A pending check never keeps a draining process alive.
    this.#timer.unref()
  }

  /** No check starts, and none already running acts, once stopped (a draining gateway reloads nothing). */
  stop(): void {
    this.#stopped = true
    clearInterval(this.#timer)
    this.#timer = undefined
  }

  /**
   * One check (the timer's; exported for tests): reload if the files changed since the last reload
   * and are as the previous check found them. True when it reloaded.
   */
  async check(): Promise<boolean> {
    if (this.#checking) return false
    this.#checking = true
    try {
      // The configuration may name other files now: read it for its list (a broken one keeps the
      // previous list; its own bytes changed, so the reload runs and reports why).
      try {
        this.#files = filesOf(await loadConfigFile(this.#configPath))
      } catch {
        // keep the previous list
      }
      const now = await this.#read()
      if (this.#stopped) return false
      if (now === this.#running()) {
        // What runs is on disk: applied by a SIGHUP, or by a reload that read a later edit than its check.
        this.#fingerprint = now
        this.#pending = undefined
        this.#unsettled = 0
        this.#retryAt = undefined
        return false
      }
      if (now === this.#fingerprint) {
        this.#pending = undefined
        this.#unsettled = 0
        if (this.#retryAt === undefined || Date.now() < this.#retryAt) return false
        this.#log?.info({ retryDelayMs: this.#retryDelayMs }, 'trying again a change that is not running yet')
      } else if (now !== this.#pending) {
        // Perhaps a file caught while it is written: the next check says whether it holds still.
        if (this.#pending !== undefined && ++this.#unsettled === UNSETTLED_CHECKS_SAID) {
          // Something rewrites a file at every interval: no change is applied until it stops.
          this.#log?.warn({ checks: this.#unsettled + 1, files: this.#files.length + 1 }, 'configuration files keep changing between checks; not reloaded until two checks in a row find them the same')
        }
        this.#pending = now
        return false
      } else {
        this.#pending = undefined
        this.#unsettled = 0
        this.#fingerprint = now
        this.#retryDelayMs = 0
        this.#log?.info({ files: this.#files.length + 1 }, 'configuration files changed; reloading')
      }
      const outcome = await this.#onChange()
      // Not running after its reload: it failed to load (in a worker, at least), a worker did not
      // answer, or the files changed again under the reload and came back (an edit undone). Tried
      // again later, unless a check finds the files running by then.
      if (outcome?.ok !== true || this.#running() !== now) {
        this.#retryDelayMs = Math.min(Math.max(2 * this.#retryDelayMs, 2 * this.#intervalMs), MAX_RETRY_DELAY_MS)
        this.#retryAt = Date.now() + this.#retryDelayMs
      } else {
        this.#retryAt = undefined
      }
      return true
    } finally {
      this.#checking = false
    }
  }

  #read(): Promise<string> {
    return filesDigest(this.#configPath, this.#files)
  }
}
