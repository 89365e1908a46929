/**
 * The part of autocannon 9's API the load generator uses (the package ships no types, and
 * @types/autocannon is not a dependency). See node_modules/autocannon/README.md "API".
 */
declare module 'autocannon' {
  import type { EventEmitter } from 'node:events'
  import type { ConnectionOptions } from 'node:tls'

  namespace autocannon {
    interface Request {
      method?: 'GET' | 'HEAD' | 'POST' | 'PUT' | 'PATCH' | 'DELETE' | 'OPTIONS'
      path?: string
      headers?: Record<string, string>
      body?: string | Buffer
      /** Called before each request is sent; returns the request to send. */
      setupRequest?: (req: Request, context: Record<string, unknown>) => Request
      /** Called with each response to this request (the body decoded as UTF-8, chunk by chunk). */
      onResponse?: (status: number, body: string, context: Record<string, unknown>) => void
    }
    interface Options {
      url: string
      connections?: number
      duration?: number
      amount?: number
      timeout?: number
      pipelining?: number
      method?: Request['method']
      headers?: Record<string, string>
      body?: string | Buffer
      requests?: Request[]
      servername?: string
      tlsOptions?: ConnectionOptions
      /** A response for which this returns false is counted in `mismatches`. */
      verifyBody?: (body: string) => boolean
    }
    interface Histogram {
      average: number
      mean: number
      total: number
      p50: number
      p99: number
      max: number
    }
    interface Result {
      duration: number
      errors: number
      timeouts: number
      non2xx: number
      mismatches: number
      requests: Histogram
      throughput: Histogram
      latency: Histogram
    }
    interface Instance extends EventEmitter {
      stop(): void
    }
  }
  function autocannon(opts: autocannon.Options): autocannon.Instance
  export default autocannon
}
