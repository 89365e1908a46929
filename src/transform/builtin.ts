/**
 * Registers the built-in body transforms. Imported for its side effect by `src/main.ts` and by
 * `ecluse config check`, so both compile exactly the same chains. docs/transforms.md documents each.
 */
import { hiddenRecordIdProblem } from './json-fields.js'
import { createOpenTransform } from './open.js'
import { createOpenBodyTransform, stepAfterOpenBodyProblem } from './open-body.js'
import { registerChainCheck, registerTransform } from './registry.js'
import { createRequireSealedTransform } from './require-sealed.js'
import { createRequireSealedBodyTransform } from './require-sealed-body.js'
import { createSealTransform } from './seal.js'
import { createSealBodyTransform } from './seal-body.js'
import { createStripTransform } from './strip.js'

/** The built-in transform types, in the order docs/transforms.md presents them. */
export const BUILTIN_TRANSFORMS = ['seal', 'open', 'require-sealed', 'strip', 'seal-body', 'open-body', 'require-sealed-body'] as const

registerTransform('seal', createSealTransform)
registerTransform('open', createOpenTransform)
registerTransform('require-sealed', createRequireSealedTransform)
registerTransform('strip', createStripTransform)
registerTransform('seal-body', createSealBodyTransform)
registerTransform('open-body', createOpenBodyTransform)
registerTransform('require-sealed-body', createRequireSealedBodyTransform)
// A record id one step binds in plaintext that another step of the same message hides.
registerChainCheck(hiddenRecordIdProblem)
// A step that would begin before `open-body` knows the media type it must restore.
registerChainCheck(stepAfterOpenBodyProblem)
