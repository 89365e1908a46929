import { readFile } from 'node:fs/promises'
import t from 'tap'
import { loadConfigFile, MAX_SEQUENCE_ITEMS, parseConfig } from '../src/config/load.js'
import { EcluseError } from '../src/errors.js'

const dir = 'test/fixtures/config'

/** Each broken fixture, and the exact lines the error must contain (the file, the key path, why). */
const cases: Array<[file: string, lines: string[]]> = [
  [
    'unknown-key.yaml',
    [
      `${dir}/unknown-key.yaml: sponsor.tls.certificate: unknown key`,
      `${dir}/unknown-key.yaml: sponsor.tls.cert: required`,
    ],
  ],
  ['wrong-type.yaml', [`${dir}/wrong-type.yaml: sponsor.listen.port: expected number, got string`]],
  ['unknown-upstream.yaml', [`${dir}/unknown-upstream.yaml: routes[0].upstream: unknown upstream "accreditaton"`]],
  [
    'duplicate-route-name.yaml',
    [`${dir}/duplicate-route-name.yaml: routes[1].name: duplicate route name "list-accreditations"`],
  ],
  [
    'non-loopback-admin.yaml',
    [
      `${dir}/non-loopback-admin.yaml: admin.listen.host: "0.0.0.0" is not a loopback address; set admin.allowNonLoopback: true to listen there`,
    ],
  ],
  ['bad-header-name.yaml', [`${dir}/bad-header-name.yaml: routes[0].requestHeaders[1]: must be an HTTP token`]],
  [
    'bad-principal-matcher.yaml',
    [`${dir}/bad-principal-matcher.yaml: routes[0].allow[1]: must be "uri:…", "dns:…", "cn:…" or "ou:…"`],
  ],
  ['same-address.yaml', [`${dir}/same-address.yaml: admin.listen: same address as sponsor.listen (127.0.0.1:8443)`]],
  ['short-watch-interval.yaml', [`${dir}/short-watch-interval.yaml: reload.watchIntervalMs: must be 0 (off) or at least 1000`]],
  [
    'duplicate-yaml-key.yaml',
    [`${dir}/duplicate-yaml-key.yaml:22:5: routes[0].allow: written twice`],
  ],
  [
    'alias-bomb.yaml',
    [`${dir}/alias-bomb.yaml: an alias that names no anchor before it, or more than 50 aliases`],
  ],
  [
    'many-problems.yaml',
    [
      `${dir}/many-problems.yaml: sponsor.listen.port: must be <= 65535`,
      `${dir}/many-problems.yaml: sponsor.tls.cert: required`,
      `${dir}/many-problems.yaml: sponsor.tls.minVersion: must be one of "TLSv1.2", "TLSv1.3"`,
      `${dir}/many-problems.yaml: upstreams.accreditation.url: must be an https:// URL`,
      `${dir}/many-problems.yaml: routes[0].name: must be lower-case letters, digits, "-" or "_"`,
      `${dir}/many-problems.yaml: routes[0].methods: must have at least 1 item`,
      `${dir}/many-problems.yaml: admin.metrics: unknown key`,
    ],
  ],
]

t.test('each broken file is refused with config_invalid and a line naming the key', async (t) => {
  t.plan(cases.length)
  for (const [file, expected] of cases) {
    await t.test(file, async (t) => {
      const err = await loadConfigFile(`${dir}/${file}`).then(
        () => undefined,
        (e: unknown) => e,
      )
      t.ok(err instanceof EcluseError, 'an EcluseError')
      const e = err as EcluseError
      t.equal(e.code, 'config_invalid')
      t.equal(e.status, 500)
      const lines = e.message.split('\n')
      for (const line of expected) t.ok(lines.includes(line), `has line: ${line}`, { lines })
      t.equal(lines.length, expected.length, 'one line per problem, nothing else')
    })
  }
})

t.test('the valid fixture loads, with the defaults filled in', async (t) => {
  const config = await loadConfigFile(`${dir}/valid.yaml`)
  t.equal(config.routes.length, 1)
  t.equal(config.sponsor.requestIdHeader, 'x-request-id')
  t.equal(config.sponsor.tls.minVersion, 'TLSv1.2')
  t.equal(config.admin.allowNonLoopback, false)
  t.equal(config.upstreams['accreditation']!.connections, 64)
  t.same(config.routes[0]!.transforms, { request: [], response: [] })
})

const base = `
sponsor:
  listen: { host: 0.0.0.0, port: 8443 }
  tls: { cert: a.crt, key: a.key, clientCa: ca.crt }
upstreams: {}
routes: []
`

t.test('admin beyond loopback is accepted only when asked for explicitly', async (t) => {
  t.throws(() => parseConfig(`${base}admin: { listen: { host: "::", port: 9090 } }\n`, 'x.yaml'), {
    code: 'config_invalid',
    message: 'x.yaml: admin.listen.host: "::" is not a loopback address; set admin.allowNonLoopback: true to listen there',
  })
  const config = parseConfig(`${base}admin: { listen: { host: 10.0.0.5, port: 9090 }, allowNonLoopback: true }\n`, 'x.yaml')
  t.equal(config.admin.listen.host, '10.0.0.5')
  for (const host of ['127.0.0.1', '127.8.9.10', '::1', '0:0:0:0:0:0:0:1', '[::1]', 'localhost', 'LOCALHOST', '::ffff:127.0.0.1']) {
    t.doesNotThrow(() => parseConfig(`${base}admin: { listen: { host: "${host}", port: 9090 } }\n`, 'x.yaml'), host)
  }
  // A trailing dot makes a fully qualified name, which the resolver asks DNS for: any address.
  for (const host of ['128.0.0.1', '0.0.0.0', 'localhost.example', '::2', 'admin.internal', 'localhost.', '127.0.0.1.']) {
    t.throws(() => parseConfig(`${base}admin: { listen: { host: "${host}", port: 9090 } }\n`, 'x.yaml'), { code: 'config_invalid' }, host)
  }
})

t.test('two listeners on port 0 never clash; the same fixed port does, wildcards included', async (t) => {
  const sponsorOn = (listen: string) =>
    `sponsor:\n  listen: ${listen}\n  tls: { cert: a.crt, key: a.key, clientCa: ca.crt }\nupstreams: {}\nroutes: []\n`
  t.doesNotThrow(() => parseConfig(`${sponsorOn('{ port: 0 }')}admin: { listen: { port: 0 } }\n`, 'x.yaml'))
  t.doesNotThrow(() => parseConfig(`${sponsorOn('{ port: 8443 }')}admin: { listen: { port: 9090 } }\n`, 'x.yaml'))
  t.throws(() => parseConfig(`${sponsorOn('{ port: 8443 }')}admin: { listen: { port: 8443 } }\n`, 'x.yaml'), {
    code: 'config_invalid',
    message: /admin\.listen: same address as sponsor\.listen/,
  })
  t.throws(
    () => parseConfig(`${sponsorOn('{ host: localhost, port: 8443 }')}admin: { listen: { port: 8443 } }\n`, 'x.yaml'),
    { code: 'config_invalid' },
  )
})

t.test('the principal and request id headers cannot be framing or gateway-owned headers', async (t) => {
  const withSponsor = (extra: string) =>
    `sponsor:\n  listen: { port: 0 }\n  tls: { cert: a.crt, key: a.key, clientCa: ca.crt }\n${extra}upstreams: {}\nroutes: []\nadmin: { listen: { port: 0 } }\n`
  t.throws(() => parseConfig(withSponsor('  principalHeader: Content-Length\n'), 'x.yaml'), {
    code: 'config_invalid',
    message: 'x.yaml: sponsor.principalHeader: "content-length" cannot carry a value set by the gateway',
  })
  t.throws(() => parseConfig(withSponsor('  requestIdHeader: X-Forwarded-For\n'), 'x.yaml'), {
    code: 'config_invalid',
    message: 'x.yaml: sponsor.requestIdHeader: "x-forwarded-for" cannot carry a value set by the gateway',
  })
  t.throws(() => parseConfig(withSponsor('  principalHeader: X-Request-Id\n'), 'x.yaml'), {
    code: 'config_invalid',
    message: 'x.yaml: sponsor.principalHeader: must differ from sponsor.requestIdHeader',
  })
  t.equal(parseConfig(withSponsor('  principalHeader: X-Ecluse-Principal\n'), 'x.yaml').sponsor.principalHeader, 'x-ecluse-principal')
  // Found by a review: fields of HTTP's own mean something beside the gateway's value (`expect` failed
  // every request, `if-match` refused them, `accept` was dropped on routes with response transforms).
  for (const [key, name] of [
    ['principalHeader', 'expect'],
    ['principalHeader', 'if-match'],
    ['principalHeader', 'accept'],
    ['principalHeader', 'range'],
    ['principalHeader', 'authorization'],
    ['principalHeader', 'cookie'],
    ['principalHeader', 'sec-fetch-site'],
    ['requestIdHeader', 'retry-after'],
    ['requestIdHeader', 'set-cookie'],
    ['principalHeader', 'if_none_match'],
    ['principalHeader', 'if-schedule-tag-match'],
  ]) {
    t.throws(() => parseConfig(withSponsor(`  ${key}: ${name}\n`), 'x.yaml'), {
      code: 'config_invalid',
      message: `x.yaml: sponsor.${key}: "${name}" is a field of HTTP that means something of its own; choose a name of your own, such as x-ecluse-…`,
    })
  }
  t.equal(parseConfig(withSponsor('  principalHeader: remote-user\n'), 'x.yaml').sponsor.principalHeader, 'remote-user', 'a field upstreams read the user from may carry it')
})

t.test('a wrong value is described by its type, never echoed', async (t) => {
  const secret = 'hunter2-do-not-echo'
  const err = t.throws(() =>
    parseConfig(
      `sponsor:\n  listen: { port: 0 }\n  tls: { cert: [${secret}], key: a.key, clientCa: ca.crt }\nupstreams: {}\nroutes: []\nadmin: { listen: { port: 0 } }\n`,
      'x.yaml',
    ),
  ) as EcluseError
  t.equal(err.code, 'config_invalid')
  t.equal(err.message, 'x.yaml: sponsor.tls.cert: expected string, got a list')
  t.notMatch(err.message, secret)
})

t.test('YAML syntax errors name the file, the line and the problem, never the text they stumbled on', async (t) => {
  // Found by review: yaml's own messages quote the file (the value after a stray colon, and after one
  // syntax error every later scalar, tags, anchor names), and a failed reload logs its message.
  const secret = 'hunter2-CANARY-SECRET'
  const cases = [
    [`passphrase\n: ${secret}\n`, /^x\.yaml:2:\d+: unexpected text here/],
    [`sponsor:\n  tls: !${secret} x\n`, /^x\.yaml:2:8: a tag outside the YAML 1\.2 core schema/],
    [`a: *${secret}\n`, /^x\.yaml: an alias that names no anchor before it/],
    [`%${secret} x\n---\na: 1\n`, /^x\.yaml:1:1: a directive/],
  ] as const
  for (const [text, message] of cases) {
    const err = t.throws(() => parseConfig(text, 'x.yaml'), { code: 'config_invalid', message }) as EcluseError
    t.notMatch(err.message, secret, 'the text is not quoted')
    t.equal(err.cause, undefined, 'nor kept as a cause, whose message a log would write out')
  }
  // One stray colon at the top of a long file: every later value was quoted, megabytes of them.
  const long = `passphrase\n: x\n${Array.from({ length: 2000 }, (_, i) => `k${i}: ${secret}-${i}`).join('\n')}\n`
  const err = t.throws(() => parseConfig(long, 'x.yaml')) as EcluseError
  t.notMatch(err.message, secret)
  t.equal(err.message.split('\n').length, 51, 'at most 50 problems, and a line saying how many more')
  t.match(err.message, /x\.yaml: … and \d+ more$/)
})

t.test('YAML syntax errors, unknown tags and empty files name the file and the line', async (t) => {
  t.throws(() => parseConfig('sponsor: [unclosed\n', 'x.yaml'), { code: 'config_invalid', message: /^x\.yaml:\d+:\d+: / })
  t.throws(() => parseConfig('sponsor: !!binary aGk=\n', 'x.yaml'), { code: 'config_invalid', message: /^x\.yaml:1:10: / })
  t.throws(() => parseConfig('', 'empty.yaml'), { code: 'config_invalid', message: 'empty.yaml: (root): expected object, got null' })
  t.throws(() => parseConfig('- a\n- b\n', 'list.yaml'), { code: 'config_invalid', message: 'list.yaml: (root): expected object, got a list' })
})

t.test('a missing file is config_invalid naming the file and the errno', async (t) => {
  await t.rejects(loadConfigFile(`${dir}/does-not-exist.yaml`), {
    code: 'config_invalid',
    message: `${dir}/does-not-exist.yaml: cannot read (ENOENT)`,
  })
  await t.rejects(loadConfigFile(dir), { code: 'config_invalid', message: `${dir}: not a regular file` })
})

t.test('names every object inherits are not upstreams or key sets, and __proto__ is no key anywhere', async (t) => {
  const fixture = await readFile(`${dir}/unknown-upstream.yaml`, 'utf8')
  // The route names an upstream or key set that only Object.prototype has.
  for (const name of ['constructor', 'toString', 'hasOwnProperty', '__proto__']) {
    t.throws(() => parseConfig(fixture.replace('upstream: accreditaton', `upstream: ${name}`), 'x.yaml'), {
      code: 'config_invalid',
      message: `x.yaml: routes[0].upstream: unknown upstream "${name}"`,
    })
    const jwks = fixture.replace('upstream: accreditaton', `upstream: accreditation\n    jwks: ${name}`)
    t.throws(() => parseConfig(jwks, 'x.yaml'), { code: 'config_invalid', message: new RegExp(`routes\\[0\\]\\.jwks: unknown key set "${name}"`) })
  }
  // A `__proto__` key, which the schema used to drop without a word under `upstreams` and `keys`.
  const good = fixture.replace('upstream: accreditaton', 'upstream: accreditation')
  t.doesNotThrow(() => parseConfig(good, 'x.yaml'), 'the fixture is otherwise valid')
  for (const [where, text] of [
    ['upstreams.__proto__', good.replace('upstreams:\n', 'upstreams:\n  __proto__: { url: https://x }\n')],
    ['keys.__proto__', `${good}keys:\n  __proto__: { file: k.json }\n`],
    ['routes[0].__proto__', good.replace('    upstream: accreditation', '    upstream: accreditation\n    __proto__: { allow: [] }')],
  ] as const) {
    t.throws(() => parseConfig(text, 'x.yaml'), { code: 'config_invalid', message: `x.yaml: ${where}: "__proto__" is not an accepted key` }, where)
  }
})

t.test('found by review: keys that are one once the document is an object are written twice (1 and "1")', async (t) => {
  const fixture = (await readFile(`${dir}/unknown-upstream.yaml`, 'utf8')).replace('upstream: accreditaton', 'upstream: accreditation')
  for (const [first, second] of [
    ['1', '"1"'],
    ['true', '"true"'],
    ['"01"', "'01'"],
  ] as const) {
    const text = `${fixture}keys:\n  ${first}: { file: a.json }\n  ${second}: { file: b.json }\n`
    t.throws(() => parseConfig(text, 'x.yaml'), { code: 'config_invalid', message: /written twice/ }, `${first} and ${second}`)
  }
  t.doesNotThrow(() => parseConfig(`${fixture}keys:\n  "1": { file: a.json }\n  "01": { file: b.json }\n`, 'x.yaml'), '"1" and "01" are two keys')
})

t.test('a list longer than any configuration needs is refused by its key path, before the schema', async (t) => {
  const fixture = await readFile(`${dir}/unknown-upstream.yaml`, 'utf8')
  const withMethods = (n: number) => fixture.replace('methods: [GET]', `methods: [${Array.from({ length: n }, () => 'GET').join(', ')}]`)
  t.throws(() => parseConfig(withMethods(MAX_SEQUENCE_ITEMS + 1), 'x.yaml'), {
    code: 'config_invalid',
    message: `x.yaml: routes[0].methods: more than ${MAX_SEQUENCE_ITEMS} items`,
  })
  // Under the 1 MiB file cap, such a list made the schema validator overflow its stack, with a
  // message naming nothing.
  const huge = withMethods(200_000)
  t.ok(Buffer.byteLength(huge) < 1024 * 1024)
  t.throws(() => parseConfig(huge, 'x.yaml'), { code: 'config_invalid', message: /routes\[0\]\.methods: more than/ })
  t.throws(() => parseConfig(withMethods(3), 'x.yaml'), { message: /unknown upstream "accreditaton"/ }, 'a short list goes on to the schema')
})

t.test('an upstream name is at most 63 characters, as a route’s: it is a metric label and a readiness check', async (t) => {
  // Longer, it was counted under `upstream="other"` and made /readyz fail for good (its check name
  // over the length a check may have) while the gateway served.
  const fixture = await readFile(`${dir}/unknown-upstream.yaml`, 'utf8')
  const named = (name: string) =>
    fixture.replace('upstream: accreditaton', `upstream: ${name}`).replace(/^ {2}accreditation:/m, `  ${name}:`)
  const longest = `u${'p'.repeat(62)}`
  t.doesNotThrow(() => parseConfig(named(longest), 'x.yaml'), '63 characters')
  t.throws(() => parseConfig(named(`${longest}s`), 'x.yaml'), {
    code: 'config_invalid',
    message: `x.yaml: upstreams.${longest}s: invalid name: must be lower-case letters, digits, "-" or "_", at most 63 characters`,
  })
})

t.test('a sponsor idle timeout not longer than an upstream timeout is refused, naming both', async (t) => {
  const fixture = (await readFile(`${dir}/unknown-upstream.yaml`, 'utf8')).replace('upstream: accreditaton', 'upstream: accreditation')
  const withTimeouts = (idle: number, headers: number, body: number) =>
    fixture
      .replace('  listen: { host: 0.0.0.0, port: 8443 }\n', `  listen: { host: 0.0.0.0, port: 8443 }\n  limits: { idleTimeoutMs: ${idle} }\n`)
      .replace('    serverName: accreditation.trusted.test\n', `    serverName: accreditation.trusted.test\n    headersTimeoutMs: ${headers}\n    bodyTimeoutMs: ${body}\n`)
  // Connecting (5 s by default) comes before the headers timeout starts: both are waited for.
  t.doesNotThrow(() => parseConfig(withTimeouts(35_001, 30_000, 30_000), 'x.yaml'), 'longer than connect + headers: accepted')
  t.throws(() => parseConfig(withTimeouts(35_000, 30_000, 1_000), 'x.yaml'), {
    code: 'config_invalid',
    message: /x\.yaml: sponsor\.limits\.idleTimeoutMs: must be longer than upstreams\.accreditation\.connectTimeoutMs \+ headersTimeoutMs \(5000 \+ 30000\)/,
  })
  t.throws(() => parseConfig(withTimeouts(60_000, 1_000, 90_000), 'x.yaml'), {
    code: 'config_invalid',
    message: /sponsor\.limits\.idleTimeoutMs: must be longer than upstreams\.accreditation\.bodyTimeoutMs \(90000\).*the default, 60000, is; it was 30000 before/,
  })
  t.doesNotThrow(() => parseConfig(fixture, 'x.yaml'), 'the defaults agree (60 s against 30 s)')
})

t.test('a sponsor headers timeout longer than the request timeout is refused by config check, not by Node at start', async (t) => {
  // Found by review: `config check` said ok, then `serve` failed with Node's ERR_OUT_OF_RANGE
  // ("headersTimeout … must be <= requestTimeout"), naming no key.
  const fixture = (await readFile(`${dir}/unknown-upstream.yaml`, 'utf8')).replace('upstream: accreditaton', 'upstream: accreditation')
  const withLimits = (headers: number, request: number) =>
    fixture.replace('  listen: { host: 0.0.0.0, port: 8443 }\n', `  listen: { host: 0.0.0.0, port: 8443 }\n  limits: { headersTimeoutMs: ${headers}, requestTimeoutMs: ${request} }\n`)
  t.throws(() => parseConfig(withLimits(20_000, 10_000), 'x.yaml'), {
    code: 'config_invalid',
    message: /x\.yaml: sponsor\.limits\.headersTimeoutMs: must not exceed sponsor\.limits\.requestTimeoutMs \(10000\)/,
  })
  t.doesNotThrow(() => parseConfig(withLimits(10_000, 10_000), 'x.yaml'), 'equal: accepted, as Node accepts it')
})
