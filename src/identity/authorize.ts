/**
 * Route ACLs. A request is allowed when one of its verified principal's attributes is listed in the
 * route's `allow` set, compared exactly; an empty `allow` admits nobody (ghostunnel `auth/auth.go`:
 * "if the given ACL is empty, no clients will be allowed").
 */
import type { CompiledRoute } from '../route/table.js'
import type { Principal } from './principal.js'

/**
 * Whether `principal` may use `route`: any of its attributes in `route.allow`. Fails closed.
 *
 * @example
 * if (!isAllowed(route, principal)) throw new EcluseError('forbidden', `${principal.id} not on ${route.name}`)
 */
export function isAllowed(route: CompiledRoute, principal: Principal): boolean {
  const allow = route.allow
  if (allow.size === 0) return false
  for (const attribute of principal.attributes) {
    if (allow.has(attribute)) return true
  }
  return false
}
