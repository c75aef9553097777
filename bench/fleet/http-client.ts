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
  queuedAt: number
  resolve: (answer: TimedAnswer) => void
  reject: (error: Error) => void
}

/** An answer, and how long its request waited in the load generator for a free socket before it was sent. */
export interface TimedAnswer extends HttpAnswer {
  socketWaitMs: number
}

const HEADER_END = Buffer.from('\r\n\r\n')

/**
 * The simulated agents' client: requests written as ready-made bytes on keep-alive sockets, one request at a time
 * on each (no pipelining, so a latency is one request's), answers parsed only as far as status, ETag and
 * Content-Length. It costs a fraction of node:http's CPU, so one load-generating process keeps up with thousands of
 * requests a second on the same two cores as the server.
 *
 * Its sockets are opened before any request, a batch at a time ({@link open}), as a fleet's devices hold their
 * connections before they poll: opened on demand they would come in a burst whenever the server slows, overflowing
 * its accept queue. There must be as many as the requests in flight when the server is slower than the goal (rate
 * × latency), or they would queue here, in the generator, and time the generator rather than the server; the time
 * each request waited for a socket is returned with its answer, so the bench shows that it stayed near zero. An idle
 * socket is taken oldest first, so each stays in use and none reaches the server's keep-alive timeout.
 */
export class RawHttpPool {
  /** Requests waiting for a socket, oldest first from `queueHead` (a shift would copy the queue each time). */
  private queue: PendingRequest[] = []
  private queueHead = 0
  private readonly idle = new Set<net.Socket>()
  private sockets = 0
  private closed = false

  constructor(
    private readonly url: URL,
    private readonly maxSockets: number,
  ) {}

  /** Sockets open now. */
  get openSockets(): number {
    return this.sockets
  }

  /** Requests sent and not yet answered, and requests waiting for a socket. */
  get outstanding(): number {
    return this.sockets - this.idle.size + this.queue.length - this.queueHead
  }

  /** Opens the pool's sockets, `batch` connecting at a time; resolves once all are connected. */
  async open(batch = 64): Promise<void> {
    while (this.sockets < this.maxSockets && !this.closed) {
      const connecting = Array.from({length: Math.min(batch, this.maxSockets - this.sockets)}, () => {
        const socket = this.connect()
        return new Promise<void>((resolve, reject) => {
          socket.once('connect', () => {
            this.idle.add(socket)
            resolve()
          })
          socket.once('error', reject)
        })
      })
      await Promise.all(connecting)
    }

    this.next()
  }

  request(method: string, path: string, headers: Record<string, string>, body?: string): Promise<TimedAnswer> {
    return this.send(this.encode(method, path, headers, body))
  }

  /** A request as the bytes {@link send} writes: a device sending the same request again need not encode it again. */
  encode(method: string, path: string, headers: Record<string, string>, body?: string): Buffer {
    const lines = [`${method} ${path} HTTP/1.1`, `host: ${this.url.host}`, ...Object.entries(headers).map(([name, value]) => `${name}: ${value}`)]
    if (body !== undefined) lines.push('content-type: application/json', `content-length: ${Buffer.byteLength(body)}`)
    return Buffer.from(`${lines.join('\r\n')}\r\n\r\n${body ?? ''}`)
  }

  send(bytes: Buffer): Promise<TimedAnswer> {
    return new Promise((resolve, reject) => {
      this.queue.push({bytes, queuedAt: performance.now(), resolve, reject})
      this.next()
    })
  }

  close(): void {
    this.closed = true
    for (const socket of this.idle) socket.destroy()
  }

  private connect(): net.Socket {
    const socket = net.connect({host: this.url.hostname, port: Number(this.url.port)})
    this.sockets++
    socket.setNoDelay(true)
    socket.on('error', () => {})
    // A keep-alive socket the server closes while idle is dropped, never written to: its request would be lost.
    socket.once('close', () => {
      this.sockets--
      this.idle.delete(socket)
    })
    return socket
  }

  /** The idle socket that has waited longest, or a new one in place of one the server closed. */
  private takeSocket(): net.Socket | undefined {
    for (const socket of this.idle) {
      this.idle.delete(socket)
      return socket
    }

    return this.sockets < this.maxSockets ? this.connect() : undefined
  }

  private next(): void {
    while (this.queueHead < this.queue.length && !this.closed) {
      const socket = this.takeSocket()
      if (!socket) break
      this.write(socket, this.queue[this.queueHead++])
    }

    // What was sent is dropped now and then, at a cost of one copy per as many requests as are left.
    if (this.queueHead > 1024 && this.queueHead * 2 > this.queue.length) {
      this.queue = this.queue.slice(this.queueHead)
      this.queueHead = 0
    }
  }

  private write(socket: net.Socket, pending: PendingRequest): void {
    const socketWaitMs = performance.now() - pending.queuedAt
    let buffer: Buffer = Buffer.alloc(0)
    const done = (error?: Error, answer?: HttpAnswer) => {
      socket.off('data', onData)
      socket.off('close', onClose)
      if (error) {
        pending.reject(error)
        socket.destroy()
      } else {
        pending.resolve({...(answer as HttpAnswer), socketWaitMs})
        if (this.closed) socket.destroy()
        else this.idle.add(socket)
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
      // Only a 200 brings a new ETag; most answers are 304s with no body.
      const etag = status === 200 ? /\r\netag: *([^\r]+)/i.exec(head)?.[1] : undefined
      done(undefined, {status, etag, body: length > 0 ? buffer.subarray(end + 4, end + 4 + length).toString('utf8') : ''})
    }

    socket.on('data', onData)
    socket.once('close', onClose)
    socket.write(pending.bytes)
  }
}
