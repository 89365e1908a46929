/**
 * The part of a gateway worker that the cluster primary talks to, for scripted workers
 * (test/helpers/cluster-*.ts): it answers the primary's sign-of-life, readiness and metrics
 * questions as a ready gateway would, passes any other question to `other`, exits 0 on SIGTERM,
 * and returns `ready`, with which the script reports itself ready when it chooses.
 */
export type ToPrimary = (message: object) => void
export type PrimaryQuestion = { ecluse?: string; id?: number }

export function answerThePrimary(other: (m: PrimaryQuestion, send: ToPrimary) => void = () => {}): () => void {
  const send: ToPrimary = (m) => process.send?.(m)
  process.on('message', (m: PrimaryQuestion) => {
    if (m.ecluse === 'alive?') send({ ecluse: 'alive', id: m.id })
    else if (m.ecluse === 'readiness?') send({ ecluse: 'readiness', id: m.id, readiness: { ready: true, checks: { certificates: 'ok' } } })
    else if (m.ecluse === 'metrics?') send({ ecluse: 'metrics', id: m.id, metrics: [] })
    else other(m, send)
  })
  process.on('SIGTERM', () => process.exit(0))
  return () => send({ ecluse: 'ready', sponsorPort: 1, drainTimeoutMs: 1000, configDigest: 'A', bootDigest: 'boot' })
}
