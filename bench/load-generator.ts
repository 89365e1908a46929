/**
 * The load, always in its own process (never inside the process being measured). One JSON spec in,
 * JSON lines out: `{"event":"measuring"}` when the warm-up is over (the runner starts its CPU
 * window then; its peak memory covers the warm-up too), and `{"event":"result",…}` at the end.
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
 * - `loops`: `connections` loops of one request after the other (undici) until the time is up, for
 *   bodies too large for autocannon: a bulk JSON body built once, or a pattern body generated on the
 *   fly (uploads), or a large response read and hashed as it arrives (downloads). The time counted
 *   runs until the last request in flight has finished, so no request is cut in half.
 *
 * Every response can be checked (`check`), and a failed check is counted in `mismatches`: a
 * transform that did not run must not pass for a fast one. Checks are cheap next to a request
 * (substring counts, a hash of what was anyway read), and the same check runs against every subject
 * of a scenario.
 *
 * wrk is not used: it cannot present a client certificate, and every scenario is mTLS.
 */
import { createHash } from 'node:crypto'
import { Readable } from 'node:stream'
import tls from 'node:tls'
import autocannon from 'autocannon'
import { Agent, request } from 'undici'
import {
  bulkBody,
  CHUNK,
  isSealedRecordBody,
  isSealedStreamOf,
  patternChunk,
  patternOf,
  recordTexts,
  SEALED_VALUE_NEEDLE,
} from './lib/bodies.js'
import { generateRecords } from './records.js'

/**
 * What a response must show. `sealed`: the body holds exactly `values` sealed values (a compact JWE
 * per sealed field; 0 for a subject that must not seal). `opened`: the body is the plaintext record
 * of its path (no sealed value left, and the record's ASCII sensitive values in place).
 * `bulk-sealed`: the upstream counted exactly `values` sealed values in what it received.
 * `uploaded`: the upstream received exactly what was sent (SHA-256). `sealed-stream`: it received an
 * ECLS v1 sealed stream of exactly the sent plaintext's length. `download`: the body is pattern body
 * 0 of `bytes` bytes (SHA-256). `record`: the body is a bench record in plaintext (its `passportNumber`
 * member is there), not some other 2xx answer.
 */
export type Check =
  | { readonly kind: 'record' }
  | { readonly kind: 'sealed'; readonly values: number }
  | { readonly kind: 'opened'; readonly corpus: number }
  | { readonly kind: 'bulk-sealed'; readonly values: number }
  | { readonly kind: 'uploaded' }
  | { readonly kind: 'sealed-stream' }
  | { readonly kind: 'download' }

/** What the runner sends. Paths are request targets on the subject. */
export interface LoadSpec {
  readonly mode: 'keepalive' | 'handshakes' | 'uploads' | 'loops'
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
  /**
   * keepalive: one request per record of the first `records` bench records, the record's JSON as
   * the body, cycled (with `path` as the target), instead of `paths`.
   */
  readonly recordBodies?: { readonly path: string; readonly records: number }
  /**
   * keepalive: targets `prefix + n` with n counting up across all connections, modulo `count`: every
   * path of a corpus is asked for once before any is asked for again (an honest KEK cache).
   */
  readonly pathCycle?: { readonly prefix: string; readonly count: number }
  /** loops: the request (with `method`, `headers`): a bulk body of `records` records, or a pattern body. */
  readonly path?: string
  readonly loopBody?: { readonly kind: 'bulk'; readonly records: number } | { readonly kind: 'pattern'; readonly bytes: number }
  /** loops with a GET: the size of the pattern body expected back (`check: download`). */
  readonly downloadBytes?: number
  readonly check?: Check
  /** uploads: how many, how large, how many at once. */
  readonly count?: number
  readonly bytes?: number
}

/** What the runner gets back. Latencies in milliseconds. */
export interface LoadResult {
  readonly requests: number
  readonly seconds: number
  readonly rps: number
  /**
   * Response bytes per second (keepalive, handshakes); request body bytes per second (uploads); body
   * bytes sent and received per second (loops: the upload, or the download).
   */
  readonly bytesPerSecond: number
  readonly p50: number
  readonly p99: number
  readonly errors: number
  /** What the errors were (`err.code`, else the error's name), most frequent first: `CODE×N, …`. */
  readonly errorKinds?: string
  readonly non2xx: number
  /** Responses that failed their check (`check`; uploads: the SHA-256 of what was sent). */
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

/** The pieces an opened record must contain: its id and its ASCII sensitive values, as JSON members. */
function openedMarkers(corpus: number): string[][] {
  return generateRecords(corpus).map((r) => [
    `"id":${JSON.stringify(r.id)}`,
    `"birthDate":${JSON.stringify(r.holder.birthDate)}`,
    `"passportNumber":${JSON.stringify(r.holder.passportNumber)}`,
    `"email":${JSON.stringify(r.holder.email)}`,
    `"phone":${JSON.stringify(r.holder.phone)}`,
  ])
}

/** `check: record`: a bench record went through, in plaintext (ASCII needle: see `cannon`). */
function isRecordBody(body: string): boolean {
  return body.includes('"passportNumber":"')
}

/**
 * The next index of a `pathCycle`, for the whole process: the measured window continues where the
 * warm-up stopped, so it does not start again on paths the warm-up just asked for (an opener's KEK
 * cache would still hold their agreements).
 */
let pathCycleNext = 0

/** Mismatches found by checks that autocannon cannot count itself (they need the request's path). */
let pathMismatches = 0

/**
 * Answers the upstream opened (its sample, bench/lib/verify.ts) and found to hold what was sent,
 * over the warm-up and the measured window. A row whose answers carry sealed values must have at
 * least one: a sealer whose output never opens, or a sample never taken, is no pass.
 */
let openedAnswers = 0
const OPENED = '"benchOpened":true'
const NOT_OPENED = '"benchOpened":false'

/** A mismatch if the check asks for sealed values and the upstream opened none of them. */
function unopened(check: Check | undefined): number {
  const sealing =
    (check?.kind === 'sealed' && check.values > 0) || (check?.kind === 'bulk-sealed' && check.values > 0) || check?.kind === 'sealed-stream'
  return sealing && openedAnswers === 0 ? 1 : 0
}

function cannonRequests(spec: LoadSpec): autocannon.Request[] {
  const method = (spec.method ?? 'GET') as autocannon.Request['method']
  if (spec.recordBodies !== undefined) {
    const { path, records } = spec.recordBodies
    return recordTexts(records).map((body) => ({ method, path, body }))
  }
  if (spec.pathCycle !== undefined) {
    const { prefix, count } = spec.pathCycle
    const check = spec.check
    const markers = check?.kind === 'opened' ? openedMarkers(check.corpus) : undefined
    return [
      {
        method,
        path: `${prefix}0`,
        // Called for every request (autocannon rebuilds it); the connection's context carries the
        // index to the check of its response (one request in flight per connection).
        setupRequest: (req, context) => {
          const n = pathCycleNext++ % count
          context['n'] = n
          return { ...req, path: `${prefix}${n}` }
        },
        ...(markers === undefined
          ? {}
          : {
              onResponse: (status: number, body: string, context: Record<string, unknown>) => {
                if (status !== 200) return
                const expected = markers[(context['n'] as number) % markers.length]!
                if (body.includes(SEALED_VALUE_NEEDLE) || !expected.every((m) => body.includes(m))) pathMismatches++
              },
            }),
      },
    ]
  }
  return (spec.paths ?? ['/']).map((path) => ({ method, path }))
}

function cannon(spec: LoadSpec, seconds: number, samples: Samples | undefined): Promise<autocannon.Result> {
  const check = spec.check
  // autocannon hands `verifyBody` the body alone, right after the 'response' event of the same
  // response (httpClient.js): the status it saw there lets a non-2xx answer, counted in `non2xx`,
  // pass the body check instead of counting as a mismatch too.
  let status = 0
  const answered = (body: string, ok: (body: string) => boolean) => status < 200 || status > 299 || ok(body)
  const instance = autocannon({
    url: `https://${spec.host}:${spec.port}`,
    connections: spec.connections,
    duration: seconds,
    method: (spec.method ?? 'GET') as autocannon.Request['method'],
    headers: spec.headers as Record<string, string> | undefined,
    body: spec.body,
    requests: cannonRequests(spec),
    servername: spec.tls.servername,
    tlsOptions: { ca: spec.tls.ca, cert: spec.tls.cert, key: spec.tls.key },
    timeout: 30,
    // autocannon decodes each body chunk as UTF-8 on its own, so a multi-byte character split across
    // chunks may arrive mangled: checks look for ASCII needles only.
    ...(check?.kind === 'sealed'
      ? {
          verifyBody: (body: string) =>
            answered(body, (b) => {
              // The upstream's sample: its sealed values opened to the record sent, or did not.
              if (b.includes(OPENED)) openedAnswers++
              return !b.includes(NOT_OPENED) && isSealedRecordBody(b, check.values)
            }),
        }
      : {}),
    ...(check?.kind === 'record' ? { verifyBody: (body: string) => answered(body, isRecordBody) } : {}),
  })
  instance.on('response', (_client: unknown, code: number, _bytes: number, responseTime: number) => {
    status = code
    samples?.add(responseTime)
  })
  return new Promise((resolve, reject) => {
    instance.on('done', resolve)
    instance.on('error', reject)
  })
}

async function keepalive(spec: LoadSpec): Promise<LoadResult> {
  openedAnswers = 0
  if (spec.warmupSeconds > 0) await cannon(spec, spec.warmupSeconds, undefined)
  emit({ event: 'measuring' })
  const samples = new Samples()
  const cpu = cpuMeter()
  pathMismatches = 0
  const r = await cannon(spec, spec.durationSeconds, samples)
  const seconds = r.duration
  return {
    requests: r.requests.total,
    seconds,
    rps: r.requests.total / seconds,
    bytesPerSecond: r.throughput.total / seconds,
    p50: samples.percentile(50),
    p99: samples.percentile(99),
    // autocannon's `errors` already counts its timeouts.
    errors: r.errors,
    non2xx: r.non2xx,
    mismatches: r.mismatches + pathMismatches + unopened(spec.check),
    loadCpuPercent: cpu(),
  }
}

/**
 * One TLS context for every connection of a run. A context per connection (what `tls.connect` makes
 * from `ca`, `cert` and `key`) parses the key, the certificate and the CA again each time: about half
 * the load generator's CPU per handshake, which made it, not the proxies, the limit of `handshakes`.
 * Every connection is still a full handshake: no session is offered.
 */
const clientContexts = new WeakMap<LoadSpec['tls'], tls.SecureContext>()
function clientContext(spec: LoadSpec): tls.SecureContext {
  let context = clientContexts.get(spec.tls)
  if (context === undefined) {
    context = tls.createSecureContext({ ca: spec.tls.ca, cert: spec.tls.cert, key: spec.tls.key })
    clientContexts.set(spec.tls, context)
  }
  return context
}

// ---- handshakes: a new connection per request ------------------------------------------------

function oneShot(spec: LoadSpec, path: string): Promise<{ status: number; bytes: number; body: string }> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({
      host: spec.host,
      port: spec.port,
      secureContext: clientContext(spec),
      servername: spec.tls.servername,
      ALPNProtocols: ['http/1.1'],
    })
    const chunks: Buffer[] = []
    socket.once('secureConnect', () => {
      // `write`, not `end`: a half-close (close_notify, then FIN) makes Node's TLS server, which does
      // not allow half-open sockets, close before it answers. `connection: close` ends it instead.
      socket.write(`${spec.method ?? 'GET'} ${path} HTTP/1.1\r\nhost: ${spec.tls.servername}\r\nconnection: close\r\n\r\n`)
    })
    socket.on('data', (chunk: Buffer) => chunks.push(chunk))
    socket.once('error', reject)
    socket.once('close', () => {
      const head = Buffer.concat(chunks)
      const status = Number(head.subarray(9, 12).toString('latin1'))
      if (!Number.isInteger(status) || status === 0) reject(new Error('no HTTP response'))
      else resolve({ status, bytes: head.length, body: head.toString('latin1') })
    })
  })
}

async function handshakeLoops(spec: LoadSpec, seconds: number, samples: Samples | undefined) {
  const paths = spec.paths ?? ['/']
  const deadline = performance.now() + seconds * 1000
  const totals = { requests: 0, bytes: 0, errors: 0, non2xx: 0, mismatches: 0 }
  let next = 0
  const loop = async () => {
    while (performance.now() < deadline) {
      const started = performance.now()
      try {
        const { status, bytes, body } = await oneShot(spec, paths[next++ % paths.length]!)
        totals.requests++
        totals.bytes += bytes
        if (status < 200 || status > 299) totals.non2xx++
        else if (spec.check?.kind === 'record' && !isRecordBody(body)) totals.mismatches++
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
    mismatches: t.mismatches,
    loadCpuPercent: cpu(),
  }
}

// ---- uploads: streamed bodies with checksums -------------------------------------------------

/** A deterministic body for upload `id` (bench/lib/bodies.ts), hashed as it is produced. */
function uploadBody(id: number, total: number, hash: ReturnType<typeof createHash>): Readable {
  const pattern = patternOf(id)
  let sent = 0
  return new Readable({
    highWaterMark: CHUNK,
    read() {
      if (sent >= total) return void this.push(null)
      const size = Math.min(CHUNK, total - sent)
      const chunk = patternChunk(pattern, id, sent / CHUNK, size)
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
    // All connections open at once while the first uploads already stream: on 2 shared cores a
    // handshake can wait longer than undici's 10 s default, and the client, not the proxy, would
    // give up (UND_ERR_CONNECT_TIMEOUT). 120 s is Node's own TLS server handshake timeout.
    connect: { secureContext: clientContext(spec), servername: spec.tls.servername, timeout: UPLOAD_CONNECT_TIMEOUT_MS },
  })
  const origin = `https://${spec.host}:${spec.port}`
  const samples = new Samples()
  const totals = { requests: 0, errors: 0, non2xx: 0, mismatches: 0 }
  const kinds = new ErrorKinds()
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
    } catch (err) {
      totals.errors++
      kinds.add(err)
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
    ...kinds.summary(),
    non2xx: totals.non2xx,
    mismatches: totals.mismatches,
    loadCpuPercent: cpu(),
  }
}

/** How long an upload's client waits for its TCP connection and TLS handshake. */
const UPLOAD_CONNECT_TIMEOUT_MS = 120_000

/** Counts errors by kind, so that a failed row says why it failed. */
class ErrorKinds {
  readonly #counts = new Map<string, number>()

  add(err: unknown): void {
    const e = err as { code?: unknown; name?: unknown; cause?: { code?: unknown } }
    const kind = typeof e?.code === 'string' ? e.code : typeof e?.cause?.code === 'string' ? e.cause.code : String(e?.name ?? 'error')
    this.#counts.set(kind, (this.#counts.get(kind) ?? 0) + 1)
  }

  summary(): { errorKinds?: string } {
    if (this.#counts.size === 0) return {}
    const sorted = [...this.#counts].sort((a, b) => b[1] - a[1])
    return { errorKinds: sorted.map(([k, n]) => `${k}×${n}`).join(', ') }
  }
}

// ---- loops: large bodies, one request after the other on each connection ---------------------

/** SHA-256 of pattern body 0 of `bytes` bytes, as the upstream serves it (computed chunk by chunk). */
function patternDigest(bytes: number): string {
  const hash = createHash('sha256')
  const pattern = patternOf(0)
  for (let off = 0, k = 0; off < bytes; off += CHUNK, k++) hash.update(patternChunk(pattern, 0, k, Math.min(CHUNK, bytes - off)))
  return hash.digest('hex')
}

interface LoopTotals {
  requests: number
  bytes: number
  errors: number
  non2xx: number
  mismatches: number
}

class Loops {
  readonly #spec: LoadSpec
  readonly #agent: Agent
  readonly #origin: string
  readonly #bulk: Buffer | undefined
  readonly #download: string | undefined
  #next = 0

  constructor(spec: LoadSpec) {
    this.#spec = spec
    this.#agent = new Agent({
      connections: spec.connections,
      pipelining: 1,
      bodyTimeout: 0,
      headersTimeout: 0,
      connect: { secureContext: clientContext(spec), servername: spec.tls.servername },
    })
    this.#origin = `https://${spec.host}:${spec.port}`
    this.#bulk = spec.loopBody?.kind === 'bulk' ? bulkBody(spec.loopBody.records) : undefined
    this.#download = spec.check?.kind === 'download' ? patternDigest(spec.downloadBytes ?? 0) : undefined
  }

  /** Runs `connections` loops until `seconds` have passed and every request in flight is done. */
  async run(seconds: number, samples: Samples | undefined): Promise<LoopTotals & { seconds: number; errorKinds?: string }> {
    const totals: LoopTotals = { requests: 0, bytes: 0, errors: 0, non2xx: 0, mismatches: 0 }
    const kinds = new ErrorKinds()
    const started = performance.now()
    const deadline = started + seconds * 1000
    const loop = async () => {
      do {
        const at = performance.now()
        try {
          await this.#one(totals)
          samples?.add(performance.now() - at)
        } catch (err) {
          totals.errors++
          kinds.add(err)
        }
      } while (performance.now() < deadline)
    }
    await Promise.all(Array.from({ length: this.#spec.connections }, loop))
    return { ...totals, ...kinds.summary(), seconds: (performance.now() - started) / 1000 }
  }

  async #one(totals: LoopTotals): Promise<void> {
    const spec = this.#spec
    const id = this.#next++
    const hash = createHash('sha256')
    let sent = 0
    let body: Buffer | Readable | undefined
    if (this.#bulk !== undefined) {
      body = this.#bulk
      sent = this.#bulk.length
    } else if (spec.loopBody?.kind === 'pattern') {
      body = uploadBody(id, spec.loopBody.bytes, hash)
      sent = spec.loopBody.bytes
    }
    const res = await request(`${this.#origin}${spec.path ?? '/'}${spec.loopBody?.kind === 'pattern' ? id : ''}`, {
      method: (spec.method ?? 'GET') as 'GET',
      dispatcher: this.#agent,
      headers: { ...spec.headers, ...(sent > 0 ? { 'content-length': String(sent) } : {}) },
      ...(body === undefined ? {} : { body }),
    })
    let received = 0
    let text = ''
    if (this.#download !== undefined) {
      for await (const chunk of res.body) {
        received += (chunk as Buffer).length
        hash.update(chunk as Buffer)
      }
    } else {
      text = await res.body.text()
    }
    totals.requests++
    totals.bytes += sent + received
    if (res.statusCode !== 200) {
      totals.non2xx++
      return
    }
    if (!this.#passes(text, hash, sent, received)) totals.mismatches++
  }

  #passes(text: string, hash: ReturnType<typeof createHash>, sent: number, received: number): boolean {
    const check = this.#spec.check
    if (check === undefined) return true
    switch (check.kind) {
      case 'download':
        return received === this.#spec.downloadBytes && hash.digest('hex') === this.#download
      case 'bulk-sealed': {
        const answer = JSON.parse(text) as { sealed?: number; opened?: boolean }
        if (answer.opened === true) openedAnswers++
        return answer.sealed === check.values && answer.opened !== false
      }
      case 'uploaded': {
        const answer = JSON.parse(text) as { bytes: number; sha256: string }
        return answer.bytes === sent && answer.sha256 === hash.digest('hex')
      }
      case 'sealed-stream': {
        const answer = JSON.parse(text) as { bytes: number; head: string; opened?: boolean }
        if (answer.opened === true) openedAnswers++
        return isSealedStreamOf(answer.head, answer.bytes, sent) && answer.opened !== false
      }
      default:
        return false
    }
  }

  close(): Promise<void> {
    return this.#agent.close()
  }
}

async function loops(spec: LoadSpec): Promise<LoadResult> {
  openedAnswers = 0
  const runner = new Loops(spec)
  if (spec.warmupSeconds > 0) await runner.run(spec.warmupSeconds, undefined)
  emit({ event: 'measuring' })
  const samples = new Samples()
  const cpu = cpuMeter()
  const t = await runner.run(spec.durationSeconds, samples)
  await runner.close()
  return {
    requests: t.requests,
    seconds: t.seconds,
    rps: t.requests / t.seconds,
    bytesPerSecond: t.bytes / t.seconds,
    p50: samples.percentile(50),
    p99: samples.percentile(99),
    errors: t.errors,
    ...(t.errorKinds === undefined ? {} : { errorKinds: t.errorKinds }),
    non2xx: t.non2xx,
    mismatches: t.mismatches + unopened(spec.check),
    loadCpuPercent: cpu(),
  }
}

const spec = JSON.parse(process.argv[2] ?? '{}') as LoadSpec
const run = spec.mode === 'handshakes' ? handshakes : spec.mode === 'uploads' ? uploads : spec.mode === 'loops' ? loops : keepalive
const result = await run(spec)
emit({ event: 'result', ...result })
process.exit(0)
