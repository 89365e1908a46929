/**
 * deploy/kubernetes-edge is the edge's counterpart of deploy/kubernetes (the trusted sidecar): what a
 * platform engineer copies to run the edge in the sponsor's cluster. Checked here: its configuration
 * passes `ecluse config check` with test files where the Secrets are mounted; it is config/edge.yaml's
 * profile (the same routes and steps) and holds the public key set only; its manifests agree with it
 * and with each other (ports, mounts, labels, the egress to the upstream, the termination timeline);
 * and its pod keeps the hardening and the probes of the sidecar example (whose test runs them).
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { parse } from 'yaml'
import { generateKeySet } from '../src/crypto/index.js'
import { ROOT } from './helpers/cli.js'
import { checkHardening, checkMemoryLimit, checkMounts, configCheck, type K8s, loadExample, mountedPaths, routeShape, selectorsOf, selects } from './helpers/kubernetes.js'
import { makeTestPki } from './helpers/pki.js'

const example = await loadExample('kubernetes-edge')
const { service, policy, podMonitor, disruptionBudget, gatewayYaml, gateway, pod, ecluse } = example

t.test("the ConfigMap's gateway.yaml passes `ecluse config check` with certificates where the Secrets are mounted", async (t) => {
  const pki = await makeTestPki()
  const dir = await mkdtemp(join(tmpdir(), 'ecluse-k8s-edge-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  // The files of each Secret (the `kubectl create secret` lines in deployment.yaml).
  await writeFile(join(dir, 'trusted-host.public.jwks.json'), JSON.stringify(generateKeySet().publicJwks))
  const mounted: Record<string, string> = {
    '/etc/ecluse/tls/sponsor/tls.crt': pki.gatewaySponsorServer.certPath,
    '/etc/ecluse/tls/sponsor/tls.key': pki.gatewaySponsorServer.keyPath,
    '/etc/ecluse/tls/sponsor/client-ca.crt': pki.sponsorCa.certPath,
    // The edge's client certificate towards the sidecar is the sponsor CA's; it verifies the sidecar
    // against the trusted CA.
    '/etc/ecluse/tls/trusted/tls.crt': pki.edgeClient.certPath,
    '/etc/ecluse/tls/trusted/tls.key': pki.edgeClient.keyPath,
    '/etc/ecluse/tls/trusted/ca.crt': pki.trustedCa.certPath,
    '/etc/ecluse/keys/trusted-host.public.jwks.json': join(dir, 'trusted-host.public.jwks.json'),
  }
  const paths = mountedPaths(gatewayYaml)
  t.equal(paths.length, Object.keys(mounted).length, `${paths.length} file paths in the configuration`)
  for (const path of paths) t.ok(path in mounted, `${path} is a file of a mounted Secret`)
  const check = await configCheck(gatewayYaml, mounted)
  t.equal(check.code, 0, `config check: ${check.stdout}${check.stderr}`)
  t.match(check.stdout, /^ok: 5 routes, 1 upstreams/)

  // The edge must never hold a private key: the same file with the private set is refused.
  await writeFile(join(dir, 'private.jwks.json'), JSON.stringify(generateKeySet().privateJwks), { mode: 0o600 })
  const refused = await configCheck(gatewayYaml, { ...mounted, '/etc/ecluse/keys/trusted-host.public.jwks.json': join(dir, 'private.jwks.json') })
  t.not(refused.code, 0, 'a private key set in the edge Secret is refused')
  t.match(refused.stdout + refused.stderr, /holds private key material/)
})

t.test('the example is the edge profile: every route seals or requires sealed values as config/edge.yaml does', async (t) => {
  const profile = parse(await readFile(join(ROOT, 'config/edge.yaml'), 'utf8'))
  t.same(routeShape(gateway.routes), routeShape(profile.routes), 'the same routes, limits and steps')
  t.same(Object.keys(gateway.keys), ['trusted-host'], 'one key set')
  t.not(gateway.keys['trusted-host'].private, true, 'the public one')
  for (const route of gateway.routes) t.same(route.allow, ['uri:spiffe://sponsor.example/accreditation-app'], `${route.name}: the applications only`)

  // The routes and contexts the sidecar example opens: what this edge seals must open there.
  const sidecar = await loadExample('kubernetes')
  const steps = (g: K8s) =>
    g.routes.flatMap((r: K8s) =>
      Object.values(r.transforms ?? {}).flatMap((list) => (list as K8s[]).filter((s) => s.context !== undefined).map((s) => `${r.name} ${s.context}`)),
    )
  const sidecarSteps = new Set(steps(sidecar.gateway))
  for (const step of steps(gateway)) t.ok(sidecarSteps.has(step), `${step}: the sidecar example has the same route and context`)
  const sidecarAllows = new Set(sidecar.gateway.routes.flatMap((r: K8s) => r.allow))
  t.same([...sidecarAllows], ['uri:spiffe://sponsor.example/ecluse-edge'], "the sidecar admits the edges' identity, in the same trust domain")
})

t.test('the Deployment, Service and NetworkPolicy agree with the configuration', async (t) => {
  const sponsorPort: number = gateway.sponsor.listen.port
  const adminPort: number = gateway.admin.listen.port
  checkMounts(t, example)
  t.equal(pod.containers.length, 1, 'the edge runs alone in its pod')

  t.same(ecluse.ports.map((p: K8s) => [p.name, p.containerPort]), [['sponsor', sponsorPort], ['admin', adminPort]], 'the sponsor and admin listeners are the only container ports')
  t.equal(gateway.sponsor.listen.host, '0.0.0.0', 'the sponsor listener is reachable from the pod network')
  t.equal(gateway.admin.allowNonLoopback, true, 'the admin listener is on the pod network, as it must say explicitly')
  t.same(service.spec.ports.map((p: K8s) => p.targetPort), ['sponsor'], 'the Service forwards to the sponsor port only')

  t.same(policy.spec.policyTypes, ['Ingress', 'Egress'], 'the NetworkPolicy restricts both ways')
  const ingress = policy.spec.ingress as K8s[]
  t.same(ingress.map((rule) => rule.ports.map((p: K8s) => p.port)), [[sponsorPort], [adminPort]], 'ingress on the sponsor port and the admin port, nothing else')
  t.ok(ingress.every((rule) => Array.isArray(rule.from) && rule.from.length > 0), 'each from named peers only')
  t.same(ingress[1].from, [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'monitoring' } }, podSelector: { matchLabels: { 'app.kubernetes.io/name': 'prometheus' } } }], 'the admin port from Prometheus only')
  const upstream = new URL(gateway.upstreams['trusted-sidecar'].url)
  const upstreamPort = Number(upstream.port || 443)
  const egress = policy.spec.egress as K8s[]
  t.same(egress.map((rule) => rule.ports.map((p: K8s) => `${p.protocol}/${p.port}`)), [[`TCP/${upstreamPort}`], ['UDP/53', 'TCP/53']], "egress to the upstream's port and DNS, nothing else")
  // An empty or missing `to` admits every destination.
  t.ok(egress[0].to?.length > 0 && egress[0].to.every((peer: K8s) => peer.ipBlock?.cidr !== undefined && !/\/0$/.test(peer.ipBlock.cidr)), 'the upstream port to an address block, not anywhere')
  // Both selectors in one peer: the cluster's DNS pods, not every pod of kube-system nor every kube-dns-labelled pod.
  t.same(egress[1].to, [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'kube-system' } }, podSelector: { matchLabels: { 'k8s-app': 'kube-dns' } } }], 'DNS to the cluster DNS pods only')
  t.equal(upstream.hostname, gateway.upstreams['trusted-sidecar'].serverName, 'the sidecar is verified under the name it is reached by')

  t.same(podMonitor.spec.podMetricsEndpoints, [{ port: 'admin', path: '/metrics', interval: '30s' }], 'Prometheus scrapes the admin port')
  for (const [what, selector] of selectorsOf(example)) t.ok(selects(example, selector), `the ${what} selects the pods`)
  t.ok(disruptionBudget.spec.minAvailable >= 1 && disruptionBudget.spec.minAvailable < example.deployment.spec.replicas, 'evictions keep a replica serving, and can proceed')

  const drainSeconds = gateway.shutdown.drainTimeoutMs / 1000
  const preStop = Number(ecluse.lifecycle.preStop.exec.command[1])
  t.ok(pod.terminationGracePeriodSeconds > preStop + drainSeconds, 'the grace period outlasts the preStop sleep and the drain')
})

t.test('the pod keeps the hardening and the probes of the sidecar example', async (t) => {
  checkHardening(t, pod)
  checkMemoryLimit(t, example)
  const sidecar = (await loadExample('kubernetes')).ecluse
  // The sidecar example's test runs these exact commands against ready and unready gateways.
  t.same(ecluse.readinessProbe.exec, sidecar.readinessProbe.exec, 'the readiness probe calls /readyz on the admin listener')
  t.same(ecluse.livenessProbe.exec, sidecar.livenessProbe.exec, 'the liveness probe calls /healthz only')
  for (const probe of [ecluse.readinessProbe, ecluse.livenessProbe]) {
    t.match(probe.exec.command[2], `http://127.0.0.1:${gateway.admin.listen.port}/`, "the probe calls this gateway's admin listener")
  }
})
