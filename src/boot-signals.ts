/**
 * The signals of `ecluse serve` from its first moment, before the gateway's modules are even loaded
 * (this module imports nothing of ours, so the CLI can make it first thing).
 */
import { createRequire } from 'node:module'

/** Whether the inspector was asked for at launch (`--inspect`, `-brk`, `-wait`; on the command line or in `NODE_OPTIONS`). */
function inspectorAskedFor(): boolean {
  const asked = (arg: string) => /^--inspect(?:-brk|-wait)?(?:=|$)/.test(arg)
  return process.execArgv.some(asked) || (process.env['NODE_OPTIONS'] ?? '').split(/\s+/).some(asked)
}

/**
 * Closes the inspector if a SIGUSR1 opened it before this process could catch the signal (Node
 * handles it from its own start, ours from the CLI's first line); true if it did. One asked for at
 * launch is left open.
 */
function closeInspectorNotAskedFor(): boolean {
  if (inspectorAskedFor()) return false
  let inspector: typeof import('node:inspector')
  try {
    inspector = createRequire(import.meta.url)('node:inspector') as typeof import('node:inspector')
  } catch {
    return false // a Node built without the inspector
  }
  if (inspector.url() === undefined) return false
  inspector.close()
  return true
}

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
 * could attach and read every key in the process. One that came before this class was made (Node
 * loads the CLI's modules first) found Node's handler: that inspector is closed, here and once the
 * process has started. A gateway that must be debugged is started with `--inspect` on purpose.
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
  /** An inspector opened by a SIGUSR1 before the constructor ran, closed by it. */
  readonly #closedInspector: boolean

  constructor() {
    process.on('SIGHUP', this.#onHup)
    process.on('SIGTERM', this.#onStop)
    process.on('SIGINT', this.#onStop)
    // A listener replaces Node's own handler, which would start the inspector.
    process.on('SIGUSR1', (signal: NodeJS.Signals) => this.#onIgnored?.(signal))
    this.#closedInspector = closeInspectorNotAskedFor()
  }

  /** Hands the signals to the started process, then replays what arrived during its boot. */
  started(handlers: { reload(): void; stop(signal: NodeJS.Signals): void; ignored(signal: NodeJS.Signals, inspectorClosed?: boolean): void }): void {
    this.failed()
    this.#onIgnored = (signal) => handlers.ignored(signal)
    // Again now: a start the signal had asked for just before the constructor ran completes on the
    // main thread at its next chance, which may have come after the constructor's check.
    if (closeInspectorNotAskedFor() || this.#closedInspector) handlers.ignored('SIGUSR1', true)
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
