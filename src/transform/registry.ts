/**
 * The transform registry: `type` in a route's `transforms` list → the factory that builds it.
 * Chains are compiled once at boot (fastify `lib/route.js`): an unknown type or bad options fail the
 * boot with the key path of the step, never a request. The core registers no transform; the sealing
 * modules register `seal`, `open`, `require-sealed` and `strip` when they are imported.
 */
import type { TransformStepConfig } from '../config/schema.js'
import { EcluseError, isEcluseError } from '../errors.js'
import type { BodyTransform, TransformEnv, TransformFactory } from './types.js'

/** One entry object per registration, so an unregister function can recognise its own. */
const factories = new Map<string, { readonly factory: TransformFactory }>()

/** The form a transform `type` must take (the same alphabet as route names). */
const TYPE_NAME = /^[a-z][a-z0-9-]{0,62}$/

/**
 * Registers the factory for a transform `type`. Registering a type twice is a programming error.
 * Returns a function that removes this registration (tests use it to register a throw-away type).
 *
 * @example
 * const unregister = registerTransform('uppercase', (_opts, _env) => ({ type: 'uppercase', begin: () => null }))
 * // … compile routes that use `type: uppercase` …
 * unregister()
 */
export function registerTransform(type: string, factory: TransformFactory): () => void {
  if (!TYPE_NAME.test(type)) throw new EcluseError('internal', `transform type "${type}" must match ${TYPE_NAME}`)
  if (factories.has(type)) throw new EcluseError('internal', `transform type "${type}" is already registered`)
  const entry = { factory }
  factories.set(type, entry)
  return () => {
    // Only remove our own registration, so a stale unregister cannot remove a later one.
    if (factories.get(type) === entry) factories.delete(type)
  }
}

/**
 * A check of a whole chain (one direction of one route: one message's steps, their options as
 * configured), for what no step can judge alone. Returns why the chain is refused, or `undefined`.
 * A request meets its steps in the listed order, a response in reverse.
 */
export type ChainCheck = (steps: readonly TransformStepConfig[], keyPath: string, direction: 'request' | 'response') => string | undefined

const chainChecks = new Set<ChainCheck>()

/** Registers a {@link ChainCheck}, run by every `compileTransformChain`; returns its removal. */
export function registerChainCheck(check: ChainCheck): () => void {
  chainChecks.add(check)
  return () => chainChecks.delete(check)
}

/** The registered transform types, sorted (for messages and `--help`). */
export function registeredTransforms(): string[] {
  return [...factories.keys()].sort()
}

/**
 * Builds the transforms of one chain, in the listed order. `keyPath` names the list in messages,
 * e.g. `routes[0].transforms.request`. Each step's own keys (everything but `type`) are passed to
 * its factory as options.
 *
 * @throws EcluseError `config_invalid` for an unknown type or options a factory refuses, prefixed
 *   with the step's key path (`routes[0].transforms.request[1].type: unknown transform "x" (known: …)`);
 *   other codes a factory throws (e.g. `key_material_invalid`) keep their code and get the prefix.
 * @example
 * const request = compileTransformChain(route.transforms.request, env, `routes[${i}].transforms.request`, 'request')
 */
export function compileTransformChain(
  steps: readonly TransformStepConfig[],
  env: TransformEnv,
  keyPath: string,
  direction: 'request' | 'response',
): BodyTransform[] {
  const chain: BodyTransform[] = []
  const problems: string[] = []
  steps.forEach((step, i) => {
    const at = `${keyPath}[${i}]`
    const factory = factories.get(step.type)?.factory
    if (factory === undefined) {
      const known = registeredTransforms()
      problems.push(`${at}.type: unknown transform "${step.type}" (known: ${known.length === 0 ? 'none' : known.join(', ')})`)
      return
    }
    const { type: _type, ...options } = step
    let transform: BodyTransform
    try {
      transform = factory(Object.freeze(options), env)
    } catch (err) {
      if (isEcluseError(err) && err.code === 'config_invalid') {
        problems.push(prefixLines(at, err.message))
        return
      }
      if (isEcluseError(err)) throw new EcluseError(err.code, prefixLines(at, err.message), { cause: err })
      const message = err instanceof Error ? err.message : String(err)
      throw new EcluseError('internal', `${at}: transform "${step.type}" failed to build: ${message}`, { cause: err })
    }
    if (typeof transform?.begin !== 'function') {
      throw new EcluseError('internal', `${at}: transform "${step.type}" factory returned no transform`)
    }
    chain.push(transform)
  })
  if (problems.length > 0) throw new EcluseError('config_invalid', problems.join('\n'))
  for (const check of chainChecks) {
    const problem = check(steps, keyPath, direction)
    if (problem !== undefined) problems.push(problem)
  }
  if (problems.length > 0) throw new EcluseError('config_invalid', problems.join('\n'))
  return chain
}

/** Prefixes every line of a (possibly multi-line) message with the step's key path. */
function prefixLines(at: string, message: string): string {
  return message
    .split('\n')
    .map((line) => `${at}: ${line}`)
    .join('\n')
}
