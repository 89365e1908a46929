/**
 * File modes that expose the gateway on a shared host: private key files readable by every user,
 * and files any user can replace (the configuration, certificates, CA bundles, key sets). Warned
 * about, at boot and at every reload, not refused: Kubernetes mounts a secret `0644` unless told
 * otherwise (`defaultMode`), and in a container of one user that is no exposure; on a shared host it is.
 */
import { readFile, realpath, stat } from 'node:fs/promises'
import { dirname } from 'node:path'
import type { Config } from './schema.js'
import { namedFilesOf } from './watch.js'

/** What `serve` logs and `config check` prints for each such file. */
export const READABLE_KEY_FILE_WARNING = 'private key file is readable by every user of this host; make it 0600 (or 0640, 0440 for a group)'

/** Whether the mode of `path` lets every user read it (false if it cannot be stat'ed: nothing to add). */
export async function isReadableByOthers(path: string): Promise<boolean> {
  return stat(path).then(
    (s) => (s.mode & 0o004) !== 0,
    () => false,
  )
}

/** Each private key file of `config` whose mode lets any user read it, as `{ key, file }`. */
export async function keyFilesReadableByOthers(config: Config): Promise<Array<{ key: string; file: string }>> {
  const files = namedFilesOf(config)
    .filter((f) => f.privateKey)
    .map(({ key, file }) => ({ key, file }))
  // The loaders have read every file already: one that cannot be stat'ed now has nothing to add.
  const readable = await Promise.all(files.map(({ file }) => isReadableByOthers(file)))
  return files.filter((_, i) => readable[i])
}

/** What `serve` logs and `config check` prints for a file any user may write, or replace. */
export const WRITABLE_FILE_WARNING =
  'file can be written or replaced by every user of this host (it, or a folder on its path without the sticky bit, is world-writable): whoever changes it changes what the gateway trusts, routes or seals to; make it 0644 or stricter, on a path of folders only their owners write'

/** Where this process's mounts are read: `/proc/self/mountinfo` (a test names a file of its own). */
export const MOUNT_INFO = { path: '/proc/self/mountinfo' }

/** The host folder kubelet mounts a configMap, secret, projected or downward-API volume from. */
const KUBELET_VOLUME_SOURCE = /\/volumes\/kubernetes\.io~(?:configmap|secret|projected|downward-api)\/[^/]+$/

/** One line of mountinfo: where the mount is, what folder of its file system it shows, read-only or not. */
export interface Mount {
  readonly mountPoint: string
  readonly root: string
  readonly readOnly: boolean
}

/** `\040` and the other octal escapes mountinfo writes in a path. */
function unescapeMountPath(p: string): string {
  return p.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(Number.parseInt(octal, 8)))
}

async function readMounts(): Promise<readonly Mount[]> {
  const text = await readFile(MOUNT_INFO.path, 'utf8').catch(() => '')
  return text
    .split('\n')
    .map((line) => line.split(' '))
    .filter((f) => f.length > 6)
    .map((f) => ({ mountPoint: unescapeMountPath(f[4]!), root: unescapeMountPath(f[3]!), readOnly: f[5]!.split(',').includes('ro') }))
}

/**
 * Whether `path` lies in a read-only mount of a Kubernetes configMap or secret volume: the mount
 * that holds it (the longest mount point on its path) shows kubelet's own folder for such a volume.
 * kubelet mounts those read-only, in a folder some clusters make 0777, and alone writes them on the
 * host. A folder merely named like kubelet's version folders (`..2026_…`) proves nothing, nor does a
 * read-only mount of another folder: a `:ro` bind of a host folder others write is read-only in the
 * container only.
 */
export function inKubeletVolume(path: string, mounts: readonly Mount[]): boolean {
  let holder: Mount | undefined
  for (const m of mounts) {
    const holds = m.mountPoint === '/' || path === m.mountPoint || path.startsWith(`${m.mountPoint}/`)
    if (holds && (holder === undefined || m.mountPoint.length >= holder.mountPoint.length)) holder = m
  }
  if (holder === undefined) return false
  return holder.readOnly && KUBELET_VOLUME_SOURCE.test(holder.root)
}

/**
 * Whether every user of the host may write `path`, or replace it through a folder on its path (one
 * that is world-writable without the sticky bit, which keeps others to their own files): the path as
 * named and the file it resolves to (a symbolic link is replaced through its own folders), each
 * folder from the root down, except in a Kubernetes configMap or secret volume (`inKubeletVolume`).
 */
async function replaceableByOthers(path: string, mounts: readonly Mount[]): Promise<boolean> {
  const real = await realpath(path).catch(() => path)
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
    if (!inKubeletVolume(candidate, mounts)) return true
  }
  return false
}

/** Whether every user of this host may write `path`, or replace it through a folder on its path. */
export async function isReplaceableByOthers(path: string): Promise<boolean> {
  return replaceableByOthers(path, await readMounts())
}

/**
 * Each file `config` (read from `configFile`) names, with its setting, that every user of the host
 * may write, or replace through a folder on its path (`replaceableByOthers`): the configuration
 * itself, the certificates, CA bundles and private keys of both sides, and every key set.
 * Group-writable files are not counted: a user's own group often is one (umask 002), and a pod's
 * `fsGroup` one too.
 */
export async function filesWritableByOthers(config: Config, configFile: string): Promise<Array<{ key: string; file: string }>> {
  const files = [{ key: 'the configuration file', file: configFile }, ...namedFilesOf(config).map(({ key, file }) => ({ key, file }))]
  const mounts = await readMounts()
  const exposed = await Promise.all(files.map(({ file }) => replaceableByOthers(file, mounts)))
  return files.filter((_, i) => exposed[i])
}

/** Every file-mode warning of `config`: private keys others may read, files others may write. */
export async function fileModeWarnings(config: Config, configFile: string): Promise<Array<{ key: string; file: string; warning: string }>> {
  const [readable, writable] = await Promise.all([keyFilesReadableByOthers(config), filesWritableByOthers(config, configFile)])
  return [...readable.map((f) => ({ ...f, warning: READABLE_KEY_FILE_WARNING })), ...writable.map((f) => ({ ...f, warning: WRITABLE_FILE_WARNING }))]
}
