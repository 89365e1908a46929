/**
 * `jsonMode` keeps the content types it accepted (a bounded cache: clients repeat a few), so the
 * decision for a repeated header must be the one a first parse makes: per format, refusals never
 * cached, and a type accepted for one format still refused for another.
 */
import t from 'tap'
import { jsonMode } from '../src/transform/json-fields.js'

const decide = (ct: string | undefined, format: 'auto' | 'json' | 'ndjson') => {
  try {
    return jsonMode(ct === undefined ? {} : { 'content-type': ct }, format, 'request', 'seal')
  } catch (err) {
    return (err as { code: string }).code
  }
}

t.test('a repeated content type is decided as the first time, for each format', async (t) => {
  const types = ['application/json', 'application/json; charset=utf-8', 'application/problem+json', 'application/x-ndjson', 'Application/JSON', 'text/plain', 'application/json; charset=latin1', 'application/json; q=1', 'application/ndjson;charset="UTF-8"', 'nope']
  for (const format of ['auto', 'json', 'ndjson'] as const) {
    const first = types.map((ct) => decide(ct, format))
    const again = types.map((ct) => decide(ct, format))
    t.same(again, first, `${format}: same decisions the second time`)
  }
  t.equal(decide('application/json', 'auto'), 'document')
  t.equal(decide('application/json', 'ndjson'), 'unsupported_media_type', 'accepted for auto, still refused for ndjson')
  t.equal(decide('application/x-ndjson', 'json'), 'unsupported_media_type')
  t.equal(decide('application/x-ndjson', 'auto'), 'ndjson')
  t.equal(decide(undefined, 'auto'), 'unsupported_media_type')
  // A JSON Patch names its fields in strings: refused, where a merge patch has the document's shape.
  t.equal(decide('application/json-patch+json', 'auto'), 'unsupported_media_type')
  t.equal(decide('application/json-patch+json', 'json'), 'unsupported_media_type')
  t.equal(decide('application/merge-patch+json', 'json'), 'document')
})

t.test('the cache is bounded and a refusal is never served from it', async (t) => {
  for (let i = 0; i < 600; i++) t.equal(decide(`application/v${i}+json`, 'json'), 'document')
  t.equal(decide('application/json; charset=utf-16', 'json'), 'unsupported_media_type')
  t.equal(decide('application/json; charset=utf-16', 'json'), 'unsupported_media_type')
})
