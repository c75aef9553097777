// The dashboard's client of the fleet API: the same requests the CLI's SDK (src/sdk) makes, with the browser's
// fetch. The session token lives in sessionStorage only: never in a URL, gone when the tab closes.
// Pine URLs are written by the SDK's own pineUrl (pinejs reads OData's characters raw: encoding them all is a 400).
import {WEB_TERMINAL_PATH} from '../protocol/web-terminal.js'
import {type ODataOptions, odataValue, pineUrl} from '../sdk/pine.js'

export {odataValue}

const TOKEN_KEY = 'flotilla.token'

/** An answer of the API other than 2xx, with the message the server gave. */
export class ApiError extends Error {
  constructor(readonly status: number, message: string) {
    super(message)
  }
}

export const storedToken = (): string | null => sessionStorage.getItem(TOKEN_KEY)
export const storeToken = (token: string | null) => (token === null ? sessionStorage.removeItem(TOKEN_KEY) : sessionStorage.setItem(TOKEN_KEY, token))

async function messageOf(response: Response): Promise<string> {
  const text = await response.text().catch(() => '')
  try {
    const parsed = JSON.parse(text) as unknown
    if (typeof parsed === 'string') return parsed
  } catch {
    // not JSON: the text itself
  }

  return text.trim() || `${response.status} ${response.statusText}`
}

/** Exchanges a username (or email) and password for a session token (`POST /login_`). */
export async function login(username: string, password: string): Promise<string> {
  const response = await fetch('/login_', {method: 'POST', headers: {'content-type': 'application/json'}, body: JSON.stringify({username, password})})
  if (response.status === 401) throw new ApiError(401, 'wrong username or password')
  if (!response.ok) throw new ApiError(response.status, await messageOf(response))
  return (await response.text()).trim()
}

export class Api {
  constructor(private readonly token: string, private readonly onSignedOut: () => void) {}

  /** Any call of the API with the session; a 401 means the session ended (signed out elsewhere, expired). */
  async request<T>(method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<T> {
    const headers: Record<string, string> = {authorization: `Bearer ${this.token}`}
    if (body !== undefined) headers['content-type'] = 'application/json'
    const response = await fetch(path, {method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal})
    if (response.status === 401) {
      this.onSignedOut()
      throw new ApiError(401, 'your session has ended — sign in again')
    }

    if (!response.ok) throw new ApiError(response.status, await messageOf(response))
    const text = await response.text()
    return (text && (response.headers.get('content-type') ?? '').includes('json') ? JSON.parse(text) : text) as T
  }

  /** Rows of a resource, or (with `key`) the one row with that id, in a list that is empty when there is none. */
  async get<T>(resource: string, options: ODataOptions = {}, key?: number): Promise<T[]> {
    return (await this.request<{d: T[]}>('GET', pineUrl(resource, options, {key}))).d
  }

  post<T>(resource: string, values: Record<string, unknown>): Promise<T> {
    return this.request<T>('POST', `/v7/${resource}`, values)
  }

  patch(resource: string, id: number, values: Record<string, unknown>): Promise<unknown> {
    return this.request('PATCH', `/v7/${resource}(${id})`, values)
  }

  delete(resource: string, id: number): Promise<unknown> {
    return this.request('DELETE', `/v7/${resource}(${id})`)
  }

  /** Creates or updates the row named by `key` (as the SDK's pine.upsert does: look, then patch or post). */
  async upsert(resource: string, key: Record<string, string | number>, values: Record<string, unknown>): Promise<void> {
    const filter = Object.entries(key).map(([field, value]) => `${field} eq ${odataValue(value)}`).join(' and ')
    const [existing] = await this.get<{id: number}>(resource, {$select: 'id', $filter: filter})
    if (existing) await this.patch(resource, existing.id, values)
    else await this.post(resource, {...key, ...values})
  }

  /** Ends the session on the server (and every other session of the user), as `flotilla logout` does. */
  async logout(): Promise<void> {
    await this.request('POST', '/user/v1/logout').catch(() => undefined)
  }

  /**
   * A WebSocket to a terminal on a device's host or in one of its services, as `flotilla ssh` opens. The token goes
   * in the first message, never in the URL. Output arrives as ArrayBuffers, news as JSON text.
   */
  openTerminal(device: string, service: string | undefined, size: {cols: number; rows: number}): WebSocket {
    const socket = new WebSocket(`${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}${WEB_TERMINAL_PATH}`)
    socket.binaryType = 'arraybuffer'
    socket.addEventListener('open', () => socket.send(JSON.stringify({type: 'open', token: this.token, device, service, ...size})))
    return socket
  }

  /**
   * A device's log lines: the last `count` first, then each new one as it arrives (NDJSON over one long response).
   * A dropped stream is reopened after the last line seen. Ends when `signal` aborts.
   */
  async streamLogs(uuid: string, onLine: (line: LogLine) => void, signal: AbortSignal, count = 100): Promise<void> {
    let lastId: number | undefined
    while (!signal.aborted) {
      const position = lastId === undefined ? `count=${count}` : `since=${lastId}`
      try {
        const response = await fetch(`/device/v2/${encodeURIComponent(uuid)}/logs?stream=1&${position}`, {headers: {authorization: `Bearer ${this.token}`}, signal})
        if (response.status === 401) return this.onSignedOut()
        if (!response.ok || !response.body) throw new ApiError(response.status, await messageOf(response))
        await readLines(response.body, (text) => {
          const line = JSON.parse(text) as LogLine
          if (typeof line.id === 'number') {
            if (lastId !== undefined && line.id <= lastId) return
            lastId = line.id
          }

          onLine(line)
        })
      } catch (error) {
        if (signal.aborted) return
        if (error instanceof ApiError && error.status < 500) throw error
      }

      await new Promise((resolve) => setTimeout(resolve, 1000))
    }
  }
}

async function readLines(body: ReadableStream<Uint8Array>, onLine: (text: string) => void): Promise<void> {
  const reader = body.getReader()
  const decoder = new TextDecoder()
  let pending = ''
  for (;;) {
    const {value, done} = await reader.read()
    if (done) return
    pending += decoder.decode(value, {stream: true})
    const lines = pending.split('\n')
    pending = lines.pop() ?? ''
    for (const text of lines) if (text.trim() !== '') onLine(text)
  }
}

export interface LogLine {
  id?: number
  message: string
  timestamp: number
  isSystem?: boolean
  isStdErr?: boolean
  serviceId?: number | null
}
