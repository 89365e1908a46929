/**
 * Counting asymmetric operations (ECDH agreements, RSA operations) through the instrumented seam of
 * src/crypto (`ASYMMETRIC_CHANNEL`), never by timing: what a test sees is exactly what the code did.
 */
import { subscribe, unsubscribe } from 'node:diagnostics_channel'
import { ASYMMETRIC_CHANNEL, type AsymmetricOperation } from '../../src/crypto/index.js'

/** The asymmetric operations published while `fn` runs, and how many were on each side. */
export async function countAsymmetric(fn: () => unknown): Promise<{ seal: number; open: number; ops: AsymmetricOperation[] }> {
  const ops: AsymmetricOperation[] = []
  const listener = (m: unknown) => ops.push(m as AsymmetricOperation)
  subscribe(ASYMMETRIC_CHANNEL, listener)
  try {
    await fn()
  } finally {
    unsubscribe(ASYMMETRIC_CHANNEL, listener)
  }
  return { seal: ops.filter((o) => o.side === 'seal').length, open: ops.filter((o) => o.side === 'open').length, ops }
}
