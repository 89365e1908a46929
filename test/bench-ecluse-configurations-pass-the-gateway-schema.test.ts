/**
 * Regression: a schema rule added to the gateway (its idle timeout must outlast the upstream's) made
 * the concurrency scenario's configuration invalid, and `npm run bench` aborted at its third
 * scenario with nothing saved. Every tuning the scenarios use must give a configuration the gateway
 * accepts.
 */
import t from 'tap'
import { ecluseConfig, type SubjectEnv } from '../bench/lib/subjects.js'
import { CONCURRENCY_TUNING } from '../bench/scenarios.js'
import { configSchema } from '../src/config/schema.js'

const file = (name: string) => ({ cert: `/pki/${name}.crt`, key: `/pki/${name}.key` })
const env = {
  pki: { paths: { gatewaySponsorServer: file('s'), sponsorCa: file('sca'), trustedCa: file('tca'), gatewayTrustedClient: file('c') } },
  dir: '/tmp',
  upstreamPort: 9443,
} as unknown as SubjectEnv

t.test('the default and every scenario tuning give a configuration the gateway accepts', async (t) => {
  for (const [name, tuning] of [['default', {}], ['concurrency', CONCURRENCY_TUNING]] as const) {
    const checked = configSchema.safeParse(ecluseConfig(env, tuning))
    t.ok(checked.success, `${name}: ${checked.success ? 'valid' : checked.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`)
  }
})
