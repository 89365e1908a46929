/**
 * From the bench review: nginx installed but failing to start aborted the whole run. An optional
 * subject now resolves `null` and is skipped; every subject that started is stopped, the body's
 * failure or not.
 */
import t from 'tap'
import type { Subject } from '../bench/lib/subjects.js'
import { withSubjects } from '../bench/scenarios.js'

function subject(key: string, stopped: string[]): Subject {
  return { key, label: key, port: 1, pid: undefined, client: 'sponsor', stop: async () => void stopped.push(key) }
}

t.test('a subject that resolves null is skipped; the others are measured and stopped', async (t) => {
  const stopped: string[] = []
  const keys = await withSubjects([async () => subject('bare', stopped), async () => null, async () => subject('ecluse', stopped)], async (subjects) =>
    subjects.map((s) => s.key),
  )
  t.same(keys, ['bare', 'ecluse'])
  t.same(stopped.sort(), ['bare', 'ecluse'])
})

t.test('a body that fails still stops every subject that started', async (t) => {
  const stopped: string[] = []
  await t.rejects(
    withSubjects([async () => subject('bare', stopped), async () => null], async () => {
      throw new Error('load failed')
    }),
    /load failed/,
  )
  t.same(stopped, ['bare'])
})
