/**
 * The gateway's V8 options (`--no-concurrent-sweeping`, docs/operations.md "Processes and cores")
 * cannot go in NODE_OPTIONS: the image's ENTRYPOINT passes them to node. The bench measures Écluse
 * with `IMAGE_NODE_ARGS`, so the published figures hold only if the ENTRYPOINT, the build step that
 * tries the options with the image's own node, and that list stay one, and only if the Kubernetes
 * example keeps the image's ENTRYPOINT (a `command:` would replace it and drop them). The workers of
 * `--workers` inherit them: test/e2e/workers-whose-primary-is-killed-….test.ts checks.
 */
import { spawnSync } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { parseAllDocuments } from 'yaml'
import { IMAGE_NODE_MAJOR } from '../bench/lib/results.js'
import { IMAGE_NODE_ARGS } from '../bench/lib/subjects.js'
import { ROOT } from './helpers/cli.js'

/** The exec forms of the Dockerfile's `instruction` lines, e.g. `["node", "--x", "/app/bin/ecluse.js"]`. */
function execForms(dockerfile: string, instruction: string): string[][] {
  const prefix = new RegExp(`^${instruction}\\s+(?=\\[)`)
  return dockerfile
    .split('\n')
    .filter((l) => prefix.test(l))
    .map((l) => JSON.parse(l.replace(prefix, '')) as string[])
}

t.test('the image runs node with exactly the options the bench gives Écluse', async (t) => {
  const dockerfile = await readFile(join(ROOT, 'Dockerfile'), 'utf8')
  t.same(execForms(dockerfile, 'ENTRYPOINT'), [['node', ...IMAGE_NODE_ARGS, '/app/bin/ecluse.js']], 'one ENTRYPOINT, with the options')
  t.ok(IMAGE_NODE_ARGS.length > 0, 'the bench has options to give')
  // This test runs on the CI's node; the image's own node tries them when the image is built, in
  // the final stage (the one whose node runs the gateway).
  const finalStage = dockerfile.slice(dockerfile.lastIndexOf('\nFROM '))
  const tried = execForms(finalStage, 'RUN').filter((argv) => argv[0] === 'node')
  t.same(tried, [['node', ...IMAGE_NODE_ARGS, '-e', '0']], 'the build tries them with the image’s node')
})

t.test('the bench knows the Node major the image runs, to say when a run used another', async (t) => {
  const dockerfile = await readFile(join(ROOT, 'Dockerfile'), 'utf8')
  const froms = [...dockerfile.matchAll(/^FROM node:(\d+)-/gm)].map((m) => Number(m[1]))
  t.ok(froms.length > 0)
  t.same(froms, froms.map(() => IMAGE_NODE_MAJOR), `every stage is node:${IMAGE_NODE_MAJOR}`)
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
