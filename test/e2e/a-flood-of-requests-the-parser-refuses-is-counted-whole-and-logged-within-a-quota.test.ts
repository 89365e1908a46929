/**
 * The HTTP parser's refusals are a stranger's to cause at will too (any holder of a sponsor
 * certificate, or a scanner behind one): each is counted, and the log keeps at most
 * REFUSAL_LINES_PER_SECOND of them a second plus a summary, as for refused certificates
 * (test/e2e/refuses-clients-without-a-verified-sponsor-certificate.test.ts).
 */
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { REFUSAL_LINES_PER_SECOND } from '../../src/listener/sponsor.js'
import { NOT_LOGGED_MSG } from '../../src/observability/log-quota.js'
import { Harness, metricValue } from '../helpers/harness.js'

t.test('a flood of malformed requests is counted whole, answered, and logged at most 20 lines a second plus a summary', async (t) => {
  const h = await Harness.start()
  t.teardown(() => h.close())
  t.equal(REFUSAL_LINES_PER_SECOND, 20)
  const flood = 80
  const began = performance.now()
  // Verified connections, each sending a header line that is no header (no colon).
  const answers = await Promise.all(
    Array.from({ length: flood }, () => h.rawSession((socket) => socket.write('GET /v1/records/1 HTTP/1.1\r\nhost: localhost\r\nno colon here\r\n\r\n'))),
  )
  const seconds = Math.ceil((performance.now() - began) / 1000)
  t.equal(answers.filter((a) => a.startsWith('HTTP/1.1 400 ') && a.includes('"request_framing"')).length, flood, 'each answered 400 request_framing')
  t.equal(metricValue(await h.metrics(), 'ecluse_rejected_requests_total', { reason: 'request_framing' }), flood, 'every refusal counted')
  const kind = 'sponsor request refused by the HTTP parser'
  const summarised = () => h.logs.find(NOT_LOGGED_MSG).reduce((n, l) => n + (l['kind'] === kind ? (l['notLogged'] as number) : 0), 0)
  const logged = () => h.logs.find(kind).length
  // The summary of the last second comes when that second ends.
  for (let waited = 0; logged() + summarised() < flood && waited < 5000; waited += 50) await sleep(50)
  t.equal(logged() + summarised(), flood, 'every refusal is a line or part of a summary')
  t.ok(logged() <= REFUSAL_LINES_PER_SECOND * (seconds + 1), `${logged()} lines in ${seconds} s: within the quota`)
  t.ok(logged() < flood, 'lines were held back')
  const summaries = h.logs.find(NOT_LOGGED_MSG).filter((l) => l['kind'] === kind)
  t.ok(summaries.length > 0 && summaries.every((l) => l['level'] === 'warn' && l['perSecond'] === 20), 'summarised in warnings that name the lines')
  t.equal(h.upstream.hits, 0, 'the upstream saw nothing')
})
