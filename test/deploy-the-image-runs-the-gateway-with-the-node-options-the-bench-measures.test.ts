/**
 * The gateway's V8 options (`--no-concurrent-sweeping`, docs/operations.md "Processes and cores")
 * cannot go in NODE_OPTIONS: the image's ENTRYPOINT passes them to node. The bench measures Écluse
 * with `IMAGE_NODE_ARGS`, so the published figures hold only if the two lists stay one, and only if
 * the Kubernetes example keeps the image's ENTRYPOINT (a `command:` would replace it and drop them).
 */
import { spawnSync } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { parseAllDocuments } from 'yaml'
import { IMAGE_NODE_ARGS } from '../bench/lib/subjects.js'
import { ROOT } from './helpers/cli.js'

/** The exec form of the last stage's ENTRYPOINT, e.g. `["node", "--x", "/app/bin/ecluse.js"]`. */
function entrypoint(dockerfile: string): string[] {
  const lines = dockerfile.split('\n').filter((l) => /^ENTRYPOINT\s/.test(l))
  if (lines.length !== 1) throw new Error(`expected one ENTRYPOINT line, found ${lines.length}`)
  return JSON.parse(lines[0]!.replace(/^ENTRYPOINT\s+/, '')) as string[]
}

t.test('the image runs node with exactly the options the bench gives Écluse', async (t) => {
  const argv = entrypoint(await readFile(join(ROOT, 'Dockerfile'), 'utf8'))
  t.same(argv, ['node', ...IMAGE_NODE_ARGS, '/app/bin/ecluse.js'])
  t.ok(IMAGE_NODE_ARGS.length > 0, 'the bench has options to give')
})

t.test('this node accepts them (a misspelt V8 flag is a bad option, not a silent no-op)', async (t) => {
  const run = spawnSync(process.execPath, [...IMAGE_NODE_ARGS, '-e', 'process.exit(0)'], { encoding: 'utf8' })
  t.equal(run.status, 0, run.stderr)
  const misspelt = spawnSync(process.execPath, ['--no-concurent-sweeping', '-e', 'process.exit(0)'], { encoding: 'utf8' })
  t.not(misspelt.status, 0, 'the check above can fail')
})

t.test('the Kubernetes example keeps the image ENTRYPOINT for the gateway container', async (t) => {
  const text = await readFile(join(ROOT, 'deploy/kubernetes/deployment.yaml'), 'utf8')
  const deployment = parseAllDocuments(text)
    .map((d) => d.toJS())
    .find((d) => d?.kind === 'Deployment')
  const ecluse = deployment.spec.template.spec.containers.find((c: { name: string }) => c.name === 'ecluse')
  t.ok(ecluse, 'the gateway container is there')
  t.equal(ecluse.command, undefined, 'no command: it would replace the ENTRYPOINT and drop the options')
  t.same(ecluse.args?.[0], 'serve')
})
