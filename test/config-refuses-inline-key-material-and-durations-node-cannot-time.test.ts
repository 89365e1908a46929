/**
 * Found by review. (1) A PEM block or a JWK written where the configuration wants a file's path was
 * taken as a path, and every error naming that file quoted it whole: a private key in the terminal
 * and in the log. It is refused by the schema now, without being repeated. (2) A duration above
 * Node's longest timer (2^31 - 1 ms) passed `config check`, then fired after 1 ms: a drain cut at
 * once, a file watch re-reading without pause; durations stop at MAX_DURATION_MS now. (3) `.nan` and `.inf` were "expected number, got number".
 */
import { generateKeyPairSync } from 'node:crypto'
import t from 'tap'
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml'
import { KILL_GRACE_MS } from '../src/cluster.js'
import { parseConfig } from '../src/config/load.js'
import { MAX_DURATION_MS } from '../src/config/schema.js'
import { EcluseError } from '../src/errors.js'
import { HANDSHAKE_GRACE_MS } from '../src/listener/sponsor.js'

const BASE = {
  sponsor: 'sponsor:\n  listen: { port: 8443 }\n  tls:\n    cert: a.crt\n    key: KEY\n    clientCa: c.crt\n',
  upstreams: 'upstreams:\n  u:\n    url: https://127.0.0.1:9443\n    serverName: s\n    tls: { ca: a, cert: b, key: c }\n',
  rest: 'routes: [{ name: r, methods: [GET], path: /, allow: [], upstream: u }]\nadmin: { listen: { port: 9090 } }\n',
}

function refusal(text: string): EcluseError {
  try {
    parseConfig(text, 'g.yaml')
  } catch (err) {
    if (err instanceof EcluseError) return err
    throw err
  }
  throw new Error('accepted')
}

const file = (key: string, extra = '') => BASE.sponsor.replace('KEY', key) + BASE.upstreams + BASE.rest + extra

t.test('key material written inline where a path belongs is refused, naming the key and not repeating it', async (t) => {
  const pem = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }) as string
  const body = pem.split('\n')[1]!
  const jwk = '{"kty":"OKP","crv":"X25519","x":"PUBLICPART","d":"TOPSECRETPRIVATED"}'
  const cases: Array<[string, string, string]> = [
    ['a PEM block as a YAML block scalar', file(`|\n      ${pem.trimEnd().split('\n').join('\n      ')}`), body],
    ['a PEM block on one line', file(JSON.stringify(pem)), body],
    ['a JWK', file(JSON.stringify(jwk)), 'TOPSECRETPRIVATED'],
    // Found by re-review: a Kubernetes secret's `data` value (the PEM in base64), and a bare PEM body.
    ['a PEM block in base64', file(Buffer.from(pem).toString('base64')), Buffer.from(pem).toString('base64').slice(20, 60)],
  ]
  for (const [name, text, secret] of cases) {
    const err = refusal(text)
    t.equal(err.code, 'config_invalid', name)
    t.match(err.message, /^g\.yaml: sponsor\.tls\.key: must be the path of a file \(key material written in its place/m, `${name}: says what is wrong`)
    t.notOk(err.message.includes(secret), `${name}: the material is not repeated`)
  }
  // Key sets' files and every other path alike.
  const jwkSet = refusal(`${file('b.key')}keys:\n  k: { file: ${JSON.stringify(jwk)}, private: true }\n`)
  t.match(jwkSet.message, /keys\.k\.file: must be the path of a file/)
  t.notOk(jwkSet.message.includes('TOPSECRETPRIVATED'))
  const upstreamKey = refusal(BASE.sponsor.replace('KEY', 'b.key') + BASE.upstreams.replace('key: c', `key: ${JSON.stringify(pem)}`) + BASE.rest)
  t.match(upstreamKey.message, /upstreams\.u\.tls\.key: must be the path of a file/)
  t.match(refusal(file('"a\\nb"')).message, /sponsor\.tls\.key: must be the path of a file/, 'a line break in a path')
  t.match(refusal(file(JSON.stringify('x'.repeat(4097)))).message, /sponsor\.tls\.key: must be at most 4096 characters long/, 'longer than PATH_MAX')
  // Ordinary paths still pass, spaces and braces inside included.
  const paths = [
    'b.key',
    '/etc/ecluse/tls/sidecar.key',
    'my keys/b.key',
    'keys/{2026}.key',
    '[prod]/ca.pem',
    '{env}/keys.json',
    '/mnt/secrets-store/ecluse/production/trusted-host/sealing-keys/current/private-key-set',
    '/etc/ssl/certs/3f2a9b7c1d0e4f5a6b8c9d0e1f2a3b4c5d6e7f8a9b0c1d2e3f4a5b6c7d8e9f0a.pem',
    '/run/secrets/EcluseSidecarProductionKeyRing2026December',
    '/etc/ecluse/trusted_sidecar_private_keys_2026_12_PROD_v2',
    'x'.repeat(4096),
  ]
  for (const path of paths) {
    t.equal(parseConfig(file(JSON.stringify(path)), 'g.yaml').sponsor.tls.key, path, `${path.slice(0, 40)} is a path`)
  }
})

t.test("a duration beyond MAX_DURATION_MS is refused at load, at every key that takes one, with room for the grace the gateway adds", async (t) => {
  // Found by re-review: bounded at 2^31 - 1 itself, a drain of that length plus the cluster's kill
  // grace overflowed, and the primary killed its workers 1 ms after SIGTERM.
  t.ok(MAX_DURATION_MS + KILL_GRACE_MS <= 2 ** 31 - 1, 'the drain plus the kill grace is a timer Node keeps')
  t.ok(MAX_DURATION_MS + HANDSHAKE_GRACE_MS <= 2 ** 31 - 1, 'the handshake timeout plus its grace too')
  const keys = [
    'sponsor.tls.handshakeTimeoutMs',
    'sponsor.limits.headersTimeoutMs',
    'sponsor.limits.requestTimeoutMs',
    'sponsor.limits.idleTimeoutMs',
    'sponsor.limits.keepAliveTimeoutMs',
    'sponsor.limits.bodyGraceMs',
    'upstreams.u.connectTimeoutMs',
    'upstreams.u.headersTimeoutMs',
    'upstreams.u.bodyTimeoutMs',
    'upstreams.u.keepAliveTimeoutMs',
    'shutdown.drainTimeoutMs',
    'reload.watchIntervalMs',
  ]
  const base = parseYaml(file('b.key')) as Record<string, unknown>
  const withValue = (key: string, value: number) => {
    const config = structuredClone(base)
    const path = key.split('.')
    let at = config
    for (const part of path.slice(0, -1)) {
      at[part] ??= {}
      at = at[part] as Record<string, unknown>
    }
    at[path.at(-1)!] = value
    return stringifyYaml(config)
  }
  for (const key of keys) {
    t.match(refusal(withValue(key, MAX_DURATION_MS + 1)).message, `g.yaml: ${key}: must be <= ${MAX_DURATION_MS}`, key)
  }
  t.equal(parseConfig(withValue('shutdown.drainTimeoutMs', MAX_DURATION_MS), 'g.yaml').shutdown.drainTimeoutMs, MAX_DURATION_MS, 'the bound itself is accepted')
})

t.test('.nan and .inf are said to be no finite number', async (t) => {
  t.match(refusal(file('b.key').replace('port: 8443', 'port: .nan')).message, 'g.yaml: sponsor.listen.port: expected number, got NaN (not a finite number)')
  t.match(refusal(file('b.key').replace('port: 8443', 'port: .inf')).message, 'g.yaml: sponsor.listen.port: expected number, got Infinity (not a finite number)')
})

t.test('found by review: an upstream that can never be reached is refused at load (port 0, a serverName with a space)', async (t) => {
  const up = (url: string, serverName: string) => BASE.sponsor.replace('KEY', 'b.key') + BASE.upstreams.replace('https://127.0.0.1:9443', url).replace('serverName: s', `serverName: ${JSON.stringify(serverName)}`) + BASE.rest
  t.match(refusal(up('https://127.0.0.1:0', 's')).message, /upstreams\.u\.url: must be https:\/\/host\[:port\] with no path, query, fragment or credentials, and not port 0/)
  for (const name of [' ', 'accreditation trusted', 'a\tb', 'x/y', '', 'accreditation.trusted.test:8443', '...', '-', ':']) {
    t.match(refusal(up('https://127.0.0.1:9443', name)).message, /upstreams\.u\.serverName: must be a DNS name or an IP address/, JSON.stringify(name))
  }
  for (const name of ['accreditation.trusted.example', '127.0.0.1', '::1', 'svc-1.ns.svc.cluster.local']) {
    t.equal(parseConfig(up('https://127.0.0.1:9443', name), 'g.yaml').upstreams['u']!.serverName, name)
  }
})

t.test('found by re-review: key material the refusal does not recognise (hex, base64 with slashes) is still never quoted', async (t) => {
  // Whatever the guess misses, a value that does not open as a file is not repeated in the message.
  const { loadServerTls } = await import('../src/config/tls-material.js')
  const { readKeySetFile } = await import('../src/crypto/keys.js')
  const hex = 'f9371c03a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a0cf0'
  const b64 = 'MC4CAQAwBQYDK2VuBCIEIND5EPL24ga/7YYfH1t+aQ=='
  const jwkD = 'Xk3hO0f2bWq9ZQm7Yc1uR4sT8vN6pL5aK2jH0gF3dS1'
  for (const secret of [hex, b64, jwkD]) {
    const tlsErr = (await loadServerTls({ cert: secret, key: secret, clientCa: secret, minVersion: 'TLSv1.2', handshakeTimeoutMs: 5000 }).catch((e: unknown) => e)) as Error
    t.match(tlsErr.message, /^sponsor\.tls\.\w+: the file it names: cannot read \(ENO\w+\)/m)
    t.notOk(tlsErr.message.includes(secret.slice(0, 12)), 'not quoted by the TLS loader')
    const keyErr = (await readKeySetFile(secret, { named: 'keys.k.file: the file it names', source: `keys.k.file (${secret})` }).catch((e: unknown) => e)) as Error
    t.equal(keyErr.message, 'keys.k.file: the file it names: cannot be read (ENOENT)')
  }
})
