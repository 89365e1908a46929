/**
 * One raw keep-alive mTLS connection to a harness gateway's sponsor listener, for tests of what
 * happens to an open connection (a reload, a resumed session): `ask` sends a GET and resolves with
 * the response head, or '' once the connection has closed.
 */
import tls from 'node:tls'
import type { Harness } from './harness.js'

export interface SponsorConnection {
  /** Whether the handshake resumed a session. */
  readonly reused: boolean
  /** The first session ticket the server sent, to resume it in another connection. */
  session(): Buffer | undefined
  ask(path?: string): Promise<string>
  closed(): boolean
  /** Closes it from the client's side. */
  close(): void
}

export function openSponsorConnection(h: Harness, client: { certPem: string; keyPem: string }, session?: Buffer): Promise<SponsorConnection> {
  return new Promise((resolve) => {
    const socket = tls.connect({ ...h.sponsorTls(client), ...(session === undefined ? {} : { session }) })
    let ticket: Buffer | undefined
    let buffer = ''
    let isClosed = false
    let pending: ((head: string) => void) | undefined
    socket.on('session', (s: Buffer) => {
      ticket ??= s
    })
    socket.on('error', () => {})
    socket.setEncoding('latin1')
    socket.on('data', (d: string) => {
      buffer += d
      const end = buffer.indexOf('\r\n\r\n')
      if (end === -1) return
      const length = Number(/content-length: (\d+)/i.exec(buffer.slice(0, end))?.[1] ?? 0)
      if (buffer.length < end + 4 + length) return
      const head = buffer.slice(0, end)
      buffer = buffer.slice(end + 4 + length)
      pending?.(head)
      pending = undefined
    })
    socket.on('close', () => {
      isClosed = true
      pending?.('')
      pending = undefined
    })
    socket.once('secureConnect', () =>
      resolve({
        reused: socket.isSessionReused(),
        session: () => ticket,
        ask: (path = '/v1/records/1') =>
          new Promise<string>((r) => {
            if (isClosed) return r('')
            pending = r
            socket.write(`GET ${path} HTTP/1.1\r\nhost: gateway\r\n\r\n`)
          }),
        closed: () => isClosed,
        close: () => socket.destroy(),
      }),
    )
  })
}

/** Replaces the harness gateway's sponsor CA bundle with `pem` and reloads it. */
export async function reloadSponsorBundle(h: Harness, pem: string): Promise<{ ok: boolean }> {
  const { writeFile } = await import('node:fs/promises')
  const { join } = await import('node:path')
  const file = join(h.dir, `client-ca-${Date.now()}-${Math.random()}.crt`)
  await writeFile(file, pem)
  const sponsor = h.config['sponsor'] as { tls: Record<string, string> }
  await h.writeConfig({ ...h.config, sponsor: { ...sponsor, tls: { ...sponsor.tls, clientCa: file } } })
  return (await h.gateway.reload()) as { ok: boolean }
}
