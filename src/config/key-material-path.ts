/**
 * Key material written where a file's path belongs: in the configuration (every file key) and on
 * the command line (`--keys`). Its own module so the CLI checks it without loading the schema.
 */

/**
 * Whether a value given as a file's path is key material written in its place (or no path at all):
 * a control character; a PEM block, or one in base64 (a Kubernetes secret's `data`: "-----BEGIN" is
 * `LS0tLS1CRUdJTi`); a JWK (JSON: `{` or `[` first, with a quote); or a name between slashes that
 * reads as base64 of a key (40 characters or more of its alphabet, with upper and lower case and a
 * digit: a bare PEM body, a JWK's `d`). Taken as a path, it would be quoted whole by every error
 * that names the file (found by review). Names like `[prod]/ca.pem` or `{env}/keys.json` are paths.
 */
export function isKeyMaterialNotPath(s: string): boolean {
  return (
    /[\x00-\x1f\x7f]/.test(s) ||
    s.includes('-----BEGIN') ||
    s.includes('LS0tLS1CRUdJTi') ||
    (/^\s*[{[]/.test(s) && s.includes('"')) ||
    s.split('/').some((name) => name.length >= 40 && /^[A-Za-z0-9+=_-]+$/.test(name) && /[A-Z]/.test(name) && /[a-z]/.test(name) && /[0-9]/.test(name))
  )
}

/** The message that refuses such a value, without repeating it. */
export const KEY_MATERIAL_NOT_PATH = 'must be the path of a file (key material written in its place, as PEM, base64 or a JWK, is not read, nor a path with a control character)'
