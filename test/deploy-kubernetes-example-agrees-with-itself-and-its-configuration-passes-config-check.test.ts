/**
 * deploy/kubernetes is copied by platform engineers as the starting point of a real deployment, so
 * what it promises is checked here: its gateway configuration passes `ecluse config check` (with the
 * test PKI's files where the Secrets would be mounted); the Deployment, Service and NetworkPolicy agree
 * with that configuration (ports, mounts, labels, the termination timeline); the hardening stays;
 * and the exec probes, run exactly as the kubelet would, succeed against a ready gateway and fail
 * against one that is not ready.
 */
import { spawn } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { parse } from 'yaml'
import { generateKeySet } from '../src/crypto/index.js'
import { ROOT } from './helpers/cli.js'
import { closedPort, Harness } from './helpers/harness.js'
import { checkHardening, checkMemoryLimit, checkMounts, configCheck, type K8s, loadExample, mountedPaths, routeShape, selectorsOf, selects } from './helpers/kubernetes.js'
import { makeTestPki } from './helpers/pki.js'

const example = await loadExample('kubernetes')
const { deployment, service, policy, podMonitor, disruptionBudget, gatewayYaml, gateway, pod, ecluse } = example
const accreditationService = pod.containers.find((c: K8s) => c.name !== 'ecluse')
const sleepOf = (container: K8s): number => Number(container.lifecycle.preStop.exec.command[1])

t.test("the ConfigMap's gateway.yaml passes `ecluse config check` with certificates where the Secrets are mounted", async (t) => {
  const pki = await makeTestPki()
  const dir = await mkdtemp(join(tmpdir(), 'ecluse-k8s-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  // Each file a Secret of the example provides (the `kubectl create secret` lines in deployment.yaml).
  // The sealing key sets of the ecluse-sealing-keys Secret, as `ecluse keys init` writes them.
  const keySet = generateKeySet()
  await writeFile(join(dir, 'trusted-host.private.jwks.json'), JSON.stringify(keySet.privateJwks), { mode: 0o600 })
  await writeFile(join(dir, 'trusted-host.public.jwks.json'), JSON.stringify(keySet.publicJwks))
  const mounted: Record<string, string> = {
    // The sidecar's server certificate is the trusted side's: the edges verify it against the trusted CA.
    '/etc/ecluse/tls/sponsor/tls.crt': pki.sidecarServer.certPath,
    '/etc/ecluse/tls/sponsor/tls.key': pki.sidecarServer.keyPath,
    '/etc/ecluse/tls/sponsor/client-ca.crt': pki.sponsorCa.certPath,
    '/etc/ecluse/tls/trusted/tls.crt': pki.gatewayTrustedClient.certPath,
    '/etc/ecluse/tls/trusted/tls.key': pki.gatewayTrustedClient.keyPath,
    '/etc/ecluse/tls/trusted/ca.crt': pki.trustedCa.certPath,
    '/etc/ecluse/keys/trusted-host.private.jwks.json': join(dir, 'trusted-host.private.jwks.json'),
    '/etc/ecluse/keys/trusted-host.public.jwks.json': join(dir, 'trusted-host.public.jwks.json'),
  }
  const paths = mountedPaths(gatewayYaml)
  t.ok(paths.length >= 8, `${paths.length} file paths in the configuration`)
  for (const path of paths) t.ok(path in mounted, `${path} is a file of a mounted Secret`)
  const check = await configCheck(gatewayYaml, mounted)
  t.equal(check.code, 0, `config check: ${check.stdout}${check.stderr}`)
  t.match(check.stdout, /^ok: 6 routes, 1 upstreams/)
})

t.test('the Deployment, Service and NetworkPolicy agree with the configuration', async (t) => {
  const sponsorPort: number = gateway.sponsor.listen.port
  const adminPort: number = gateway.admin.listen.port
  checkMounts(t, example)

  const sponsor = ecluse.ports.find((p: K8s) => p.name === 'sponsor')
  t.equal(sponsor.containerPort, sponsorPort, 'the container port is the sponsor listener')
  t.equal(gateway.sponsor.listen.host, '0.0.0.0', 'the sponsor listener is reachable from the pod network')
  // The admin listener is on the pod network for Prometheus, and for nothing else.
  const admin = ecluse.ports.find((p: K8s) => p.name === 'admin')
  t.equal(admin.containerPort, adminPort, 'the admin container port is the admin listener')
  t.equal(ecluse.ports.length, 2, 'sponsor and admin are the only container ports')
  t.equal(gateway.admin.listen.host, '0.0.0.0', 'the admin listener is reachable from the pod network')
  t.equal(gateway.admin.allowNonLoopback, true, 'as it must say explicitly')
  t.equal(service.spec.ports.length, 1, 'the Service exposes one port')
  t.equal(service.spec.ports[0].targetPort, 'sponsor', 'the Service forwards to the sponsor port')
  const rules = policy.spec.ingress as K8s[]
  t.same(rules.map((rule) => rule.ports.map((p: K8s) => p.port)), [[sponsorPort], [adminPort]], 'the NetworkPolicy admits the sponsor port and the admin port, nothing else')
  // Anyone who can connect can make the listener check a handshake's chain before it is refused
  // (docs/security-model.md, "Not covered"): the sponsor port admits named address blocks only.
  t.ok(Array.isArray(rules[0].from) && rules[0].from.length > 0, 'the sponsor port from named peers only')
  t.ok(
    rules[0].from.every((peer: K8s) => Object.keys(peer).join() === 'ipBlock' && /^[\d.]+\/(\d+)$/.test(peer.ipBlock.cidr) && Number(peer.ipBlock.cidr.split('/')[1]) >= 8),
    'the edges come from another cloud: address blocks, none of them the whole internet',
  )
  t.equal(service.spec.externalTrafficPolicy, 'Local', 'the LoadBalancer keeps the client address the ipBlock judges')
  t.same(rules[1].from, [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'monitoring' } }, podSelector: { matchLabels: { 'app.kubernetes.io/name': 'prometheus' } } }], 'the admin port from Prometheus only')
  // The pod holds the private keys and the records in plaintext: its egress is listed, not open.
  t.same(policy.spec.policyTypes, ['Ingress', 'Egress'], 'the NetworkPolicy restricts both ways')
  const egress = policy.spec.egress as K8s[]
  t.ok(egress.length > 0 && egress.every((rule) => rule.to?.length > 0 && rule.ports?.length > 0), 'every egress rule names its peers and its ports')
  t.notOk(JSON.stringify(egress).includes('/0"'), 'no egress to an address block of the whole internet')
  t.same(egress.at(-1).to, [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'kube-system' } }, podSelector: { matchLabels: { 'k8s-app': 'kube-dns' } } }], 'DNS to the cluster DNS pods only')
  t.same(podMonitor.spec.podMetricsEndpoints, [{ port: 'admin', path: '/metrics', interval: '30s' }], 'Prometheus scrapes the admin port')
  for (const [what, selector] of selectorsOf(example)) t.ok(selects(example, selector), `the ${what} selects the pods`)
  t.ok(disruptionBudget.spec.minAvailable >= 1 && disruptionBudget.spec.minAvailable < deployment.spec.replicas, 'evictions keep a replica serving, and can proceed')
  const upstream = new URL(gateway.upstreams.accreditation.url)
  t.equal(upstream.hostname, '127.0.0.1', 'the upstream is the service container on loopback')

  for (const probe of [ecluse.readinessProbe, ecluse.livenessProbe]) {
    const script: string = probe.exec.command[2]
    t.match(script, `http://127.0.0.1:${adminPort}/`, 'the probe calls the admin listener')
  }
  t.match(ecluse.readinessProbe.exec.command[2], '/readyz')
  t.match(ecluse.livenessProbe.exec.command[2], '/healthz', 'liveness never depends on the upstream')

  // The termination timeline of deployment.yaml: the gateway drains before the service stops, and
  // both before the kubelet's SIGKILL.
  const drainSeconds = gateway.shutdown.drainTimeoutMs / 1000
  t.ok(sleepOf(accreditationService) >= sleepOf(ecluse) + drainSeconds, 'the service outlives the gateway’s preStop and drain')
  t.ok(pod.terminationGracePeriodSeconds > sleepOf(accreditationService), 'the grace period outlasts both')
  // From the deploy review: a balancer of externalTrafficPolicy: Local sends to a node until its
  // own health checks fail there (often 20-30 s, docs/operations.md); a 5 s preStop refused the
  // edges' new connections for the rest of that time at every rollout.
  t.equal(service.spec.externalTrafficPolicy, 'Local')
  t.ok(sleepOf(ecluse) >= 30, 'the gateway keeps serving until a balancer of externalTrafficPolicy: Local has moved away')
})

t.test('the example is the trusted-sidecar profile: every route seals or opens as config/trusted-sidecar.yaml does', async (t) => {
  // It was a plain pass-through (no transforms, no keys): copied as it stood, every sensitive field
  // went to the sponsor in clear (found by a review).
  const profile = parse(await readFile(join(ROOT, 'config/trusted-sidecar.yaml'), 'utf8'))
  t.same(routeShape(gateway.routes), routeShape(profile.routes), 'the same routes, limits and steps')
  t.same(Object.keys(gateway.keys), Object.keys(profile.keys), 'the same key sets')
  t.equal(gateway.keys['trusted-host-private'].private, true, 'the private set, to open')
  for (const route of gateway.routes) t.same(route.allow, ['uri:spiffe://sponsor.example/ecluse-edge'], `${route.name}: the edges only`)
})

t.test('the pod keeps its hardening', async (t) => {
  checkHardening(t, pod)
  checkMemoryLimit(t, example)
})

t.test('the exec probes, run as the kubelet runs them, pass on a ready gateway and fail on one that is not', async (t) => {
  const adminPort: number = gateway.admin.listen.port
  // Asynchronously: the gateways answering the probes run in this process.
  const run = (probe: K8s, port: number) =>
    new Promise<number | null>((resolve, reject) => {
      const [command, ...args] = probe.exec.command as string[]
      const script = args.map((a) => a.replace(`127.0.0.1:${adminPort}`, `127.0.0.1:${port}`))
      // The image's `node` is this one; the kubelet kills a probe at timeoutSeconds.
      const child = spawn(command === 'node' ? process.execPath : command!, script, { stdio: 'ignore', timeout: probe.timeoutSeconds * 1000 })
      child.on('error', reject)
      child.on('exit', (code) => resolve(code))
    })
  const ready = await Harness.start()
  t.teardown(() => ready.close())
  t.equal(await run(ecluse.readinessProbe, ready.gateway.adminPort), 0, 'readiness passes while the upstream answers')
  t.equal(await run(ecluse.livenessProbe, ready.gateway.adminPort), 0, 'liveness passes')

  const closed = await closedPort()
  const unready = await Harness.start({ upstreamPort: closed })
  t.teardown(() => unready.close())
  t.equal(await run(ecluse.readinessProbe, unready.gateway.adminPort), 1, 'readiness fails while the upstream refuses connections')
  t.equal(await run(ecluse.livenessProbe, unready.gateway.adminPort), 0, 'liveness still passes: the gateway is not restarted for its upstream')
  t.equal(await run(ecluse.livenessProbe, closed), 1, 'liveness fails when nothing answers')
})

