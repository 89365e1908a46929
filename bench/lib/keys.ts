/**
 * The benchmark's sealing keys: one X25519 key (ECDH-ES+A256KW, the default of `ecluse keys init`)
 * generated for one run, as the private JWKS the trusted side opens with and the public JWKS the
 * sealing side seals to. Written under the run's private temporary directory (removed at the end of
 * the run, like the PKI), never committed.
 */
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { generateKeySet } from '../../src/crypto/keys.js'

export interface BenchKeys {
  /** Private JWKS (0600): Écluse `open` / `open-body` (`private: true`), the naive proxy's `--jwks`. */
  readonly privateFile: string
  /** Public JWKS: Écluse `seal` / `seal-body` (`private: false`), the upstream's sealed corpora. */
  readonly publicFile: string
}

/** Route context bound into the values the upstream seals for `open-fields` (`ecl.route`). */
export const SEALED_RECORDS_CONTEXT = 'sealed-records'
/** Route context of the sealed streams of `stream-seal` and `stream-open`. */
export const BLOB_CONTEXT = 'blobs'

export async function createBenchKeys(dir: string): Promise<BenchKeys> {
  await mkdir(dir, { recursive: true, mode: 0o700 })
  const { privateJwks, publicJwks } = generateKeySet({ alg: 'ECDH-ES+A256KW', crv: 'X25519' })
  const privateFile = join(dir, 'bench.private.jwks.json')
  const publicFile = join(dir, 'bench.public.jwks.json')
  await writeFile(privateFile, `${JSON.stringify(privateJwks)}\n`, { mode: 0o600 })
  await writeFile(publicFile, `${JSON.stringify(publicJwks)}\n`)
  return { privateFile, publicFile }
}
