/**
 * Preloaded into a gateway process by tests that measure what it holds (`GatewayProcess`'s
 * `liveMemory`), never by the product: on SIGUSR2 it runs full garbage collections and writes the
 * process's memory as one JSON line on stdout, beside the gateway's own log lines. What is left
 * after a full collection is what the gateway holds on to, without the garbage that resident memory
 * counts until the collector happens to run.
 */
import { setTimeout as sleep } from 'node:timers/promises'

const collect = (globalThis as { gc?: () => void }).gc
if (collect === undefined) throw new Error('memory-probe needs node --expose-gc')
process.on('SIGUSR2', async () => {
  collect()
  // V8 frees the memory of dead ArrayBuffers (Buffers) on a background thread, after the collection
  // that found them: `external` still counted megabytes of them right after one. A second collection
  // once the sweeper has run leaves only what is held.
  await sleep(100)
  collect()
  const { rss, heapUsed, external, arrayBuffers } = process.memoryUsage()
  process.stdout.write(`${JSON.stringify({ msg: 'memory-probe: after a full gc', rss, heapUsed, external, arrayBuffers })}\n`)
})
