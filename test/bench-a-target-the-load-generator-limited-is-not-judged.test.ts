/**
 * The handshakes scenario's wall-clock ratio passed while the load generator, which signs and
 * verifies too, had saturated its core against both proxies: both ran at its pace and the ratio was
 * near 1 whatever they cost. Such a target now prints LOAD-BOUND, judged neither way.
 */
import t from 'tap'
import type { MeasuredRow } from '../bench/lib/measure.js'
import { type Target, targetLine, verdict } from '../bench/lib/results.js'
import { loadBound } from '../bench/scenarios.js'

const rowWithLoad = (label: string, loadCpuPercent: number) => ({ label, loadCpuPercent }) as MeasuredRow

t.test('a target is LOAD-BOUND only when the load generator saturated its core against every row compared', async (t) => {
  const judgedBy = 'the per-CPU-second target judges the proxies'
  const saturated = loadBound([rowWithLoad('écluse', 97), rowWithLoad('bare', 93)], judgedBy)
  t.match(saturated.loadBound, /load generator used 97 % and 93 % of a core: every row ran at its pace; the per-CPU-second target judges the proxies/)
  t.same(loadBound([rowWithLoad('écluse', 97), rowWithLoad('bare', 60)], judgedBy), {}, 'one row under the bound: the ratio measures the subjects')
  t.same(loadBound([rowWithLoad('écluse', 90), rowWithLoad('bare', 95)], judgedBy), {}, 'at 90 % exactly, still judged')
  const failing = { ...rowWithLoad('écluse', 97), errors: 3, non2xx: 0, mismatches: 0 } as MeasuredRow
  t.same(loadBound([failing, rowWithLoad('bare', 93)], judgedBy), {}, 'failed requests: judged (and failed), not hidden as LOAD-BOUND')
})

t.test('the verdict: SCALED and LOAD-BOUND are neither PASS nor FAIL, and the line says why', async (t) => {
  const base: Target = { name: 'écluse new connections/s ÷ bare proxy', value: '1.064', limit: '≥ 0.80', pass: true }
  t.equal(verdict(base), 'PASS')
  t.equal(verdict({ ...base, pass: false }), 'FAIL')
  t.equal(verdict({ ...base, loadBound: 'the load generator used 97 %' }), 'LOAD-BOUND')
  t.equal(verdict({ ...base, pass: false, loadBound: 'x' }), 'LOAD-BOUND', 'a saturated run fails nothing either')
  t.equal(verdict({ ...base, scaled: '1 MiB uploads' }), 'SCALED')
  t.equal(targetLine({ ...base, loadBound: 'the load generator used 97 %' }), 'écluse new connections/s ÷ bare proxy: 1.064 (target ≥ 0.80; not judged: the load generator used 97 %)')
  t.equal(targetLine(base), 'écluse new connections/s ÷ bare proxy: 1.064 (target ≥ 0.80)')
})
