/**
 * The Kubernetes examples (deploy/kubernetes: the trusted sidecar; deploy/kubernetes-edge: the edge)
 * are copied by platform engineers as the starting point of a real deployment. What both promise is
 * checked the same way: their manifests, read as the API server would take them; their gateway
 * configuration through `ecluse config check`; their pods' hardening.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Test } from 'tap'
import { parse, parseAllDocuments } from 'yaml'
import { type CliResult, ROOT, runCli } from './cli.js'

// biome-ignore lint/suspicious/noExplicitAny: Kubernetes objects, walked by path in the checks
export type K8s = any

/** The files every example has, one object of each kind. */
const FILES = ['configmap.yaml', 'deployment.yaml', 'service.yaml', 'networkpolicy.yaml', 'podmonitor.yaml', 'poddisruptionbudget.yaml']

export interface KubernetesExample {
  configMap: K8s
  deployment: K8s
  service: K8s
  policy: K8s
  podMonitor: K8s
  disruptionBudget: K8s
  /** The ConfigMap's `gateway.yaml`, as text and parsed. */
  gatewayYaml: string
  gateway: K8s
  pod: K8s
  ecluse: K8s
}

/** Reads `deploy/<folder>`: exactly one object of each kind, or an error naming the kind. */
export async function loadExample(folder: string): Promise<KubernetesExample> {
  const documents: K8s[] = []
  for (const file of FILES) {
    const text = await readFile(join(ROOT, 'deploy', folder, file), 'utf8')
    for (const doc of parseAllDocuments(text)) documents.push(doc.toJS())
  }
  const only = (kind: string): K8s => {
    const found = documents.filter((d) => d.kind === kind)
    if (found.length !== 1) throw new Error(`expected one ${kind} in deploy/${folder}, found ${found.length}`)
    return found[0]
  }
  const configMap = only('ConfigMap')
  const deployment = only('Deployment')
  const gatewayYaml: string = configMap.data['gateway.yaml']
  const pod = deployment.spec.template.spec
  return {
    configMap,
    deployment,
    service: only('Service'),
    policy: only('NetworkPolicy'),
    podMonitor: only('PodMonitor'),
    disruptionBudget: only('PodDisruptionBudget'),
    gatewayYaml,
    gateway: parse(gatewayYaml),
    pod,
    ecluse: pod.containers.find((c: K8s) => c.name === 'ecluse'),
  }
}

/** Every absolute path under /etc/ecluse that the configuration reads. */
export function mountedPaths(gatewayYaml: string): string[] {
  return [...gatewayYaml.matchAll(/\/etc\/ecluse\/[^\s,}]+/g)].map((m) => m[0])
}

/**
 * Runs `ecluse config check` on `gatewayYaml` with each mounted path replaced by the local file
 * that stands for it (`mounted`: path in the pod → file here).
 */
export async function configCheck(gatewayYaml: string, mounted: Record<string, string>): Promise<CliResult> {
  const dir = await mkdtemp(join(tmpdir(), 'ecluse-k8s-'))
  try {
    const file = join(dir, 'gateway.yaml')
    await writeFile(file, gatewayYaml.replace(/\/etc\/ecluse\/[^\s,}]+/g, (path) => mounted[path] ?? path))
    return await runCli(['config', 'check', file])
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

/** A route as the profile and the example must both have it (everything but `allow`). */
export function routeShape(routes: K8s[]): K8s[] {
  return routes.map((r) => ({
    name: r.name,
    methods: r.methods,
    path: r.path,
    upstream: r.upstream === undefined ? undefined : 'upstream',
    jwks: r.jwks,
    maxBodyBytes: r.maxBodyBytes,
    transforms: r.transforms,
  }))
}

/** The labels of the pod template that `selector` must all match. */
export function selects(example: KubernetesExample, selector: Record<string, string>): boolean {
  const labels = example.deployment.spec.template.metadata.labels
  return Object.entries(selector).every(([k, v]) => labels[k] === v)
}

/** The selectors of the example's other objects, by kind, for `selects`. */
export function selectorsOf(example: KubernetesExample): [string, Record<string, string>][] {
  return [
    ['Deployment', example.deployment.spec.selector.matchLabels],
    ['Service', example.service.spec.selector],
    ['NetworkPolicy', example.policy.spec.podSelector.matchLabels],
    ['PodMonitor', example.podMonitor.spec.selector.matchLabels],
    ['PodDisruptionBudget', example.disruptionBudget.spec.selector.matchLabels],
  ]
}

/** The pod's hardening, one assertion per property and container. */
export function checkHardening(t: Test, pod: K8s): void {
  t.equal(pod.automountServiceAccountToken, false, 'no service-account token')
  t.equal(pod.securityContext.runAsNonRoot, true)
  t.equal(pod.securityContext.seccompProfile.type, 'RuntimeDefault')
  for (const container of pod.containers) {
    t.equal(container.securityContext.allowPrivilegeEscalation, false, `${container.name}: no privilege escalation`)
    t.equal(container.securityContext.readOnlyRootFilesystem, true, `${container.name}: read-only root filesystem`)
    t.same(container.securityContext.capabilities.drop, ['ALL'], `${container.name}: every capability dropped`)
    t.ok(container.resources.limits.memory, `${container.name}: a memory limit`)
  }
}

/**
 * The gateway container serves the ConfigMap's file and mounts it, the two TLS Secrets and the key
 * sets' Secret where the configuration reads them, read-only and without subPath.
 */
export function checkMounts(t: Test, example: KubernetesExample): void {
  const { ecluse, pod, configMap } = example
  t.same(ecluse.args, ['serve', '--config', '/etc/ecluse/config/gateway.yaml'], 'serve the ConfigMap file')
  const mountOf = (name: string) => ecluse.volumeMounts.find((m: K8s) => m.name === name)
  t.equal(mountOf('gateway-config').mountPath, '/etc/ecluse/config')
  t.equal(pod.volumes.find((v: K8s) => v.name === 'gateway-config').configMap.name, configMap.metadata.name, 'the ConfigMap mounted is this one')
  for (const [name, path] of [
    ['sponsor-tls', '/etc/ecluse/tls/sponsor'],
    ['trusted-tls', '/etc/ecluse/tls/trusted'],
    ['sealing-keys', '/etc/ecluse/keys'],
  ] as const) {
    t.equal(mountOf(name).mountPath, path, `${name} is mounted where the configuration reads it`)
    // A public key set too: whoever replaces it reads every value sealed after.
    t.ok(pod.volumes.find((v: K8s) => v.name === name).secret, `${name} is a Secret`)
  }
  t.ok(
    ecluse.volumeMounts.every((m: K8s) => m.readOnly === true && m.subPath === undefined),
    'every mount is read-only and none uses subPath (subPath mounts never see a rotated Secret)',
  )
  t.not(pod.volumes.find((v: K8s) => v.name === 'sponsor-tls').secret.secretName, pod.volumes.find((v: K8s) => v.name === 'trusted-tls').secret.secretName, 'the two sides use two Secrets')
}

/**
 * The gateway container's memory limit covers the sum its comment works out, from the figures of
 * docs/operations.md ("Memory"): ≈ 140 MiB at rest, ≈ 0.45 MiB per upload with every sponsor
 * connection uploading, ≈ 45 MB per exec probe, and the largest record a record-bound response step
 * holds whole, one per upstream connection (the deploy review found a sum of ≈ 900 MiB under a
 * 768 MiB limit).
 */
export function checkMemoryLimit(t: Test, example: KubernetesExample): void {
  const { gateway, ecluse } = example
  const maxConnections: number = gateway.sponsor.limits?.maxConnections ?? 1024
  // The defaults of docs/transforms.md: 1 MiB on seal and strip, 2 MiB on open and require-sealed.
  const recordDefault = (type: string) => (type === 'seal' || type === 'strip' ? 1 : 2) * 1024 * 1024
  let heldByResponses = 0
  for (const route of gateway.routes as K8s[]) {
    const connections: number = gateway.upstreams[route.upstream].connections ?? 64
    for (const step of (route.transforms?.response ?? []) as K8s[]) {
      if (step.records === undefined) continue
      heldByResponses = Math.max(heldByResponses, ((step.maxRecordBytes ?? recordDefault(step.type)) * connections) / 2 ** 20)
    }
  }
  const needMiB = 140 + 0.45 * maxConnections + 45 + heldByResponses
  const limit: string = ecluse.resources.limits.memory
  const unit = /^(\d+)(Mi|Gi)$/.exec(limit)
  t.ok(unit, `the memory limit (${limit}) is in Mi or Gi`)
  const limitMiB = Number(unit![1]) * (unit![2] === 'Gi' ? 1024 : 1)
  t.ok(limitMiB >= needMiB, `the memory limit (${limitMiB} MiB) covers the worst case (${Math.round(needMiB)} MiB)`)
}
