/**
 * From the cluster review: a crashed worker's slot started its restart back-off over when the
 * worker had been up `STABLE_AFTER_MS` since its fork, its boot counted in. A worker whose boot took
 * nearly that long and that crashed soon after it got ready was restarted after the first delay
 * every time, however often it crashed. Stable now means serving that long once ready. The primary
 * is the real one (`runCluster`, `stableAfterMs` 1 s); its workers are scripted
 * (test/helpers/cluster-slow-boot-crashes.ts): slot 1's first worker serves 5 s, then each of its
 * boots takes 1.2 s and it crashes 200 ms after it got ready.
 */
import { spawn } from 'node:child_process'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { stringify } from 'yaml'
import { closedPort, gatewayConfig } from '../helpers/harness.js'
import { makeTestPki } from '../helpers/pki.js'
import { SPONSOR_APP, tempDir } from '../helpers/sealing.js'

t.test('crashes soon after a long boot double the restart delay each time', async (t) => {
  const pki = await makeTestPki()
  const dir = await tempDir('ecluse-slow-boot-crashes-')
  const configPath = join(dir, 'gateway.yaml')
  const routes = [{ name: 'r', methods: ['GET'], path: '/v1/*', allow: [SPONSOR_APP], upstream: 'backend' }]
  const admin = { listen: { host: '127.0.0.1', port: await closedPort() } }
  await writeFile(configPath, stringify(gatewayConfig(pki, 1, routes, { admin, log: { level: 'warn' } })))
  const primary = spawn(process.execPath, ['--import', 'tsx', 'test/helpers/cluster-slow-boot-crashes.ts', configPath, dir], {
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  t.teardown(() => primary.kill('SIGKILL'))
  const delays: number[] = []
  let buffered = ''
  const enough = new Promise<void>((resolve) => {
    primary.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      buffered += chunk
      for (let nl = buffered.indexOf('\n'); nl >= 0; nl = buffered.indexOf('\n')) {
        const line = buffered.slice(0, nl)
        buffered = buffered.slice(nl + 1)
        if (!line.includes('worker exited unexpectedly; restarting')) continue
        delays.push((JSON.parse(line) as { restartInMs: number }).restartInMs)
        if (delays.length === 4) resolve()
      }
    })
  })
  let timer: NodeJS.Timeout | undefined
  await Promise.race([enough, new Promise((resolve) => (timer = setTimeout(resolve, 60_000)))])
  clearTimeout(timer)
  primary.kill('SIGTERM')
  t.same(delays, [250, 500, 1000, 2000], 'a crash after serving 5 s starts over; each after a boot longer than stableAfterMs doubles the delay')
})
