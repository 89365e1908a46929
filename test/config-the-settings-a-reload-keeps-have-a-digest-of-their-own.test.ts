/**
 * `bootSettingsDigest`: what a reload keeps at its boot value has a digest of its own, which each
 * worker reports beside its files' (see the e2e test of workers that run different configurations).
 * Found by review: a worker restarted after a change to the listen address, which its siblings had
 * reloaded without applying, listened on the new address with the same files, and nothing told.
 */
import t from 'tap'
import { configSchema } from '../src/config/schema.js'
import { bootSettingsDigest } from '../src/main.js'

const base = {
  sponsor: { listen: { host: '127.0.0.1', port: 8443 }, tls: { cert: 'c', key: 'k', clientCa: 'ca' } },
  upstreams: { svc: { url: 'https://127.0.0.1:9443', serverName: 'svc', tls: { ca: 'ca', cert: 'c', key: 'k' } } },
  admin: { listen: { port: 9090 } },
  routes: [{ name: 'r', path: '/v1/*', methods: ['GET'], allow: ['dns:a'], upstream: 'svc' }],
}
type Tree = { [key: string]: unknown }
/** `base` with `patch` merged in, key by key (an array is replaced whole). */
function merged(into: Tree, patch: Tree): Tree {
  const out: Tree = { ...into }
  for (const [k, v] of Object.entries(patch)) {
    const was = out[k]
    out[k] = v !== null && typeof v === 'object' && !Array.isArray(v) && was !== null && typeof was === 'object' && !Array.isArray(was) ? merged(was as Tree, v as Tree) : v
  }
  return out
}
const digestOf = (patch: Tree) => bootSettingsDigest(configSchema.parse(merged(base, patch)))
const booted = digestOf({})

t.match(booted, /^sha256:[0-9a-f]{64}$/)
t.test('a setting a reload keeps that decides how the sponsor listener serves changes it', async (t) => {
  for (const [what, patch] of [
    ['the sponsor listen address', { sponsor: { listen: { host: '0.0.0.0' } } }],
    ['the sponsor port', { sponsor: { listen: { port: 8444 } } }],
    ['a sponsor limit', { sponsor: { limits: { maxConnections: 10 } } }],
    ['the TLS version floor', { sponsor: { tls: { minVersion: 'TLSv1.3' } } }],
    ['the handshake timeout', { sponsor: { tls: { handshakeTimeoutMs: 1234 } } }],
  ] as const) {
    t.not(digestOf(patch), booted, what)
  }
})
t.test('what a reload applies, and what changes no answer, leaves it', async (t) => {
  for (const [what, patch] of [
    ['a route', { routes: [{ ...base.routes[0], allow: ['dns:b'] }] }],
    ['an upstream', { upstreams: { svc: { connections: 8 } } }],
    ['the principal header', { sponsor: { principalHeader: 'x-who' } }],
    ['the drain timeout', { shutdown: { drainTimeoutMs: 1000 } }],
    // Kept at boot too, but changing no answer: the admin listener is the primary's under --workers.
    ['the admin listener', { admin: { listen: { port: 9091 } } }],
    ['the log level', { log: { level: 'debug' } }],
  ] as const) {
    t.equal(digestOf(patch), booted, what)
  }
})
