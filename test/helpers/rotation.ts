/**
 * The deployed chain the key-rotation tests rotate under load: an edge (public set: seals requests,
 * requires sealed responses) in front of a trusted sidecar (private set: opens requests; public set:
 * seals responses), in front of an accreditation service that stores what the sidecar opened.
 */
import type { UpstreamHandler } from './harness.js'
import { EDGE_GATEWAY, SPONSOR_APP, startChain } from './sealing.js'

/** The sealed members of a record, and the context both gateways bind them to. */
export const ROTATION_FIELDS = ['/name', '/passport', '/email'] as const
export const ROTATION_CONTEXT = 'accreditations'

/** A request that did not get a response at all (an aborted connection) is a failure too. */
export const aborted = (err: Error) => ({ status: 0, text: `${(err as { code?: string }).code ?? ''} ${err.message}` })

/** The accreditation service: stores what the sidecar opened (plaintext), answers it back. */
export function rotationService(store: Map<string, Record<string, unknown>>): UpstreamHandler {
  let next = 0
  return (req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      let record: Record<string, unknown> | undefined
      if (req.method === 'POST') {
        record = { ...(JSON.parse(Buffer.concat(chunks).toString()) as Record<string, unknown>), id: `r-${++next}` }
        store.set(record['id'] as string, record)
      } else {
        record = store.get(decodeURIComponent((req.url ?? '').split('/').at(-1)!))
      }
      const body = JSON.stringify(record ?? { error: 'not found' })
      res.writeHead(record === undefined ? 404 : 200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) })
      res.end(body)
    })
  }
}

/**
 * Starts the chain with each side's own key files, as on two hosts, and records every request body
 * that crossed between the gateways (captured at the sidecar's door) in `crossed`.
 */
export async function startRotationChain(opts: {
  dir: string
  store: Map<string, Record<string, unknown>>
  /** The edge host's copy of the public set. */
  edgePublic: string
  /** The trusted host's public and private sets (the sidecar's). */
  sidecarPublic: string
  sidecarPrivate: string
}): Promise<{ chain: Awaited<ReturnType<typeof startChain>>; crossed: string[] }> {
  const seal = { context: ROTATION_CONTEXT, fields: [...ROTATION_FIELDS] }
  const bound = { ...seal, records: { pattern: '', id: 'id' } }
  const chain = await startChain({
    dir: opts.dir,
    handler: rotationService(opts.store),
    edgeKeys: { 'trusted-host': { file: opts.edgePublic } },
    sidecarKeys: { 'trusted-host': { file: opts.sidecarPublic }, 'trusted-host-private': { file: opts.sidecarPrivate, private: true } },
    // As config/edge.yaml: seal what goes in, require sealing on what comes back.
    edgeRoutes: [
      {
        name: 'create',
        methods: ['POST'],
        path: '/v1/accreditations',
        allow: [SPONSOR_APP],
        upstream: 'backend',
        transforms: {
          request: [{ type: 'seal', recipients: 'trusted-host', ...seal }],
          response: [{ type: 'require-sealed', recipients: 'trusted-host', ...bound }],
        },
      },
      {
        name: 'get',
        methods: ['GET'],
        path: '/v1/accreditations/:id',
        allow: [SPONSOR_APP],
        upstream: 'backend',
        transforms: { response: [{ type: 'require-sealed', recipients: 'trusted-host', ...bound }] },
      },
    ],
    // As config/trusted-sidecar.yaml: open what comes in, seal what goes back (bound to the record).
    sidecarRoutes: [
      {
        name: 'create',
        methods: ['POST'],
        path: '/v1/accreditations',
        allow: [EDGE_GATEWAY],
        upstream: 'backend',
        transforms: {
          request: [{ type: 'open', keys: 'trusted-host-private', ...seal }],
          response: [{ type: 'seal', recipients: 'trusted-host', ...bound }],
        },
      },
      {
        name: 'get',
        methods: ['GET'],
        path: '/v1/accreditations/:id',
        allow: [EDGE_GATEWAY],
        upstream: 'backend',
        transforms: { response: [{ type: 'seal', recipients: 'trusted-host', ...bound }] },
      },
    ],
  })
  const crossed: string[] = []
  const proxy = chain.sidecar.gateway.proxy
  const handle = proxy.handle.bind(proxy)
  proxy.handle = (req, res, expectContinue) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => crossed.push(Buffer.concat(chunks).toString()))
    handle(req, res, expectContinue)
  }
  return { chain, crossed }
}
