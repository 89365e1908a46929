/**
 * The chained demo as a library: the demo accreditation service (the trusted host), the trusted
 * sidecar gateway in front of it (config/trusted-sidecar.yaml) and the edge gateway in front of that
 * (config/edge.yaml), all on loopback:
 *
 *   sponsor client ─▶ edge (seals) ─▶ trusted sidecar (opens) ─▶ accreditation service
 *
 * `npm start` (start.ts) runs the profiles exactly as they are, on their fixed ports. Tests run the
 * same profiles on port 0: the chain then writes derived copies (ports, upstream URLs, absolute paths
 * into the test's own certificate and key folders) to a temporary directory removed on close.
 */
import { access, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import type { Logger } from 'pino'
import { Agent, request } from 'undici'
import { parse, stringify } from 'yaml'
import { Gateway } from '../main.js'
import { type DevPki, generateDevPki } from '../pki/dev-pki.js'
import { type AccreditationRecord, AccreditationService } from './accreditation-service.js'

/** The checkout this file belongs to: `config/`, `certs/` and `keys/` live under it. */
export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')

/** The demo key set's name: `keys/trusted-host.{private,public}.jwks.json`, as the profiles say. */
export const DEMO_KEY_SET = 'trusted-host'

/** The accreditation service's port when the profiles run as they are (their upstream URL). */
export const DEMO_SERVICE_PORT = 9443

/** The sensitive members of an accreditation record, as the profiles list them. */
export const SENSITIVE_FIELDS = ['name', 'birthDate', 'passportNumber', 'email', 'phone', 'policeUnit'] as const

export interface DemoChainOptions {
  /** The checkout whose `config/edge.yaml` and `config/trusted-sidecar.yaml` run; default this one. */
  readonly root?: string
  /** Where the development PKI is (created or completed if needed); default `<root>/certs`. */
  readonly certsDir?: string
  /** Where the demo key set is (created if missing); default `<root>/keys`. */
  readonly keysDir?: string
  /** Listen on port 0 everywhere (tests) instead of the profiles' fixed ports. */
  readonly ephemeralPorts?: boolean
  /** Loggers for the two gateways (tests capture them); default each profile's own. */
  readonly logs?: { readonly edge?: Logger; readonly sidecar?: Logger }
  /**
   * Last changes to a profile before it runs (tests insert probe steps). Implies derived copies: the
   * files under `config/` are never modified.
   */
  readonly adjust?: (role: DemoRole, config: Record<string, unknown>) => void
}

export type DemoRole = 'edge' | 'sidecar'

/** The demo key set's files. */
export interface DemoKeys {
  readonly privateFile: string
  readonly publicFile: string
  /** True when this run created them. */
  readonly created: boolean
}

/** A running chain. `close()` stops the edge, then the sidecar, then the service. */
export class DemoChain {
  readonly pki: DevPki
  readonly keys: DemoKeys
  readonly service: AccreditationService
  readonly sidecar: Gateway
  readonly edge: Gateway
  /** The configuration files the gateways run from (the profiles themselves, or derived copies). */
  readonly configFiles: { readonly edge: string; readonly sidecar: string }
  readonly #workDir: string | undefined
  #closed: Promise<void> | undefined

  /** @internal built by {@link startDemoChain}. */
  constructor(init: {
    pki: DevPki
    keys: DemoKeys
    service: AccreditationService
    sidecar: Gateway
    edge: Gateway
    configFiles: { edge: string; sidecar: string }
    workDir: string | undefined
  }) {
    this.pki = init.pki
    this.keys = init.keys
    this.service = init.service
    this.sidecar = init.sidecar
    this.edge = init.edge
    this.configFiles = init.configFiles
    this.#workDir = init.workDir
  }

  /**
   * Reloads both gateways (SIGHUP): the opening side first, so it knows a new key before it is used;
   * the edge is not reloaded when the sidecar's reload failed (it would be asked to seal to a key the
   * sidecar may not open).
   */
  async reload(): Promise<Array<{ ok: true } | { ok: false; error: string }>> {
    const sidecar = await this.sidecar.reload()
    if (!sidecar.ok) return [sidecar, { ok: false, error: 'not reloaded: the sidecar, which opens, refused its reload first' }]
    return [sidecar, await this.edge.reload()]
  }

  /** Drains and stops everything, front to back; idempotent. */
  close(): Promise<void> {
    this.#closed ??= (async () => {
      await this.edge.shutdown()
      await this.sidecar.shutdown()
      await this.service.close()
      if (this.#workDir !== undefined) await rm(this.#workDir, { recursive: true, force: true })
    })()
    return this.#closed
  }
}

/**
 * Creates the demo key set in `keysDir` if it is missing, with `ecluse keys init` itself (the same
 * code, the same modes). Half a set is refused rather than silently replaced.
 */
export async function ensureDemoKeys(keysDir: string): Promise<DemoKeys> {
  const privateFile = path.join(keysDir, `${DEMO_KEY_SET}.private.jwks.json`)
  const publicFile = path.join(keysDir, `${DEMO_KEY_SET}.public.jwks.json`)
  const [hasPrivate, hasPublic] = await Promise.all([exists(privateFile), exists(publicFile)])
  if (hasPrivate && hasPublic) return { privateFile, publicFile, created: false }
  if (hasPrivate || hasPublic) {
    throw new Error(
      `incomplete demo key set in ${keysDir} (missing ${path.basename(hasPrivate ? publicFile : privateFile)}); ` +
        `recreate it with: ecluse keys init --out ${keysDir} --force`,
    )
  }
  const { main } = await import('../cli.js')
  let stderr = ''
  const code = await main(['keys', 'init', '--out', keysDir, '--name', DEMO_KEY_SET], {
    stdout: { write: () => true },
    stderr: { write: (s: string) => (stderr += s) },
    env: {},
  })
  if (code !== 0) throw new Error(stderr.trim().replace(/^ecluse: /, '') || 'keys init failed')
  return { privateFile, publicFile, created: true }
}

/**
 * Starts the chain: PKI and keys if missing, then the service, the sidecar and the edge (each one's
 * upstream is up before it starts). On failure, whatever was started is stopped again.
 *
 * @example
 * const chain = await startDemoChain({ certsDir, keysDir, ephemeralPorts: true })
 * const { sponsorView, trustedView } = await createSampleRecord(chain)
 * await chain.close()
 */
export async function startDemoChain(opts: DemoChainOptions = {}): Promise<DemoChain> {
  const root = path.resolve(opts.root ?? REPO_ROOT)
  const defaultCerts = path.join(root, 'certs')
  const defaultKeys = path.join(root, 'keys')
  const certsDir = path.resolve(opts.certsDir ?? defaultCerts)
  const keysDir = path.resolve(opts.keysDir ?? defaultKeys)
  const profiles = { edge: path.join(root, 'config/edge.yaml'), sidecar: path.join(root, 'config/trusted-sidecar.yaml') }
  const derive = opts.ephemeralPorts === true || opts.adjust !== undefined || certsDir !== defaultCerts || keysDir !== defaultKeys

  const pki = await generateDevPki({ outDir: certsDir })
  const keys = await ensureDemoKeys(keysDir)
  const workDir = derive ? await mkdtemp(path.join(tmpdir(), 'ecluse-demo-')) : undefined
  const stack: Array<() => Promise<unknown>> = []
  if (workDir !== undefined) stack.push(() => rm(workDir, { recursive: true, force: true }))
  try {
    const [cert, key, ca] = await Promise.all([
      readFile(pki.trustedServer.cert),
      readFile(pki.trustedServer.key),
      readFile(pki.trustedCa.cert),
    ])
    const service = new AccreditationService({
      cert,
      key,
      ca,
      host: '127.0.0.1',
      port: opts.ephemeralPorts === true ? 0 : DEMO_SERVICE_PORT,
    })
    await service.listen()
    stack.push(() => service.close())

    const relocation = { root, certsDir, keysDir, defaultCerts, defaultKeys }
    const sidecarFile =
      workDir === undefined
        ? profiles.sidecar
        : await deriveProfile(profiles.sidecar, path.join(workDir, 'trusted-sidecar.yaml'), 'sidecar', service.port, relocation, opts)
    const sidecar = await Gateway.start(sidecarFile, opts.logs?.sidecar === undefined ? {} : { log: opts.logs.sidecar })
    stack.push(() => sidecar.shutdown())

    const edgeFile =
      workDir === undefined
        ? profiles.edge
        : await deriveProfile(profiles.edge, path.join(workDir, 'edge.yaml'), 'edge', sidecar.sponsorPort, relocation, opts)
    const edge = await Gateway.start(edgeFile, opts.logs?.edge === undefined ? {} : { log: opts.logs.edge })
    return new DemoChain({ pki, keys, service, sidecar, edge, configFiles: { edge: edgeFile, sidecar: sidecarFile }, workDir })
  } catch (err) {
    for (const undo of stack.reverse()) await undo().catch(() => {})
    throw err
  }
}

/** The parts of a profile a derived copy changes (the loader validates the whole file later). */
interface ProfileShape {
  sponsor: { listen: { port: number }; tls: Record<string, string> }
  upstreams: Record<string, { url: string; tls: Record<string, string> }>
  keys?: Record<string, { file: string }>
  admin: { listen: { port: number } }
}

interface Relocation {
  readonly root: string
  readonly certsDir: string
  readonly keysDir: string
  readonly defaultCerts: string
  readonly defaultKeys: string
}

/**
 * A copy of a profile with port 0 listeners (with `ephemeralPorts`), its one upstream pointed at
 * `upstreamPort`, and every file path made absolute and moved from `<root>/certs` and `<root>/keys`
 * to the folders in use.
 */
async function deriveProfile(
  profile: string,
  out: string,
  role: DemoRole,
  upstreamPort: number,
  where: Relocation,
  opts: DemoChainOptions,
): Promise<string> {
  const config = parse(await readFile(profile, 'utf8'), { merge: false }) as ProfileShape
  const base = path.dirname(profile)
  const move = (file: string): string => {
    const abs = path.resolve(base, file)
    for (const [from, to] of [
      [where.defaultCerts, where.certsDir],
      [where.defaultKeys, where.keysDir],
    ] as const) {
      const rel = path.relative(from, abs)
      if (!rel.startsWith('..') && !path.isAbsolute(rel)) return path.join(to, rel)
    }
    return abs
  }
  const tls = config.sponsor.tls
  for (const k of ['cert', 'key', 'clientCa']) tls[k] = move(tls[k]!)
  for (const upstream of Object.values(config.upstreams)) {
    for (const k of ['ca', 'cert', 'key']) upstream.tls[k] = move(upstream.tls[k]!)
    upstream.url = `https://127.0.0.1:${upstreamPort}`
  }
  for (const set of Object.values(config.keys ?? {})) set.file = move(set.file)
  if (opts.ephemeralPorts === true) {
    config.sponsor.listen.port = 0
    config.admin.listen.port = 0
  }
  opts.adjust?.(role, config as unknown as Record<string, unknown>)
  // Aliases in the profile became shared objects: write them out in full.
  await writeFile(out, stringify(config, { aliasDuplicateObjects: false }), { mode: 0o600 })
  return out
}

// ---------------------------------------------------------------------------------------------
// The sample record

/** A made-up applicant: every sensitive field has a value no real record would have. */
export const SAMPLE_RECORD = {
  category: 'journalist',
  name: 'Ada Lovelace',
  birthDate: '1815-12-10',
  passportNumber: 'DEMO-0000001',
  email: 'ada.lovelace@example.org',
  phone: '+33 1 00 00 00 00',
  policeUnit: 'Unité démo 12',
  outlet: 'The Analytical Review',
} as const

/** A 1×1 PNG, the sample's photo. */
export const SAMPLE_PHOTO = Buffer.from(
  'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==',
  'base64',
)

/** The sample as each side has it. */
export interface SampleViews {
  readonly id: string
  /** The record as the sponsor received it through the edge: sealed sensitive fields, no vetting notes. */
  readonly sponsorView: Record<string, unknown>
  /** The same record in the service's store: plaintext, with the service's own notes. */
  readonly trustedView: AccreditationRecord
  /** The photo as the sponsor gets it back through the edge (a sealed stream), and its media type. */
  readonly sponsorPhoto: { readonly contentType: string; readonly bytes: Buffer }
  /** The photo as the service stores it. */
  readonly trustedPhoto: { readonly contentType: string; readonly bytes: Buffer } | undefined
}

/** An mTLS client of the edge, as the demo's sponsor application (sponsor CA, accreditation-app). */
export async function sponsorAgent(pki: DevPki): Promise<Agent> {
  const [ca, cert, key] = await Promise.all([
    readFile(pki.sponsorCa.cert),
    readFile(pki.sponsorClient.cert),
    readFile(pki.sponsorClient.key),
  ])
  return new Agent({ connect: { ca, cert, key, servername: 'localhost' } })
}

/**
 * Creates one record and uploads its photo through the whole chain, as the sponsor application
 * would, then reads both back through the edge.
 */
export async function createSampleRecord(chain: DemoChain, agent?: Agent): Promise<SampleViews> {
  const dispatcher = agent ?? (await sponsorAgent(chain.pki))
  const base = `https://127.0.0.1:${chain.edge.sponsorPort}`
  try {
    const created = await request(`${base}/v1/accreditations`, {
      dispatcher,
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(SAMPLE_RECORD),
    })
    const body = (await created.body.json()) as Record<string, unknown>
    if (created.statusCode !== 201 || typeof body['id'] !== 'string') {
      throw new Error(`creating the sample record failed: ${created.statusCode} ${JSON.stringify(body['error'] ?? '')}`)
    }
    const id = body['id']
    const upload = await request(`${base}/v1/accreditations/${id}/photo`, {
      dispatcher,
      method: 'PUT',
      headers: { 'content-type': 'image/png' },
      body: SAMPLE_PHOTO,
    })
    await upload.body.dump()
    if (upload.statusCode !== 204) throw new Error(`uploading the sample photo failed: ${upload.statusCode}`)
    const read = await request(`${base}/v1/accreditations/${id}`, { dispatcher })
    const sponsorView = (await read.body.json()) as Record<string, unknown>
    const photo = await request(`${base}/v1/accreditations/${id}/photo`, { dispatcher })
    const sponsorPhoto = {
      contentType: String(photo.headers['content-type'] ?? ''),
      bytes: Buffer.from(await photo.body.arrayBuffer()),
    }
    return {
      id,
      sponsorView,
      trustedView: chain.service.records.get(id)!,
      sponsorPhoto,
      trustedPhoto: chain.service.photos.get(id),
    }
  } finally {
    if (agent === undefined) await dispatcher.close()
  }
}

/** True for a compact JWE (five base64url segments), the form every sealed field takes. */
export function isCompactJwe(v: unknown): v is string {
  return typeof v === 'string' && /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/.test(v)
}

/**
 * The two views side by side, one line per member: sealed values truncated (they are long and
 * meaningless to a reader), members a side does not have shown as "—".
 */
export function sideBySide(sponsorView: Record<string, unknown>, trustedView: Record<string, unknown>, width = 44): string {
  const names = [...new Set([...Object.keys(trustedView), ...Object.keys(sponsorView)])]
  const nameWidth = Math.max(5, ...names.map((n) => n.length))
  const row = (a: string, b: string, c: string) => `  ${a.padEnd(nameWidth)}  ${b.padEnd(width)}  ${c}`.trimEnd()
  const lines = [
    row('field', 'the sponsor sees (through the edge)', 'the trusted service stores'),
    row('-'.repeat(nameWidth), '-'.repeat(width), '-'.repeat(width)),
  ]
  for (const n of names) lines.push(row(n, cell(sponsorView[n], width), cell(trustedView[n], width)))
  return lines.join('\n')
}

function cell(v: unknown, width: number): string {
  if (v === undefined) return '—'
  if (isCompactJwe(v)) {
    const tail = `… (JWE, ${v.length} chars)`
    return v.slice(0, Math.max(8, width - tail.length)) + tail
  }
  const text = JSON.stringify(v)
  return text.length > width ? `${text.slice(0, width - 1)}…` : text
}

async function exists(file: string): Promise<boolean> {
  try {
    await access(file)
    return true
  } catch {
    return false
  }
}
