/**
 * The configuration schema. Everything a deployment can set is here, with its default; unknown keys
 * are refused (a typo must not silently fall back to a default). File paths are resolved relative to
 * the configuration file by the loader. docs/configuration.md documents every key.
 */
import { isIPv6 } from 'node:net'
import { z } from 'zod'
import { isKeyMaterialNotPath, KEY_MATERIAL_NOT_PATH } from './key-material-path.js'

const port = z.number().int().min(0).max(65535)
/**
 * The longest duration a key may set (≈ 23 days). Node's timers stop at 2^31 - 1 ms and fire a
 * longer one after 1 ms, so a duration meant as "practically never" would act at once (a drain cut
 * short, a file watch spinning). The margin below 2^31 - 1 (≈ 147 s) is for the grace periods the
 * gateway adds to some of them (the cluster's kill grace to the drain, a second to the handshake
 * timeout; found by review when the bound was 2^31 - 1 itself).
 */
export const MAX_DURATION_MS = 2_000_000_000
const positiveMs = z.number().int().positive().max(MAX_DURATION_MS)
const byteSize = z.number().int().positive()

/** A file the loader reads, named relative to the configuration file. 4096 is PATH_MAX. */
const filePath = z
  .string()
  .min(1)
  .max(4096)
  .refine((s) => !isKeyMaterialNotPath(s), KEY_MATERIAL_NOT_PATH)

/** A header name as it appears on the wire, compared lower-case. */
const headerName = z
  .string()
  .regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/, 'must be an HTTP token')
  .transform((s) => s.toLowerCase())

/** A principal matcher: `uri:…`, `dns:…`, `cn:…` or `ou:…`, compared exactly. */
export const principalMatcher = z
  .string()
  .regex(/^(uri|dns|cn|ou):.+$/, 'must be "uri:…", "dns:…", "cn:…" or "ou:…"')

const listenSchema = z
  .object({
    host: z.string().min(1).default('127.0.0.1'),
    port: port,
  })
  .strict()

export const serverTlsSchema = z
  .object({
    /** PEM certificate chain presented to sponsor clients. */
    cert: filePath,
    /** PEM private key for `cert`. */
    key: filePath,
    /** PEM bundle of the sponsor CA(s): the only roots a client certificate may chain to. */
    clientCa: filePath,
    minVersion: z.enum(['TLSv1.2', 'TLSv1.3']).default('TLSv1.2'),
    handshakeTimeoutMs: positiveMs.default(5_000),
  })
  .strict()

export const sponsorSchema = z
  .object({
    listen: listenSchema,
    tls: serverTlsSchema,
    limits: z
      .object({
        maxHeaderBytes: byteSize.default(16 * 1024),
        headersTimeoutMs: positiveMs.default(10_000),
        requestTimeoutMs: positiveMs.default(300_000),
        idleTimeoutMs: positiveMs.default(60_000),
        keepAliveTimeoutMs: positiveMs.default(5_000),
        maxConnections: z.number().int().positive().default(1024),
        maxRequestsPerSocket: z.number().int().nonnegative().default(0),
        minBodyBytesPerSecond: z.number().int().nonnegative().default(1024),
        bodyGraceMs: positiveMs.default(10_000),
      })
      .strict()
      .default({
        maxHeaderBytes: 16 * 1024,
        headersTimeoutMs: 10_000,
        requestTimeoutMs: 300_000,
        idleTimeoutMs: 60_000,
        keepAliveTimeoutMs: 5_000,
        maxConnections: 1024,
        maxRequestsPerSocket: 0,
        minBodyBytesPerSecond: 1024,
        bodyGraceMs: 10_000,
      }),
    /** Header that carries the verified principal upstream; absent means it is not passed. */
    principalHeader: headerName.optional(),
    /** Header that carries the request id both ways. */
    requestIdHeader: headerName.default('x-request-id'),
  })
  .strict()

/** The ways an upstream may read a path as another: `;` parameters stripped, case folded, a trailing slash or a final `.ext` (or every suffix of the last segment) dropped. */
export const PATH_READINGS = ['parameters', 'case', 'trailing-slash', 'suffix'] as const
export type PathReading = (typeof PATH_READINGS)[number]

/** Dot-separated DNS labels (`_` too, as URLs take it); an IPv4 address is spelled so too. */
const LABELS = String.raw`[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*`

/** A DNS name or an IPv4 address: a name a certificate carries, and the SNI sends. */
const HOST_NAME = new RegExp(`^${LABELS}$`)

/**
 * An authority as a `Host` field carries it (RFC 9110 §7.2, RFC 3986 §3.2.2): a DNS name (a final
 * dot too), an IPv4 address or an [IPv6] literal, with an optional port. Nothing else (no user
 * info, no spaces or control characters) can reach the upstream's request line through it.
 */
const HOST_AUTHORITY = new RegExp(String.raw`^(?:${LABELS}\.?|\[([0-9A-Fa-f:.]{2,45})\])(?::[0-9]{1,5})?$`)

export const upstreamSchema = z
  .object({
    /** `https://host:port` of the trusted service; no path, no credentials. */
    url: z
      .url({ protocol: /^https$/ })
      .refine((u) => {
        // z.url() reports its own issue but does not abort: the refinement still runs and must not
        // throw on an unparseable string. A fragment is refused too: it never reaches a server.
        if (!URL.canParse(u)) return false
        const url = new URL(u)
        return url.pathname === '/' && url.username === '' && url.password === '' && url.search === '' && url.hash === '' && url.port !== '0'
      }, 'must be https://host[:port] with no path, query, fragment or credentials, and not port 0'),
    /** The name the upstream's certificate must carry (SNI and verification). */
    serverName: z
      .string()
      .refine(
        (name) => HOST_NAME.test(name) || isIPv6(name),
        'must be a DNS name or an IP address, as the upstream certificate carries it (no space, no port)',
      ),
    /**
     * The `Host` the upstream receives (default: the URL's `host[:port]`), for an upstream that
     * routes by name behind an address: `accreditation.trusted.example`. It changes no TLS check.
     */
    host: z
      .string()
      .refine((h) => {
        const literal = HOST_AUTHORITY.exec(h)
        return literal !== null && (literal[1] === undefined || isIPv6(literal[1]))
      }, 'must be host[:port]: a DNS name, an IPv4 address or a [bracketed] IPv6 address, and an optional port')
      .refine((h) => {
        const port = /:(\d+)$/.exec(h.startsWith('[') ? h.slice(h.indexOf(']')) : h)
        return port === null || (Number(port[1]) >= 1 && Number(port[1]) <= 65_535)
      }, 'port must be 1 to 65535')
      .optional(),
    tls: z
      .object({
        /** PEM bundle of the trusted CA(s): the only roots the upstream may chain to. */
        ca: filePath,
        /** The gateway's client certificate for the trusted side. */
        cert: filePath,
        key: filePath,
        minVersion: z.enum(['TLSv1.2', 'TLSv1.3']).default('TLSv1.2'),
      })
      .strict(),
    connections: z.number().int().positive().default(64),
    connectTimeoutMs: positiveMs.default(5_000),
    headersTimeoutMs: positiveMs.default(30_000),
    bodyTimeoutMs: positiveMs.default(30_000),
    keepAliveTimeoutMs: positiveMs.default(4_000),
    /** Path probed by readiness; any HTTP answer counts as reachable. */
    healthPath: z.string().startsWith('/').default('/healthz'),
    /**
     * How this upstream may read a path as another (RouteTable.readElsewhere): a request such a
     * reading would take to another route is refused. Default: all four, as common frameworks do;
     * list fewer only for an upstream known not to make the others.
     */
    pathReadings: z
      .array(z.enum(PATH_READINGS))
      .refine((list) => new Set(list).size === list.length, 'each reading at most once')
      .default([...PATH_READINGS]),
  })
  .strict()

/**
 * One step of a route's body transform chain. The core proxy ships none; the sealing issue adds
 * `seal`, `open`, `require-sealed` and `strip`. The `type` selects a factory in
 * `src/transform/registry.ts`; the remaining keys are that factory's own options, validated there.
 */
export const transformStepSchema = z.looseObject({ type: z.string().min(1) })

export const routeSchema = z
  .object({
    name: z
      .string()
      .regex(/^[a-z0-9][a-z0-9_-]{0,62}$/, 'must be lower-case letters, digits, "-" or "_"')
      // "unmatched" is the metrics label of requests that matched no route.
      .refine((n) => n !== 'unmatched', '"unmatched" is reserved'),
    methods: z
      .array(z.enum(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']))
      .min(1),
    /** `/v1/accreditations/:id`; a final `/*` matches any remaining segments. */
    path: z.string().regex(/^\/[A-Za-z0-9._~:/*-]*$/, 'must be an absolute path pattern'),
    /** Principal matchers; an empty list allows nobody. */
    allow: z.array(principalMatcher),
    upstream: z.string().min(1),
    /**
     * Serve the public JWKS of this key set (`keys.<name>`) on `GET`, without calling the upstream
     * (docs/transforms.md). `upstream` is still required and is never contacted for such a route.
     */
    jwks: z.string().min(1).optional(),
    maxBodyBytes: byteSize.default(1024 * 1024),
    /**
     * Methods besides POST, PUT and PATCH whose requests may carry a body on this route (each must
     * be in `methods`). A body on any other method is refused `request_framing`: RFC 9110 gives it no
     * meaning, and an upstream that answers such a request without reading its body reads the body
     * as the next request on the connection, one the gateway never routed nor authorised.
     */
    requestBodyOn: z.array(z.enum(['GET', 'DELETE', 'OPTIONS'])).default([]),
    /**
     * With request transforms, the transformed body is held until it is complete or this many bytes
     * are ready before the upstream is contacted: a body refused within it never reaches the upstream.
     */
    requestHoldBytes: byteSize.default(64 * 1024),
    /**
     * With response transforms, the status line waits until the transformed body is complete or this
     * many bytes are ready: a response refused within it is a clean 502, never an abort.
     */
    responseHoldBytes: byteSize.default(64 * 1024),
    /**
     * What crosses of an upstream answer that is not a success (any status from 300 but 304):
     * `withhold` (the default) sends the gateway's own body in place of the upstream's (its status
     * and the request id), so an error page's stack trace or a message quoting an opened value never
     * reaches the sponsor; `pass` relays it like any other (to an upstream whose error bodies are a
     * contract: another Écluse gateway, whose errors are terse by construction).
     */
    errorBodies: z.enum(['withhold', 'pass']).default('withhold'),
    /** Request headers forwarded upstream, in addition to the default safe set. */
    requestHeaders: z.array(headerName).default([]),
    /** Response headers relayed to the sponsor, in addition to the default safe set. */
    responseHeaders: z.array(headerName).default([]),
    transforms: z
      .object({
        request: z.array(transformStepSchema).default([]),
        response: z.array(transformStepSchema).default([]),
      })
      .strict()
      .default({ request: [], response: [] }),
  })
  .strict()

/**
 * One sealing key set: a JWK or JWKS file (docs/transforms.md). `private: false` (the default) loads
 * public keys only and refuses a file that holds private members; `private: true` requires them.
 */
export const keySetSchema = z
  .object({
    file: filePath,
    private: z.boolean().default(false),
  })
  .strict()

export const adminSchema = z
  .object({
    listen: listenSchema,
    /** Listening anywhere but loopback must be asked for explicitly. */
    allowNonLoopback: z.boolean().default(false),
  })
  .strict()

/**
 * Why an idle timeout of `idle` ms is too short for these upstreams, one line each (none: it is
 * long enough). The sponsor's connection is quiet while the gateway awaits its upstream, and Node's
 * idle timer counts that silence: not longer than the upstream's own timeouts (connecting, then the
 * response headers; the silence between body chunks), it cuts the connection before the upstream's
 * 504 (a dropped connection, no code, no upstream error counted). Checked by the schema, and on
 * reload against the idle timeout the running listener has (a reload does not change it).
 */
export function idleTimeoutProblems(
  idle: number,
  upstreams: Readonly<Record<string, Pick<UpstreamConfig, 'connectTimeoutMs' | 'headersTimeoutMs' | 'bodyTimeoutMs'>>>,
): string[] {
  const problems: string[] = []
  for (const [name, u] of Object.entries(upstreams)) {
    const waits: Array<[string, number]> = [
      [`upstreams.${name}.connectTimeoutMs + headersTimeoutMs (${u.connectTimeoutMs} + ${u.headersTimeoutMs})`, u.connectTimeoutMs + u.headersTimeoutMs],
      [`upstreams.${name}.bodyTimeoutMs (${u.bodyTimeoutMs})`, u.bodyTimeoutMs],
    ]
    for (const [what, ms] of waits) {
      if (idle <= ms) {
        problems.push(`must be longer than ${what}: the sponsor's connection would be cut while the upstream is awaited, before its 504 (the default, 60000, is; it was 30000 before 2026-12-06)`)
      }
    }
  }
  return problems
}

export const configSchema = z
  .object({
    sponsor: sponsorSchema,
    upstreams: z.record(z.string().regex(/^[a-z0-9][a-z0-9_-]{0,62}$/), upstreamSchema),
    routes: z.array(routeSchema),
    /** Sealing key sets by name, referenced by transform steps and `routes[].jwks`. */
    keys: z.record(z.string().regex(/^[a-z0-9][a-z0-9_-]{0,62}$/), keySetSchema).default({}),
    admin: adminSchema,
    log: z
      .object({ level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info') })
      .strict()
      .default({ level: 'info' }),
    shutdown: z
      .object({ drainTimeoutMs: positiveMs.default(10_000) })
      .strict()
      .default({ drainTimeoutMs: 10_000 }),
    reload: z
      .object({
        /** Check the configuration and every file it names this often, and reload on a change; 0: only on SIGHUP. */
        watchIntervalMs: z
          .number()
          .int()
          .min(0)
          .max(MAX_DURATION_MS)
          .refine((ms) => ms === 0 || ms >= 1000, 'must be 0 (off) or at least 1000')
          .default(0),
      })
      .strict()
      .default({ watchIntervalMs: 0 }),
  })
  .strict()
  .superRefine((cfg, ctx) => {
    const limits = cfg.sponsor.limits
    // Node's server refuses to start with it (ERR_OUT_OF_RANGE, naming no key): the headers are part
    // of the request whose whole time requestTimeoutMs bounds.
    if (limits.headersTimeoutMs > limits.requestTimeoutMs) {
      ctx.addIssue({
        code: 'custom',
        path: ['sponsor', 'limits', 'headersTimeoutMs'],
        message: `must not exceed sponsor.limits.requestTimeoutMs (${limits.requestTimeoutMs})`,
      })
    }
    for (const message of idleTimeoutProblems(limits.idleTimeoutMs, cfg.upstreams)) {
      ctx.addIssue({ code: 'custom', path: ['sponsor', 'limits', 'idleTimeoutMs'], message })
    }
    const names = new Set<string>()
    cfg.routes.forEach((route, i) => {
      // Own names only: `in` would also find `constructor`, `toString`… on every object.
      if (!Object.hasOwn(cfg.upstreams, route.upstream)) {
        ctx.addIssue({ code: 'custom', path: ['routes', i, 'upstream'], message: `unknown upstream "${route.upstream}"` })
      }
      if (names.has(route.name)) {
        ctx.addIssue({ code: 'custom', path: ['routes', i, 'name'], message: `duplicate route name "${route.name}"` })
      }
      names.add(route.name)
      for (const method of route.requestBodyOn) {
        if (!route.methods.includes(method)) {
          ctx.addIssue({ code: 'custom', path: ['routes', i, 'requestBodyOn'], message: `${method} is not in the route's methods` })
        }
      }
      if (route.jwks !== undefined) {
        if (!Object.hasOwn(cfg.keys, route.jwks)) {
          ctx.addIssue({ code: 'custom', path: ['routes', i, 'jwks'], message: `unknown key set "${route.jwks}"` })
        }
        if (route.methods.some((m) => m !== 'GET' && m !== 'HEAD')) {
          ctx.addIssue({ code: 'custom', path: ['routes', i, 'methods'], message: 'a jwks route only serves GET and HEAD' })
        }
        if (route.transforms.request.length > 0 || route.transforms.response.length > 0) {
          ctx.addIssue({ code: 'custom', path: ['routes', i, 'transforms'], message: 'a jwks route has no body to transform' })
        }
      }
    })
  })

export type Config = z.infer<typeof configSchema>
export type SponsorConfig = Config['sponsor']
export type UpstreamConfig = z.infer<typeof upstreamSchema>
export type RouteConfig = z.infer<typeof routeSchema>
export type AdminConfig = Config['admin']
export type TransformStepConfig = z.infer<typeof transformStepSchema>
export type KeySetConfig = z.infer<typeof keySetSchema>
