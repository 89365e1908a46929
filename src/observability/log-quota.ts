/**
 * A quota of log lines per second for events a stranger can cause at will: a refused handshake, a
 * request the HTTP parser refuses. Each is counted in the metrics whatever the quota; the log keeps
 * the first lines of each second and one line that says how many more there were, so a scanner
 * cannot fill the bounded log (whose drops would take the access lines of real clients with them)
 * or the log pipeline behind it.
 */
import type { Logger } from 'pino'

/** What a quota's summary line says, and its `kind` field. */
export const NOT_LOGGED_MSG = 'lines not logged: over their quota for one second (every event is counted in the metrics)'

export class LogQuota {
  readonly #log: Logger
  readonly #kind: string
  readonly #perSecond: number
  readonly #now: () => number
  #windowStart = Number.NEGATIVE_INFINITY
  #used = 0
  #notLogged = 0
  #summary: NodeJS.Timeout | undefined

  /**
   * @param kind names the lines in the summary (`sponsor client certificate refused`).
   * @param perSecond lines logged in one second; the rest are summarised when the second ends.
   * @param now the clock, in milliseconds (tests).
   */
  constructor(log: Logger, kind: string, perSecond: number, now: () => number = () => performance.now()) {
    this.#log = log
    this.#kind = kind
    this.#perSecond = perSecond
    this.#now = now
  }

  /** True if one more line may be written now; else it is counted for the summary. */
  take(): boolean {
    const now = this.#now()
    if (now - this.#windowStart >= 1000) {
      this.#summarise()
      this.#windowStart = now
      this.#used = 0
    }
    if (this.#used < this.#perSecond) {
      this.#used++
      return true
    }
    if (this.#notLogged++ === 0) {
      // Said when the second ends even if nothing follows it; unref'd: it never holds the process.
      this.#summary = setTimeout(() => this.#summarise(), Math.max(0, this.#windowStart + 1000 - now))
      this.#summary.unref()
    }
    return false
  }

  /** Writes the summary of lines not logged, if any (at shutdown too: `flush`). */
  flush(): void {
    this.#summarise()
  }

  #summarise(): void {
    clearTimeout(this.#summary)
    this.#summary = undefined
    if (this.#notLogged === 0) return
    this.#log.warn({ kind: this.#kind, notLogged: this.#notLogged, perSecond: this.#perSecond }, NOT_LOGGED_MSG)
    this.#notLogged = 0
  }
}
