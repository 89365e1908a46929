/**
 * Found by review: the rewriter handed a chunk's output over only once the whole chunk was done, and
 * sealing grows a small value about 200 times (`1` becomes a compact JWE of ≈ 420 bytes), so one
 * 64 KiB chunk of `[1,1,…]` under `/*` on a response (undici's chunk size; `seal` has no `maxValues`
 * there by default) was held as one 13 MB buffer: memory followed the chunk's number of values, not
 * the configuration. When the step lets the event loop run (every `VALUES_BETWEEN_YIELDS` values),
 * the output made so far now goes out once past `PUSH_WHILE_PENDING_BYTES`, and the step goes on
 * only once the reader has room. Below that bound a chunk's output goes out whole, at its end, as
 * before: a short body refused at its end has sent nothing (found by re-review: pushing at every
 * pause sent the status line of such a response before its refusal).
 */
import { once } from 'node:events'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { FieldOpener } from '../src/crypto/field.js'
import { PUSH_WHILE_PENDING_BYTES } from '../src/transform/json/rewriter.js'
import { VALUES_BETWEEN_YIELDS } from '../src/transform/json-fields.js'
import { createSealTransform } from '../src/transform/seal.js'
import { keySetEnv } from './helpers/sealing.js'

const env = await keySetEnv(t)
/** `[1,1,…]` of 64 KiB less a byte: 32,767 values. */
const values = 32_767
const body = Buffer.from(`[${Array.from({ length: values }, () => '1').join(',')}]`)

function sealEveryValue() {
  const step = createSealTransform({ recipients: 'th', fields: ['/*'] }, env)
  return step.begin({
    direction: 'response',
    status: 200,
    routeName: 'r',
    path: '/',
    requestId: 'x',
    principal: { id: 'uri:x' } as never,
    headers: { 'content-type': 'application/json' },
    log: env.log,
  })!
}

/** What one pause's values can add past the bound: `VALUES_BETWEEN_YIELDS` sealed `1`s, with room. */
const ONE_PAUSE = VALUES_BETWEEN_YIELDS * 500

t.test('a reader that takes nothing holds the step once its output passes the bound, not the chunk whole', async (t) => {
  const stream = sealEveryValue()
  stream.write(body)
  await sleep(300)
  const held = stream.readableLength
  t.ok(held > 0, 'the first values went out before the chunk was done')
  // The bound and the values of one pause more; the whole chunk's output is ≈ 420 × 32,767 bytes.
  t.ok(held >= PUSH_WHILE_PENDING_BYTES && held < PUSH_WHILE_PENDING_BYTES + 2 * ONE_PAUSE, `${held} bytes waiting for the reader`)
  stream.destroy()
})

t.test('read as it comes, the body is whole and every value sealed and opens', async (t) => {
  const stream = sealEveryValue()
  const sizes: number[] = []
  const parts: Buffer[] = []
  stream.on('data', (c: Buffer) => {
    sizes.push(c.length)
    parts.push(c)
  })
  stream.end(body)
  await once(stream, 'end')
  const sealed = JSON.parse(Buffer.concat(parts).toString()) as string[]
  t.equal(sealed.length, values, 'every value is there, in one array')
  t.ok(Math.max(...sizes) < PUSH_WHILE_PENDING_BYTES + ONE_PAUSE, `the largest piece out: ${Math.max(...sizes)} bytes (the whole: ${parts.reduce((n, p) => n + p.length, 0)})`)
  const opener = new FieldOpener(env.keySets!.get('th-private')!)
  for (const i of [0, 1, VALUES_BETWEEN_YIELDS - 1, VALUES_BETWEEN_YIELDS, values - 1]) {
    t.equal(opener.open(sealed[i]!, { route: 'r', ptr: `/${i}` }).toString(), '1', `value ${i} opens`)
  }
})

t.test('a short body refused at its end, past several pauses, has sent nothing', async (t) => {
  const stream = sealEveryValue()
  let out = 0
  stream.on('data', (c: Buffer) => {
    out += c.length
  })
  const failed = new Promise<Error>((resolve) => stream.once('error', resolve))
  // 600 values (two pauses, ≈ 250 KB sealed), then a brace that closes no object.
  stream.end(Buffer.from(`[${Array.from({ length: 600 }, () => '1').join(',')},}`))
  t.match(await failed, { code: 'transform_failed', message: /json_invalid/ })
  t.equal(out, 0, 'not a byte of it went out')
})
