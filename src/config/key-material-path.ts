/**
 * Key material written where a file's path belongs: in the configuration (every file key) and on
 * the command line (`--keys`). Its own module so the CLI checks it without loading the schema.
 */

/**
 * Whether a value given as a file's path is key material written in its place (or no path at all):
 * a control character; a PEM block, or one in base64 (a Kubernetes secret's `data`: "-----BEGIN" is
 * `LS0tLS1CRUdJTi`); or a JWK (JSON: `{` or `[` first, with a quote). Found by review: taken as a
 * path, it was quoted whole by every error naming the file. Material in no recognisable form (a
 * bare base64 or hex key) cannot be told from a file name; it is never quoted either, since a path
 * that does not open is not repeated (`neverOpened`). `[prod]/ca.pem` and `{env}/keys.json` are paths.
 */
export function isKeyMaterialNotPath(s: string): boolean {
  return /[\x00-\x1f\x7f]/.test(s) || s.includes('-----BEGIN') || s.includes('LS0tLS1CRUdJTi') || (/^\s*[{[]/.test(s) && s.includes('"'))
}

/** The message that refuses such a value, without repeating it. */
export const KEY_MATERIAL_NOT_PATH = 'must be the path of a file (key material written in its place, as PEM, PEM in base64 or a JWK, is not read, nor a path with a control character)'
