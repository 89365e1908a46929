/**
 * The verified client of the sponsor listener. It is derived only from a certificate that chained to
 * the sponsor CA; nothing the client sends in headers can change it.
 */
export interface Principal {
  /**
   * The display identity, in matcher form: `uri:<the URI SAN>`, else `dns:<first DNS SAN>`, else
   * `cn:<CN>`. Distinct certificates' names give distinct ids. Log-safe.
   */
  readonly id: string
  /**
   * Every attribute a route's `allow` list may match, each in matcher form:
   * `uri:<uri SAN>`, `dns:<dns SAN>`, `cn:<subject CN>`, `ou:<subject OU>`.
   */
  readonly attributes: ReadonlySet<string>
}
