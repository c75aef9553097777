import http from 'node:http'
import net from 'node:net'

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

interface PendingRequest {
  bytes: Buffer
  resolve: (answer: HttpAnswer) => void
  reject: (error: Error) => void
}

const HEADER_END = Buffer.from('\r\n\r\n')

/**
 * The simulated agents' client: requests written as ready-made bytes on a pool of keep-alive sockets, one request
 * at a time on each (no pipelining, so a latency is one request's), answers parsed only as far as status, ETag and
 * Content-Length. It costs a fraction of node:http's CPU, so one load-generating process keeps up with thousands of
 * requests a second on the same two cores as the server.
 */
export class RawHttpPool {
  private readonly queue: PendingRequest[] = []
  private readonly idle: net.Socket[] = []
  private closed = false

  constructor(
    private readonly url: URL,
    sockets: number,
  ) {
    for (let index = 0; index < sockets; index++) this.idle.push(this.connect())
  }

  request(method: string, path: string, headers: Record<string, string>, body?: string): Promise<HttpAnswer> {
    const lines = [`${method} ${path} HTTP/1.1`, `host: ${this.url.host}`, ...Object.entries(headers).map(([name, value]) => `${name}: ${value}`)]
    if (body !== undefined) lines.push('content-type: application/json', `content-length: ${Buffer.byteLength(body)}`)
    const bytes = Buffer.from(`${lines.join('\r\n')}\r\n\r\n${body ?? ''}`)
    return new Promise((resolve, reject) => {
      this.queue.push({bytes, resolve, reject})
      this.next()
    })
  }

  close(): void {
    this.closed = true
    for (const socket of this.idle) socket.destroy()
  }

  private connect(): net.Socket {
    const socket = net.connect({host: this.url.hostname, port: Number(this.url.port)})
    socket.setNoDelay(true)
    socket.on('error', () => {})
    return socket
  }

  private next(): void {
    while (this.queue.length > 0 && this.idle.length > 0) this.send(this.idle.pop() as net.Socket, this.queue.shift() as PendingRequest)
  }

  private send(socket: net.Socket, pending: PendingRequest): void {
    let buffer: Buffer = Buffer.alloc(0)
    const done = (error?: Error, answer?: HttpAnswer) => {
      socket.off('data', onData)
      socket.off('close', onClose)
      if (error) {
        pending.reject(error)
        socket.destroy()
        if (!this.closed) this.idle.push(this.connect())
      } else {
        pending.resolve(answer as HttpAnswer)
        this.idle.push(socket)
      }

      this.next()
    }

    const onClose = () => done(new Error('the server closed the connection'))
    const onData = (chunk: Buffer) => {
      buffer = buffer.length === 0 ? chunk : Buffer.concat([buffer, chunk])
      const end = buffer.indexOf(HEADER_END)
      if (end < 0) return
      const head = buffer.subarray(0, end).toString('latin1')
      const length = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? 0)
      if (buffer.length < end + 4 + length) return
      const status = Number(head.slice(9, 12))
      done(undefined, {status, etag: /\r\netag: *([^\r]+)/i.exec(head)?.[1], body: buffer.subarray(end + 4, end + 4 + length).toString('utf8')})
    }

    socket.on('data', onData)
    socket.once('close', onClose)
    socket.write(pending.bytes)
  }
}
