import { readFile } from 'node:fs/promises'
import { pino } from 'pino'
import t from 'tap'
import type { z } from 'zod'
import { parseConfig } from '../src/config/load.js'
import { configSchema } from '../src/config/schema.js'
import { generateKeySet, parseKeySet } from '../src/crypto/keys.js'
import { compileRouteTable } from '../src/route/table.js'
import '../src/transform/builtin.js'

const doc = await readFile('docs/configuration.md', 'utf8')

/** Every key path of the schema, in the doc's notation: `upstreams.<name>.url`, `routes[].name`. */
function keyPaths(schema: z.core.$ZodType, path: string, out: string[]): string[] {
  const def = schema._zod.def as unknown as Record<string, unknown> & { type: string }
  switch (def.type) {
    case 'object':
      for (const [key, value] of Object.entries(def['shape'] as Record<string, z.core.$ZodType>)) {
        const p = path === '' ? key : `${path}.${key}`
        out.push(p)
        keyPaths(value, p, out)
      }
      break
    case 'default':
    case 'prefault':
    case 'optional':
    case 'nullable':
      keyPaths(def['innerType'] as z.core.$ZodType, path, out)
      break
    case 'pipe':
      keyPaths(def['in'] as z.core.$ZodType, path, out)
      break
    case 'record':
      keyPaths(def['valueType'] as z.core.$ZodType, `${path}.<name>`, out)
      break
    case 'array':
      keyPaths(def['element'] as z.core.$ZodType, `${path}[]`, out)
      break
  }
  return out
}

t.test('every key of the schema is documented', async (t) => {
  // Leaves only: a section (`sponsor.tls`, `routes`) is documented by the rows of its keys.
  const all = keyPaths(configSchema, '', [])
  const keys = all.filter((k) => !all.some((o) => o.startsWith(`${k}.`) || o.startsWith(`${k}[`)))
  t.ok(keys.length > 40, `${keys.length} leaf keys`)
  for (const key of keys) t.ok(doc.includes(`| \`${key}\` |`), `docs/configuration.md has a row for ${key}`)
})

t.test('the complete example parses, and sets every documented default to its documented value', async (t) => {
  const blocks = [...doc.matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1]!)
  t.equal(blocks.length, 1, 'one example')
  const config = parseConfig(blocks[0]!, 'docs/configuration.md')
  t.equal(config.routes.length, 3)
  t.equal(compileRouteTable(config, { log: pino({ level: 'silent' }) }).routes.length, 3, 'and its routes compile')

  // The example spells out every default; the schema must produce the same values without them.
  const minimal = parseConfig(
    'sponsor:\n  listen: { port: 8443 }\n  tls: { cert: a, key: b, clientCa: c }\nupstreams:\n  u:\n    url: https://127.0.0.1:9443\n    serverName: s\n    tls: { ca: a, cert: b, key: c }\nroutes: [{ name: r, methods: [GET], path: /, allow: [], upstream: u }]\nadmin: { listen: { port: 9090 } }\n',
    'minimal.yaml',
  )
  t.same(minimal.sponsor.limits, config.sponsor.limits)
  t.same({ ...minimal.sponsor.tls, cert: '', key: '', clientCa: '' }, { ...config.sponsor.tls, cert: '', key: '', clientCa: '' })
  t.equal(minimal.sponsor.listen.host, '127.0.0.1')
  t.equal(minimal.sponsor.requestIdHeader, config.sponsor.requestIdHeader)
  const { url: _u1, serverName: _s1, tls: tls1, ...up1 } = minimal.upstreams['u']!
  const { url: _u2, serverName: _s2, tls: tls2, ...up2 } = config.upstreams['accreditation']!
  t.same(up1, up2)
  t.equal(tls1.minVersion, tls2.minVersion)
  t.same(
    { maxBodyBytes: minimal.routes[0]!.maxBodyBytes, transforms: minimal.routes[0]!.transforms },
    { maxBodyBytes: config.routes[0]!.maxBodyBytes, transforms: config.routes[0]!.transforms },
  )
  t.same(minimal.admin, config.admin)
  t.same(minimal.log, config.log)
  t.same(minimal.shutdown, config.shutdown)
})

t.test("the README's configuration example parses and its routes and transform chains compile", async (t) => {
  const readme = await readFile('README.md', 'utf8')
  const section = readme.slice(readme.indexOf('## Configuration'), readme.indexOf('## Security model'))
  const blocks = [...section.matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1]!)
  t.equal(blocks.length, 1, 'one example in the section')
  const config = parseConfig(blocks[0]!, 'README.md')
  t.same(Object.keys(config.keys), ['trusted-host'])
  t.equal(config.keys['trusted-host']!.private, false, 'the sealing example holds public keys only')
  // The key file is not there; a freshly generated public set stands in for it.
  const { publicJwks } = generateKeySet()
  const keySets = new Map([['trusted-host', parseKeySet(publicJwks, { publicOnly: true })]])
  const table = compileRouteTable(config, { log: pino({ level: 'silent' }), keySets })
  t.equal(table.routes.length, 2, 'its routes compile')
  t.same(
    table.routes.map((r) => [r.requestTransforms.map((x) => x.type), r.responseTransforms.map((x) => x.type)]),
    [
      [['seal'], []],
      [[], ['require-sealed']],
    ],
    'and so do its transform chains',
  )
})
