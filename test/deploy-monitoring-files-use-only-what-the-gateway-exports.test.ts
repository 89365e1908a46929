/**
 * deploy/prometheus (alerting rules and their promtool unit tests) and deploy/grafana (a dashboard)
 * are loaded by operators as shipped, so a metric or a label they name that the gateway does not
 * export would fail silently: an alert that never fires, a panel that stays empty. Every expression
 * is checked against a real scrape of a running `serve --workers 2` (every family with samples,
 * the cluster's own among them), and against Prometheus itself: `promtool check rules` parses every
 * expression, `promtool test rules` replays the unit tests, `promtool check metrics` lints the
 * scrape, and a Prometheus server scraping the gateway evaluates every rule without error and
 * answers every panel's query with data. Both come with Debian's `prometheus` package (.ci/run
 * installs it); without it, in CI (`CI` set) their parts fail, locally they skip with the reason.
 */
import { spawn, spawnSync } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { collectDefaultMetrics, Registry } from 'prom-client'
import t, { type Test } from 'tap'
import { Agent, request } from 'undici'
import { parse, stringify } from 'yaml'
import { closedPort, echoHandler, GatewayProcess, gatewayConfig, TestUpstream } from './helpers/harness.js'
import { makeTestPki } from './helpers/pki.js'

const ROOT = fileURLToPath(new URL('../', import.meta.url))
const RULES = join(ROOT, 'deploy/prometheus/ecluse-alerts.yaml')
const RULE_TESTS = join(ROOT, 'deploy/prometheus/ecluse-alerts.test.yaml')
const DASHBOARD = join(ROOT, 'deploy/grafana/ecluse-dashboard.json')
/** Labels Prometheus adds to every series it scrapes. */
const TARGET_LABELS = new Set(['job', 'instance'])

const probe = spawnSync('promtool', ['--version'], { encoding: 'utf8' })
const promtoolMissing = probe.error !== undefined || probe.status !== 0
const whyNoPromtool = `promtool is required (apt-get install -y --no-install-recommends prometheus): ${probe.error?.message ?? probe.stderr}`
const promtoolSkip = promtoolMissing && !process.env.CI ? whyNoPromtool : false

function promtool(...args: string[]): { status: number | null; output: string } {
  const run = spawnSync('promtool', args, { encoding: 'utf8' })
  return { status: run.status, output: `${run.stdout}${run.stderr}` }
}

/** Metric name → the label names seen on its samples (histograms also under `_bucket`, `_sum`, `_count`). */
type Exported = Map<string, Set<string>>

function parseExposition(text: string): Exported {
  const exported: Exported = new Map()
  const add = (name: string) => exported.get(name) ?? exported.set(name, new Set()).get(name)!
  for (const line of text.split('\n')) {
    const type = /^# TYPE (\S+) (\S+)$/.exec(line)
    if (type !== null) {
      add(type[1]!)
      if (type[2] === 'histogram') for (const suffix of ['_bucket', '_sum', '_count']) add(type[1]! + suffix)
      continue
    }
    const sample = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? \S+$/.exec(line)
    if (sample === null) continue
    const labels = add(sample[1]!)
    for (const m of (sample[2] ?? '').matchAll(/([a-zA-Z_]\w*)="(?:[^"\\]|\\.)*"/g)) labels.add(m[1]!)
  }
  return exported
}

/** The gateway's metrics as Prometheus scrapes them, from a cluster that has served, refused and failed requests. */
async function scrapeOfARunningCluster(t: Test): Promise<{ scrape: string; admin: string }> {
  const pki = await makeTestPki()
  const dir = await mkdtemp(join(tmpdir(), 'ecluse-monitoring-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const upstream = new TestUpstream(pki, echoHandler)
  await upstream.listen()
  t.teardown(() => upstream.close())
  const closed = await closedPort()
  const allow = ['uri:spiffe://sponsor.test/accreditation-app']
  const config = gatewayConfig(pki, upstream.port, [
    { name: 'records', methods: ['GET'], path: '/v1/records/*', allow, upstream: 'backend' },
    { name: 'notes', methods: ['POST'], path: '/v1/notes', allow, upstream: 'backend', transforms: { request: [{ type: 'strip', fields: ['/secret'] }] } },
    { name: 'elsewhere', methods: ['GET'], path: '/v1/elsewhere', allow, upstream: 'down' },
  ])
  const upstreams = config.upstreams as Record<string, Record<string, unknown>>
  upstreams['down'] = { ...upstreams['backend'], url: `https://127.0.0.1:${closed}` }
  const configPath = join(dir, 'gateway.yaml')
  await writeFile(configPath, stringify(config))
  const gateway = new GatewayProcess(configPath, { args: ['--workers', '2'] })
  t.teardown(() => gateway.kill())
  const started = await gateway.logged('écluse cluster started')
  const port = (field: string) => Number(String(started[field]).split(':').at(-1))
  const sponsor = `https://127.0.0.1:${port('sponsor')}`
  const agent = new Agent({
    connect: { ca: pki.sponsorCa.certPem, cert: pki.sponsorClient.certPem, key: pki.sponsorClient.keyPem, servername: 'localhost' },
  })
  t.teardown(() => agent.destroy())
  const status = async (path: string, init: { method?: string; body?: string; headers?: Record<string, string> } = {}) => {
    const res = await request(`${sponsor}${path}`, { ...init, dispatcher: agent })
    await res.body.dump()
    return res.statusCode
  }
  t.equal(await status('/v1/records/1'), 200, 'a request served')
  t.equal(await status('/v1/notes', { method: 'POST', body: '{"secret": ', headers: { 'content-type': 'application/json' } }), 400, 'a body the transform refuses')
  t.equal(await status('/v1/elsewhere'), 502, 'an upstream that refuses connections')
  t.equal(await status('/v1/nowhere'), 404, 'a request no route matches')
  // Workers report their metrics to the primary when it is scraped: the last answer is counted.
  const admin = `127.0.0.1:${port('admin')}`
  // The kubelet's readiness probe, which sets `ecluse_upstream_ready` (one upstream down: 503).
  const ready = await request(`http://${admin}/readyz`)
  await ready.body.dump()
  t.equal(ready.statusCode, 503, 'readiness checked, and fails for the upstream that is down')
  const res = await request(`http://${admin}/metrics`)
  return { scrape: await res.body.text(), admin }
}

/**
 * A Prometheus server (Debian's, as promtool) scraping `target` every second and evaluating the
 * shipped rules; resolves with its HTTP API's address.
 */
async function startPrometheus(t: Test, target: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'ecluse-prometheus-'))
  const config = join(dir, 'prometheus.yml')
  await writeFile(
    config,
    stringify({
      global: { scrape_interval: '1s', evaluation_interval: '1s' },
      rule_files: [RULES],
      scrape_configs: [{ job_name: 'ecluse', static_configs: [{ targets: [target] }] }],
    }),
  )
  const address = `127.0.0.1:${await closedPort()}`
  const server = spawn('prometheus', [`--config.file=${config}`, `--storage.tsdb.path=${join(dir, 'data')}`, `--web.listen-address=${address}`], {
    stdio: ['ignore', 'ignore', 'pipe'],
  })
  let log = ''
  server.stderr!.setEncoding('utf8').on('data', (d: string) => (log += d))
  server.on('error', (err) => (log += `${err}`))
  const exited = new Promise((resolve) => {
    server.once('exit', resolve)
    server.once('error', resolve)
  })
  t.teardown(async () => {
    server.kill('SIGKILL')
    await exited
    await rm(dir, { recursive: true, force: true })
  })
  await until(async () => (await query(`http://${address}`, 'up{job="ecluse"}')).length === 1, `Prometheus did not scrape the gateway: ${log}`)
  return `http://${address}`
}

async function until(ready: () => Promise<boolean>, why: string): Promise<void> {
  for (const deadline = Date.now() + 30_000; Date.now() < deadline; await new Promise((r) => setTimeout(r, 250))) {
    if (await ready().catch(() => false)) return
  }
  throw new Error(why)
}

/** An instant query through Prometheus's HTTP API; throws with its error for a query it refuses. */
async function query(api: string, expr: string): Promise<Array<{ metric: Record<string, string>; value: [number, string] }>> {
  const res = await request(`${api}/api/v1/query?query=${encodeURIComponent(expr)}`)
  const body = (await res.body.json()) as { status: string; error?: string; data?: { result: Array<{ metric: Record<string, string>; value: [number, string] }> } }
  if (body.status !== 'success') throw new Error(`${expr}: ${body.error}`)
  return body.data!.result
}


/**
 * Checks one PromQL expression against the scrape: it names at least one metric, every metric
 * exists, every label it matches on exists on that metric, and every label it groups by exists on
 * one of its metrics (a misspelt `by` label silently sums everything into one series).
 */
function checkExpression(t: Test, where: string, expr: string, exported: Exported): void {
  const selectors = [...expr.matchAll(/\b(ecluse_[a-z0-9_]+)\s*(?:\{([^}]*)\})?/g)]
  if (selectors.length === 0) return void t.fail(`${where}: names no ecluse_ metric: ${expr}`)
  const labelsOfExpr = new Set(TARGET_LABELS)
  for (const [, name, matchers] of selectors) {
    const labels = exported.get(name!)
    if (labels === undefined) {
      t.fail(`${where}: ${name} is not exported by the gateway`)
      continue
    }
    for (const label of labels) labelsOfExpr.add(label)
    for (const [, key] of (matchers ?? '').matchAll(/([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)/g)) {
      if (!labels.has(key!) && !TARGET_LABELS.has(key!)) t.fail(`${where}: ${name} has no label ${key}`)
    }
  }
  for (const [, list] of expr.matchAll(/\bby\s*\(([^)]*)\)/g)) {
    for (const label of list!.split(',').map((l) => l.trim())) {
      if (!labelsOfExpr.has(label)) t.fail(`${where}: groups by ${label}, which none of its metrics has`)
    }
  }
  t.pass(`${where}: ${selectors.map((s) => s[1]).join(', ')}`)
}

/** GitHub's anchors of a markdown file's headings. */
async function anchorsOf(file: string): Promise<Set<string>> {
  const text = await readFile(join(ROOT, file), 'utf8')
  const anchors = new Set<string>()
  for (const m of text.matchAll(/^#{1,6} (.+)$/gm)) {
    anchors.add(
      m[1]!
        .trim()
        .toLowerCase()
        .replace(/[^\p{L}\p{N} _-]/gu, '')
        .replace(/ /g, '-'),
    )
  }
  return anchors
}

interface AlertRule {
  alert: string
  expr: string
  for?: string
  labels?: Record<string, string>
  annotations?: Record<string, string>
}
interface AlertTestCase {
  alertname: string
  exp_alerts?: unknown[]
}

const rules = (parse(await readFile(RULES, 'utf8')) as { groups: Array<{ name: string; rules: AlertRule[] }> }).groups.flatMap((g) => g.rules)
const ruleTests = parse(await readFile(RULE_TESTS, 'utf8')) as { tests: Array<{ alert_rule_test?: AlertTestCase[] }> }
const dashboard = JSON.parse(await readFile(DASHBOARD, 'utf8')) as Dashboard

interface Target {
  expr?: string
  refId: string
  datasource?: { uid?: string }
}
interface Panel {
  id: number
  type: string
  title: string
  gridPos: { x: number; y: number; w: number; h: number }
  datasource?: { uid?: string }
  targets?: Target[]
  panels?: Panel[]
}
interface Dashboard {
  uid: string
  panels: Panel[]
  templating: { list: Array<{ name: string; type: string; query: string | { query: string } }> }
}

const panels = dashboard.panels.flatMap((p) => [p, ...(p.panels ?? [])])
const graphs = panels.filter((p) => p.type !== 'row')
const variables = dashboard.templating.list
/** Grafana's own variables used in the dashboard's expressions, replaced for promtool. */
const BUILT_IN: Record<string, string> = { __rate_interval: '5m', __range: '1h', __interval: '1m' }
/** How a panel names the dashboard's data source variable (Grafana's syntax, not a template string). */
const DATASOURCE_VARIABLE = ['$', '{datasource}'].join('')

t.test('the shipped alerts and dashboard use only metrics and labels that a running gateway exports', async (t) => {
  const { scrape, admin } = await scrapeOfARunningCluster(t)
  const exported = parseExposition(scrape)
  for (const name of ['ecluse_requests_total', 'ecluse_crypto_bytes_total', 'ecluse_cluster_workers', 'ecluse_upstream_errors_total', 'ecluse_transform_refusals_total']) {
    t.ok((exported.get(name)?.size ?? 0) > 0, `the scrape has samples of ${name}`)
  }
  for (const rule of rules) checkExpression(t, `alert ${rule.alert}`, rule.expr, exported)
  for (const panel of graphs) for (const target of panel.targets ?? []) checkExpression(t, `panel "${panel.title}" ${target.refId}`, target.expr ?? '', exported)
  for (const variable of variables.filter((v) => v.type === 'query')) {
    const query = typeof variable.query === 'string' ? variable.query : variable.query.query
    const m = /^label_values\((.+),\s*(\w+)\)$/.exec(query)
    if (m === null) {
      t.fail(`variable ${variable.name}: not a label_values() query: ${query}`)
      continue
    }
    checkExpression(t, `variable ${variable.name}`, m[1]!, exported)
    const metric = /ecluse_[a-z0-9_]+/.exec(m[1]!)![0]
    t.ok(exported.get(metric)?.has(m[2]!) || TARGET_LABELS.has(m[2]!), `variable ${variable.name}: ${metric} has the label ${m[2]}`)
  }

  t.test('promtool check metrics finds nothing to say of our own metrics', { skip: promtoolSkip }, async (t) => {
    if (promtoolMissing) return void t.fail(whyNoPromtool)
    const lint = spawnSync('promtool', ['check', 'metrics'], { input: scrape, encoding: 'utf8' })
    // prom-client's default process metrics have three gauges ending in `_total`, which promtool
    // flags; they are Node's, not ours, and renaming them would break every Node dashboard.
    const registry = new Registry()
    collectDefaultMetrics({ register: registry, prefix: 'ecluse_' })
    const defaults = new Set(registry.getMetricsAsArray().map((m) => m.name))
    const problems = `${lint.stdout}${lint.stderr}`.split('\n').filter((l) => l.trim() !== '')
    const ours = problems.filter((line) => !defaults.has(line.split(' ')[0]!))
    t.same(ours, [], 'no problem with a metric of the gateway')
  })

  t.test('a real Prometheus scrapes the gateway, evaluates every rule without error and answers every panel', { skip: promtoolSkip }, async (t) => {
    if (promtoolMissing) return void t.fail(whyNoPromtool)
    const api = await startPrometheus(t, admin)
    // Enough scrapes for rate() over the panels' window, and for every rule to have been evaluated.
    await until(async () => Number((await query(api, 'count_over_time(up{job="ecluse"}[1m])'))[0]?.value[1]) >= 4, 'too few scrapes')
    const res = await request(`${api}/api/v1/rules?type=alert`)
    const loaded = ((await res.body.json()) as { data: { groups: Array<{ rules: Array<{ name: string; health: string; lastError?: string }> }> } }).data.groups.flatMap(
      (g) => g.rules,
    )
    t.same(loaded.map((r) => r.name).sort(), rules.map((r) => r.alert).sort(), 'every alert is loaded')
    for (const rule of loaded) t.equal(rule.health, 'ok', `${rule.name} evaluates without error${rule.lastError ? `: ${rule.lastError}` : ''}`)
    // The panels as Grafana sends them with every job, instance and route selected.
    const live: Record<string, string> = { ...BUILT_IN, __rate_interval: '10s', __range: '1m' }
    for (const panel of graphs) {
      for (const target of panel.targets ?? []) {
        const expr = (target.expr ?? '').replace(/\$(\w+)/g, (_, name: string) => live[name] ?? '.*')
        const series = await query(api, expr).catch((err: Error) => t.fail(`panel "${panel.title}" ${target.refId}: ${err.message}`))
        if (Array.isArray(series)) t.ok(series.length > 0, `panel "${panel.title}" ${target.refId}: ${series.length} series`)
      }
    }
  })
})

t.test('every alert is documented, routed by severity and tested firing and quiet', async (t) => {
  const names = rules.map((r) => r.alert)
  t.ok(names.length >= 10, `${names.length} alerts`)
  t.equal(new Set(names).size, names.length, 'alert names are unique')
  const cases = ruleTests.tests.flatMap((g) => g.alert_rule_test ?? [])
  for (const rule of rules) {
    t.ok(['warning', 'critical'].includes(rule.labels?.['severity'] ?? ''), `${rule.alert}: severity warning or critical`)
    for (const field of ['summary', 'description', 'runbook']) t.ok(rule.annotations?.[field], `${rule.alert}: has a ${field}`)
    const [file, anchor] = (rule.annotations?.['runbook'] ?? '').split('#')
    if (anchor !== undefined) t.ok((await anchorsOf(file!)).has(anchor), `${rule.alert}: runbook ${file}#${anchor} exists`)
    else t.ok(await readFile(join(ROOT, file!)), `${rule.alert}: runbook ${file} exists`)
    const mine = cases.filter((c) => c.alertname === rule.alert)
    t.ok(mine.some((c) => (c.exp_alerts?.length ?? 0) > 0), `${rule.alert}: a unit test where it fires`)
    t.ok(mine.some((c) => (c.exp_alerts?.length ?? 0) === 0), `${rule.alert}: a unit test where it stays quiet`)
  }
  const operations = await readFile(join(ROOT, 'docs/operations.md'), 'utf8')
  for (const name of names) t.ok(operations.includes(`\`${name}\``), `${name} is in docs/operations.md`)
})

t.test('promtool accepts the rules and their unit tests pass', { skip: promtoolSkip }, async (t) => {
  if (promtoolMissing) return void t.fail(whyNoPromtool)
  const check = promtool('check', 'rules', RULES)
  t.equal(check.status, 0, `promtool check rules: ${check.output}`)
  const unit = promtool('test', 'rules', RULE_TESTS)
  t.equal(unit.status, 0, `promtool test rules: ${unit.output}`)
})

t.test('the dashboard is laid out, uses its data source variable and only valid PromQL', async (t) => {
  t.equal(dashboard.uid, 'ecluse-gateway', 'a fixed uid, so that a re-import replaces it')
  t.ok(variables.some((v) => v.name === 'datasource' && v.type === 'datasource' && v.query === 'prometheus'), 'a Prometheus data source variable')
  t.ok(graphs.length >= 15, `${graphs.length} panels`)
  t.equal(new Set(graphs.map((p) => p.title)).size, graphs.length, 'panel titles are unique')
  t.equal(new Set(panels.map((p) => p.id)).size, panels.length, 'panel ids are unique')
  const defined = new Set([...variables.map((v) => v.name), ...Object.keys(BUILT_IN)])
  for (const panel of graphs) {
    t.equal(panel.datasource?.uid, DATASOURCE_VARIABLE, `${panel.title}: the data source variable`)
    t.ok((panel.targets?.length ?? 0) > 0, `${panel.title}: has a query`)
    for (const target of panel.targets ?? []) {
      t.equal(target.datasource?.uid, DATASOURCE_VARIABLE, `${panel.title} ${target.refId}: the data source variable`)
      for (const [, name] of (target.expr ?? '').matchAll(/\$(\w+)/g)) t.ok(defined.has(name!), `${panel.title}: $${name} is defined`)
    }
  }
  // On Grafana's 24-column grid, no two panels overlap and none runs off the right edge.
  for (const [i, a] of panels.entries()) {
    t.ok(a.gridPos.x + a.gridPos.w <= 24, `${a.title}: within the grid`)
    for (const b of panels.slice(i + 1)) {
      const apart =
        a.gridPos.x + a.gridPos.w <= b.gridPos.x ||
        b.gridPos.x + b.gridPos.w <= a.gridPos.x ||
        a.gridPos.y + a.gridPos.h <= b.gridPos.y ||
        b.gridPos.y + b.gridPos.h <= a.gridPos.y
      if (!apart) t.fail(`"${a.title}" and "${b.title}" overlap`)
    }
  }

  t.test('promtool parses every panel query', { skip: promtoolSkip }, async (t) => {
    if (promtoolMissing) return void t.fail(whyNoPromtool)
    // Each query as a recording rule, with Grafana's variables as a user's selection would leave them.
    const substitute = (expr: string) => expr.replace(/\$(\w+)/g, (_, name: string) => BUILT_IN[name] ?? '.*')
    const recorded = graphs.flatMap((p) => (p.targets ?? []).map((target) => ({ record: `dashboard:panel_${p.id}_${target.refId}`, expr: substitute(target.expr ?? '') })))
    const dir = await mkdtemp(join(tmpdir(), 'ecluse-dashboard-'))
    t.teardown(() => rm(dir, { recursive: true, force: true }))
    const file = join(dir, 'panels.yaml')
    await writeFile(file, stringify({ groups: [{ name: 'dashboard', rules: recorded }] }))
    const check = promtool('check', 'rules', file)
    t.equal(check.status, 0, `promtool check rules on ${recorded.length} panel queries: ${check.output}`)
  })
})
