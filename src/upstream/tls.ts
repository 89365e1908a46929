/**
 * The gateway's client side of the trusted link: PEM material in, one `SecureContext` out.
 *
 * The context is built once per pool (at boot and at each certificate reload) rather than letting
 * `tls.connect` parse the PEM again for every new connection: a broken bundle fails at boot with
 * `tls_material_invalid`, not at the first request, and the hot path does no PEM parsing.
 */
import { createSecureContext, type SecureContext } from 'node:tls'
import { TLS_CIPHERS, TLS_SECURE_OPTIONS } from '../config/tls-policy.js'
import { EcluseError } from '../errors.js'

/**
 * PEM material for one upstream. `ca` is the trusted CA bundle and the *only* set of roots the
 * upstream's certificate may chain to; `cert`/`key` are the gateway's client certificate.
 * `src/config/tls-material.ts` produces a structurally compatible object.
 */
export interface ClientTlsMaterial {
  readonly cert: Buffer
  readonly key: Buffer
  readonly ca: Buffer
}

/**
 * Builds the client `SecureContext` for one upstream.
 *
 * Passing `ca` replaces OpenSSL's default roots (Node's bundled Mozilla store and anything added
 * with `NODE_EXTRA_CA_CERTS`): a certificate issued by a public CA, or by the sponsor CA, is refused.
 *
 * @throws EcluseError `tls_material_invalid` when a PEM block does not parse or the key does not match.
 * @example
 * const ctx = buildClientSecureContext('accreditation', material, 'TLSv1.3')
 */
export function buildClientSecureContext(
  upstream: string,
  material: ClientTlsMaterial,
  minVersion: 'TLSv1.2' | 'TLSv1.3',
): SecureContext {
  if (material.ca.length === 0) {
    // An empty `ca` would silently fall back to the default roots; refuse it outright.
    throw new EcluseError('tls_material_invalid', `upstream ${upstream}: empty trusted CA bundle`)
  }
  try {
    // The gateway's TLS policy (config/tls-policy.ts): forward secrecy, security level 2 for the
    // upstream's chain, and no renegotiation, in which an upstream could present another certificate.
    return createSecureContext({
      ca: material.ca,
      cert: material.cert,
      key: material.key,
      minVersion,
      ciphers: TLS_CIPHERS,
      secureOptions: TLS_SECURE_OPTIONS,
    })
  } catch (err) {
    // The OpenSSL message names the failing routine, never the key bytes.
    throw new EcluseError(
      'tls_material_invalid',
      `upstream ${upstream}: client TLS material rejected: ${(err as Error).message}`,
      { cause: err },
    )
  }
}
