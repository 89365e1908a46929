/**
 * `serve --workers N`: the primary's `/metrics` aggregates its workers' registries with its own
 * series (the admin listener's connections, its dropped log lines). Found by a review: while no
 * worker had ever answered a scrape (all booting, or stalled before their first), the primary's own
 * series were left out, and a series that vanishes for a scrape resets every alert pending on it.
 * And the primary's own process (its memory, CPU, event loop: it serves the probes and the scrapes)
 * was in no series at all; Node's default metrics now add it to its workers'. Scrapes that come
 * together share one round of questions to the workers.
 */
import t from 'tap'
import { request } from 'undici'
import { killIfStillOurs, startEchoCluster } from '../helpers/cluster.js'

t.test('workers stalled before their first scrape: the primary still exports its own series', { skip: process.platform !== 'linux' && 'SIGSTOP' }, async (t) => {
  const { cluster } = await startEchoCluster(t)
  const { admin } = await cluster.started()
  const pids = cluster.logged('écluse gateway started').map((l) => Number(l['pid']))
  t.equal(pids.length, 2)
  for (const pid of pids) {
    t.teardown(() => killIfStillOurs(pid))
    process.kill(pid, 'SIGSTOP')
  }
  // Several scrapes at once, each waiting for workers that do not answer.
  const scrapes = await Promise.all(
    Array.from({ length: 5 }, async () => {
      const res = await request(`${admin}/metrics`)
      return { status: res.statusCode, text: await res.body.text() }
    }),
  )
  for (const pid of pids) process.kill(pid, 'SIGCONT')
  for (const { status, text } of scrapes) {
    t.equal(status, 200)
    t.match(text, /^ecluse_open_connections\{side="admin"\} [1-9]/m, "the admin listener's connections, counted by the primary")
    t.match(text, /^ecluse_log_lines_dropped_total 0$/m, "the primary's dropped log lines")
    t.match(text, /^ecluse_cluster_workers\{state="configured"\} 2$/m)
    // Node's default metrics of the primary's own process (the pod's memory is its and its workers').
    t.match(text, /^ecluse_process_resident_memory_bytes [1-9]/m, "the primary's memory")
    t.match(text, /^ecluse_nodejs_eventloop_lag_p99_seconds /m, "the primary's event loop")
  }
  // Scrapes that came together shared one round of questions, and so one answer (two renders would
  // differ: the event loop's lag, the process's CPU move between them).
  t.equal(new Set(scrapes.map((s) => s.text)).size, 1, 'one answer for the scrapes that came together')
  cluster.child.kill('SIGTERM')
  t.equal(await cluster.exited, 0)
})
