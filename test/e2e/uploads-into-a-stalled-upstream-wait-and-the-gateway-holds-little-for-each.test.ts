import { createHash } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { request } from 'undici'
import { gatewayConfig, startGatewayProcess, TestUpstream } from '../helpers/harness.js'
import { makeTestPki } from '../helpers/pki.js'

const MiB = 1024 * 1024
const CHUNK = 64 * 1024
/** Concurrent uploads, each on its own connection on both sides (the bench's concurrency, scaled down). */
const UPLOADS = Number(process.env['ECLUSE_TEST_STALLED_UPLOADS'] ?? 64)
/** Far more than the loopback socket buffers of one connection absorb, so every upload stalls. */
const BODY = 48 * MiB

/** A body generated on the fly that counts what the gateway has taken from it. */
function generated(seed: number, taken: { bytes: number }): Readable {
  let sent = 0
  return new Readable({
    highWaterMark: CHUNK,
    read() {
      if (sent >= BODY) return void this.push(null)
      const chunk = Buffer.alloc(CHUNK, (seed + sent / CHUNK) & 0xff)
      sent += CHUNK
      taken.bytes += CHUNK
      this.push(chunk)
    },
  })
}

function expectedDigest(seed: number): string {
  const hash = createHash('sha256')
  for (let sent = 0; sent < BODY; sent += CHUNK) hash.update(Buffer.alloc(CHUNK, (seed + sent / CHUNK) & 0xff))
  return hash.digest('hex')
}

// The gateway runs in its own process so that its resident memory is its own. Every upload is
// back-pressured by an upstream that reads nothing: whatever the gateway holds per upload while
// they wait is what it holds per in-flight upload into a slow upstream (the bench's `concurrency`).
t.test('uploads into an upstream that reads nothing wait, the gateway holds little for each, and all arrive intact once it reads', async (t) => {
  const pki = await makeTestPki()
  const dir = await mkdtemp(join(tmpdir(), 'ecluse-stalled-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  let release!: () => void
  const released = new Promise<void>((resolve) => (release = resolve))
  const upstream = new TestUpstream(pki, (req, res) => {
    req.pause()
    // The warm-up's small uploads are read at once; the measured ones wait for `release`.
    const wait = req.headers['content-length'] === String(BODY) ? released : Promise.resolve()
    void wait.then(async () => {
      const hash = createHash('sha256')
      let bytes = 0
      for await (const chunk of req) {
        hash.update(chunk as Buffer)
        bytes += (chunk as Buffer).length
      }
      res.end(JSON.stringify({ bytes, sha256: hash.digest('hex') }))
    })
  })
  await upstream.listen()
  t.teardown(() => upstream.close())
  const routes = [
    { name: 'uploads', methods: ['PUT'], path: '/v1/uploads/:id', allow: ['uri:spiffe://sponsor.test/accreditation-app'], upstream: 'backend', maxBodyBytes: BODY },
  ]
  const config = gatewayConfig(pki, upstream.port, routes)
  Object.assign(config.upstreams.backend as Record<string, unknown>, { connections: UPLOADS, bodyTimeoutMs: 120_000, headersTimeoutMs: 120_000 })
  // The sponsor's idle timeout must outlast the upstream's (the schema refuses it otherwise).
  Object.assign(config.sponsor, { limits: { idleTimeoutMs: 180_000 } })
  const { gateway, ports, agent } = await startGatewayProcess(t, pki, dir, config, {
    connections: UPLOADS,
    connectTimeout: 60_000,
    bodyTimeout: 120_000,
    headersTimeout: 120_000,
  }, { probeMemory: true })

  // Warm-up (TLS, JIT, pools, the heap's first growth) on as many connections, so that what is
  // measured is the gateway at work, not at boot.
  const warm = Array.from({ length: UPLOADS }, (_, i) =>
    request(`https://127.0.0.1:${ports.sponsor}/v1/uploads/${i}`, { method: 'PUT', body: Buffer.alloc(MiB, i), dispatcher: agent }).then((res) =>
      res.body.dump(),
    ),
  )
  await Promise.all(warm)
  await sleep(1_000)
  const idle = await gateway.liveMemory()
  const taken = Array.from({ length: UPLOADS }, () => ({ bytes: 0 }))
  const answers = taken.map((counter, i) =>
    request(`https://127.0.0.1:${ports.sponsor}/v1/uploads/${i}`, {
      method: 'PUT',
      body: generated(i, counter),
      headers: { 'content-type': 'application/octet-stream', 'content-length': String(BODY) },
      dispatcher: agent,
    }).then(async (res) => ({ status: res.statusCode, answer: (await res.body.json()) as { bytes: number; sha256: string } })),
  )

  // Stalled: no upload has taken a byte more for two seconds (up to 60 s on a loaded machine).
  const total = () => taken.reduce((sum, c) => sum + c.bytes, 0)
  let last = -1
  let still = 0
  for (let waited = 0; waited < 60_000 && still < 8; waited += 250) {
    await sleep(250)
    const now = total()
    still = now === last && taken.every((c) => c.bytes > 0) ? still + 1 : 0
    last = now
  }
  t.equal(still, 8, 'every upload stalled: back-pressure reached the clients')
  t.ok(taken.every((c) => c.bytes < BODY), 'no upload could send its whole body into an upstream that reads nothing')
  const stalled = await gateway.liveMemory()
  const perUpload = (bytes: number) => bytes / UPLOADS / 1024
  const liveKiB = perUpload(stalled.liveBytes - idle.liveBytes)
  const rssKiB = perUpload(stalled.rssBytes - idle.rssBytes)
  t.comment(
    `gateway after a full gc, warm and idle: ${(idle.liveBytes / MiB).toFixed(1)} MiB live, ${(idle.rssBytes / MiB).toFixed(0)} MiB resident; ` +
      `with ${UPLOADS} stalled uploads, ${liveKiB.toFixed(1)} KiB live and ${rssKiB.toFixed(0)} KiB resident more each; ` +
      `the clients had sent ${(total() / UPLOADS / MiB).toFixed(1)} MiB each`,
  )
  // What back-pressure leaves in flight per upload: the request's read buffer and the upstream
  // socket's write buffer, each a high-water mark (16 KiB) and the chunks that overshoot it. Measured
  // on a 2-core machine: 38–57 KiB live (the most in a full suite run, where other test files ran
  // beside it); 69–73 KiB with one more stage between the request and undici (the counting stage
  // that 1ebeba1 removed); megabytes for a stage that ignored back-pressure. The bound, six
  // high-water marks, is what the suite can hold without failing on a busy machine: it pins memory
  // per upload to a few chunks, not to the body, and does not tell one extra stage from none:
  // test/proxy-a-body-of-declared-length-goes-upstream-with-no-stage-between.test.ts pins that shape.
  // Live memory after a full collection is the steady measure. Resident memory also counts what the
  // collector and the allocator have not given back, 34–314 KiB per upload from run to run of the
  // same code (186 in a CI run that failed the 160 KiB bound this test used to set on it), so it
  // only gets a bound that a stage ignoring back-pressure would break.
  t.ok(liveKiB < 96, `the gateway holds less than 96 KiB per stalled upload (${liveKiB.toFixed(1)} KiB after a full gc)`)
  t.ok(rssKiB < 1024, `its resident memory grows by less than 1 MiB per stalled upload (${rssKiB.toFixed(0)} KiB)`)

  release()
  const results = await Promise.all(answers)
  for (const [i, r] of results.entries()) {
    if (r.status !== 200 || r.answer.bytes !== BODY || r.answer.sha256 !== expectedDigest(i)) {
      t.fail(`upload ${i} arrived damaged: ${r.status} ${r.answer.bytes} bytes`)
      return
    }
  }
  t.pass(`all ${UPLOADS} uploads arrived whole and in order once the upstream read them`)
})
