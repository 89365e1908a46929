/**
 * A fresh throw-away PKI for the test process (ghostunnel's `RootCert` habit): generated once per
 * process with the real `generateDevPki`, plus the negative cases the tests need, in a private
 * temporary directory removed at exit. Never commit what this makes.
 *
 * @example
 * const pki = await makeTestPki()
 * https.createServer({ cert: pki.gatewaySponsorServer.certPem, key: pki.gatewaySponsorServer.keyPem,
 *   ca: pki.sponsorCa.certPem, requestCert: true, rejectUnauthorized: true })
 */
import { generateKeyPair, generateKeyPairSync } from 'node:crypto'
import { rmSync } from 'node:fs'
import { mkdtemp, readFile, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  type CertifiedKey,
  DEV_LEAF_SPECS,
  type DevPki,
  generateDevPki,
  issueCertificateAsync,
  type Pair,
} from '../../src/pki/dev-pki.js'

export {
  type CertifiedKey,
  createCa,
  createCaAsync,
  type DevPki,
  issueCertificate,
  issueCertificateAsync,
  type LeafSpec,
} from '../../src/pki/dev-pki.js'

/**
 * One certificate with its key, as PEM strings and as files. Structurally a `CertifiedKey`, so a CA
 * can be passed straight to `issueCertificate` to craft more certificates.
 */
export interface TestCert {
  certPem: string
  keyPem: string
  certPath: string
  keyPath: string
}

export interface TestPki {
  /** The temporary directory holding every file below. */
  dir: string
  /** The paths exactly as `generateDevPki` returned them. */
  devPki: DevPki
  // ---- what `generateDevPki` makes
  sponsorCa: TestCert
  trustedCa: TestCert
  /** Sponsor CA, server: DNS localhost, ecluse.sponsor.test; IP 127.0.0.1, ::1. */
  gatewaySponsorServer: TestCert
  /** Sponsor CA, client: URI spiffe://sponsor.test/accreditation-app, CN accreditation-app, OU accreditation. */
  sponsorClient: TestCert
  /** Trusted CA, server: DNS accreditation.trusted.test, localhost; IP 127.0.0.1. */
  trustedServer: TestCert
  /** Trusted CA, client: URI spiffe://trusted.test/ecluse-gateway, CN ecluse-gateway. */
  gatewayTrustedClient: TestCert
  /** Trusted CA, server (the chained demo's sidecar listener): DNS ecluse.trusted.test, localhost; IP 127.0.0.1. */
  sidecarServer: TestCert
  /** Sponsor CA, client (the chained demo's edge towards the sidecar): URI spiffe://sponsor.test/ecluse-edge, CN ecluse-edge, OU edge. */
  edgeClient: TestCert
  // ---- negative and extra cases
  /** Sponsor CA, the sponsor-client names, valid from 2 days ago to 1 day ago. Same key as sponsorClient. */
  expiredSponsorClient: TestCert
  /** Sponsor CA, client: URI spiffe://sponsor.test/other-app, CN other-app, OU other. Its own key. */
  otherSponsorClient: TestCert
  /** Trusted CA (the wrong side's CA), the sponsor-client names. Same key as sponsorClient. */
  trustedCaClient: TestCert
  /** Trusted CA, server: DNS wrong.trusted.test, localhost; IP 127.0.0.1. Same key as trustedServer. */
  wrongNameTrustedServer: TestCert
  /** Sponsor CA (the wrong CA), server: DNS accreditation.trusted.test; IP 127.0.0.1. Same key as trustedServer. */
  sponsorCaTrustedServer: TestCert
  /** Sponsor CA, server: DNS localhost, ecluse.sponsor.test and no IP SAN. Same key as gatewaySponsorServer. */
  sponsorServerWithoutIp: TestCert
}

let memo: Promise<TestPki> | undefined
let dirForCleanup: string | undefined

/** The process's test PKI, generated on first call (about a second: RSA keys), then shared. */
export function makeTestPki(): Promise<TestPki> {
  memo ??= build()
  return memo
}

/**
 * Write a crafted certificate into the test PKI's directory (key 0600) so it can be referenced by
 * path, e.g. from a config file under test.
 */
export async function saveTestCert(name: string, material: CertifiedKey): Promise<TestCert> {
  if (!/^[a-z0-9][a-z0-9-]*$/.test(name)) throw new TypeError(`bad test certificate name: ${name}`)
  const { dir } = await makeTestPki()
  return write(dir, name, material)
}

async function load(pair: Pair): Promise<TestCert> {
  const [certPem, keyPem] = await Promise.all([readFile(pair.cert, 'utf8'), readFile(pair.key, 'utf8')])
  return { certPem, keyPem, certPath: pair.cert, keyPath: pair.key }
}

async function build(): Promise<TestPki> {
  const dir = await mkdtemp(join(tmpdir(), 'ecluse-test-pki-'))
  dirForCleanup = dir
  process.once('exit', () => {
    if (dirForCleanup !== undefined) rmSync(dirForCleanup, { recursive: true, force: true })
  })

  // generateDevPki makes its ten keys in parallel; otherSponsorClient's key is made alongside. The
  // other negative cases reuse a dev key: what they test is the certificate, and RSA keygen is the
  // whole cost of this fixture on a shared 2-core machine.
  const [paths, otherKey] = await Promise.all([generateDevPki({ outDir: join(dir, 'dev'), caPathLength: 1 }), rsaKeyPem()])
  const [sponsorCa, trustedCa, gatewaySponsorServer, sponsorClient, trustedServer, gatewayTrustedClient] =
    await Promise.all([
      load(paths.sponsorCa),
      load(paths.trustedCa),
      load(paths.gatewaySponsorServer),
      load(paths.sponsorClient),
      load(paths.trustedServer),
      load(paths.gatewayTrustedClient),
    ])
  const [sidecarServer, edgeClient] = await Promise.all([load(paths.sidecarServer), load(paths.edgeClient)])
  const now = Date.now()
  const day = 86_400_000
  const [expired, other, trustedCaClient, wrongName, sponsorCaTrustedServer, withoutIp] = await Promise.all([
    issueCertificateAsync(sponsorCa, {
      ...DEV_LEAF_SPECS.sponsorClient,
      notBefore: new Date(now - 2 * day),
      notAfter: new Date(now - day),
      keyPem: sponsorClient.keyPem,
    }),
    issueCertificateAsync(sponsorCa, {
      commonName: 'other-app',
      organizationalUnit: 'other',
      uris: ['spiffe://sponsor.test/other-app'],
      usage: 'client',
      keyPem: otherKey,
    }),
    issueCertificateAsync(trustedCa, { ...DEV_LEAF_SPECS.sponsorClient, keyPem: sponsorClient.keyPem }),
    issueCertificateAsync(trustedCa, {
      commonName: 'wrong.trusted.test',
      dnsNames: ['wrong.trusted.test', 'localhost'],
      ips: ['127.0.0.1'],
      usage: 'server',
      keyPem: trustedServer.keyPem,
    }),
    issueCertificateAsync(sponsorCa, {
      commonName: 'accreditation.trusted.test',
      dnsNames: ['accreditation.trusted.test'],
      ips: ['127.0.0.1'],
      usage: 'server',
      keyPem: trustedServer.keyPem,
    }),
    issueCertificateAsync(sponsorCa, {
      commonName: 'ecluse.sponsor.test',
      dnsNames: ['localhost', 'ecluse.sponsor.test'],
      usage: 'server',
      keyPem: gatewaySponsorServer.keyPem,
    }),
  ])
  const pki: TestPki = {
    dir,
    devPki: paths,
    sponsorCa,
    trustedCa,
    gatewaySponsorServer,
    sponsorClient,
    trustedServer,
    gatewayTrustedClient,
    sidecarServer,
    edgeClient,
    expiredSponsorClient: await write(dir, 'expired-sponsor-client', expired),
    otherSponsorClient: await write(dir, 'other-sponsor-client', other),
    trustedCaClient: await write(dir, 'trusted-ca-client', trustedCaClient),
    wrongNameTrustedServer: await write(dir, 'wrong-name-trusted-server', wrongName),
    sponsorCaTrustedServer: await write(dir, 'sponsor-ca-trusted-server', sponsorCaTrustedServer),
    sponsorServerWithoutIp: await write(dir, 'sponsor-server-without-ip', withoutIp),
  }
  return pki
}

function rsaKeyPem(): Promise<string> {
  return new Promise((resolve, reject) => {
    generateKeyPair(
      'rsa',
      {
        modulusLength: 2048,
        publicKeyEncoding: { type: 'spki', format: 'pem' },
        privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
      },
      (err, _pub, key) => (err ? reject(err) : resolve(key)),
    )
  })
}

async function write(dir: string, name: string, material: CertifiedKey): Promise<TestCert> {
  const certPath = join(dir, `${name}.crt`)
  const keyPath = join(dir, `${name}.key`)
  await writeFile(keyPath, material.keyPem, { mode: 0o600, flag: 'wx' })
  await writeFile(certPath, material.certPem, { mode: 0o644, flag: 'wx' })
  return { certPem: material.certPem, keyPem: material.keyPem, certPath, keyPath }
}

/** An RSA key (PEM) too small for the gateway's TLS policy (at least 2,048 bits): 512 unless told. */
export function weakRsaKeyPem(bits = 512): string {
  return generateKeyPairSync('rsa', {
    modulusLength: bits,
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
    publicKeyEncoding: { type: 'spki', format: 'pem' },
  }).privateKey
}
