/**
 * Found by review: the rewriter handed a chunk's output over only once the whole chunk was done, and
 * sealing grows a small value about 185 times (`1` becomes a compact JWE of ≈ 185 bytes), so one
 * 64 KiB chunk of `[1,1,…]` under `/*` on a response (undici's chunk size; `seal` has no `maxValues`
 * there by default) was held as one 12 MB buffer: memory followed the chunk's number of values, not
 * the configuration. The output made so far now goes out whenever the step lets the event loop run
 * (every `VALUES_BETWEEN_YIELDS` values), and the step goes on only once the reader has room.
 */
import { once } from 'node:events'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { FieldOpener } from '../src/crypto/field.js'
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

t.test('a reader that takes nothing holds the step after a few hundred values, not the chunk whole', async (t) => {
  const stream = sealEveryValue()
  stream.write(body)
  await sleep(300)
  const held = stream.readableLength
  t.ok(held > 0, 'the first values went out before the chunk was done')
  // At most the output of the values before the first pause and of the next, with room to spare;
  // the whole chunk's output is ≈ 185 × 32,767 bytes.
  t.ok(held < 4 * VALUES_BETWEEN_YIELDS * 250, `${held} bytes waiting for the reader`)
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
  t.ok(Math.max(...sizes) < 2 * VALUES_BETWEEN_YIELDS * 250, `the largest piece out: ${Math.max(...sizes)} bytes (the whole: ${parts.reduce((n, p) => n + p.length, 0)})`)
  const opener = new FieldOpener(env.keySets!.get('th-private')!)
  for (const i of [0, 1, VALUES_BETWEEN_YIELDS - 1, VALUES_BETWEEN_YIELDS, values - 1]) {
    t.equal(opener.open(sealed[i]!, { route: 'r', ptr: `/${i}` }).toString(), '1', `value ${i} opens`)
  }
})
