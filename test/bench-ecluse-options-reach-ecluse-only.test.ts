/**
 * `--ecluse-node-arg` and `--ecluse-env` load-test the flags and environment an operator deploys
 * with: they must reach Écluse's process, and only it, or a run would compare a tuned Écluse with
 * tuned baselines (or measure the default while claiming the tuning).
 */
import { spawn, spawnSync } from 'node:child_process'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { createBenchKeys } from '../bench/lib/keys.js'
import { createBenchPki } from '../bench/lib/pki.js'
import { processTree } from '../bench/lib/proc.js'
import { findNginx, IMAGE_NODE_ARGS, startBareProxy, startEcluse } from '../bench/lib/subjects.js'
import { ROOT } from './helpers/cli.js'
import { hasExited } from './helpers/cluster.js'
import { closedPort } from './helpers/harness.js'

const PROBE = 'ECLUSE_BENCH_PROBE'

/** The environment and command line a process started with, from /proc. */
async function started(pid: number | undefined): Promise<{ env: string[]; argv: string[] }> {
  if (pid === undefined) throw new Error('the subject has no process')
  const split = async (file: string) => (await readFile(`/proc/${pid}/${file}`, 'utf8')).split('\0').filter((s) => s !== '')
  return { env: await split('environ'), argv: await split('cmdline') }
}

t.test('Écluse gets the extra option and variable; the bare proxy gets neither', { skip: process.platform !== 'linux' && 'reads /proc' }, async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'ecluse-bench-test-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const env = {
    pki: await createBenchPki(join(dir, 'pki')),
    keys: await createBenchKeys(join(dir, 'keys')),
    dir,
    // Nothing listens there: neither proxy connects upstream before a request comes.
    upstreamPort: await closedPort(),
    upstreamPid: process.pid,
    ecluseNodeArgs: ['--max-semi-space-size=2'],
    ecluseEnv: { [PROBE]: 'a=b c', MALLOC_ARENA_MAX: '2' },
  }
  const ecluse = await startEcluse(env)
  t.teardown(() => ecluse.stop())
  const bare = await startBareProxy(env)
  t.teardown(() => bare.stop())

  const own = await started(ecluse.pid)
  t.ok(own.env.includes(`${PROBE}=a=b c`), 'the value is passed whole, "=" and spaces included')
  t.ok(own.env.includes('MALLOC_ARENA_MAX=2'), 'every variable given')
  t.ok(
    own.env.some((v) => v.startsWith('PATH=')),
    'added to the runner’s environment, not instead of it',
  )
  t.ok(own.argv.includes('--max-semi-space-size=2'), 'the Node option is on its command line')
  for (const option of IMAGE_NODE_ARGS) {
    const at = own.argv.indexOf(option)
    t.ok(at > 0, `the image’s own Node option ${option} is on its command line`)
    t.ok(at < own.argv.indexOf('--max-semi-space-size=2'), 'before the run’s, so the run’s can override it')
  }

  // Both run as deployed: compiled JavaScript under plain node, never TypeScript through tsx.
  t.notOk(own.argv.includes('tsx'), 'no tsx loader in Écluse’s process')
  t.match(own.argv.find((a) => a.endsWith('cli.js')) ?? '', /\/\.bench-build-[^/]+\/src\/cli\.js$/, 'Écluse runs its compiled CLI')

  const baseline = await started(bare.pid)
  t.notOk(baseline.argv.includes('tsx'), 'no tsx loader in the baseline’s process')
  t.match(baseline.argv.find((a) => a.endsWith('.js')) ?? '', /\/\.bench-build-[^/]+\/bench\/baselines\/bare-proxy\.js$/, 'the baseline runs compiled')
  t.notOk(
    baseline.env.some((v) => v.startsWith(`${PROBE}=`) || v === 'MALLOC_ARENA_MAX=2'),
    'the baseline keeps the runner’s environment',
  )
  t.notOk(baseline.argv.includes('--max-semi-space-size=2'), 'the run’s Écluse options do not reach the baseline')
  // Found by review: the baselines ran on Node's defaults while Écluse had the image's V8 option,
  // which saves ≈ 13–18 % of a core of helper threads: the ratios measured a runtime setting too.
  t.ok(
    IMAGE_NODE_ARGS.every((o) => baseline.argv.includes(o)),
    'the baseline runs with the image’s V8 options, as Écluse does',
  )
})

t.test('the build the children run is one per process, and is removed when that process exits', async (t) => {
  const script = [
    "import { existsSync } from 'node:fs'",
    "import { benchBuild, compiled } from './bench/lib/build.js'",
    "console.log(JSON.stringify([benchBuild(), benchBuild(), compiled('bench/upstream.ts'), existsSync(compiled('bench/upstream.ts'))]))",
  ].join('\n')
  const runs = [0, 1].map(() => spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: ROOT, encoding: 'utf8', timeout: 120_000 }))
  const dirs: string[] = []
  for (const run of runs) {
    t.equal(run.status, 0, run.stderr)
    const [first, again, upstream, built] = JSON.parse(run.stdout) as [string, string, string, boolean]
    t.equal(again, first, 'built once per process')
    t.equal(upstream, join(first, 'bench', 'upstream.js'))
    t.ok(built, 'the compiled file was there while the process ran')
    t.notOk(existsSync(first), 'removed when the process exited')
    dirs.push(first)
  }
  t.not(dirs[0], dirs[1], 'two processes never share a build')
})

t.test('a variable without a name or "=" is a usage error before anything starts', async (t) => {
  for (const bad of ['NOEQUALS', '=value']) {
    const run = spawnSync(process.execPath, ['--import', 'tsx', 'bench/run.ts', '--ecluse-env', bad], { encoding: 'utf8', timeout: 60_000 })
    t.equal(run.status, 2, bad)
    t.match(run.stderr, `--ecluse-env wants NAME=VALUE, got '${bad}'`)
    t.notMatch(run.stderr, /generating a throw-away PKI/)
  }
})

for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
  // SIGTERM the runner handles (it stops its children); after a SIGKILL, which it cannot see, the
  // children end through their parent-death signal (`setpriv --pdeathsig`), and the build stays.
  t.test(`a runner stopped by ${signal} leaves no child running`, { skip: process.platform !== 'linux' && 'reads /proc' }, async (t) => {
    const runner = spawn(process.execPath, ['--import', 'tsx', 'bench/run.ts', '--scenario', 'passthrough', '--duration', '60'], { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] })
    t.teardown(() => runner.kill('SIGKILL'))
    let stderr = ''
    runner.stderr.setEncoding('utf8')
    // Under load: the upstream, a proxy and the load generator are all running by then.
    await new Promise<void>((resolve, reject) => {
      runner.stderr.on('data', (chunk: string) => {
        stderr += chunk
        if (/· bare proxy/.test(stderr)) resolve()
      })
      runner.once('exit', () => reject(new Error(`the runner ended first: ${stderr}`)))
    })
    const tree = processTree(runner.pid!).filter((pid) => pid !== runner.pid)
    const build = buildDirsOf(tree)
    t.ok(build.length > 0, 'children were running from a build directory')
    if (signal === 'SIGKILL') t.teardown(() => Promise.all(build.map((dir) => rm(dir, { recursive: true, force: true }))))
    // nginx (when installed) runs no file of the build, and its workers outlived a killed master.
    const nginx = tree.filter((pid) => readFileSyncSafe(`/proc/${pid}/cmdline`).startsWith('nginx: '))
    if (findNginx() !== undefined) t.ok(nginx.length >= 2, 'an nginx master and its worker were running')
    const exited = new Promise<number | null>((resolve) => runner.once('exit', (code, sig) => resolve(code ?? (sig === null ? null : 128 + 9))))
    runner.kill(signal)
    t.equal(await exited, signal === 'SIGTERM' ? 143 : 137, `the runner exits as a ${signal} asks`)
    // /proc may show a child for a moment until its parent has reaped it; after a SIGKILL, Écluse
    // and nginx end as a SIGTERM asks them to.
    let left: number[] = []
    for (let i = 0; i < 100; i++) {
      left = [...processesRunningFrom(build), ...nginx].filter((pid) => !hasExited(pid))
      if (left.length === 0) break
      await new Promise((r) => setTimeout(r, 100))
    }
    t.same(left, [], 'no child outlives the runner')
    if (signal === 'SIGTERM') for (const dir of build) t.notOk(existsSync(dir), `${dir} is removed`)
  })
}

/** The `.bench-build-…` directories the command lines of `pids` run from. */
function buildDirsOf(pids: number[]): string[] {
  const dirs = new Set<string>()
  for (const pid of pids) {
    const argv = readFileSyncSafe(`/proc/${pid}/cmdline`).split('\0')
    for (const a of argv) {
      const m = /^(.*\/\.bench-build-[^/]+)\//.exec(a)
      if (m !== null) dirs.add(m[1]!)
    }
  }
  return [...dirs]
}

/** Every process whose command line runs a file under one of `dirs`. */
function processesRunningFrom(dirs: string[]): number[] {
  return readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .map(Number)
    .filter((pid) => dirs.some((dir) => readFileSyncSafe(`/proc/${pid}/cmdline`).includes(`${dir}/`)))
}

function readFileSyncSafe(file: string): string {
  try {
    return readFileSync(file, 'utf8')
  } catch {
    return ''
  }
}
