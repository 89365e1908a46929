/**
 * `npm start`: the whole demo on loopback with no other step. Creates the development PKI if it is
 * missing, starts the demo accreditation service as the trusted host, starts the gateway in front of
 * it from config/demo.yaml, and prints ready-to-paste curl commands.
 */
import { readFile } from 'node:fs/promises'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { Gateway } from '../main.js'
import { generateDevPki } from '../pki/dev-pki.js'
import { AccreditationService } from './accreditation-service.js'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')
const configPath = path.join(root, 'config/demo.yaml')

async function main(): Promise<void> {
  const pki = await generateDevPki({ outDir: path.join(root, 'certs') })
  const service = new AccreditationService({
    cert: await readFile(pki.trustedServer.cert),
    key: await readFile(pki.trustedServer.key),
    ca: await readFile(pki.trustedCa.cert),
    host: '127.0.0.1',
    port: 9443,
  })
  await service.listen()
  const gateway = await Gateway.start(configPath)

  const rel = (p: string) => path.relative(process.cwd(), p) || '.'
  const tls = `--cacert ${rel(pki.sponsorCa.cert)} --cert ${rel(pki.sponsorClient.cert)} --key ${rel(pki.sponsorClient.key)}`
  const base = `https://localhost:${gateway.sponsorPort}`
  process.stdout.write(`
Écluse demo is running.
  sponsor side  ${base}  (mTLS: sponsor CA only)
  trusted side  https://127.0.0.1:${service.port}  (demo accreditation service, mTLS: trusted CA only)
  admin         http://127.0.0.1:${gateway.adminPort}/metrics  /healthz  /readyz

Try, from ${process.cwd()}:
  curl ${tls} -H 'content-type: application/json' \\
       -d '{"category":"journalist","name":"Ada Lovelace","passport":"X1234567"}' ${base}/v1/accreditations
  curl ${tls} ${base}/v1/accreditations
  curl ${tls} ${base}/v1/accreditations?status=pending
  curl ${tls} ${base}/v1/does-not-exist              # 404 route_not_found, upstream untouched
  curl --cacert ${rel(pki.sponsorCa.cert)} ${base}/v1/accreditations   # no client certificate: refused
  curl http://127.0.0.1:${gateway.adminPort}/metrics

Ctrl-C drains and stops.
`)
  const stop = () => {
    void gateway.shutdown().then(() => service.close()).then(() => process.exit(0))
  }
  process.once('SIGINT', stop)
  process.once('SIGTERM', stop)
  process.on('SIGHUP', () => void gateway.reload())
}

main().catch((err: unknown) => {
  process.stderr.write(`ecluse demo: ${err instanceof Error ? err.message : String(err)}\n`)
  process.exit(1)
})
