/**
 * `npm start`: the chained demo on loopback with no other step. Creates the development PKI and the
 * demo key set if they are missing, starts the demo accreditation service (the trusted host), the
 * trusted sidecar in front of it (config/trusted-sidecar.yaml) and the edge in front of that
 * (config/edge.yaml), each on its profile's fixed port; creates one sample record through the edge,
 * prints it as the sponsor sees it beside the same record as the service stores it, then prints
 * ready-to-paste curl commands. The gateways' JSON logs go to stderr, tagged `gateway: edge|sidecar`.
 *
 * SIGINT/SIGTERM drain and stop everything (exit 0); SIGHUP reloads both gateways, sidecar first.
 *
 * For tests only: `ECLUSE_DEMO_DIR=DIR` listens on port 0 everywhere, uses `DIR/certs` and
 * `DIR/keys` instead of the checkout's (the profiles then run as derived copies, src/demo/chain.ts),
 * and the printed downloads go to DIR instead of the system's temporary folder. Unset (the default),
 * nothing changes.
 */
import { tmpdir } from 'node:os'
import path from 'node:path'
import pino, { type Logger } from 'pino'
import { loadConfigFile } from '../config/load.js'
import { createLogger } from '../observability/logger.js'
import {
  createSampleRecord,
  type DemoChain,
  type DemoRole,
  REPO_ROOT,
  SAMPLE_PHOTO,
  SAMPLE_RECORD,
  type SampleViews,
  SENSITIVE_FIELDS,
  sideBySide,
  startDemoChain,
} from './chain.js'

const PROFILES: Record<DemoRole, string> = {
  edge: path.join(REPO_ROOT, 'config/edge.yaml'),
  sidecar: path.join(REPO_ROOT, 'config/trusted-sidecar.yaml'),
}

async function main(): Promise<void> {
  const env = process.env['ECLUSE_DEMO_DIR']
  const scratch = env === undefined || env === '' ? undefined : path.resolve(env)
  // One synchronous stderr destination for both gateways: lines never interleave mid-line, and
  // stdout carries only what this script prints.
  const destination = pino.destination({ dest: 2, sync: true })
  const logs = { edge: await profileLogger('edge', destination), sidecar: await profileLogger('sidecar', destination) }
  const chain = await startDemoChain(
    scratch === undefined
      ? { logs }
      : {
          logs,
          ephemeralPorts: true,
          certsDir: path.join(scratch, 'certs'),
          keysDir: path.join(scratch, 'keys'),
        },
  )
  let sample: SampleViews
  try {
    sample = await createSampleRecord(chain)
  } catch (err) {
    await chain.close()
    throw err
  }
  process.stdout.write(banner(chain, sample, scratch ?? tmpdir()))

  const stop = () => {
    void chain.close().then(
      () => process.exit(0),
      () => process.exit(1),
    )
  }
  process.once('SIGINT', stop)
  process.once('SIGTERM', stop)
  process.on('SIGHUP', () => {
    void chain.reload().then(([sidecar, edge]) => {
      const say = (r: typeof sidecar) => (r?.ok === true ? 'reloaded' : 'kept its previous state (see its log)')
      process.stdout.write(`SIGHUP: sidecar ${say(sidecar)}, edge ${say(edge)}\n`)
    })
  })
}

/** A gateway's logger at its profile's own level, tagged with its role. */
async function profileLogger(role: DemoRole, destination: pino.DestinationStream): Promise<Logger> {
  const config = await loadConfigFile(PROFILES[role])
  return createLogger({ level: config.log.level, destination }).child({ gateway: role })
}

/** What `npm start` prints once the chain is up. Every command in it is run by a test or by hand. */
function banner(chain: DemoChain, sample: SampleViews, outDir: string): string {
  // The commands are run from the checkout (`node --import tsx` resolves tsx there), as npm start does.
  const rel = (p: string) => {
    const r = path.relative(REPO_ROOT, p)
    return r === '' || r.startsWith('..') || path.isAbsolute(r) ? p : r
  }
  const { pki, keys } = chain
  const edge = `https://localhost:${chain.edge.sponsorPort}`
  const sidecar = `https://localhost:${chain.sidecar.sponsorPort}`
  const edgeAdmin = `http://127.0.0.1:${chain.edge.adminPort}`
  const sidecarAdmin = `http://127.0.0.1:${chain.sidecar.adminPort}`
  const id = sample.id
  const T = `--cacert ${rel(pki.sponsorCa.cert)} --cert ${rel(pki.sponsorClient.cert)} --key ${rel(pki.sponsorClient.key)}`
  const E = `--cacert ${rel(pki.trustedCa.cert)} --cert ${rel(pki.edgeClient.cert)} --key ${rel(pki.edgeClient.key)}`
  const photoOf = (p: { contentType: string; bytes: Buffer } | undefined) =>
    p === undefined ? '—' : `${p.contentType}, ${p.bytes.length} bytes, starting "${printable(p.bytes.subarray(0, 4))}"`
  const table = columns([
    ['edge', edge, rel(chain.configFiles.edge), 'clients: sponsor CA', `admin ${edgeAdmin}`],
    ['sidecar', sidecar, rel(chain.configFiles.sidecar), 'clients: the edge only', `admin ${sidecarAdmin}`],
    ['service', `https://127.0.0.1:${chain.service.port}`, 'src/demo/accreditation-service.ts', 'clients: trusted CA only'],
  ])
  const record = JSON.stringify({ category: 'journalist', name: 'Grace Hopper', passportNumber: 'DEMO-0000002' })
  const photoB64 = SAMPLE_PHOTO.toString('base64')
  // Downloads go to a scratch folder, not into the checkout.
  const photoFile = path.join(outDir, 'ecluse-demo-photo')
  const fields = SENSITIVE_FIELDS.map((f) => `/${f}`).join(',')

  return `
Écluse chained demo, on loopback:

  sponsor app ──mTLS──▶ edge ──mTLS──▶ trusted sidecar ──mTLS──▶ demo accreditation service
                        seals            opens; strips vetting;     stores plaintext
                                         seals responses

${table}
  keys     ${rel(keys.publicFile)} (both gateways)
           ${rel(keys.privateFile)} (the sidecar only)

A sample record (${SAMPLE_RECORD.name}), created and read back through the edge, id ${id}:

${sideBySide(sample.sponsorView, sample.trustedView)}

  photo: the sponsor gets ${photoOf(sample.sponsorPhoto)} (a sealed stream)
         the service stores ${photoOf(sample.trustedPhoto)}

Try, from ${REPO_ROOT} (T is the sponsor application's client certificate):

  T='${T}'
  # create: 201, the sensitive fields come back sealed
  curl $T -H 'content-type: application/json' -d '${record}' ${edge}/v1/accreditations
  # get by id, and the list: sealed fields, no vetting notes
  curl $T ${edge}/v1/accreditations/${id}
  curl $T ${edge}/v1/accreditations
  # photo upload (204: it travels sealed, the service stores the PNG), then download (a sealed stream)
  echo ${photoB64} | base64 -d | curl $T -X PUT -H 'content-type: image/png' --data-binary @- ${edge}/v1/accreditations/${id}/photo
  curl $T -o ${photoFile}.sealed -w '%{http_code} %{content_type} %{size_download} bytes\\n' ${edge}/v1/accreditations/${id}/photo
  # only the private key set opens them (the trusted host's tools):
  node --import tsx src/cli.ts open --keys ${rel(keys.privateFile)} --context photos-out/${id} --body ${photoFile}.sealed -o ${photoFile}.png
  curl -s $T ${edge}/v1/accreditations/${id} | node --import tsx src/cli.ts open --keys ${rel(keys.privateFile)} --context accreditations --fields ${fields} --records :id
  # refused: an unknown route (404 route_not_found, nothing forwarded)
  curl $T ${edge}/v1/does-not-exist
  # refused: no client certificate (the connection is closed before any HTTP is read)
  curl --cacert ${rel(pki.sponsorCa.cert)} ${edge}/v1/accreditations
  # refused: plaintext sent to the sidecar with the edge's own certificate, past the seal
  # (400 open_failed; the service never sees it)
  curl ${E} -H 'content-type: application/json' -d '${record}' ${sidecar}/v1/accreditations
  # the sidecar publishes the public key set; its route allows only the edge's certificate
  curl ${E} ${sidecar}/.well-known/jwks.json
  # metrics, on each gateway's loopback admin listener
  curl ${edgeAdmin}/metrics
  curl ${sidecarAdmin}/metrics

Stop: Ctrl-C (or kill ${process.pid}) drains both gateways, then stops.
Reload: kill -HUP ${process.pid} reloads both gateways, the sidecar first. To rotate the demo key with no
request refused (docs/operations.md), stage a new key that every side accepts but none uses yet, reload, then
promote it (step 1 prints the exact promote command, with the new kid) and reload again:
  node --import tsx src/cli.ts keys init --out ${rel(path.dirname(keys.publicFile))} --rotate --stage && kill -HUP ${process.pid}
  node --import tsx src/cli.ts keys promote --out ${rel(path.dirname(keys.publicFile))} --kid=<the staged kid> && kill -HUP ${process.pid}
`
}

/** Rows of cells, each column padded to its widest cell. */
function columns(rows: ReadonlyArray<readonly string[]>): string {
  const widths: number[] = []
  for (const row of rows) {
    for (const [i, c] of row.entries()) widths[i] = Math.max(widths[i] ?? 0, c.length)
  }
  return rows.map((row) => `  ${row.map((c, i) => c.padEnd(widths[i]!)).join('  ')}`.trimEnd()).join('\n')
}

/** Bytes as ASCII, anything unprintable as "." (a PNG starts "\x89PNG"). */
function printable(bytes: Buffer): string {
  return bytes.toString('latin1').replace(/[^\x20-\x7e]/g, '.')
}

main().catch((err: unknown) => {
  process.stderr.write(`ecluse demo: ${err instanceof Error ? err.message : String(err)}\n`)
  process.exit(1)
})
