import type {Readable} from 'node:stream'

import got, {type Got, HTTPError, type Method, RequestError} from 'got'

import {ApiError, ConnectionError, ExpectedError, NotLoggedInError} from '../errors.js'
import {apiUrlOf, balenaEndpoints, type Endpoints, isFlotillaUrl} from './endpoints.js'
import {Pine} from './pine.js'

export interface ClientOptions {
  /** `http://127.0.0.1:7171` for a flotilla server, `balena-cloud.com` for balena-style remotes. */
  remote: string
  token?: string
  /** Sent as `X-Balena-Client`. */
  clientName?: string
  timeoutMs?: number
  retries?: number
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
const RETRIED_NETWORK_ERRORS = ['ETIMEDOUT', 'ECONNRESET', 'EADDRINUSE', 'EPIPE', 'ENETUNREACH', 'EAI_AGAIN']
const UNREACHABLE_ERRORS = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN', 'ETIMEDOUT'])

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
 * The one HTTP client of flotilla: auth headers, timeouts, retries of idempotent requests with backoff,
 * and HTTP failures mapped to messages a person can act on.
 */
export class FleetClient {
  readonly remote: string
  readonly apiUrl: string
  readonly pine: Pine
  private token?: string
  private readonly http: Got
  private readonly clientName: string
  private endpointsCache?: Promise<Endpoints>

  constructor(options: ClientOptions) {
    this.remote = options.remote
    this.apiUrl = apiUrlOf(options.remote)
    this.token = options.token
    this.clientName = options.clientName ?? 'flotilla'
    this.http = got.extend({
      prefixUrl: this.apiUrl,
      timeout: {request: options.timeoutMs ?? 30_000},
      retry: {
        limit: options.retries ?? 2,
        methods: ['GET', 'PUT', 'HEAD', 'DELETE', 'OPTIONS'],
        errorCodes: RETRIED_NETWORK_ERRORS,
        backoffLimit: 2000,
      },
      headers: {'x-balena-client': this.clientName},
    })
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
      const response = await this.http(path.replace(/^\//, ''), {
        method,
        json: options.json,
        body: options.body,
        searchParams: options.searchParams,
        headers: {...(options.anonymous ? {} : this.authHeaders()), ...options.headers},
        signal: options.signal,
      })
      const text = response.body
      const type = String(response.headers['content-type'] ?? '')
      const body = text === '' ? undefined : ((type.includes('json') ? JSON.parse(text) : text) as T)
      return {statusCode: response.statusCode, headers: response.headers, body}
    } catch (error) {
      throw this.translateError(error)
    }
  }

  translateError(error: unknown): unknown {
    if (error instanceof HTTPError) {
      return this.errorForStatus(error.response.statusCode, error.response.body, error.response.headers['retry-after'])
    }

    if (error instanceof RequestError && error.code && UNREACHABLE_ERRORS.has(error.code)) {
      return new ConnectionError(this.apiUrl, error)
    }

    if (error instanceof RequestError && !(error instanceof ExpectedError)) {
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
    // Not this.http: its whole-request timeout would cut a long build or log stream.
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

  /** The remote's builder, SSH gateway, tunnel and registry: asked of a flotilla server once, derived for balena-style remotes. */
  async endpoints(): Promise<Endpoints> {
    if (!isFlotillaUrl(this.remote)) return balenaEndpoints(this.remote)
    this.endpointsCache ??= this.request<Endpoints>('GET', '/.well-known/flotilla.json', {anonymous: true})
    return this.endpointsCache
  }
}
