/**
 * Found by review: `open-body` learns the body's media type only once its first record is
 * authenticated, after every step of the message has begun. A step after it read a placeholder: a
 * `seal-body` re-sealing the body for another recipient sealed it as `application/octet-stream`, and
 * the plaintext's type, restored afterwards, went out as the sealed message's `content-type`, which
 * `seal-body` exists to hide. Such a chain is refused at boot: a request meets its steps in the
 * listed order, a response in reverse. And `open-body` restores the type only over its own label.
 */
import { Readable, Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import t from 'tap'
import '../src/transform/builtin.js'
import { createSealStream } from '../src/crypto/stream.js'
import { createOpenBodyTransform } from '../src/transform/open-body.js'
import { compileTransformChain } from '../src/transform/registry.js'
import type { MessageHeaders } from '../src/transform/types.js'
import { keySetEnv } from './helpers/sealing.js'

const open = { type: 'open-body', keys: 'th-private' }
const reseal = { type: 'seal-body', recipients: 'th' }

t.test('a step the message meets after open-body is refused at boot, in either direction', async (t) => {
  const env = await keySetEnv(t)
  for (const after of [reseal, { type: 'require-sealed-body', recipients: 'th' }, { type: 'strip', fields: ['/name'] }, { type: 'seal', recipients: 'th', fields: ['/name'] }]) {
    t.throws(() => compileTransformChain([open, after], env, 'routes[0].transforms.request', 'request'), {
      code: 'config_invalid',
      message: `routes[0].transforms.request[1] (${after.type}) would run after routes[0].transforms.request[0] (open-body), which knows the body's media type only once its first record is authenticated, after every step has begun: open the body last (first in a response's list), and seal or check it again on another hop`,
    }, `request: ${after.type} after open-body`)
    t.throws(() => compileTransformChain([after, open], env, 'routes[0].transforms.response', 'response'), {
      code: 'config_invalid',
      message: /^routes\[0\]\.transforms\.response\[0\] \(.+\) would run after routes\[0\]\.transforms\.response\[1\] \(open-body\)/,
    }, `response: ${after.type} listed before open-body`)
  }
})

t.test('open-body met last compiles: steps before it in a request, after it in a response\'s list', async (t) => {
  const env = await keySetEnv(t)
  const check = { type: 'require-sealed-body', recipients: 'th' }
  t.equal(compileTransformChain([check, open], env, 'routes[0].transforms.request', 'request').length, 2)
  t.equal(compileTransformChain([open, check], env, 'routes[0].transforms.response', 'response').length, 2)
  t.equal(compileTransformChain([open], env, 'routes[0].transforms.request', 'request').length, 1)
})

/** Opens a body sealed as `image/png` through open-body; `relabel` runs once it has begun. */
async function openWith(env: Awaited<ReturnType<typeof keySetEnv>>, relabel: (headers: MessageHeaders) => void): Promise<MessageHeaders> {
  const step = createOpenBodyTransform({ keys: 'th-private' }, env)
  const sealed = Buffer.concat(await Readable.from([Buffer.from('a photo')]).pipe(createSealStream(env.keySets!.get('th')!, { contentType: 'image/png', route: 'r', recordSize: 16384 })).toArray())
  const headers: MessageHeaders = { 'content-type': 'application/vnd.ecluse.sealed' }
  const stream = step.begin({ direction: 'request', routeName: 'r', path: '/', requestId: 'x', principal: { id: 'uri:x' } as never, headers, log: env.log })
  relabel(headers)
  await pipeline(Readable.from([sealed]), stream, new Writable({ write: (_c, _e, cb) => cb() }))
  return headers
}

t.test('open-body restores the sealed media type over its own label only', async (t) => {
  const env = await keySetEnv(t)
  t.equal((await openWith(env, () => {}))['content-type'], 'image/png', 'its own placeholder: restored')
  t.equal((await openWith(env, (h) => (h['content-type'] = 'application/vnd.ecluse.sealed')))['content-type'], 'application/vnd.ecluse.sealed', 'a label set since: kept')
})
