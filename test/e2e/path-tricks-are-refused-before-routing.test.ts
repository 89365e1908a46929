import t from 'tap'
import { Harness } from '../helpers/harness.js'

// Sent raw: clients such as undici would normalise some of these before they reach the wire.
const TRICKS = [
  '/v1/records/../admin',
  '/v1/records/%2e%2e/admin',
  '/v1/records/%2E/x',
  '/v1/records/a%2fb',
  '/v1/records/a%5cb',
  '/v1//records/1',
  '/v1/records/a%00b',
  '/v1/records/./1',
  'http://127.0.0.1/v1/records/1',
  '/v1/records/1\\..\\x',
]

t.test('ambiguous paths are refused with path_rejected and never reach the upstream', async (t) => {
  const h = await Harness.start()
  t.teardown(() => h.close())
  for (const path of TRICKS) {
    const response = await h.raw(`GET ${path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n`)
    t.match(response, /^HTTP\/1\.1 400 /, `${path} → 400`)
    if (response.includes('{')) t.match(response, /"error":"(path_rejected|bad_request)"/, `${path} → stable code`)
  }
  t.equal(h.upstream.hits, 0, 'the upstream saw nothing')
})
