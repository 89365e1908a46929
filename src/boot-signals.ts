/**
 * The signals of `ecluse serve` from its first moment, before the gateway's modules are even loaded
 * (this module imports nothing, so the CLI can make it first thing).
 */

/**
 * The signals of a serving process, from its first moment. SIGHUP's default action kills the
 * process, and SIGTERM's would skip the drain: a reload script run across pods, or an orchestrator
 * stopping one, would kill a gateway that is still booting. Until {@link BootSignals.started}, a
 * SIGHUP is remembered (one reload once started: the files may have changed after boot read them)
 * and a SIGTERM or SIGINT too (a stop once started, with nothing to drain yet). Afterwards every
 * signal goes to the running process's handlers, a repeated one included: they are idempotent, so
 * a second SIGTERM never cuts a drain short.
 *
 * SIGUSR1 is caught from the first moment to the last and does nothing but a log line: Node's
 * default for it opens the inspector on 127.0.0.1:9229, where anything sharing the pod's loopback
 * could attach and read every key in the process. A gateway that must be debugged is started with
 * `--inspect` on purpose.
 */
export class BootSignals {
  #hup = false
  #stop: NodeJS.Signals | undefined
  readonly #onHup = () => {
    this.#hup = true
  }
  readonly #onStop = (signal: NodeJS.Signals) => {
    this.#stop ??= signal
  }
  /** Who hears of an ignored SIGUSR1: no one during the boot (no logger yet), then the process. */
  #onIgnored: ((signal: NodeJS.Signals) => void) | undefined

  constructor() {
    process.on('SIGHUP', this.#onHup)
    process.on('SIGTERM', this.#onStop)
    process.on('SIGINT', this.#onStop)
    // A listener replaces Node's own handler, which would start the inspector.
    process.on('SIGUSR1', (signal: NodeJS.Signals) => this.#onIgnored?.(signal))
  }

  /** Hands the signals to the started process, then replays what arrived during its boot. */
  started(handlers: { reload(): void; stop(signal: NodeJS.Signals): void; ignored(signal: NodeJS.Signals): void }): void {
    this.failed()
    this.#onIgnored = (signal) => handlers.ignored(signal)
    process.on('SIGHUP', () => handlers.reload())
    process.on('SIGTERM', () => handlers.stop('SIGTERM'))
    process.on('SIGINT', () => handlers.stop('SIGINT'))
    if (this.#stop !== undefined) handlers.stop(this.#stop)
    else if (this.#hup) handlers.reload()
  }

  /** The boot failed: the signals' default actions again (the caller exits with the error). */
  failed(): void {
    process.off('SIGHUP', this.#onHup)
    process.off('SIGTERM', this.#onStop)
    process.off('SIGINT', this.#onStop)
  }
}
