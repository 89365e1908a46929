/**
 * A boot or a reload reads the configuration file, then every file it names, one after the other. Files
 * that change meanwhile (an operator's edit, a renewal, a non-atomic copy) could give a state made of
 * two versions that never existed together on disk. Found by a review: a reload then applied what it
 * had read, with a warning, and said it succeeded. Now the files are read again until one read finds
 * them unchanged from its start to its end (src/config/load-settled.ts); files that keep changing fail
 * the boot, or the reload, which keeps the previous state.
 *
 * The changes are made on cue, in the middle of the read: when the gateway opens a file the test names
 * (`fs.promises.open`, which the gateway's bounded reader calls, is wrapped in this test's process).
 */
import fs from 'node:fs'
import { copyFile, rename, writeFile } from 'node:fs/promises'
import { syncBuiltinESMExports } from 'node:module'
import { createConnection } from 'node:net'
import { join, resolve } from 'node:path'
import t from 'tap'
import { stringify } from 'yaml'
import { LOAD_TRIES, LOADED_AGAIN } from '../../src/config/load-settled.js'
import { ConfigWatcher, filesDigest, filesOf } from '../../src/config/watch.js'
import { EcluseError } from '../../src/errors.js'
import { Gateway } from '../../src/main.js'
import { createLogger } from '../../src/observability/logger.js'
import { Harness, LogCapture, metricValue } from '../helpers/harness.js'

const RELOAD_FAILED = 'reload failed; keeping the previous configuration and certificates'

type FileHandle = Awaited<ReturnType<typeof fs.promises.open>>

/**
 * Runs `onOpen` (before the open itself) whenever this process opens `file`, until the teardown;
 * `onHandle` may stand in for the handle the open gave.
 */
function whenOpened(
  t: { teardown(fn: () => unknown): void },
  file: string,
  onOpen: () => Promise<void>,
  onHandle: (handle: FileHandle) => FileHandle = (handle) => handle,
): { opens: number } {
  const open = fs.promises.open
  const seen = { opens: 0 }
  fs.promises.open = (async (path: Parameters<typeof open>[0], ...rest: [flags?: string | number, mode?: fs.Mode]) => {
    if (typeof path === 'string' && resolve(path) === resolve(file)) {
      seen.opens++
      await onOpen()
      return onHandle(await open(path, ...rest))
    }
    return open(path, ...rest)
  }) as typeof open
  // `import { open } from 'node:fs/promises'` (src/read-bounded-file.ts) sees the replacement too.
  syncBuiltinESMExports()
  t.teardown(() => {
    fs.promises.open = open
    syncBuiltinESMExports()
  })
  return seen
}

/** The configuration with the `records` route allowed to `allow`, and a comment that makes its bytes differ. */
function withRecordsAllowed(h: Harness, allow: string[], comment = ''): string {
  const routes = (h.config['routes'] as Array<Record<string, unknown>>).map((r) => (r['name'] === 'records' ? { ...r, allow } : r))
  return `${stringify({ ...h.config, routes })}# ${comment}\n`
}

const SPONSOR_APP = 'uri:spiffe://sponsor.test/accreditation-app'

t.test('files changed once while a reload read them are read again: the reload runs the version on disk', async (t) => {
  const h = await Harness.start()
  t.teardown(() => h.close())
  t.equal((await h.request('/v1/records/1')).status, 200)

  // The client is revoked; once the reload has read the configuration, as it goes on to the upstream
  // CA, the operator undoes the revocation. (The CA's first open is the digest taken before the read.)
  await writeFile(h.configPath, withRecordsAllowed(h, []))
  const ca = whenOpened(t, h.pki.trustedCa.certPath, async () => {
    if (ca.opens === 2) await writeFile(h.configPath, withRecordsAllowed(h, [SPONSOR_APP], 'undone'))
  })
  const result = await h.gateway.reload()
  t.match(result, { ok: true })
  t.equal((await h.request('/v1/records/1')).status, 200, 'the version on disk runs, not the one the first read began with')
  t.same(h.logs.find(LOADED_AGAIN).map((l) => l['loads']), [2], 'said once: two reads')
  const onDisk = await filesDigest(h.configPath, filesOf(h.gateway.config))
  t.equal(h.gateway.configDigest, onDisk, 'the digest it reports is that of the files on disk')
  t.equal((result as { configDigest: string }).configDigest, onDisk)
  t.equal(h.logs.find('reloaded')[0]!['configDigest'], onDisk)
  t.equal(h.logs.find(RELOAD_FAILED).length, 0)
})

t.test('files that keep changing while a reload reads them fail it: the previous state keeps serving', async (t) => {
  const h = await Harness.start()
  t.teardown(() => h.close())
  const booted = h.gateway.configDigest
  // Every read of the upstream CA finds the configuration rewritten: a revocation, each time new bytes.
  let version = 0
  const ca = whenOpened(t, h.pki.trustedCa.certPath, () => writeFile(h.configPath, withRecordsAllowed(h, [], `version ${++version}`)))
  const result = await h.gateway.reload()
  t.equal(result.ok, false)
  t.match((result as { error: string }).error, `changed while they were loaded, ${LOAD_TRIES} times in a row; nothing was used from them`)
  // Each read opens it three times: for the digest before, to load it, for the digest after.
  t.equal(ca.opens, 3 * LOAD_TRIES, `read ${LOAD_TRIES} times, no more`)
  t.equal((await h.request('/v1/records/1')).status, 200, 'nothing of those reads runs: the client is still allowed, as at boot')
  t.equal(h.gateway.configDigest, booted, 'the digest is still the boot one')
  t.equal(h.logs.find(RELOAD_FAILED).length, 1)
  t.equal(h.logs.find('reloaded').length, 0)
  const metrics = await h.metrics()
  t.equal(metricValue(metrics, 'ecluse_reloads_total', { result: 'failed' }), 1)
  t.equal(metricValue(metrics, 'ecluse_reloads_total', { result: 'ok' }), 0)
})

t.test('files that keep changing are said to, whatever the last read threw', async (t) => {
  // Found by a review: the third read's own error was thrown as the files' (here a CA bundle that
  // is no PEM), sending operators after a broken file that the next version does not name.
  const h = await Harness.start()
  t.teardown(() => h.close())
  const broken = join(h.dir, 'broken-ca.pem')
  await writeFile(broken, 'not a PEM bundle\n')
  const upstreams = h.config['upstreams'] as { backend: { tls: Record<string, unknown> } }
  const naming = (comment: string) => `${stringify({ ...h.config, upstreams: { backend: { ...upstreams.backend, tls: { ...upstreams.backend.tls, ca: broken } } } })}# ${comment}\n`
  await writeFile(h.configPath, naming('0'))
  let version = 0
  whenOpened(t, broken, () => writeFile(h.configPath, naming(`version ${++version}`)))
  const result = await h.gateway.reload()
  t.equal(result.ok, false)
  t.match((result as { error: string }).error, `changed while they were loaded, ${LOAD_TRIES} times in a row`)
  t.notMatch((result as { error: string }).error, /PEM|broken-ca/, 'not the error of one of the reads')
})

t.test('a file rewritten in place while it is read, even with the same bytes, is read again', async (t) => {
  // The bounded reader refuses a file whose length changed while it read it. Written back with the
  // same bytes, the files' digests before and after agree: that refusal alone says it changed.
  const h = await Harness.start()
  t.teardown(() => h.close())
  await writeFile(h.configPath, withRecordsAllowed(h, [], 'revoked'))
  // The upstream CA's second open (the load's; the first is the digest before it) is told a length
  // one byte short, as a stat taken while a writer had truncated the file would.
  const ca = whenOpened(
    t,
    h.pki.trustedCa.certPath,
    async () => {},
    (handle) => {
      if (ca.opens !== 2) return handle
      const stat = handle.stat.bind(handle)
      return Object.assign(handle, { stat: async () => Object.assign(await stat(), { size: (await stat()).size - 1 }) })
    },
  )
  const result = await h.gateway.reload()
  t.match(result, { ok: true }, 'read again, and applied')
  t.same(h.logs.find(LOADED_AGAIN).map((l) => l['loads']), [2])
  t.equal((await h.request('/v1/records/1')).status, 403)
})

t.test('a read that failed because the files changed under it is tried again: a renamed CA bundle reloads', async (t) => {
  const h = await Harness.start()
  t.teardown(() => h.close())
  // The upstream CA at a path of this test's own, renamed by a deployment that names its files by version.
  const first = join(h.dir, 'trusted-ca-1.pem')
  const second = join(h.dir, 'trusted-ca-2.pem')
  await copyFile(h.pki.trustedCa.certPath, first)
  const upstreams = h.config['upstreams'] as { backend: { tls: Record<string, unknown> } }
  const naming = (ca: string, comment: string) =>
    `${stringify({ ...h.config, upstreams: { backend: { ...upstreams.backend, tls: { ...upstreams.backend.tls, ca } } } })}# ${comment}\n`
  await writeFile(h.configPath, naming(first, 'one'))
  t.match(await h.gateway.reload(), { ok: true })

  // The reload reads the configuration naming the first file; as it opens that file to load it (its
  // second open: the first is the digest taken before the read), the new version lands: the
  // configuration names the second file, and the first is gone.
  await writeFile(h.configPath, naming(first, 'two'))
  const bundle = whenOpened(t, first, async () => {
    if (bundle.opens !== 2) return
    await writeFile(h.configPath, naming(second, 'three'))
    await rename(first, second)
  })
  const result = await h.gateway.reload()
  t.match(result, { ok: true }, 'the missing file was the change, not a broken configuration')
  t.equal(h.gateway.config.upstreams['backend']!.tls.ca, second)
  t.equal((await h.request('/v1/records/1')).status, 200)
  t.same(h.logs.find(LOADED_AGAIN).map((l) => l['loads']), [2])
  t.equal(h.logs.find(RELOAD_FAILED).length, 0)
})

t.test('a boot whose files keep changing fails, and listens on nothing', async (t) => {
  const h = await Harness.start()
  t.teardown(() => h.close())
  const port = h.gateway.sponsorPort
  await h.gateway.shutdown()
  // The same files, on a port the closed gateway has just left free.
  const config = { ...h.config, sponsor: { ...(h.config['sponsor'] as object), listen: { host: '127.0.0.1', port } } }
  let version = 0
  whenOpened(t, h.pki.trustedCa.certPath, () => writeFile(h.configPath, `${stringify(config)}# version ${++version}\n`))
  await writeFile(h.configPath, stringify(config))
  const logs = new LogCapture()
  await t.rejects(Gateway.start(h.configPath, { log: createLogger({ level: 'debug', destination: logs.stream }) }), {
    constructor: EcluseError,
    code: 'config_invalid',
    message: `changed while they were loaded, ${LOAD_TRIES} times in a row`,
  })
  const refused = await new Promise<string>((done) => {
    const socket = createConnection({ host: '127.0.0.1', port }, () => {
      socket.destroy()
      done('connected')
    })
    socket.on('error', (err: NodeJS.ErrnoException) => done(err.code ?? 'error'))
  })
  t.equal(refused, 'ECONNREFUSED', 'nothing listens')
})

t.test('a change made between a watcher check and the reload it asks for costs no second reload', async (t) => {
  // Found by a review: the watcher took its own read as the new starting point, not what the reload
  // loaded; a change landing between the two was applied by that reload, then reloaded again.
  const h = await Harness.start()
  t.teardown(() => h.close())
  const watcher = new ConfigWatcher(h.configPath, filesOf(h.gateway.config), 60_000, h.gateway.configDigest, () => h.gateway.configDigest)
  let reloads = 0
  watcher.start(async () => {
    reloads++
    // The check has read the files; a second edit lands before the reload reads them.
    if (reloads === 1) await writeFile(h.configPath, withRecordsAllowed(h, [SPONSOR_APP], 'second edit'))
    return h.gateway.reload()
  }, h.gateway.log)
  t.teardown(() => watcher.stop())

  await writeFile(h.configPath, withRecordsAllowed(h, [SPONSOR_APP], 'first edit'))
  t.equal(await watcher.check(), false, 'seen once: the next check says whether it holds still')
  t.equal(await watcher.check(), true, 'the first edit is a change')
  t.equal(reloads, 1)
  t.equal(await watcher.check(), false, 'the second edit runs already: no reload')
  t.equal(reloads, 1)
  t.equal(h.logs.find('reloaded').length, 1)
  // And a change after that is still seen.
  await writeFile(h.configPath, withRecordsAllowed(h, [], 'third edit'))
  t.equal(await watcher.check(), false)
  t.equal(await watcher.check(), true)
  t.equal((await h.request('/v1/records/1')).status, 403, 'the third edit runs')
})

t.test('found by review: a file a check catches half written is not loaded; the change is, once two checks find it', async (t) => {
  // A tool writing in place (`cat >`, `scp`) leaves a prefix on disk for a moment, and a prefix of a
  // configuration may parse: a route cut before its `transforms` is a route without them. The
  // watcher reloaded at its first sight of a change; a load of the prefix holds still while it runs.
  const h = await Harness.start()
  t.teardown(() => h.close())
  const watcher = new ConfigWatcher(h.configPath, filesOf(h.gateway.config), 60_000, h.gateway.configDigest, () => h.gateway.configDigest)
  let reloads = 0
  watcher.start(() => {
    reloads++
    return h.gateway.reload()
  }, h.gateway.log)
  t.teardown(() => watcher.stop())
  const full = withRecordsAllowed(h, [], 'revoked')
  // Cut where the writer stopped for a moment: before the last top-level section.
  const prefix = full.slice(0, full.lastIndexOf('\n', full.lastIndexOf('\n', full.length - 2) - 1) + 1)
  t.ok(prefix.length > 0 && prefix.length < full.length, 'a prefix of the new file')
  await writeFile(h.configPath, prefix)
  t.equal(await watcher.check(), false, 'caught mid-write: not loaded')
  await writeFile(h.configPath, full)
  t.equal(await watcher.check(), false, 'the finished file differs from what the last check saw: not yet')
  t.equal(reloads, 0, 'nothing was reloaded from the prefix')
  t.equal(await watcher.check(), true, 'held still over two checks: reloaded')
  t.equal(reloads, 1)
  t.equal(h.gateway.configDigest, await filesDigest(h.configPath, filesOf(h.gateway.config)), 'what runs is the whole file')
  t.equal((await h.request('/v1/records/1')).status, 403, 'the change runs')
})

t.test('from the re-review: files that change again at every check are not reloaded, and that is said once', async (t) => {
  const h = await Harness.start()
  t.teardown(() => h.close())
  const watcher = new ConfigWatcher(h.configPath, filesOf(h.gateway.config), 60_000, h.gateway.configDigest, () => h.gateway.configDigest)
  let reloads = 0
  watcher.start(() => {
    reloads++
    return h.gateway.reload()
  }, h.gateway.log)
  t.teardown(() => watcher.stop())
  const said = 'configuration files keep changing between checks; not reloaded until two checks in a row find them the same'
  for (let stamp = 1; stamp <= 6; stamp++) {
    // A real edit (the client revoked), and a tool that stamps the file before each check.
    await writeFile(h.configPath, withRecordsAllowed(h, [], `stamp ${stamp}`))
    t.equal(await watcher.check(), false, `check ${stamp}: changed again, not reloaded`)
    t.equal(h.logs.find(said).length, stamp < 4 ? 0 : 1, stamp < 4 ? 'not said yet' : 'said once')
  }
  t.equal(reloads, 0)
  t.equal(await watcher.check(), true, 'once it holds still, reloaded')
  t.equal((await h.request('/v1/records/1')).status, 403)
})

t.test('files a SIGHUP applied are no change to the watcher', async (t) => {
  // Found by a review: the watcher compared the files with its own last read only, so a change a
  // SIGHUP had applied was reloaded once more at its next check.
  const h = await Harness.start()
  t.teardown(() => h.close())
  const watcher = new ConfigWatcher(h.configPath, filesOf(h.gateway.config), 60_000, h.gateway.configDigest, () => h.gateway.configDigest)
  let reloads = 0
  watcher.start(() => {
    reloads++
    return h.gateway.reload()
  }, h.gateway.log)
  t.teardown(() => watcher.stop())
  await writeFile(h.configPath, withRecordsAllowed(h, [], 'revoked'))
  t.match(await h.gateway.reload(), { ok: true }, 'the SIGHUP')
  t.equal(await watcher.check(), false, 'what runs is on disk: no reload')
  t.equal(reloads, 0)
  t.equal(h.logs.find('reloaded').length, 1)
})

t.test('an edit undone while its reload read a later one is reloaded again: what runs comes back to the files', async (t) => {
  // The check reads edit B; before the reload reads the files, C lands, and the reload applies C;
  // then the files go back to B. B is both what the last check read and not what runs.
  const h = await Harness.start()
  t.teardown(() => h.close())
  const watcher = new ConfigWatcher(h.configPath, filesOf(h.gateway.config), 100, h.gateway.configDigest, () => h.gateway.configDigest)
  let reloads = 0
  watcher.start(async () => {
    reloads++
    if (reloads > 1) return h.gateway.reload()
    await writeFile(h.configPath, withRecordsAllowed(h, [SPONSOR_APP], 'C'))
    const result = await h.gateway.reload()
    await writeFile(h.configPath, withRecordsAllowed(h, [], 'B'))
    return result
  }, h.gateway.log)
  t.teardown(() => watcher.stop())
  await writeFile(h.configPath, withRecordsAllowed(h, [], 'B'))
  const reloaded = () => h.logs.find('reloaded').length
  for (const deadline = Date.now() + 5_000; reloaded() < 2 && Date.now() < deadline; ) await new Promise((r) => setTimeout(r, 25))
  t.equal(reloads, 2, 'B was reloaded again')
  t.equal(reloaded(), 2)
  t.equal(h.gateway.configDigest, await filesDigest(h.configPath, filesOf(h.gateway.config)), 'what runs is on disk')
  t.equal((await h.request('/v1/records/1')).status, 403, 'B runs: the client is revoked')
  t.equal(h.logs.find('trying again a change that is not running yet').length, 1)
  await new Promise((r) => setTimeout(r, 500))
  t.equal(reloads, 2, 'and nothing after')
})

t.test('found by review: a file whose size never matches what it holds (/proc) is named, with its key, not said to keep changing', async (t) => {
  // /proc/self/environ stats as 0 bytes and reads as the environment: each read refuses it as
  // changed while read, although nothing changes. The generic message named neither key nor file.
  const h = await Harness.start()
  t.teardown(() => h.close())
  const sponsor = h.config['sponsor'] as { tls: Record<string, unknown> }
  await writeFile(h.configPath, stringify({ ...h.config, sponsor: { ...sponsor, tls: { ...sponsor.tls, key: '/proc/self/environ' } } }))
  const result = await h.gateway.reload()
  t.equal(result.ok, false)
  t.match(
    (result as { error: string }).error,
    `sponsor.tls.key: /proc/self/environ: changed while being read, ${LOAD_TRIES} times in a row while the files held still: its size never matches what it holds`,
  )
})
