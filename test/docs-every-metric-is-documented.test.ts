import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { collectDefaultMetrics, Registry } from 'prom-client'
import t from 'tap'
import { GatewayMetrics } from '../src/observability/metrics.js'

// docs/metrics.md is what an operator builds dashboards and alerts from. A metric the gateway
// registers without a table row there (or a row for a metric that no longer exists) fails the suite.
const doc = await readFile(new URL('../docs/metrics.md', import.meta.url), 'utf8')
const documented = new Set<string>()
for (const line of doc.split('\n')) {
  const m = /^\| `(ecluse_[a-z_]+)` \| (counter|gauge|histogram) \|/.exec(line)
  if (m !== null) documented.add(m[1]!)
}

/** The names Node's default metrics get under our prefix: documented as a family, not one by one. */
function defaultMetricNames(): Set<string> {
  const registry = new Registry()
  collectDefaultMetrics({ register: registry, prefix: 'ecluse_' })
  return new Set(registry.getMetricsAsArray().map((m) => m.name))
}

/** Metric names registered outside `GatewayMetrics` (the cluster primary's own registry). */
async function namesInSource(): Promise<Set<string>> {
  const names = new Set<string>()
  const root = new URL('../src/', import.meta.url)
  for (const entry of await readdir(root, { recursive: true })) {
    if (!entry.endsWith('.ts')) continue
    const text = await readFile(join(root.pathname, entry), 'utf8')
    for (const m of text.matchAll(/name: '(ecluse_[a-z_]+)'/g)) names.add(m[1]!)
  }
  return names
}

const defaults = defaultMetricNames()
const gateway = new GatewayMetrics({ routes: ['r'], upstreams: ['u'], version: '0.0.0' })
const registered = gateway.registry
  .getMetricsAsArray()
  .map((m) => m.name)
  .filter((name) => !defaults.has(name))
const fromSource = await namesInSource()
const all = [...new Set([...registered, ...fromSource])].sort()

t.test('every gateway and cluster metric has a row in docs/metrics.md', async (t) => {
  t.ok(registered.includes('ecluse_crypto_operations_total'), 'the sealing metrics are in the registry walked')
  t.ok(fromSource.has('ecluse_cluster_workers'), 'the cluster metrics are found in the source')
  for (const name of all) t.ok(documented.has(name), `${name} is documented`)
})

t.test('the doc lists no metric that does not exist', async (t) => {
  t.same([...documented].filter((name) => !all.includes(name)), [], 'every documented metric is registered')
})
