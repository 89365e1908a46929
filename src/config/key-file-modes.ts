/**
 * File modes that expose the gateway on a shared host: private key files readable by every user,
 * and files any user can replace (the configuration, certificates, CA bundles, key sets). Warned
 * about, at boot and at every reload, not refused: Kubernetes mounts a secret `0644` unless told
 * otherwise (`defaultMode`), and in a container of one user that is no exposure; on a shared host it is.
 */
import { constants } from 'node:fs'
import { access, realpath, stat } from 'node:fs/promises'
import { dirname } from 'node:path'
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

/** What `serve` logs and `config check` prints for a file any user may write, or replace. */
export const WRITABLE_FILE_WARNING =
  'file can be written or replaced by every user of this host (it, or a folder on its path without the sticky bit, is world-writable): whoever changes it changes what the gateway trusts, routes or seals to; make it 0644 or stricter, on a path of folders only their owners write'

/** A folder kubelet's atomic writer makes for one version of a configMap or secret volume. */
const ATOMIC_WRITER_VERSION = /^\.\.\d{4}_\d{2}_\d{2}_\d{2}_\d{2}_\d{2}\.\d+$/

/**
 * The root of the Kubernetes configMap or secret volume a resolved path lies in (the folder that
 * holds kubelet's `..<timestamp>` version folders), or undefined. kubelet mounts such a volume
 * read-only, in a folder some clusters make 0777, which only kubelet writes on the host.
 */
export function kubeletVolumeOf(realPath: string): string | undefined {
  const segments = realPath.split('/')
  const at = segments.findIndex((s) => ATOMIC_WRITER_VERSION.test(s))
  return at <= 0 ? undefined : segments.slice(0, at).join('/') || '/'
}

/**
 * Whether every user of the host may write `path`, or replace it through a folder on its path (one
 * that is world-writable without the sticky bit, which keeps others to their own files): the path as
 * named and the file it resolves to (a symbolic link is replaced through its own folders), each
 * folder from the root down. Read-only here is no proof: a `:ro` bind of a host folder others write
 * is read-only in the container only. A Kubernetes configMap or secret volume is (`kubeletVolumeOf`).
 */
async function replaceableByOthers(path: string): Promise<boolean> {
  const real = await realpath(path).catch(() => path)
  const volume = kubeletVolumeOf(real)
  const inVolume = (p: string) => volume !== undefined && (p === volume || p.startsWith(`${volume}/`))
  const candidates = new Set<string>()
  for (const named of new Set([path, real])) {
    candidates.add(named)
    for (let folder = dirname(named); ; folder = dirname(folder)) {
      candidates.add(folder)
      if (dirname(folder) === folder) break
    }
  }
  for (const candidate of candidates) {
    // lstat for the link itself would say 0777 of every link: the mode that counts is its target's.
    const mode = await stat(candidate).then((s) => s.mode, () => undefined)
    if (mode === undefined || (mode & 0o002) === 0) continue
    if (candidate !== path && candidate !== real && (mode & 0o1000) !== 0) continue
    const readOnlyVolume =
      inVolume(candidate) &&
      (await access(candidate, constants.W_OK).then(
        () => false,
        (err: NodeJS.ErrnoException) => err.code === 'EROFS',
      ))
    if (!readOnlyVolume) return true
  }
  return false
}

/**
 * Each file `config` (read from `configFile`) names, with its setting, that every user of the host
 * may write, or replace through a folder on its path (`replaceableByOthers`): the configuration
 * itself, the certificates, CA bundles and private keys of both sides, and every key set.
 * Group-writable files are not counted: a user's own group often is one (umask 002), and a pod's
 * `fsGroup` one too.
 */
export async function filesWritableByOthers(config: Config, configFile: string): Promise<Array<{ key: string; file: string }>> {
  const t = config.sponsor.tls
  const files = [
    { key: 'the configuration file', file: configFile },
    { key: 'sponsor.tls.cert', file: t.cert },
    { key: 'sponsor.tls.key', file: t.key },
    { key: 'sponsor.tls.clientCa', file: t.clientCa },
    ...Object.entries(config.upstreams).flatMap(([name, u]) => [
      { key: `upstreams.${name}.tls.ca`, file: u.tls.ca },
      { key: `upstreams.${name}.tls.cert`, file: u.tls.cert },
      { key: `upstreams.${name}.tls.key`, file: u.tls.key },
    ]),
    ...Object.entries(config.keys).map(([name, set]) => ({ key: `keys.${name}.file`, file: set.file })),
  ]
  const exposed = await Promise.all(files.map(({ file }) => replaceableByOthers(file)))
  return files.filter((_, i) => exposed[i])
}

/** Every file-mode warning of `config`: private keys others may read, files others may write. */
export async function fileModeWarnings(config: Config, configFile: string): Promise<Array<{ key: string; file: string; warning: string }>> {
  const [readable, writable] = await Promise.all([keyFilesReadableByOthers(config), filesWritableByOthers(config, configFile)])
  return [...readable.map((f) => ({ ...f, warning: READABLE_KEY_FILE_WARNING })), ...writable.map((f) => ({ ...f, warning: WRITABLE_FILE_WARNING }))]
}
