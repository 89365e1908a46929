import { setImmediate as tick } from 'node:timers/promises'
import fc from 'fast-check'
import t from 'tap'
import { EcluseError } from '../src/errors.js'
import type { JsonAction, JsonTarget } from '../src/transform/json/rewriter.js'
import { arbCuts, chunked, runEngine, runStream } from './json-helpers.js'

const record = { pattern: '/records/*', idMember: 'id' }
const patterns = ['/records/*/passport', '/records/*/visa', '/meta/token']

function decide(tg: JsonTarget<string>): JsonAction {
  if (tg.pointer[0] === 'meta') return 'remove'
  return tg.pointer[2] === 'visa' ? 'remove' : { replace: JSON.stringify(`S:${String(tg.recordId ?? tg.pointer[1])}`) }
}

const arbBody = fc
  .array(fc.record({ id: fc.integer(), passport: fc.string(), visa: fc.string(), x: fc.nat() }, { requiredKeys: ['x'] }), { maxLength: 5 })
  .map((records) => Buffer.from(JSON.stringify({ meta: { token: 't', v: 1 }, records })))

t.test('an action may return a promise: the stream waits, and the output is the synchronous one', async () => {
  for (const opts of [{}, { record }]) {
    await fc.assert(
      fc.asyncProperty(arbBody, arbCuts, async (body, cuts) => {
        const expected = runEngine([body], patterns, decide, opts).out
        const out = await runStream(chunked(body, cuts), patterns, async (tg) => {
          await tick()
          return decide(tg)
        }, opts)
        return out.toString('utf8') === expected
      }),
      { numRuns: 40 },
    )
  }
})

t.test('actions of one record run concurrently and are applied in document order', async (t) => {
  const body = Buffer.from('{"records":[{"passport":"a","visa":"b","id":1}]}')
  let inFlight = 0
  let maxInFlight = 0
  const out = await runStream([body], patterns, async (tg) => {
    inFlight++
    maxInFlight = Math.max(maxInFlight, inFlight)
    await tick()
    inFlight--
    return { replace: JSON.stringify(String(tg.pointer[2])) }
  }, { record })
  t.equal(maxInFlight, 2)
  t.equal(out.toString(), '{"records":[{"passport":"passport","visa":"visa","id":1}]}')
})

t.test('a rejected action fails the stream with its code', async (t) => {
  const body = Buffer.from('{"records":[{"passport":"a","id":1}]}')
  for (const opts of [{}, { record }]) {
    await t.rejects(
      runStream([body], patterns, async () => {
        await tick()
        throw new EcluseError('seal_failed', 'no key')
      }, opts),
      { code: 'seal_failed', status: 502 },
    )
    await t.rejects(
      runStream([body], patterns, () => Promise.reject(new Error('bug')), opts),
      { code: 'internal' },
      'anything but an EcluseError becomes internal',
    )
  }
})
