import type {IncomingHttpHeaders, IncomingMessage} from 'node:http'
import type {Readable} from 'node:stream'

import type {Method} from 'got'

import {ApiError, ConnectionError, ExpectedError, NotLoggedInError} from '../errors.js'
import {
  apiUrlOf,
  balenaDomainOf,
  balenaEndpoints,
  type EndpointKind,
  type EndpointOverrides,
  type Endpoints,
  isFlotillaUrl,
  missingEndpointMessage,
} from './endpoints.js'
import {Pine} from './pine.js'

export interface ClientOptions {
  /** `http://127.0.0.1:7171` for a flotilla server, `balena-cloud.com` for balena-style remotes. */
  remote: string
  token?: string
  /** Sent as `X-Balena-Client`. */
  clientName?: string
  timeoutMs?: number
  retries?: number
  /** Endpoints set by hand (`FLOTILLA_BUILDER_URL`…): they win over what the remote tells. */
  endpointOverrides?: EndpointOverrides
}

export interface StreamOptions {
  body?: Readable | string | Buffer
  searchParams?: Record<string, string | number | boolean>
  headers?: Record<string, string>
  signal?: AbortSignal
  onUploadProgress?: (bytes: number) => void
}

export interface RequestOptions {
  json?: unknown
  body?: string
  searchParams?: Record<string, string | number | boolean>
  headers?: Record<string, string>
  /** Send the request without credentials (login, ping). */
  anonymous?: boolean
  signal?: AbortSignal
}

export interface ApiResponse<T> {
  statusCode: number
  headers: Record<string, string | string[] | undefined>
  body: T | undefined
}

/** Network failures worth another try; a refused connection is not: the server is simply not there. */
const RETRIED_NETWORK_ERRORS = new Set(['ETIMEDOUT', 'ECONNRESET', 'EADDRINUSE', 'EPIPE', 'ENETUNREACH', 'EAI_AGAIN'])
const UNREACHABLE_ERRORS = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN', 'ETIMEDOUT'])
/** Requests that may be sent again: the ones whose repetition changes nothing on the server. */
const RETRIED_METHODS = new Set(['GET', 'PUT', 'HEAD', 'DELETE', 'OPTIONS'])
/** Answers worth another try (got's list); a `Retry-After` is honoured when it is within the request timeout. */
const RETRIED_STATUSES = new Set([408, 413, 429, 500, 502, 503, 504, 521, 522, 524])
const BACKOFF_LIMIT_MS = 2000
const MAX_REDIRECTS = 10

/** The request never got a complete answer (refused, reset, timed out, aborted): `code` says why. */
class RequestFailure extends Error {
  constructor(
    message: string,
    readonly code: string | undefined,
    cause?: unknown,
  ) {
    super(message, {cause})
    this.name = 'RequestFailure'
  }
}

/** The server answered with a failure status. */
class StatusFailure extends Error {
  constructor(
    readonly statusCode: number,
    readonly body: string,
    readonly headers: IncomingHttpHeaders,
  ) {
    super(`request failed with status ${statusCode}`)
    this.name = 'StatusFailure'
  }
}

interface Answer {
  statusCode: number
  headers: IncomingHttpHeaders
  text: string
}

/** An error from got (the streaming requests here and the image downloads), recognised without loading got. */
function isGotError(error: unknown): error is Error & {code?: string; response?: {statusCode: number; body: unknown; headers: IncomingHttpHeaders}} {
  return error instanceof Error && 'options' in error && 'timings' in error
}

async function readText(response: IncomingMessage): Promise<string> {
  const encoding = String(response.headers['content-encoding'] ?? '').trim().toLowerCase()
  let source: NodeJS.ReadableStream = response
  if (encoding === 'gzip' || encoding === 'x-gzip' || encoding === 'deflate' || encoding === 'br') {
    const zlib = await import('node:zlib')
    const decoder = encoding === 'br' ? zlib.createBrotliDecompress() : encoding === 'deflate' ? zlib.createInflate() : zlib.createGunzip()
    response.on('error', (error) => decoder.destroy(error))
    source = response.pipe(decoder)
  }

  const chunks: Buffer[] = []
  for await (const chunk of source) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks).toString('utf8')
}

/** The pause before another try, as got computes it: `Retry-After` when given, else 1 s, 2 s… up to the limit, plus noise. */
function retryDelay(attempt: number, failure: unknown, timeoutMs: number): number {
  if (failure instanceof StatusFailure) {
    const header = failure.headers['retry-after']
    if (typeof header === 'string' && header !== '') {
      let after = Number(header) * 1000
      if (Number.isNaN(after)) after = Math.max(Date.parse(header) - Date.now(), 1)
      if (after) return after > timeoutMs ? 0 : after
    }

    if (failure.statusCode === 413) return 0
  }

  return Math.min(2 ** (attempt - 1) * 1000, BACKOFF_LIMIT_MS) + Math.random() * 100
}

function describeBody(body: unknown): string {
  if (typeof body === 'string') {
    try {
      const parsed: unknown = JSON.parse(body)
      if (typeof parsed === 'string') return parsed
      if (parsed && typeof parsed === 'object' && 'message' in parsed) return String((parsed as {message: unknown}).message)
    } catch {
      return body.trim()
    }

    return body.trim()
  }

  return ''
}

/**
 * What to check when a remote does not answer: a local server may simply not be started, while a domain
 * (balena-style or a remote flotilla server) that does not answer points at the name, the network or a proxy.
 */
export function unreachableHint(remote: string, code: string): string {
  const host = isFlotillaUrl(remote) ? new URL(remote).hostname.replace(/^\[(.*)\]$/, '$1') : remote
  if (host === 'localhost' || host === '::1' || /^127\./.test(host)) return 'is it running? (start one with "flotilla server start")'
  const what = code === 'ENOTFOUND' || code === 'EAI_AGAIN' ? 'its name does not resolve' : `it did not answer (${code})`
  return `${what}: check the spelling of "${remote}", your network and DNS`
}

/**
 * The one HTTP client of flotilla: auth headers, timeouts, retries of idempotent requests with backoff,
 * and HTTP failures mapped to messages a person can act on.
 */
export class FleetClient {
  readonly remote: string
  readonly apiUrl: string
  readonly pine: Pine
  private token?: string
  private readonly clientName: string
  private readonly timeoutMs: number
  private readonly retries: number
  private endpointsCache?: Promise<Endpoints>
  private readonly endpointOverrides: EndpointOverrides

  constructor(options: ClientOptions) {
    this.remote = options.remote
    this.apiUrl = apiUrlOf(options.remote)
    this.token = options.token
    this.clientName = options.clientName ?? 'flotilla'
    this.timeoutMs = options.timeoutMs ?? 30_000
    this.retries = options.retries ?? 2
    this.endpointOverrides = options.endpointOverrides ?? {}
    this.pine = new Pine(this)
  }

  get hasToken(): boolean {
    return Boolean(this.token)
  }

  setToken(token: string | undefined): void {
    this.token = token
  }

  authHeaders(): Record<string, string> {
    return this.token ? {authorization: `Bearer ${this.token}`} : {}
  }

  /** Sends a request and returns the parsed JSON body (or the text when it is not JSON; undefined when empty). */
  async request<T>(method: Method, path: string, options: RequestOptions = {}): Promise<T> {
    return (await this.requestWithResponse<T>(method, path, options)).body as T
  }

  /** Like request, with the status and headers too: for conditional requests (`If-None-Match` → 304). */
  async requestWithResponse<T>(method: Method, path: string, options: RequestOptions = {}): Promise<ApiResponse<T>> {
    if (!options.anonymous && !this.token) throw new NotLoggedInError()
    try {
      const url = new URL(/^[a-z][a-z\d+.-]*:\/\//i.test(path) ? path : `${this.apiUrl.replace(/\/?$/, '/')}${path.replace(/^\//, '')}`)
      if (options.searchParams) url.search = new URLSearchParams(Object.entries(options.searchParams).map(([key, value]) => [key, String(value)])).toString()
      const body = options.json === undefined ? options.body : JSON.stringify(options.json)
      const headers: Record<string, string> = {
        'user-agent': this.clientName,
        'x-balena-client': this.clientName,
        'accept-encoding': 'gzip, deflate, br',
        ...(options.json === undefined ? {} : {'content-type': 'application/json'}),
        ...(options.anonymous ? {} : this.authHeaders()),
        ...options.headers,
      }
      const answer = await this.sendWithRetries(method.toUpperCase(), url, headers, body, options.signal)
      const type = String(answer.headers['content-type'] ?? '')
      const parsed = answer.text === '' ? undefined : ((type.includes('json') ? JSON.parse(answer.text) : answer.text) as T)
      return {statusCode: answer.statusCode, headers: answer.headers, body: parsed}
    } catch (error) {
      throw this.translateError(error)
    }
  }

  /** Sends a request, trying again after a network failure or a busy server when the method allows it. */
  private async sendWithRetries(method: string, url: URL, headers: Record<string, string>, body: string | undefined, signal?: AbortSignal): Promise<Answer> {
    for (let attempt = 1; ; attempt++) {
      let failure: unknown
      try {
        const answer = await this.send(method, url, headers, body, signal)
        if ((answer.statusCode >= 200 && answer.statusCode < 300) || answer.statusCode === 304) return answer
        failure = new StatusFailure(answer.statusCode, answer.text, answer.headers)
      } catch (error) {
        failure = error
      }

      const retried =
        attempt <= this.retries &&
        RETRIED_METHODS.has(method) &&
        (failure instanceof StatusFailure ? RETRIED_STATUSES.has(failure.statusCode) : failure instanceof RequestFailure && RETRIED_NETWORK_ERRORS.has(failure.code ?? ''))
      const delay = retried ? retryDelay(attempt, failure, this.timeoutMs) : 0
      if (delay === 0) throw failure
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => {
          signal?.removeEventListener('abort', onAbort)
          resolve()
        }, delay)
        const onAbort = () => {
          clearTimeout(timer)
          reject(new RequestFailure('This operation was aborted.', 'ERR_ABORTED', signal?.reason))
        }

        if (signal?.aborted) onAbort()
        else signal?.addEventListener('abort', onAbort, {once: true})
      })
    }
  }

  /** One exchange: follows redirects (dropping credentials when they lead to another origin), reads the whole answer. */
  private async send(method: string, url: URL, headers: Record<string, string>, body: string | undefined, signal?: AbortSignal, redirects = 0): Promise<Answer> {
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new RequestFailure(`Unsupported protocol: ${url.protocol}`, 'ERR_UNSUPPORTED_PROTOCOL')
    const {request} = url.protocol === 'https:' ? await import('node:https') : await import('node:http')
    const answer = await new Promise<Answer & {location?: string}>((resolve, reject) => {
      const outgoing = request(url, {method, headers: body === undefined ? headers : {...headers, 'content-length': String(Buffer.byteLength(body))}, signal})
      const timer = setTimeout(() => {
        fail(new RequestFailure(`Timeout awaiting 'request' for ${this.timeoutMs}ms`, 'ETIMEDOUT'))
        outgoing.destroy()
      }, this.timeoutMs)
      const fail = (error: unknown) => {
        clearTimeout(timer)
        if (error instanceof RequestFailure) reject(error)
        else if (signal?.aborted) reject(new RequestFailure('This operation was aborted.', 'ERR_ABORTED', error))
        else reject(new RequestFailure((error as Error).message, (error as NodeJS.ErrnoException).code, error))
      }

      outgoing.on('error', fail)
      outgoing.on('response', (response) => {
        const statusCode = response.statusCode ?? 0
        const location = statusCode >= 300 && statusCode < 400 && statusCode !== 304 ? response.headers.location : undefined
        if (location || method === 'HEAD') response.resume()
        const text = location || method === 'HEAD' ? Promise.resolve('') : readText(response)
        text.then((value) => {
          clearTimeout(timer)
          resolve({statusCode, headers: response.headers, text: value, location})
        }, fail)
      })
      outgoing.end(body)
    })
    if (!answer.location) return answer
    if (redirects >= MAX_REDIRECTS) throw new RequestFailure(`Redirected ${MAX_REDIRECTS} times. Aborting.`, 'ERR_TOO_MANY_REDIRECTS')
    const target = new URL(answer.location, url)
    const next: Record<string, string> = {...headers}
    if (target.host !== url.host) delete next.authorization
    const rewrite = answer.statusCode === 303 && method !== 'GET' && method !== 'HEAD'
    if (rewrite) delete next['content-type']
    return this.send(rewrite ? 'GET' : method, target, next, rewrite ? undefined : body, signal, redirects + 1)
  }

  translateError(error: unknown): unknown {
    if (error instanceof StatusFailure) return this.errorForStatus(error.statusCode, error.body, error.headers['retry-after'])
    if (isGotError(error) && error.name === 'HTTPError' && error.response) {
      return this.errorForStatus(error.response.statusCode, error.response.body, error.response.headers['retry-after'])
    }

    if (error instanceof RequestFailure || isGotError(error)) {
      if (error.code && UNREACHABLE_ERRORS.has(error.code)) return new ConnectionError(this.apiUrl, error, unreachableHint(this.remote, error.code))
      return new ExpectedError(`request to ${this.apiUrl} failed: ${error.message}`, {cause: error})
    }

    return error
  }

  /** The error a person should see for an HTTP failure status and its body. */
  errorForStatus(status: number, body: unknown, retryAfter?: string | string[]): ExpectedError {
    const detail = describeBody(body)
    if (status === 401) {
      return this.token
        ? new ApiError(`the server rejected your credentials${detail ? ` (${detail})` : ''} — they may have expired or been revoked; run "flotilla login"`, status, detail)
        : new NotLoggedInError()
    }

    if (status === 403) return new ApiError(`permission denied${detail ? `: ${detail}` : ''}`, status, detail)
    if (status === 429) return new ApiError(`too many requests — try again in ${retryAfter ?? 'a few'} seconds`, status, detail)
    if (status >= 500) return new ApiError(`the fleet server failed (${status}${detail ? `: ${detail}` : ''})`, status, detail)
    return new ApiError(detail || `request failed with status ${status}`, status, detail)
  }

  /**
   * A long-lived streaming request (build uploads, log streams): the body may be a stream, the answer is
   * returned as a stream once its status is known to be a success. Never retried, no overall timeout.
   */
  async openStream(method: Method, url: string, options: StreamOptions = {}): Promise<Readable> {
    if (!this.token) throw new NotLoggedInError()
    // got, loaded only here: it streams request bodies with upload progress. No whole-request timeout: it would cut a long build or log stream.
    const {default: got} = await import('got')
    const stream = got.stream(url, {
      method,
      body: options.body,
      searchParams: options.searchParams,
      headers: {'x-balena-client': this.clientName, ...this.authHeaders(), ...options.headers},
      throwHttpErrors: false,
      retry: {limit: 0},
      timeout: {connect: 10_000},
      signal: options.signal,
    })
    if (options.onUploadProgress) stream.on('uploadProgress', (progress: {transferred: number}) => options.onUploadProgress?.(progress.transferred))
    return new Promise((resolve, reject) => {
      stream.once('error', (error) => reject(this.translateError(error)))
      stream.once('response', async (response: {statusCode: number; headers: Record<string, string | string[] | undefined>}) => {
        if (response.statusCode < 400) {
          resolve(stream)
          return
        }

        const chunks: Buffer[] = []
        for await (const chunk of stream) chunks.push(chunk as Buffer)
        reject(this.errorForStatus(response.statusCode, Buffer.concat(chunks).toString('utf8'), response.headers['retry-after']))
      })
    })
  }

  /**
   * The remote's builder, SSH gateway, tunnel and registry: asked of a flotilla server once (again after a failure),
   * derived for balena-style remotes.
   */
  async endpoints(): Promise<Endpoints> {
    if (!isFlotillaUrl(this.remote)) return balenaEndpoints(this.remote)
    this.endpointsCache ??= this.request<Endpoints>('GET', '/.well-known/flotilla.json', {anonymous: true}).catch((error: unknown) => {
      this.endpointsCache = undefined
      throw error
    })
    return this.endpointsCache
  }

  /**
   * The builder, tunnel proxy or SSH gateway a command needs: set by hand, else as the remote tells it (a flotilla
   * server's well-known document, or balena's naming for a domain or an `https://api.<domain>` URL); for any
   * other remote without the document, one line naming the setting that points at it.
   */
  async endpoint<K extends EndpointKind>(kind: K): Promise<Endpoints[K]> {
    const override = this.endpointOverrides[kind]
    if (override) return override as Endpoints[K]
    try {
      return (await this.endpoints())[kind]
    } catch (error) {
      if (!(error instanceof ApiError && error.statusCode === 404)) throw error
      const domain = balenaDomainOf(this.apiUrl)
      if (domain) return balenaEndpoints(domain)[kind]
      throw new ExpectedError(missingEndpointMessage(kind, this.remote), {cause: error})
    }
  }
}
