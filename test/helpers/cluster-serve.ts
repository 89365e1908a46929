/**
 * `ecluse serve --workers N` as the CLI runs it, with what `runCluster` takes and the CLI does not
 * offer, for the cluster tests:
 * `node --import tsx test/helpers/cluster-serve.ts CONFIG WORKERS [--boot-timeout-ms MS] [--reload-ask-ms MS] [--signal-during-boot SIGNAL]`.
 * `cluster.fork()` re-runs this script in each worker, where `runCluster` starts the gateway.
 *
 * - `--boot-timeout-ms`: a worker stuck in its boot is killed in seconds, not a minute.
 * - `--reload-ask-ms`: a worker's reload answer is given up on in seconds, not a minute.
 * - `--signal-during-boot`: the primary sends itself that signal as soon as it holds signals, a
 *   signal during its boot for certain (from outside, no sign tells when that is).
 */
import cluster from 'node:cluster'
import { parseArgs } from 'node:util'
import { BootSignals } from '../../src/boot-signals.js'

// First, as the CLI does: a signal during boot waits for the start.
const signals = new BootSignals()
const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { 'boot-timeout-ms': { type: 'string' }, 'reload-ask-ms': { type: 'string' }, 'signal-during-boot': { type: 'string' } },
})
const [configPath, workers] = positionals
const duringBoot = values['signal-during-boot']
if (cluster.isPrimary && duringBoot !== undefined) process.kill(process.pid, duringBoot)
const bootTimeoutMs = values['boot-timeout-ms'] === undefined ? undefined : Number(values['boot-timeout-ms'])
const reloadAskMs = values['reload-ask-ms'] === undefined ? undefined : Number(values['reload-ask-ms'])
const { runCluster } = await import('../../src/cluster.js')
try {
  await runCluster(configPath!, { workers: Number(workers), bootTimeoutMs, reloadAskMs }, signals)
} catch (err) {
  process.stderr.write(`ecluse: ${(err as Error).message}\n`)
  process.exitCode = 1
}
