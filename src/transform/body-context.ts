/**
 * The `context` of a whole-body step (`seal-body`, `open-body`, `require-sealed-body`): the name a
 * sealed stream is bound to (`ecl.route`), and the one required of a stream opened or checked.
 *
 * `{name}` in it stands for the route's `:name` path parameter, which binds a body to the resource
 * its path names: with `context: photos-in/{id}` on `/v1/accreditations/:id/photo`, a photo sealed
 * on its way to `/v1/accreditations/A/photo` is bound to `photos-in/A`, and does not open, nor pass
 * a check, as the photo of B. Without a context the route name is bound.
 *
 * A parameter is read from the normalised path (`normalizeTarget`), so every spelling of one path
 * binds the same name, on both gateways of a chain. A path segment never holds a `/`, and only a `/`
 * may part two parameters: `{a}-{b}` would bind `x-y-z` for both `x-y`,`z` and `x`,`y-z`.
 *
 * Field steps bind a value to its record through `records` (its id member) instead: their context
 * takes no parameter.
 */
import { claimFits, MAX_CLAIM_BYTES } from '../crypto/jwe.js'
import { EcluseError } from '../errors.js'
import { alsoAcceptList, contextText, refusal } from './json-fields.js'
import type { TransformContext, TransformEnv } from './types.js'

/** A whole-body step's compiled context. */
export interface BodyContext {
  /** The context of one message: the route name, the configured text, or that text with its parameters read from the path. */
  of(ctx: TransformContext): string
  /**
   * Why a request to `path` cannot be bound (the bound context would be longer than a claim may be),
   * else undefined: asked when the request is routed, before the upstream is contacted, for the
   * steps of both directions (src/route/table.ts `pathRefusal`). Absent for a context without a
   * parameter, which binds any path.
   */
  readonly refusal?: (path: string) => string | undefined
}

/**
 * `alsoAccept` of the steps that open or check a body: contexts accepted beside `context` while the
 * sealing side moves from one to the other (a context changed without a window in which either
 * gateway refuses the other's bodies; docs/transforms.md). Each may name path parameters as well.
 */
export const alsoAcceptOption = alsoAcceptList(contextText)

/** The contexts an opening or checking step accepts for one message: `context`, then `alsoAccept`. */
export interface AcceptedContexts {
  /** One context, or the list, for `createOpenStream`'s and `createSealedStreamCheck`'s `route`. */
  of(ctx: TransformContext): string | readonly string[]
  /** As `BodyContext.refusal`, for any of them; absent when none has a parameter. */
  readonly refusal?: (path: string) => string | undefined
}

/**
 * Compiles `context` and `alsoAccept` of an opening or checking step.
 *
 * @throws EcluseError `config_invalid` as `compileBodyContext`, the option named.
 */
export function compileAcceptedContexts(context: string | undefined, alsoAccept: readonly string[] | undefined, env: TransformEnv): AcceptedContexts {
  const main = compileBodyContext(context, env)
  if (alsoAccept === undefined) return main
  const all = [
    main,
    ...alsoAccept.map((c, i) => {
      try {
        return compileBodyContext(c, env)
      } catch (err) {
        throw new EcluseError('config_invalid', (err as Error).message.replace(/^context:/, `alsoAccept[${i}]:`))
      }
    }),
  ]
  const refusals = all.flatMap((c) => (c.refusal === undefined ? [] : [c.refusal]))
  const of = (ctx: TransformContext) => all.map((c) => c.of(ctx))
  if (refusals.length === 0) return { of }
  return {
    of,
    refusal: (path) => {
      for (const refusal of refusals) {
        const why = refusal(path)
        if (why !== undefined) return why
      }
      return undefined
    },
  }
}

/** The name inside `{…}`: a route parameter's, as `:name` allows (src/route/table.ts). */
const PARAM = /^[A-Za-z_][A-Za-z0-9_]*$/

/**
 * Compiles a whole-body step's `context` option against its route's path pattern (`env.routePath`).
 *
 * @throws EcluseError `config_invalid` for a `{` or `}` that encloses no parameter name, a name that
 *   is not a parameter of the route, two parameters without a `/` between them, or a parameter where
 *   no route is known (the `seal`/`open` commands).
 * @example
 * compileBodyContext('photos-in/{id}', { ...env, routePath: '/v1/accreditations/:id/photo' })
 * // .of(ctx): 'photos-in/' + the third segment of ctx.path
 */
export function compileBodyContext(context: string | undefined, env: TransformEnv): BodyContext {
  if (context === undefined) return { of: (ctx) => ctx.routeName }
  if (!context.includes('{') && !context.includes('}')) return { of: () => context }
  const literals: string[] = []
  const names: string[] = []
  let from = 0
  for (;;) {
    const open = context.indexOf('{', from)
    const close = context.indexOf('}', from)
    if (open === -1 && close === -1) break
    if (open === -1 || (close !== -1 && close < open)) invalid('"}" closes no "{"')
    const end = close
    if (end === -1) invalid('"{" is not closed')
    const name = context.slice(open + 1, end)
    if (!PARAM.test(name)) invalid('"{" and "}" enclose the name of a path parameter, e.g. photos/{id}')
    literals.push(context.slice(from, open))
    names.push(name)
    from = end + 1
  }
  literals.push(context.slice(from))
  for (let i = 1; i < names.length; i++) {
    if (!literals[i]!.includes('/')) invalid(`{${names[i - 1]}} and {${names[i]}} need a "/" between them, which no path segment holds: otherwise two paths could bind the same context`)
  }
  const routePath = env.routePath
  if (routePath === undefined) invalid(`{${names[0]}} reads a path parameter, and there is no route path here; give the context as it was bound, e.g. photos-in/A`)
  const patternSegments = routePath.slice(1).split('/')
  const segments = names.map((name) => {
    const index = patternSegments.indexOf(`:${name}`)
    if (index === -1) {
      const params = patternSegments.filter((s) => s.startsWith(':'))
      invalid(`{${name}} is not a parameter of the route's path ${routePath} (${params.length === 0 ? 'it has none' : `it has ${params.join(', ')}`})`)
    }
    return index
  })
  const bind = (path: string): string => {
    let bound = literals[0]!
    for (let i = 0; i < segments.length; i++) bound += segmentAt(path, segments[i]!) + literals[i + 1]!
    return bound
  }
  // A claim is at most MAX_CLAIM_BYTES: a longer one would fail the seal, or never match on opening.
  const tooLong = `the context bound to the path is longer than ${MAX_CLAIM_BYTES} bytes`
  return {
    of: (ctx) => {
      const bound = bind(ctx.path)
      if (!claimFits(bound)) throw refusal(ctx.direction, 'path_rejected', tooLong)
      return bound
    },
    refusal: (path) => (claimFits(bind(path)) ? undefined : tooLong),
  }
}

function invalid(why: string): never {
  throw new EcluseError('config_invalid', `context: ${why}`)
}

/**
 * The `index`th segment of a normalised path (`/a/b` has `a` at 0). The route matched the path, so
 * the segment of one of its parameters is there and not empty; anything else is a bug, refused.
 */
function segmentAt(path: string, index: number): string {
  let start = 1
  for (let i = 0; i < index && start > 0; i++) start = path.indexOf('/', start) + 1
  const end = path.indexOf('/', start)
  const segment = start === 0 ? '' : path.slice(start, end === -1 ? path.length : end)
  if (segment === '') throw new EcluseError('internal', `no path parameter at segment ${index}`)
  return segment
}
