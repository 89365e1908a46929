/**
 * Reading one version of the files. A boot or a reload reads the configuration file, then every
 * certificate, CA bundle, key and key set it names, one after the other: a Kubernetes `..data` swap,
 * a renewal or an operator's copy landing between two of those reads would give a state made of two
 * versions, one that never existed on disk (a new certificate with the old key set, a new route
 * with the old CA). Each piece would pass its checks; the whole was never reviewed by anyone.
 *
 * So the files' digest ({@link filesDigest}) is taken before and after the reads, and what was read
 * is used only when the two agree. When they differ the files are read again, after a short pause
 * (an atomic swap is over by then), up to {@link LOAD_TRIES} times; files still changing after that
 * fail the load: a boot fails, a reload keeps the previous state and says why, and the watcher tries
 * again later.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import type { KeySet } from '../crypto/keys.js'
import { EcluseError, isEcluseError } from '../errors.js'
import { CHANGED_WHILE_READ } from '../read-bounded-file.js'
import { loadKeySets } from '../transform/key-sets.js'
import { loadConfigFile } from './load.js'
import type { Config } from './schema.js'
import { type AllTlsMaterial, loadAllTls } from './tls-material.js'
import { configFilesDigest, filesDigest, filesOf } from './watch.js'

/** How many times the files are read before files that keep changing fail the load. */
export const LOAD_TRIES = 3
/** The pause before the second read; the third waits twice as long. */
const FIRST_PAUSE_MS = 250

/** What one version of the files holds, read whole. */
export interface SettledFiles {
  readonly config: Config
  readonly tls: AllTlsMaterial
  readonly keySets: ReadonlyMap<string, KeySet>
  /** The files' digest, the same before and after they were read. */
  readonly configDigest: string
  /** How many reads it took (1 when nothing changed meanwhile). */
  readonly loads: number
}

/** The log line of a boot or reload that had to read the files more than once. */
export const LOADED_AGAIN = 'the configuration files changed while they were loaded; loaded them again'

/**
 * Reads the configuration and every file it names, until a read finds the files unchanged from its
 * start to its end.
 *
 * @throws whatever a read of files that held still throws (`config_invalid`, `tls_material_invalid`,
 *   `key_material_invalid`): their own failure. A read that fails while the files changed (a file
 *   caught half written, or gone with the version that named it) is tried again like one that
 *   succeeded. `config_invalid` when the files changed during each of the {@link LOAD_TRIES} reads,
 *   whatever the last one threw.
 */
export async function loadSettledFiles(configPath: string): Promise<SettledFiles> {
  /** The last read's failure, when a file's length differed from its size while the digests agreed. */
  let unsteady: EcluseError | undefined
  /** How many reads in a row failed so. */
  let unsteadyReads = 0
  for (let loads = 1; ; loads++) {
    const before = await configFilesDigest(configPath)
    try {
      const config = await loadConfigFile(configPath)
      const tls = await loadAllTls(config)
      const keySets = await loadKeySets(config)
      const after = await filesDigest(configPath, filesOf(config))
      if (after === before) return { config, tls, keySets, configDigest: after, loads }
      unsteady = undefined
      unsteadyReads = 0
    } catch (err) {
      // Files that held still failed on their own: that is their error, and reading them again would
      // only repeat it. One read while it was rewritten in place is a change, even with the same bytes.
      const message = err instanceof Error ? err.message : ''
      const heldStill = (await configFilesDigest(configPath)) === before
      if (!message.includes(CHANGED_WHILE_READ) && heldStill) throw err
      unsteady = heldStill && isEcluseError(err) ? err : undefined
      unsteadyReads = unsteady === undefined ? 0 : unsteadyReads + 1
    }
    if (loads >= LOAD_TRIES) {
      // Each read found one file longer or shorter than its size while nothing changed: a file whose
      // size never says what it holds (/proc, /sys), not one being rewritten. Its own message names
      // the key and the file (found by review: the generic one below named neither).
      if (unsteady !== undefined && unsteadyReads >= LOAD_TRIES) {
        throw new EcluseError(unsteady.code, `${unsteady.message}, ${LOAD_TRIES} times in a row while the files held still: its size never matches what it holds (not a regular file on disk?)`, { cause: unsteady })
      }
      throw new EcluseError(
        'config_invalid',
        `the configuration files changed while they were loaded, ${LOAD_TRIES} times in a row; nothing was used from them (write them atomically: a new file renamed into place, or a Kubernetes volume)`,
      )
    }
    await sleep(FIRST_PAUSE_MS * loads)
  }
}
