/**
 * Running the CLI in tests: in this process through `main(argv, io)` (fast, captured text), or as a
 * user runs it, `node --import tsx src/cli.ts …` in a child process, with bytes on stdin and stdout.
 */
import { spawn } from 'node:child_process'
import { readdir } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { type CliIo, main } from '../../src/cli.js'
import type { TestPki } from './pki.js'

export const ROOT = fileURLToPath(new URL('../..', import.meta.url))

export interface CliResult {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

/** The CLI in this process; stdout and stderr captured as text. */
export async function runCli(argv: readonly string[], env: Record<string, string> = {}): Promise<CliResult> {
  let stdout = ''
  let stderr = ''
  const io: CliIo = {
    stdout: { write: (s: string) => (stdout += s) },
    stderr: { write: (s: string) => (stderr += s) },
    env,
  }
  const code = await main(argv, io)
  return { code, stdout, stderr }
}

/** The CLI as a child process; `stdin` is written then closed (none: an empty stdin). */
export function spawnCli(
  args: readonly string[],
  stdin: string | Buffer = '',
): Promise<{ code: number | null; stdout: Buffer; stderr: string }> {
  return new Promise((resolve, reject) => {
    const env = { ...process.env }
    delete env['ECLUSE_DEBUG']
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', ...args], { cwd: ROOT, env })
    const out: Buffer[] = []
    let stderr = ''
    child.stdout.on('data', (d: Buffer) => out.push(d))
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d))
    child.on('error', reject)
    // A child that exits before reading all of stdin must not fail the test with EPIPE.
    child.stdin.on('error', () => {})
    child.on('close', (code) => resolve({ code, stdout: Buffer.concat(out), stderr }))
    child.stdin.end(stdin)
  })
}

/** The names in `dir`, sorted: to check that a failed run left nothing (no temporary file) behind. */
export async function listDir(dir: string): Promise<string[]> {
  return (await readdir(dir)).sort()
}

/** A compact JWE: five base64url parts (RFC 7516 §7.1). */
export const COMPACT_JWE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/

/** jose's options for our values: our claims are critical, the algorithms allow-listed. */
export const JOSE_OPEN: { crit: Record<string, boolean>; contentEncryptionAlgorithms: string[] } = {
  crit: { 'ecl.route': true, 'ecl.ptr': true, 'ecl.rid': true },
  contentEncryptionAlgorithms: ['A256GCM'],
}

/**
 * The smallest configuration `ecluse serve` boots from: both listeners on port 0, one route, an
 * upstream nobody listens on (nothing here sends it a request). `sponsorKey` replaces the sponsor
 * listener's key (a mismatched one fails the boot); `routes` replaces the route list (YAML
 * sequence items, indented two spaces, to the upstream `accreditation`); `keys` adds a `keys`
 * section (its entries, indented two spaces).
 */
export function minimalServeConfig(
  pki: TestPki,
  opts: { readonly sponsorKey?: string; readonly drainTimeoutMs?: number; readonly routes?: string; readonly keys?: string } = {},
): string {
  const q = JSON.stringify
  return `sponsor:
  listen: { port: 0 }
  tls:
    cert: ${q(pki.gatewaySponsorServer.certPath)}
    key: ${q(opts.sponsorKey ?? pki.gatewaySponsorServer.keyPath)}
    clientCa: ${q(pki.sponsorCa.certPath)}
upstreams:
  accreditation:
    url: https://127.0.0.1:9
    serverName: accreditation.trusted.test
    tls:
      ca: ${q(pki.trustedCa.certPath)}
      cert: ${q(pki.gatewayTrustedClient.certPath)}
      key: ${q(pki.gatewayTrustedClient.keyPath)}
${opts.keys === undefined ? '' : `keys:\n${opts.keys}`}routes:
${
  opts.routes ??
  `  - name: list
    methods: [GET]
    path: /v1/accreditations
    allow: [uri:spiffe://sponsor.test/accreditation-app]
    upstream: accreditation
`
}admin:
  listen: { port: 0 }
shutdown:
  drainTimeoutMs: ${opts.drainTimeoutMs ?? 1000}
`
}
