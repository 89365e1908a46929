/**
 * `LogQuota`: the first `perSecond` lines of each second are logged; the rest are counted and said in
 * one `warn` line when the second ends, whether or not anything follows.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import { pino } from 'pino'
import t from 'tap'
import { LogQuota, NOT_LOGGED_MSG } from '../src/observability/log-quota.js'

function capture() {
  const lines: Array<Record<string, unknown>> = []
  const log = pino({ level: 'info' }, { write: (line: string) => lines.push(JSON.parse(line) as Record<string, unknown>) })
  return { log, summaries: () => lines.filter((l) => l['msg'] === NOT_LOGGED_MSG) }
}

t.test('on a clock of its own: the first lines of each second, then one summary of the rest', async (t) => {
  const { log, summaries } = capture()
  let now = 1_000_000
  const quota = new LogQuota(log, 'refusals', 3, () => now)
  const taken = Array.from({ length: 8 }, () => quota.take())
  t.same(taken, [true, true, true, false, false, false, false, false], 'three lines, then none')
  t.same(summaries(), [], 'nothing summarised while the second lasts')
  now += 999
  t.equal(quota.take(), false, 'still the same second')
  now += 1
  t.equal(quota.take(), true, 'a new second: a line again')
  t.match(summaries(), [{ level: 40, kind: 'refusals', notLogged: 6, perSecond: 3 }], 'the six lines of the last second that were not logged, said once')
  t.same([quota.take(), quota.take(), quota.take()], [true, true, false])
  quota.flush()
  t.match(summaries().at(-1), { notLogged: 1 }, 'flush says what is pending')
  quota.flush()
  t.equal(summaries().length, 2, 'and only once')
})

t.test('a flood that stops is summarised when its second ends, with nothing after it', async (t) => {
  const { log, summaries } = capture()
  const quota = new LogQuota(log, 'refusals', 1)
  t.same([quota.take(), quota.take(), quota.take()], [true, false, false])
  for (let waited = 0; summaries().length === 0 && waited < 5000; waited += 50) await sleep(50)
  t.match(summaries(), [{ kind: 'refusals', notLogged: 2, perSecond: 1 }])
  await sleep(1100)
  t.equal(summaries().length, 1, 'no further summary when nothing more was held back')
})
