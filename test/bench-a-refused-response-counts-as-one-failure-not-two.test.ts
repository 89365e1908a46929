/**
 * Found by review: in the keep-alive load (autocannon), a non-2xx answer was counted in `non2xx`
 * and, failing its body check, in `mismatches` too: the `failed` column doubled, and a checked
 * target printed e.g. "-23134/23134". The load generator, run as the bench runs it against a real
 * mTLS server, counts a refused response once, and a wrong 2xx body still as a mismatch.
 */
import { spawn } from 'node:child_process'
import https from 'node:https'
import t from 'tap'
import type { LoadResult, LoadSpec } from '../bench/load-generator.js'
import { ROOT } from './helpers/cli.js'
import { makeTestPki } from './helpers/pki.js'

t.test('a 404 is one failure (non2xx), a 200 with the wrong body one mismatch', async (t) => {
  const pki = await makeTestPki()
  const server = https.createServer(
    { cert: pki.gatewaySponsorServer.certPem, key: pki.gatewaySponsorServer.keyPem, ca: pki.sponsorCa.certPem, requestCert: true, rejectUnauthorized: true },
    (req, res) => {
      if (req.url === '/missing') res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"route_not_found"}')
      else res.writeHead(200, { 'content-type': 'application/json' }).end('{"id":"1","name":"no passport here"}')
    },
  )
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => server.close())
  const port = (server.address() as { port: number }).port

  const run = (path: string) =>
    new Promise<LoadResult>((resolve, reject) => {
      const spec: LoadSpec = {
        mode: 'keepalive',
        host: '127.0.0.1',
        port,
        tls: { ca: pki.sponsorCa.certPem, cert: pki.sponsorClient.certPem, key: pki.sponsorClient.keyPem, servername: 'localhost' },
        connections: 2,
        durationSeconds: 1,
        warmupSeconds: 0,
        paths: [path],
        check: { kind: 'record' },
      }
      const child = spawn(process.execPath, ['--import', 'tsx', 'bench/load-generator.ts', JSON.stringify(spec)], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] })
      let out = ''
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString()
      })
      child.on('error', reject)
      child.on('exit', () => {
        const line = out.split('\n').find((l) => l.includes('"event":"result"'))
        if (line === undefined) reject(new Error(`no result line: ${out}`))
        else resolve(JSON.parse(line) as LoadResult)
      })
    })

  const refused = await run('/missing')
  t.ok(refused.requests > 0, `${refused.requests} requests`)
  t.equal(refused.non2xx, refused.requests, 'every 404 counted as non-2xx')
  t.equal(refused.mismatches, 0, 'and not as a failed check as well')
  const wrong = await run('/record')
  t.ok(wrong.requests > 0)
  t.equal(wrong.non2xx, 0)
  t.equal(wrong.mismatches, wrong.requests, 'a 200 without the record fails its check')
})
