import { getDefaultHighWaterMark, setDefaultHighWaterMark } from 'node:stream'
import t from 'tap'
import { STREAM_HIGH_WATER_MARK } from '../../src/main.js'
import { SPONSOR_APP, startSealing } from '../helpers/sealing.js'

// Node 22 raised the default high-water mark of byte streams from 16 to 64 KiB, and every socket,
// request, response and transform stage of a message buffers up to it: at 500 concurrent uploads
// the gateway held 50–70 MiB more on Node 22 (docs/benchmarks.md). The gateway pins the default
// when it starts. CI runs Node 20, whose default is already 16 KiB, so this test first sets
// Node 22's default itself.
t.test('a gateway pins the default stream high-water mark to 16 KiB, whatever Node set it to', async (t) => {
  const before = getDefaultHighWaterMark(false)
  t.teardown(() => setDefaultHighWaterMark(false, before))
  setDefaultHighWaterMark(false, 64 * 1024)
  const s = await startSealing({
    routes: [{ name: 'records', methods: ['PUT'], path: '/v1/records/:id', allow: [SPONSOR_APP], upstream: 'backend' }],
  })
  t.teardown(s.close)
  t.equal(STREAM_HIGH_WATER_MARK, 16 * 1024)
  t.equal(getDefaultHighWaterMark(false), STREAM_HIGH_WATER_MARK, 'pinned by Gateway.start')
  t.equal(getDefaultHighWaterMark(true), 16, 'object-mode streams keep their default')
  const body = Buffer.alloc(200_000, 7)
  const res = await s.gw.request('/v1/records/1', { method: 'PUT', headers: { 'content-type': 'application/octet-stream' }, body })
  t.equal(res.status, 200, 'and the gateway proxies as before')
})
