import http from 'node:http'

export interface HttpAnswer {
  status: number
  etag?: string
  body: string
}

/**
 * A lean keep-alive HTTP client for the simulated agents: got costs the load generator several times the CPU of
 * a bare request, and at thousands of requests a second that would measure the generator, not the server.
 */
export class BenchHttpClient {
  private readonly agent: http.Agent
  private readonly base: URL

  constructor(url: string, maxSockets: number) {
    this.base = new URL(url)
    this.agent = new http.Agent({keepAlive: true, maxSockets, scheduling: 'fifo'})
  }

  request(method: string, path: string, options: {token?: string; json?: unknown; headers?: Record<string, string>; timeoutMs?: number} = {}): Promise<HttpAnswer> {
    const body = options.json === undefined ? undefined : JSON.stringify(options.json)
    const headers: Record<string, string> = {...options.headers}
    if (options.token) headers.authorization = `Bearer ${options.token}`
    if (body !== undefined) {
      headers['content-type'] = 'application/json'
      headers['content-length'] = String(Buffer.byteLength(body))
    }

    return new Promise((resolve, reject) => {
      const request = http.request({agent: this.agent, host: this.base.hostname, port: this.base.port, method, path, headers, timeout: options.timeoutMs ?? 60_000}, (response) => {
        const chunks: Buffer[] = []
        response.on('data', (chunk: Buffer) => chunks.push(chunk))
        response.on('end', () => resolve({status: response.statusCode ?? 0, etag: response.headers.etag, body: Buffer.concat(chunks).toString('utf8')}))
        response.on('error', reject)
      })
      request.on('timeout', () => request.destroy(new Error(`${method} ${path} timed out`)))
      request.on('error', reject)
      request.end(body)
    })
  }

  close(): void {
    this.agent.destroy()
  }
}

/** Runs `work` for indexes 0..count-1, at most `concurrency` at a time, and returns the results in order. */
export async function inParallel<T>(count: number, concurrency: number, work: (index: number) => Promise<T>): Promise<T[]> {
  const results: T[] = []
  let next = 0
  await Promise.all(
    Array.from({length: Math.min(count, concurrency)}, async () => {
      while (next < count) {
        const index = next++
        results[index] = await work(index)
      }
    }),
  )
  return results
}
