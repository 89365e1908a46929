/**
 * Whether the sponsor CA bundle anchors a client's chain, as a reload asks it of every open
 * connection (src/listener/sponsor.ts): a pure function of certificates, its work bounded whatever
 * the client sent.
 */
import type { X509Certificate } from 'node:crypto'

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
  const signs = (issuer: X509Certificate, subject: X509Certificate): boolean => {
    const key = `${issuer.fingerprint256}>${subject.fingerprint256}`
    let ok = links.get(key)
    if (ok === undefined) {
      // `ca`: basicConstraints; checkIssued compares names and key identifiers, and key usage.
      ok = issuer.ca && subject.checkIssued(issuer) && subject.verify(issuer.publicKey)
      links.set(key, ok)
    }
    return ok
  }
  const current = (c: X509Certificate) => Date.parse(c.validFrom) <= now && now < Date.parse(c.validTo)
  const visited = new Set<X509Certificate>()
  const reaches = (cert: X509Certificate): boolean => {
    visited.add(cert)
    if (bundle.some((ca) => ca.fingerprint256 === cert.fingerprint256 || signs(ca, cert))) return true
    return chain.some((next) => !visited.has(next) && current(next) && signs(next, cert) && reaches(next))
  }
  const leaf = chain[0]
  return leaf !== undefined && reaches(leaf)
}
