/**
 * Private key files readable by every user of the host. Warned about, at boot and at every reload,
 * not refused: Kubernetes mounts a secret `0644` unless told otherwise (`defaultMode`), and in a
 * container of one user that is no exposure; on a shared host it is.
 */
import { stat } from 'node:fs/promises'
import type { Config } from './schema.js'

/** What `serve` logs and `config check` prints for each such file. */
export const READABLE_KEY_FILE_WARNING = 'private key file is readable by every user of this host; make it 0600 (or 0640, 0440 for a group)'

/** Each private key file of `config` whose mode lets any user read it, as `{ key, file }`. */
export async function keyFilesReadableByOthers(config: Config): Promise<Array<{ key: string; file: string }>> {
  const files = [
    { key: 'sponsor.tls.key', file: config.sponsor.tls.key },
    ...Object.entries(config.upstreams).map(([name, u]) => ({ key: `upstreams.${name}.tls.key`, file: u.tls.key })),
    ...Object.entries(config.keys)
      .filter(([, set]) => set.private)
      .map(([name, set]) => ({ key: `keys.${name}.file`, file: set.file })),
  ]
  const modes = await Promise.all(files.map(({ file }) => stat(file).then((s) => s.mode, () => undefined)))
  // The loaders have read every file already: one that cannot be stat'ed now has nothing to add.
  return files.filter((_, i) => modes[i] !== undefined && (modes[i]! & 0o004) !== 0)
}
