/**
 * A development PKI written before the chained demo's two leaves existed (the six original pairs) is
 * completed by `generateDevPki` from its own CAs: sidecar-server from the trusted CA, edge-client from
 * the sponsor CA, and no existing file is touched. Any other partial set is still refused with
 * `tls_material_invalid`, and nothing is written.
 */
import { createPublicKey, X509Certificate } from 'node:crypto'
import { cp, mkdtemp, readdir, readFile, rm, stat, unlink } from 'node:fs/promises'
import https from 'node:https'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import t from 'tap'
import { DEV_LEAF_SPECS, devPkiPaths, generateDevPki } from '../src/pki/dev-pki.js'

const work = await mkdtemp(path.join(tmpdir(), 'ecluse-pki-completion-'))
t.teardown(() => rm(work, { recursive: true, force: true }))
// One fresh PKI (ten RSA keys), copied for each case.
const pristine = path.join(work, 'pristine')
await generateDevPki({ outDir: pristine })
const LATER = ['sidecar-server', 'edge-client']

let n = 0
async function copyOfPristine(...remove: string[]): Promise<string> {
  const dir = path.join(work, `case-${++n}`)
  await cp(pristine, dir, { recursive: true })
  for (const f of remove) await unlink(path.join(dir, f))
  return dir
}

/** Every file's bytes, mode and mtime: what "untouched" means. */
async function snapshot(dir: string): Promise<Map<string, { bytes: string; mode: number; mtimeMs: number }>> {
  const out = new Map<string, { bytes: string; mode: number; mtimeMs: number }>()
  for (const f of (await readdir(dir)).sort()) {
    const s = await stat(path.join(dir, f))
    out.set(f, { bytes: await readFile(path.join(dir, f), 'utf8'), mode: s.mode & 0o777, mtimeMs: s.mtimeMs })
  }
  return out
}

const cert = async (file: string) => new X509Certificate(await readFile(file))

t.test('the six original pairs are completed with the two new leaves, from the right CAs', async (t) => {
  const dir = await copyOfPristine(...LATER.flatMap((b) => [`${b}.crt`, `${b}.key`]))
  const before = await snapshot(dir)
  t.equal(before.size, 12, 'six pairs')
  const pki = await generateDevPki({ outDir: dir })
  const after = await snapshot(dir)
  t.same([...after.keys()].sort(), [...(await readdir(pristine))].sort(), 'every file of a current set, nothing else')
  for (const [f, s] of before) t.same(after.get(f), s, `${f} untouched`)

  const paths = devPkiPaths(dir)
  const sponsorCa = await cert(paths.sponsorCa.cert)
  const trustedCa = await cert(paths.trustedCa.cert)
  for (const [name, issuer, other, spec] of [
    ['sidecarServer', trustedCa, sponsorCa, DEV_LEAF_SPECS.sidecarServer],
    ['edgeClient', sponsorCa, trustedCa, DEV_LEAF_SPECS.edgeClient],
  ] as const) {
    const pair = paths[name]
    const leaf = await cert(pair.cert)
    t.ok(leaf.checkIssued(issuer) && leaf.verify(issuer.publicKey), `${name} is signed by ${issuer.subject}`)
    t.notOk(leaf.verify(other.publicKey), `${name} is not signed by the other CA`)
    t.equal(leaf.subject.split('\n').find((l) => l.startsWith('CN=')), `CN=${spec.commonName}`)
    const pub = createPublicKey(await readFile(pair.key))
    t.ok(leaf.publicKey.equals(pub), `${name}: the key is the certificate's`)
    t.equal(after.get(path.basename(pair.key))?.mode, 0o600, `${name}: key 0600`)
    t.not(after.get(path.basename(pair.cert))?.bytes, (await readFile(path.join(pristine, path.basename(pair.cert)), 'utf8')), 'a new certificate')
  }
  t.match((await cert(paths.sidecarServer.cert)).subjectAltName, /DNS:ecluse\.trusted\.test/)
  t.match((await cert(paths.edgeClient.cert)).subjectAltName, /URI:spiffe:\/\/sponsor\.test\/ecluse-edge/)

  // The completed leaves work where the chain uses them: the edge (edge-client) reaches the sidecar
  // (sidecar-server) over mutual TLS, each verified against its own side's CA only.
  const [key, crt, sponsorPem, trustedPem, clientCrt, clientKey] = await Promise.all(
    [pki.sidecarServer.key, pki.sidecarServer.cert, pki.sponsorCa.cert, pki.trustedCa.cert, pki.edgeClient.cert, pki.edgeClient.key].map(
      (f) => readFile(f),
    ),
  )
  const server = https.createServer({ key, cert: crt, ca: sponsorPem, requestCert: true, rejectUnauthorized: true }, (req, res) => {
    const peer = (req.socket as import('node:tls').TLSSocket).getPeerCertificate()
    res.end(peer.subjectaltname ?? '')
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())))
  const seen = await new Promise<string>((resolve, reject) => {
    https
      .get(
        {
          host: '127.0.0.1',
          port: (server.address() as AddressInfo).port,
          servername: 'ecluse.trusted.test',
          ca: trustedPem,
          cert: clientCrt,
          key: clientKey,
          agent: false,
        },
        (res) => {
          let body = ''
          res.setEncoding('utf8').on('data', (d: string) => (body += d))
          res.on('end', () => resolve(body))
        },
      )
      .on('error', reject)
  })
  t.equal(seen, 'URI:spiffe://sponsor.test/ecluse-edge', 'mutual TLS between the completed leaves')

  const again = await snapshot(dir)
  await generateDevPki({ outDir: dir })
  t.same(await snapshot(dir), again, 'a second run writes nothing')
})

t.test('a set missing only one of the new leaves gets that one, the other stays', async (t) => {
  const dir = await copyOfPristine('sidecar-server.crt', 'sidecar-server.key')
  const before = await snapshot(dir)
  await generateDevPki({ outDir: dir })
  const after = await snapshot(dir)
  for (const [f, s] of before) t.same(after.get(f), s, `${f} untouched`)
  t.equal(after.size, 16)
})

for (const [label, remove] of [
  ['the six original pairs without the sponsor CA key', [...LATER.flatMap((b) => [`${b}.crt`, `${b}.key`]), 'sponsor-ca.key']],
  ['the six original pairs without the trusted CA certificate', [...LATER.flatMap((b) => [`${b}.crt`, `${b}.key`]), 'trusted-ca.crt']],
  ['the six original pairs without an original leaf', [...LATER.flatMap((b) => [`${b}.crt`, `${b}.key`]), 'trusted-server.key']],
  ['a new leaf with its certificate but no key', ['edge-client.key']],
  ['a new leaf with its key but no certificate', ['sidecar-server.crt']],
  ['a new leaf half there, the other absent', ['sidecar-server.crt', 'sidecar-server.key', 'edge-client.key']],
  ['a complete set without a CA key', ['trusted-ca.key']],
] as const) {
  t.test(`refused, nothing written: ${label}`, async (t) => {
    const dir = await copyOfPristine(...remove)
    const before = await snapshot(dir)
    await t.rejects(generateDevPki({ outDir: dir }), {
      code: 'tls_material_invalid',
      message: new RegExp(`^incomplete development PKI in .* \\(missing ${[...remove].sort(byPairOrder).join(', ')}\\); regenerate with --force$`),
    })
    t.same(await snapshot(dir), before, 'the directory is exactly as it was')
  })
}

/** The order generateDevPki lists missing files in: its pair order, certificate before key. */
function byPairOrder(a: string, b: string): number {
  const order = Object.values(devPkiPaths('/x')).flatMap((p) => (typeof p === 'string' ? [] : [p.cert, p.key])).map((f) => path.basename(f))
  return order.indexOf(a) - order.indexOf(b)
}

t.test('a set whose key no longer matches its certificate (a --force run killed half-way) is refused, not kept', async (t) => {
  const dir = await copyOfPristine()
  // --force writes every key before any certificate: killed in between, the first keys are new
  // and their certificates old. Here: one key swapped for another of the set.
  const keyFile = path.join(dir, 'gateway-sponsor.key')
  await cp(path.join(dir, 'sponsor-client.key'), keyFile)
  const listing = await readdir(dir)
  const err = await generateDevPki({ outDir: dir }).then(
    () => undefined,
    (e: unknown) => e as Error & { code?: string },
  )
  t.equal(err?.code, 'tls_material_invalid')
  t.match(err?.message, `${keyFile} does not match ${path.join(dir, 'gateway-sponsor.crt')}`)
  t.match(err?.message, /regenerate with --force/)
  t.same(await readdir(dir), listing, 'nothing written')
})

t.test('a FIFO or a device in place of a file of the set is refused at once, as the gateway refuses it', async (t) => {
  // Read whole and unbounded, a FIFO there hung `certs init`, and /dev/zero would have exhausted it.
  const { spawnSync } = await import('node:child_process')
  const { symlink } = await import('node:fs/promises')
  for (const [file, plant] of [
    ['edge-client.crt', (p: string) => t.equal(spawnSync('mkfifo', [p]).status, 0)],
    ['sponsor-ca.key', (p: string) => symlink('/dev/zero', p)],
  ] as const) {
    const dir = await copyOfPristine(file)
    const planted = path.join(dir, file)
    await plant(planted)
    const started = performance.now()
    const err = await generateDevPki({ outDir: dir }).then(
      () => undefined,
      (e: unknown) => e as Error & { code?: string },
    )
    t.equal(err?.code, 'tls_material_invalid', file)
    t.match(err?.message, `${planted}: not a regular file`)
    t.ok(performance.now() - started < 5000, 'without waiting on it')
  }
})
