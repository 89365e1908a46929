/**
 * Child processes of the benchmark. Everything measured runs in its own process, and so does the
 * load: the runner only starts, samples and stops them. Each child writes JSON lines on stdout; the
 * runner waits for the line it needs and drains the rest (an access log must not fill the pipe).
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process'
import { closeSync, constants, existsSync, mkdtempSync, openSync, realpathSync, rmSync } from 'node:fs'
import { Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { compiled } from './build.js'
import { ROOT } from './root.js'

export { ROOT }

/**
 * Children still running. However the runner ends (an error, a signal it turns into an exit), none
 * outlives it: an orphaned upstream or load generator would keep loading the machine's two cores,
 * and run from a build directory that the exit removes.
 */
const LIVE = new Set<JsonChild>()
process.once('exit', () => {
  for (const child of LIVE) child.kill('SIGKILL')
})

/** util-linux's `setpriv` (every Debian has it), or undefined. */
const SETPRIV = ['/usr/bin/setpriv', '/bin/setpriv'].find((file) => existsSync(file))

/** A started child that speaks JSON lines on stdout. */
export class JsonChild {
  readonly name: string
  readonly process: ChildProcess
  readonly #waiters: Array<{ test: (line: Record<string, unknown>) => boolean; resolve: (line: Record<string, unknown>) => void }> = []
  #buffered = ''
  #stderr = ''
  readonly #exited: Promise<number | null>
  /** Whether every stdout line is kept (load results) or only matched against waiters (logs). */
  readonly #keep: boolean
  readonly lines: Array<Record<string, unknown>> = []

  /**
   * @param args arguments after `node`, e.g. `['<build>/bench/upstream.js', '--pki', …]`
   * @param keep keep every parsed line in `lines` (for short-lived children with little output)
   */
  /** Whether the child leads a process group of its own, signalled as a whole (see `group`). */
  readonly #group: boolean

  /**
   * Where `setpriv` exists, every child gets SIGTERM when the runner dies without a word (SIGKILL),
   * since then no exit handler runs to stop it.
   *
   * @param options.group the child forks processes of its own that do not end with it (nginx's
   *   workers outlive a killed master): it is started as the leader of a process group, and every
   *   signal goes to the whole group.
   */
  constructor(name: string, command: string, args: readonly string[], options: { keep?: boolean; env?: NodeJS.ProcessEnv; group?: boolean } = {}) {
    this.name = name
    this.#keep = options.keep ?? false
    this.#group = options.group ?? false
    const [file, argv] = SETPRIV === undefined ? [command, args] : [SETPRIV, ['--pdeathsig', 'TERM', command, ...args]]
    const stdout = stdoutPipe()
    try {
      this.process = spawn(file, argv, {
        cwd: ROOT,
        stdio: ['ignore', stdout.writer, 'pipe'],
        env: options.env ?? process.env,
        detached: this.#group,
      })
    } finally {
      closeSync(stdout.writer)
    }
    stdout.reader.setEncoding('utf8').on('data', (chunk: string) => this.#onData(chunk))
    this.process.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
      // Bounded: only the tail is kept, for the error message.
      this.#stderr = (this.#stderr + chunk).slice(-4096)
    })
    this.#exited = new Promise((resolve) => this.process.once('exit', (code) => resolve(code)))
    LIVE.add(this)
    this.process.once('exit', () => {
      LIVE.delete(this)
      // A leader gone first (nginx's master crashed, or was killed) leaves its workers behind.
      if (this.#group) this.kill('SIGKILL')
    })
  }

  /**
   * A node child running the compiled form of a TypeScript file of the repository (see
   * `benchBuild`: no child runs through tsx), with `nodeArgs` before it.
   */
  static node(
    name: string,
    file: string,
    args: readonly string[],
    options: { keep?: boolean; nodeArgs?: readonly string[]; env?: NodeJS.ProcessEnv } = {},
  ): JsonChild {
    return new JsonChild(name, process.execPath, [...(options.nodeArgs ?? []), compiled(file), ...args], options)
  }

  get pid(): number {
    return this.process.pid!
  }

  get stderr(): string {
    return this.#stderr
  }

  /** Resolves with the first line (past or future) that `test` accepts; rejects if the child exits first. */
  waitFor(test: (line: Record<string, unknown>) => boolean, timeoutMs = 60_000): Promise<Record<string, unknown>> {
    const seen = this.lines.find(test)
    if (seen !== undefined) return Promise.resolve(seen)
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${this.name}: no expected line within ${timeoutMs} ms; stderr: ${this.#stderr}`)), timeoutMs)
      const waiter = {
        test,
        resolve: (line: Record<string, unknown>) => {
          clearTimeout(timer)
          resolve(line)
        },
      }
      this.#waiters.push(waiter)
      void this.#exited.then((code) => {
        clearTimeout(timer)
        reject(new Error(`${this.name} exited (${code}) before the expected line; stderr: ${this.#stderr.trim()}`))
      })
    })
  }

  /** SIGTERM, then SIGKILL after `graceMs`; resolves with the exit code. */
  async stop(graceMs = 5_000): Promise<number | null> {
    if (this.process.exitCode !== null || this.process.signalCode !== null) return this.process.exitCode
    this.kill('SIGTERM')
    const timer = setTimeout(() => this.kill('SIGKILL'), graceMs)
    const code = await this.#exited
    clearTimeout(timer)
    return code
  }

  /** Signals the child, or its whole process group if it leads one. */
  kill(signal: NodeJS.Signals): void {
    if (!this.#group) {
      this.process.kill(signal)
      return
    }
    try {
      process.kill(-this.pid, signal)
    } catch {
      // ESRCH: the group has already gone.
    }
  }

  exited(): Promise<number | null> {
    return this.#exited
  }

  #onData(chunk: string): void {
    this.#buffered += chunk
    let nl = this.#buffered.indexOf('\n')
    while (nl >= 0) {
      const text = this.#buffered.slice(0, nl)
      this.#buffered = this.#buffered.slice(nl + 1)
      nl = this.#buffered.indexOf('\n')
      // Only lines someone may want are parsed: an access log at 10k lines/s costs the runner little.
      if (!this.#keep && this.#waiters.length === 0) continue
      let line: Record<string, unknown>
      try {
        line = JSON.parse(text) as Record<string, unknown>
      } catch {
        continue
      }
      if (this.#keep) this.lines.push(line)
      for (let i = 0; i < this.#waiters.length; i++) {
        const w = this.#waiters[i]!
        if (w.test(line)) {
          this.#waiters.splice(i--, 1)
          w.resolve(line)
        }
      }
    }
    // A child that prints a very long line without a newline must not grow this without bound.
    if (this.#buffered.length > 1024 * 1024) this.#buffered = ''
  }
}

/**
 * A child's stdout as a container runtime gives it: a pipe, where Node's `stdio: 'pipe'` gives a
 * socketpair. Écluse writes its log to a pipe through a non-blocking description of its own and to
 * anything else through sonic-boom (`src/observability/stdout-log.ts`), so the bench gives it the
 * image's case. A named pipe, since Node makes no anonymous one; its name is removed once both
 * ends are open. The runner reads it with epoll (a `net.Socket` on the read end).
 */
function stdoutPipe(): { writer: number; reader: Socket } {
  const dir = mkdtempSync(join(tmpdir(), 'ecluse-bench-stdout-'))
  try {
    const path = join(dir, 'stdout')
    execFileSync('mkfifo', [path])
    // The read end first, non-blocking, so that opening the write end does not wait for a reader.
    const readFd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK)
    const writer = openSync(path, constants.O_WRONLY)
    return { writer, reader: new Socket({ fd: readFd, readable: true, writable: false }) }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

/** True when the module at `url` is the program being run (not an import of it). */
export function isMain(url: string): boolean {
  const script = process.argv[1]
  if (script === undefined) return false
  try {
    return realpathSync(script) === realpathSync(fileURLToPath(url))
  } catch {
    return false
  }
}
