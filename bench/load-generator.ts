/**
 * The load, always in its own process (never inside the process being measured). One JSON spec in,
 * JSON lines out: `{"event":"measuring"}` when the warm-up is over (the runner starts its /proc
 * sampling then), and `{"event":"result",…}` at the end.
 *
 *   node --import tsx bench/load-generator.ts '<spec JSON>'
 *
 * Modes:
 * - `keepalive`: autocannon over mTLS keep-alive connections (`connections`, `duration`). Latency is
 *   taken from autocannon's per-response event at microsecond resolution (its own histogram keeps
 *   whole milliseconds, too coarse for a 1 ms p99 target).
 * - `handshakes`: a new mTLS connection for every request (full handshake, no session resumption,
 *   `Connection: close`), `connections` loops in parallel. autocannon's `reconnectRate` cannot be
 *   used: it does not count the response that triggers the reconnect.
 * - `uploads`: `count` streamed PUTs of `bytes` each, `concurrency` at a time, each body generated on
 *   the fly and hashed while sent; the upstream answers the SHA-256 it received, compared here.
 *
 * wrk is not used: it cannot present a client certificate, and every scenario is mTLS.
 */
import { createHash } from 'node:crypto'
import { Readable } from 'node:stream'
import tls from 'node:tls'
import autocannon from 'autocannon'
import { Agent, request } from 'undici'

/** What the runner sends. Paths are request targets on the subject. */
export interface LoadSpec {
  readonly mode: 'keepalive' | 'handshakes' | 'uploads'
  readonly host: string
  readonly port: number
  /** PEM text: the client certificate, its key, and the CA that issued the subject's certificate. */
  readonly tls: { readonly ca: string; readonly cert: string; readonly key: string; readonly servername: string }
  readonly connections: number
  readonly durationSeconds: number
  readonly warmupSeconds: number
  readonly method?: string
  /** Request targets cycled through (keepalive, handshakes). */
  readonly paths?: readonly string[]
  readonly headers?: Readonly<Record<string, string>>
  readonly body?: string
  /** uploads: how many, how large, how many at once. */
  readonly count?: number
  readonly bytes?: number
}

/** What the runner gets back. Latencies in milliseconds. */
export interface LoadResult {
  readonly requests: number
  readonly seconds: number
  readonly rps: number
  /** Response bytes per second (keepalive, handshakes); request body bytes per second (uploads). */
  readonly bytesPerSecond: number
  readonly p50: number
  readonly p99: number
  readonly errors: number
  readonly non2xx: number
  /** uploads only: answers whose SHA-256 did not match what was sent. */
  readonly mismatches: number
  /** The load generator's own CPU use, in % of one core: near 100 means the load was the limit. */
  readonly loadCpuPercent: number
}

function emit(line: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(line)}\n`)
}

/** Latency samples in a growable Float64Array (bounded: 8 M samples, then every other one is kept). */
class Samples {
  #data = new Float64Array(1 << 16)
  #n = 0
  #stride = 1
  #tick = 0

  add(ms: number): void {
    if (++this.#tick % this.#stride !== 0) return
    if (this.#n === this.#data.length) {
      if (this.#data.length >= 1 << 23) {
        // Halve: keep every other sample, and sample every other value from now on.
        for (let i = 0; i < this.#n / 2; i++) this.#data[i] = this.#data[i * 2]!
        this.#n = Math.floor(this.#n / 2)
        this.#stride *= 2
      } else {
        const next = new Float64Array(this.#data.length * 2)
        next.set(this.#data)
        this.#data = next
      }
    }
    this.#data[this.#n++] = ms
  }

  percentile(p: number): number {
    if (this.#n === 0) return 0
    const sorted = this.#data.subarray(0, this.#n).sort()
    return sorted[Math.min(this.#n - 1, Math.floor((p / 100) * this.#n))]!
  }
}

function cpuMeter(): () => number {
  const start = process.cpuUsage()
  const at = performance.now()
  return () => {
    const used = process.cpuUsage(start)
    return ((used.user + used.system) / 1000 / (performance.now() - at)) * 100
  }
}

// ---- keepalive: autocannon ------------------------------------------------------------------

function cannon(spec: LoadSpec, seconds: number, samples: Samples | undefined): Promise<autocannon.Result> {
  const requests = (spec.paths ?? ['/']).map((path) => ({ path }))
  const instance = autocannon({
    url: `https://${spec.host}:${spec.port}`,
    connections: spec.connections,
    duration: seconds,
    method: (spec.method ?? 'GET') as autocannon.Request['method'],
    headers: spec.headers as Record<string, string> | undefined,
    body: spec.body,
    requests,
    servername: spec.tls.servername,
    tlsOptions: { ca: spec.tls.ca, cert: spec.tls.cert, key: spec.tls.key },
    timeout: 30,
  })
  if (samples !== undefined) {
    instance.on('response', (_client: unknown, _status: number, _bytes: number, responseTime: number) => samples.add(responseTime))
  }
  return new Promise((resolve, reject) => {
    instance.on('done', resolve)
    instance.on('error', reject)
  })
}

async function keepalive(spec: LoadSpec): Promise<LoadResult> {
  if (spec.warmupSeconds > 0) await cannon(spec, spec.warmupSeconds, undefined)
  emit({ event: 'measuring' })
  const samples = new Samples()
  const cpu = cpuMeter()
  const r = await cannon(spec, spec.durationSeconds, samples)
  const seconds = r.duration
  return {
    requests: r.requests.total,
    seconds,
    rps: r.requests.total / seconds,
    bytesPerSecond: r.throughput.total / seconds,
    p50: samples.percentile(50),
    p99: samples.percentile(99),
    errors: r.errors + r.timeouts,
    non2xx: r.non2xx,
    mismatches: 0,
    loadCpuPercent: cpu(),
  }
}

// ---- handshakes: a new connection per request ------------------------------------------------

function oneShot(spec: LoadSpec, path: string): Promise<{ status: number; bytes: number }> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({
      host: spec.host,
      port: spec.port,
      ca: spec.tls.ca,
      cert: spec.tls.cert,
      key: spec.tls.key,
      servername: spec.tls.servername,
      ALPNProtocols: ['http/1.1'],
    })
    const chunks: Buffer[] = []
    socket.once('secureConnect', () => {
      socket.end(`${spec.method ?? 'GET'} ${path} HTTP/1.1\r\nhost: ${spec.tls.servername}\r\nconnection: close\r\n\r\n`)
    })
    socket.on('data', (chunk: Buffer) => chunks.push(chunk))
    socket.once('error', reject)
    socket.once('close', () => {
      const head = Buffer.concat(chunks)
      const status = Number(head.subarray(9, 12).toString('latin1'))
      if (!Number.isInteger(status) || status === 0) reject(new Error('no HTTP response'))
      else resolve({ status, bytes: head.length })
    })
  })
}

async function handshakeLoops(spec: LoadSpec, seconds: number, samples: Samples | undefined) {
  const paths = spec.paths ?? ['/']
  const deadline = performance.now() + seconds * 1000
  const totals = { requests: 0, bytes: 0, errors: 0, non2xx: 0 }
  let next = 0
  const loop = async () => {
    while (performance.now() < deadline) {
      const started = performance.now()
      try {
        const { status, bytes } = await oneShot(spec, paths[next++ % paths.length]!)
        totals.requests++
        totals.bytes += bytes
        if (status < 200 || status > 299) totals.non2xx++
        samples?.add(performance.now() - started)
      } catch {
        totals.errors++
      }
    }
  }
  const started = performance.now()
  await Promise.all(Array.from({ length: spec.connections }, loop))
  return { ...totals, seconds: (performance.now() - started) / 1000 }
}

async function handshakes(spec: LoadSpec): Promise<LoadResult> {
  if (spec.warmupSeconds > 0) await handshakeLoops(spec, spec.warmupSeconds, undefined)
  emit({ event: 'measuring' })
  const samples = new Samples()
  const cpu = cpuMeter()
  const t = await handshakeLoops(spec, spec.durationSeconds, samples)
  return {
    requests: t.requests,
    seconds: t.seconds,
    rps: t.requests / t.seconds,
    bytesPerSecond: t.bytes / t.seconds,
    p50: samples.percentile(50),
    p99: samples.percentile(99),
    errors: t.errors,
    non2xx: t.non2xx,
    mismatches: 0,
    loadCpuPercent: cpu(),
  }
}

// ---- uploads: streamed bodies with checksums -------------------------------------------------

const CHUNK = 64 * 1024

/** A deterministic body for upload `id`, hashed as it is produced; every chunk differs. */
function uploadBody(id: number, total: number, hash: ReturnType<typeof createHash>): Readable {
  const pattern = Buffer.alloc(CHUNK)
  for (let i = 0; i < CHUNK; i++) pattern[i] = (i * 131 + id * 7) & 0xff
  let sent = 0
  return new Readable({
    highWaterMark: CHUNK,
    read() {
      if (sent >= total) return void this.push(null)
      const size = Math.min(CHUNK, total - sent)
      const chunk = Buffer.from(pattern.subarray(0, size))
      if (size >= 8) {
        chunk.writeUInt32BE(id, 0)
        chunk.writeUInt32BE(sent / CHUNK, 4)
      }
      hash.update(chunk)
      sent += size
      this.push(chunk)
    },
  })
}

async function uploads(spec: LoadSpec): Promise<LoadResult> {
  const count = spec.count ?? 1
  const bytes = spec.bytes ?? CHUNK
  const agent = new Agent({
    connections: spec.connections,
    pipelining: 1,
    bodyTimeout: 0,
    headersTimeout: 0,
    connect: { ca: spec.tls.ca, cert: spec.tls.cert, key: spec.tls.key, servername: spec.tls.servername },
  })
  const origin = `https://${spec.host}:${spec.port}`
  const samples = new Samples()
  const totals = { requests: 0, errors: 0, non2xx: 0, mismatches: 0 }
  const one = async (id: number) => {
    const hash = createHash('sha256')
    const started = performance.now()
    try {
      const res = await request(`${origin}/v1/uploads/${id}`, {
        method: 'PUT',
        dispatcher: agent,
        headers: { 'content-type': 'application/octet-stream', 'content-length': String(bytes) },
        body: uploadBody(id, bytes, hash),
      })
      const text = await res.body.text()
      samples.add(performance.now() - started)
      totals.requests++
      if (res.statusCode !== 200) {
        totals.non2xx++
        return
      }
      const answer = JSON.parse(text) as { bytes: number; sha256: string }
      if (answer.bytes !== bytes || answer.sha256 !== hash.digest('hex')) totals.mismatches++
    } catch {
      totals.errors++
    }
  }
  emit({ event: 'measuring' })
  const cpu = cpuMeter()
  const started = performance.now()
  let next = 0
  await Promise.all(
    Array.from({ length: Math.min(spec.connections, count) }, async () => {
      while (next < count) await one(next++)
    }),
  )
  const seconds = (performance.now() - started) / 1000
  await agent.close()
  return {
    requests: totals.requests,
    seconds,
    rps: totals.requests / seconds,
    bytesPerSecond: (totals.requests * bytes) / seconds,
    p50: samples.percentile(50),
    p99: samples.percentile(99),
    errors: totals.errors,
    non2xx: totals.non2xx,
    mismatches: totals.mismatches,
    loadCpuPercent: cpu(),
  }
}

const spec = JSON.parse(process.argv[2] ?? '{}') as LoadSpec
const run = spec.mode === 'handshakes' ? handshakes : spec.mode === 'uploads' ? uploads : keepalive
const result = await run(spec)
emit({ event: 'result', ...result })
process.exit(0)
