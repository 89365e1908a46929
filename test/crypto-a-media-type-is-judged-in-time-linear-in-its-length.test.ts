/**
 * Found by review: the media-type pattern let the blanks after a `;` be taken in two places, so a
 * failing match tried every split, twice the time per `"; "`: one `content-type` on a `seal-body`
 * route, or the `cty` of a sealed stream anyone can make with the published public key, held the
 * event loop for hours. The hostile values below finish at once now; with the old pattern this
 * file would not finish before tap's timeout.
 */
import t from 'tap'
import { isMediaType } from '../src/crypto/stream.js'

t.test('media types with parameters are accepted, ASCII only, as before', async (t) => {
  for (const v of ['text/csv', 'text/csv; charset=utf-8', 'a/b ; x="y" ;', 'a/b;;', 'application/json;charset="utf-8"', 'a/b; q="a\\"b"', 'a/b; ']) {
    t.ok(isMediaType(v), v)
  }
  for (const v of ['text', 'a/b; x', 'a/b; x=', 'a/b; x="unterminated', 'a/é', '/b', 'a/b\r\n', `a/${'b'.repeat(300)}`, 42, undefined]) {
    t.notOk(isMediaType(v), String(v))
  }
})

t.test('hostile values fail without backtracking through every split of their blanks', async (t) => {
  // 125 pairs fit under the 255-character cap; at ×2 per pair, the old pattern never returned.
  for (const blank of ['; ', ';\t', ' ;', ' ; ', ';  ']) {
    const pairs = Math.floor((255 - 4) / blank.length)
    t.notOk(isMediaType(`a/b${blank.repeat(pairs)}@`), JSON.stringify(blank))
    t.notOk(isMediaType(`a/b${'; x=y'.repeat(40)}${blank.repeat(10)}@`), `${JSON.stringify(blank)} after parameters`)
  }
})
