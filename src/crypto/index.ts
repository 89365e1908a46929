/**
 * The sealing cryptography, with no proxy dependency: key sets, field-level compact JWE and the
 * sealed-stream format. See docs/sealing.md and docs/sealed-stream-format.md.
 */
export {
  CONTENT_ENCRYPTION,
  CURVES,
  type Curve,
  DEFAULT_CURVE,
  DEFAULT_KEY_ALG,
  type EncAlg,
  KEY_ALGORITHMS,
  type KeyAlg,
} from './algorithms.js'
export {
  assertSealedFor,
  DEFAULT_KEK_CACHE_SIZE,
  DEFAULT_MAX_SEALED_CHARS,
  type FieldBinding,
  FieldOpener,
  type FieldOpenerOptions,
  FieldSealer,
  isSealedFor,
  type OpenExpectation,
  SEAL_WINDOW_KEYS,
  SEAL_WINDOW_MS,
  SEAL_WINDOW_VALUES,
  type SealContext,
} from './field.js'
export { ASYMMETRIC_CHANNEL, type AsymmetricOperation, MAX_CLAIM_BYTES } from './jwe.js'
export { KekCache } from './kek-cache.js'
export {
  type GenerateKeySetOptions,
  generateKeySet,
  isSameRecipientKey,
  type Jwk,
  type Jwks,
  jwkThumbprint,
  KeySet,
  type KeySetOptions,
  parseKeySet,
  RecipientKey,
  readKeySetFile,
  readKeySetText,
} from './keys.js'
export {
  createOpenStream,
  createSealStream,
  DEFAULT_MAX_OPEN_RECORD_SIZE,
  DEFAULT_RECORD_SIZE,
  isMediaType,
  MAX_RECORD_SIZE,
  type OpenStream,
  type OpenStreamOptions,
  type SealedStreamInfo,
  type SealStreamOptions,
} from './stream.js'
