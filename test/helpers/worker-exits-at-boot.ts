/**
 * Preloaded into a gateway process (`node --import`) by tests of a worker that can no longer start,
 * never by the product: the worker of slot 1 exits at once (code 3) while the file named by
 * `ECLUSE_TEST_WORKER_EXITS_AT_BOOT` exists, as one would whose boot fails on every try.
 */
import cluster from 'node:cluster'
import { existsSync } from 'node:fs'

const marker = process.env['ECLUSE_TEST_WORKER_EXITS_AT_BOOT']
if (marker !== undefined && cluster.isWorker && process.env['ECLUSE_WORKER_SLOT'] === '1' && existsSync(marker)) process.exit(3)
