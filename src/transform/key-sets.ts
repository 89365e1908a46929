/**
 * The `keys` section at boot: every key set is read and imported once (`src/crypto/keys.ts`),
 * public-only unless `private: true`, and the sealing profile is checked before anything listens.
 * `Gateway.start`, `Gateway.reload`, `ecluse config check` and the primary of `serve --workers N`
 * all call `loadKeySets`, so the four refuse exactly the same configurations.
 */
import type { Config } from '../config/schema.js'
import { isSameRecipientKey, type KeySet, readKeySetFile } from '../crypto/keys.js'
import { EcluseError } from '../errors.js'

/** Step types that use a private key set (option `keys`). */
const OPENING_STEPS: ReadonlySet<string> = new Set(['open', 'open-body'])

/**
 * Fails closed on a profile that holds private keys it does not need: a `private: true` set that no
 * `open` / `open-body` step uses. A gateway that only seals must not be able to open what it seals
 * (compromising it must not expose what crossed it), so it must be given the public file.
 *
 * @throws EcluseError `config_invalid` naming `keys.<name>.private`.
 */
export function checkKeyProfile(config: Config): void {
  const openedWith = new Set<string>()
  for (const route of config.routes) {
    for (const step of [...route.transforms.request, ...route.transforms.response]) {
      if (OPENING_STEPS.has(step.type) && typeof step['keys'] === 'string') openedWith.add(step['keys'])
    }
  }
  const problems: string[] = []
  for (const [name, set] of Object.entries(config.keys)) {
    if (set.private && !openedWith.has(name)) {
      problems.push(
        `keys.${name}.private: a private key set that no open or open-body step uses; a profile that only seals or verifies must hold the public keys only (private: false)`,
      )
    }
  }
  if (problems.length > 0) throw new EcluseError('config_invalid', problems.join('\n'))
}

/**
 * Checks the profile, then reads every key set of `config` (paths already resolved by the loader).
 * Nothing is swapped by the caller until every set has loaded, so a broken file on reload keeps the
 * previous sets.
 *
 * @throws EcluseError `config_invalid` (profile) or `key_material_invalid` naming `keys.<name>` and
 *   the file, never key material.
 * @example
 * const keySets = await loadKeySets(config)
 * const routes = compileRouteTable(config, { log, keySets, metrics: metrics.crypto })
 */
export async function loadKeySets(config: Config): Promise<ReadonlyMap<string, KeySet>> {
  checkKeyProfile(config)
  const entries = Object.entries(config.keys)
  const results = await Promise.allSettled(
    entries.map(([name, set]) =>
      readKeySetFile(set.file, {
        ...(set.private ? { requirePrivate: true } : { publicOnly: true }),
        source: `keys.${name}.file (${set.file})`,
        named: `keys.${name}.file: the file it names`,
      }),
    ),
  )
  // Every broken set is reported, in the file's order, whichever read finished first.
  const failures = results.flatMap((r) => (r.status === 'rejected' ? [r.reason as unknown] : []))
  if (failures.length === 1) throw failures[0]
  if (failures.length > 1) {
    const first = failures[0]
    const code = first instanceof EcluseError ? first.code : 'key_material_invalid'
    throw new EcluseError(code, failures.map((e) => (e instanceof Error ? e.message : String(e))).join('\n'))
  }
  const sets = new Map(entries.map(([name], i) => [name, (results[i] as PromiseFulfilledResult<KeySet>).value]))
  checkSharedKids(sets)
  return sets
}

/**
 * A kid that two sets of one gateway both hold, one of them private, must name one key in both. The
 * sidecar opens requests with its private set and seals responses to the public set (on one route or
 * on others: a record stored sealed by one route is opened by another), so a public file of another
 * set installed by mistake, whose hand-chosen kids are the same, would seal to a key no private set
 * holds. Two public sets may share a kid for different keys (two trusted hosts that chose the same
 * names): nothing on the gateway opens either.
 *
 * @throws EcluseError `key_material_invalid`, a line naming both sets and the kid for each kid two sets disagree on.
 */
function checkSharedKids(sets: ReadonlyMap<string, KeySet>): void {
  const problems: string[] = []
  const names = [...sets.keys()].sort()
  for (const [i, a] of names.entries()) {
    for (const b of names.slice(i + 1)) {
      const setA = sets.get(a)!
      const setB = sets.get(b)!
      if (!setA.hasPrivateKeys && !setB.hasPrivateKeys) continue
      for (const key of setB.keys) {
        const other = setA.get(key.kid)
        if (other === undefined || isSameRecipientKey(other, key)) continue
        problems.push(
          `keys.${a}.file and keys.${b}.file hold kid "${key.kid}" as two different keys: what is sealed under that kid to one ` +
            'would be opened with the other, and never open; install the public half of the private set, or give the keys other kids',
        )
      }
    }
  }
  if (problems.length > 0) throw new EcluseError('key_material_invalid', problems.join('\n'))
}

/**
 * The JWKS documents of `routes[].jwks`, by route name: the public halves of the named set
 * (RFC 7517 §5, plus our `current` member naming the sealing key), serialised once.
 */
export function jwksDocuments(config: Config, keySets: ReadonlyMap<string, KeySet>): ReadonlyMap<string, Buffer> {
  const out = new Map<string, Buffer>()
  for (const route of config.routes) {
    if (route.jwks === undefined) continue
    const set = keySets.get(route.jwks)
    if (set === undefined) throw new EcluseError('config_invalid', `routes: jwks: unknown key set "${route.jwks}"`)
    out.set(route.name, Buffer.from(JSON.stringify(set.publicJwks())))
  }
  return out
}
