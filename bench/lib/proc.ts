/**
 * What the kernel says about a measured process and its children (Linux /proc): CPU time from
 * `/proc/<pid>/stat` (utime + stime) and peak resident memory from `/proc/<pid>/status` (VmHWM).
 * A subject may be a tree (an `ecluse serve --workers N` primary and its workers, an nginx master
 * and its worker): figures are summed over the tree. A summed VmHWM is an upper bound of the tree's
 * true peak (the peaks of two processes need not coincide).
 */
import { execFileSync } from 'node:child_process'
import { readdirSync, readFileSync, writeFileSync } from 'node:fs'

let ticks: number | undefined

/** Clock ticks per second of utime/stime (`getconf CLK_TCK`, 100 on every Linux we know). */
export function clockTicks(): number {
  if (ticks === undefined) {
    try {
      ticks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100
    } catch {
      ticks = 100
    }
  }
  return ticks
}

/** Fields after the command name, which may itself contain spaces and parentheses. */
function statFields(pid: number): string[] | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  } catch {
    return undefined
  }
}

/** `pid` and every live descendant. */
export function processTree(pid: number): number[] {
  const children = new Map<number, number[]>()
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    const fields = statFields(Number(entry))
    if (fields === undefined) continue
    const ppid = Number(fields[1])
    const list = children.get(ppid)
    if (list === undefined) children.set(ppid, [Number(entry)])
    else list.push(Number(entry))
  }
  const out: number[] = []
  const stack = [pid]
  while (stack.length > 0) {
    const p = stack.pop()!
    out.push(p)
    for (const c of children.get(p) ?? []) stack.push(c)
  }
  return out
}

/** User + system CPU seconds consumed so far by these processes (exited ones count as 0). */
export function cpuSeconds(pids: readonly number[]): number {
  let total = 0
  for (const pid of pids) {
    const fields = statFields(pid)
    if (fields === undefined) continue
    // stat(5): utime is field 14 and stime field 15; `fields` starts at field 3 (state).
    total += Number(fields[11]) + Number(fields[12])
  }
  return total / clockTicks()
}

/** One `/proc/<pid>/status` field in bytes (the kernel reports kB), or 0 if the process is gone. */
function statusBytes(pid: number, field: 'VmHWM' | 'VmRSS'): number {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8')
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)
    return m === null ? 0 : Number(m[1]) * 1024
  } catch {
    return 0
  }
}

/** Summed peak resident set size (VmHWM) of these processes, in bytes. */
export function peakRssBytes(pids: readonly number[]): number {
  return pids.reduce((sum, pid) => sum + statusBytes(pid, 'VmHWM'), 0)
}

/** Summed current resident set size (VmRSS), in bytes. */
export function rssBytes(pids: readonly number[]): number {
  return pids.reduce((sum, pid) => sum + statusBytes(pid, 'VmRSS'), 0)
}

/**
 * Reset the peak RSS of these processes to their current RSS (`echo 5 > /proc/<pid>/clear_refs`,
 * Linux ≥ 4.0), so that a peak measured afterwards belongs to the load, not to the boot. Returns
 * false if the kernel refused (then VmHWM is the peak since the process started).
 */
export function resetPeakRss(pids: readonly number[]): boolean {
  let ok = true
  for (const pid of pids) {
    try {
      writeFileSync(`/proc/${pid}/clear_refs`, '5')
    } catch {
      ok = false
    }
  }
  return ok
}

/** A CPU-time probe over a window: `start()` then `stop()` gives seconds of CPU used in between. */
export class CpuWindow {
  readonly #root: number
  #pids: number[] = []
  #startCpu = 0
  #startAt = 0

  constructor(rootPid: number) {
    this.#root = rootPid
  }

  start(): void {
    this.#pids = processTree(this.#root)
    this.#startCpu = cpuSeconds(this.#pids)
    this.#startAt = performance.now()
  }

  /** CPU seconds used by the tree since `start()`, and the wall-clock seconds of the window. */
  stop(): { cpuSeconds: number; wallSeconds: number; pids: number[] } {
    const wallSeconds = (performance.now() - this.#startAt) / 1000
    // Processes that appeared during the window (a restarted worker) are not counted; those that
    // exited lose their time. Neither happens in a healthy run.
    return { cpuSeconds: cpuSeconds(this.#pids) - this.#startCpu, wallSeconds, pids: this.#pids }
  }
}
