/**
 * The minimum upload rate (src/proxy/upload-rate.ts) judges a client by the time the gateway was
 * reading its body: seconds in which the body waited on the gateway (its buffer full, the upstream
 * or a transform reading slowly) are not the client's. Here with 10 ms ticks for seconds.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { UploadRateGuard, type WatchedUpload } from '../src/proxy/upload-rate.js'

class FakeUpload implements WatchedUpload {
  received = 0
  heldBack = false
  done = false
  refusedAt: number | undefined
  bodyBytesReceived(): number {
    return this.received
  }
  bodyHeldBack(): boolean {
    return this.heldBack
  }
  bodyDone(): boolean {
    return this.done
  }
  tooSlow(): void {
    this.refusedAt = performance.now()
  }
}

// 1,000 bytes a second, checked every 10 ms: 10 more bytes owed at each tick once 30 ms of grace
// have gone by.
const guard = () => new UploadRateGuard(1000, 30, 10)

/** Waits (generously: the machine is shared) until `done()` or 3 s. */
async function until(done: () => boolean): Promise<void> {
  for (let i = 0; i < 300 && !done(); i++) await sleep(10)
}

t.test('an upload that stops is refused once the grace is over; one that keeps the rate is not', async (t) => {
  const g = guard()
  const stalled = new FakeUpload()
  const steady = new FakeUpload()
  g.watch(stalled)
  g.watch(steady)
  const feed = setInterval(() => {
    steady.received += 100 // far above the 10 bytes a tick owed
  }, 5)
  await until(() => stalled.refusedAt !== undefined)
  await sleep(100)
  clearInterval(feed)
  t.not(stalled.refusedAt, undefined, 'the stalled upload was refused')
  t.equal(steady.refusedAt, undefined, 'the steady one was not')
  steady.done = true
  await sleep(30)
  t.equal(g.watching, 0, 'a finished upload is let go')
})

t.test('time the body waited on the gateway is not counted against the client', async (t) => {
  const g = guard()
  const upload = new FakeUpload()
  upload.heldBack = true
  g.watch(upload)
  await sleep(150)
  t.equal(upload.refusedAt, undefined, 'held back for 15 ticks with nothing received: not refused')
  upload.heldBack = false
  await until(() => upload.refusedAt !== undefined)
  t.not(upload.refusedAt, undefined, 'once the gateway reads again, the client owes the rate')
  t.equal(g.watching, 0)
})

t.test('a rate of 0 watches nothing; release forgets an upload', async (t) => {
  const off = new UploadRateGuard(0, 30, 10)
  const upload = new FakeUpload()
  off.watch(upload)
  t.equal(off.watching, 0)
  const g = guard()
  g.watch(upload)
  t.equal(g.watching, 1)
  g.release(upload)
  t.equal(g.watching, 0)
  await sleep(60)
  t.equal(upload.refusedAt, undefined, 'released before it owed anything')
})
