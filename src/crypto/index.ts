/**
 * The sealing cryptography, with no proxy dependency: key sets, field-level compact JWE and the
 * sealed-stream format. See docs/sealing.md and docs/sealed-stream-format.md.
 */
export {
  type Curve,
  type EncAlg,
  type KeyAlg,
  CONTENT_ENCRYPTION,
  CURVES,
  DEFAULT_CURVE,
  DEFAULT_KEY_ALG,
  KEY_ALGORITHMS,
} from './algorithms.js'
export {
  type GenerateKeySetOptions,
  type Jwk,
  type Jwks,
  type KeySetOptions,
  KeySet,
  RecipientKey,
  generateKeySet,
  jwkThumbprint,
  parseKeySet,
  readKeySetFile,
} from './keys.js'
export {
  type FieldBinding,
  type FieldOpenerOptions,
  type OpenExpectation,
  type SealContext,
  DEFAULT_KEK_CACHE_SIZE,
  DEFAULT_MAX_SEALED_CHARS,
  FieldOpener,
  FieldSealer,
  SEAL_WINDOW_KEYS,
  SEAL_WINDOW_MS,
  SEAL_WINDOW_VALUES,
  assertSealedFor,
  isSealedFor,
} from './field.js'
export { type AsymmetricOperation, ASYMMETRIC_CHANNEL, MAX_CLAIM_CHARS } from './jwe.js'
export {
  type OpenStream,
  type OpenStreamOptions,
  type SealStreamOptions,
  type SealedStreamInfo,
  DEFAULT_MAX_OPEN_RECORD_SIZE,
  DEFAULT_RECORD_SIZE,
  MAX_RECORD_SIZE,
  createOpenStream,
  createSealStream,
  isMediaType,
} from './stream.js'
