/**
 * Whether the sponsor CA bundle anchors a client's chain, as a reload asks it of every open
 * connection (src/listener/sponsor.ts): a pure function of certificates, its work bounded whatever
 * the client sent.
 */
import type { X509Certificate } from 'node:crypto'

/**
 * Signature checks one chain may cost. Each certificate is visited once, so a chain of ten that all
 * name each other needs at most 45 among themselves, and one per bundle CA for each; past this many,
 * links not yet known count as absent (the chain is then likely not anchored: its client reconnects).
 */
const MAX_SIGNATURE_CHECKS = 100

/**
 * A key a CA's signature is checked with: an RSA key of at most 8,192 bits and a public exponent of
 * at most 2^32 (the loader's bounds for the sealing keys too), or any key that is not RSA. A client can send a
 * certificate whose RSA exponent has 2,040 bits: each check with it costs ≈ 1.8 ms, not 0.03.
 */
function ordinaryKey(cert: X509Certificate): boolean {
  const details = cert.publicKey.asymmetricKeyDetails
  if (!cert.publicKey.asymmetricKeyType?.startsWith('rsa')) return true
  return (details?.modulusLength ?? Number.POSITIVE_INFINITY) <= 8192 && (details?.publicExponent ?? 0n) <= 2n ** 32n
}

/**
 * Whether a path of signatures runs from the leaf of `chain`, through its other certificates, to a
 * CA of `bundle` (or to one of them itself), every issuer on it a current CA certificate. A
 * depth-first search that visits each certificate once (whether one reaches the bundle does not
 * depend on the path to it), so a chain padded with certificates that sign each other costs at most
 * one signature check per pair; `links` memoises those (`issuer>subject` fingerprints) across the
 * connections of one reload, which often share an intermediate.
 */
export function anchored(chain: readonly X509Certificate[], bundle: readonly X509Certificate[], links: Map<string, boolean>): boolean {
  const now = Date.now()
  let checks = 0
  const signs = (issuer: X509Certificate, subject: X509Certificate): boolean => {
    const key = `${issuer.fingerprint256}>${subject.fingerprint256}`
    let ok = links.get(key)
    if (ok === undefined) {
      // `ca`: basicConstraints; checkIssued compares names and key identifiers, and key usage.
      if (!(issuer.ca && subject.checkIssued(issuer) && ordinaryKey(issuer))) ok = false
      // Past the cap, not memoised: the cap is this chain's, and `links` serves other connections.
      else if (++checks > MAX_SIGNATURE_CHECKS) return false
      else ok = subject.verify(issuer.publicKey)
      links.set(key, ok)
    }
    return ok
  }
  const current = (c: X509Certificate) => Date.parse(c.validFrom) <= now && now < Date.parse(c.validTo)
  const visited = new Set<X509Certificate>()
  const reaches = (cert: X509Certificate): boolean => {
    visited.add(cert)
    if (bundle.some((ca) => current(ca) && (ca.fingerprint256 === cert.fingerprint256 || signs(ca, cert)))) return true
    return chain.some((next) => !visited.has(next) && current(next) && signs(next, cert) && reaches(next))
  }
  const leaf = chain[0]
  return leaf !== undefined && reaches(leaf)
}
