/**
 * The benchmark's throw-away PKI: the development PKI (two independent CAs, RSA 2048, the same as
 * `ecluse certs init`) generated in a private temporary directory for one run, and read back as PEM
 * for the processes that want strings. Never committed, removed at the end of the run.
 */
import { readFileSync } from 'node:fs'
import { type DevPki, devPkiPaths, generateDevPki, type Pair } from '../../src/pki/dev-pki.js'

/** A certificate and its key, as paths and PEM text. */
export interface BenchCert {
  readonly cert: string
  readonly key: string
  readonly certPem: string
  readonly keyPem: string
}

/** Everything a bench process needs to speak mTLS on either side. */
export interface BenchPki {
  readonly dir: string
  readonly paths: DevPki
  /** Sponsor CA certificate (PEM): what the sponsor listener trusts for clients. */
  readonly sponsorCaPem: string
  /** Trusted CA certificate (PEM): what the gateway trusts for the upstream, and vice versa. */
  readonly trustedCaPem: string
  /** The gateway's sponsor-side server certificate. */
  readonly sponsorServer: BenchCert
  /** The load generator's client certificate (sponsor CA, `uri:spiffe://sponsor.test/accreditation-app`). */
  readonly sponsorClient: BenchCert
  /** The upstream's server certificate (trusted CA, `accreditation.trusted.test`). */
  readonly trustedServer: BenchCert
  /** The gateway's client certificate for the trusted side. */
  readonly trustedClient: BenchCert
}

/** The principal the bench client presents, as a route `allow` matcher. */
export const BENCH_CLIENT_PRINCIPAL = 'uri:spiffe://sponsor.test/accreditation-app'
/** The name on the upstream's certificate (SNI and verification). */
export const UPSTREAM_SERVER_NAME = 'accreditation.trusted.test'

function load(pair: Pair): BenchCert {
  return { cert: pair.cert, key: pair.key, certPem: readFileSync(pair.cert, 'utf8'), keyPem: readFileSync(pair.key, 'utf8') }
}

/** Reads a PKI written by {@link createBenchPki} (child processes get only the directory). */
export function readBenchPki(dir: string): BenchPki {
  const paths = devPkiPaths(dir)
  return {
    dir,
    paths,
    sponsorCaPem: readFileSync(paths.sponsorCa.cert, 'utf8'),
    trustedCaPem: readFileSync(paths.trustedCa.cert, 'utf8'),
    sponsorServer: load(paths.gatewaySponsorServer),
    sponsorClient: load(paths.sponsorClient),
    trustedServer: load(paths.trustedServer),
    trustedClient: load(paths.gatewayTrustedClient),
  }
}

/** Generates the development PKI under `dir` (a fresh temporary directory). */
export async function createBenchPki(dir: string): Promise<BenchPki> {
  await generateDevPki({ outDir: dir, force: true, validityDays: 2 })
  return readBenchPki(dir)
}
