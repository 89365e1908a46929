import { rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { stringify } from 'yaml'
import { type CliIo, main } from '../src/cli.js'
import { gatewayConfig } from './helpers/harness.js'
import { makeTestPki } from './helpers/pki.js'
import { SPONSOR_APP, tempDir, writeKeyFiles } from './helpers/sealing.js'

// Regression: the key sets were read concurrently and only the first read to fail was reported, so
// which broken file an operator was told about depended on timing (and a test of it was flaky).
t.test('every broken key set is reported, one line each, in the order of the file, every time', async (t) => {
  const pki = await makeTestPki()
  const dir = await tempDir()
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const good = await writeKeyFiles(dir, 'good')
  const notJson = join(dir, 'not-json.jwks.json')
  await writeFile(notJson, '{ not json')
  const missing = join(dir, 'missing.jwks.json')
  const route = {
    name: 'create',
    methods: ['POST'],
    path: '/v1/records',
    allow: [SPONSOR_APP],
    upstream: 'backend',
    transforms: { request: [{ type: 'seal', recipients: 'good', fields: ['/passport'] }] },
  }
  const file = join(dir, 'gateway.yaml')
  // The large, valid file first: it is read last, so a timing-dependent report would show it.
  await writeFile(
    file,
    stringify(gatewayConfig(pki, 9443, [route], { keys: { good: { file: good.publicPath }, zeta: { file: missing }, alpha: { file: notJson } } })),
  )
  for (let run = 0; run < 5; run++) {
    let stderr = ''
    const io: CliIo = { stdout: { write: () => true }, stderr: { write: (s: string) => (stderr += s) }, env: {} }
    t.equal(await main(['config', 'check', file], io), 1)
    const lines = stderr.trimEnd().split('\n')
    t.equal(lines.length, 2, `run ${run}: one line per broken set`)
    // A file that does not open is named by its key alone: its path may be key material pasted there.
    t.equal(lines[0], 'ecluse: keys.zeta.file: the file it names: cannot be read (ENOENT)', `run ${run}: the first in the file first`)
    t.ok(lines[1]!.startsWith(`ecluse: keys.alpha.file (${notJson})`), `run ${run}: then the next`)
  }
})
