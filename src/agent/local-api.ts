import {createServer, type IncomingMessage, type ServerResponse} from 'node:http'

import {listen} from '../listen.js'
import type {LocalLogLine} from '../protocol/log-line.js'

/** What the local API asks of the running agent; each answer is computed when asked. */
export interface LocalApiHandlers {
  version: string
  device(): Record<string, unknown>
  applicationsState(): Record<string, unknown>
  stateStatus(): Record<string, unknown>
  subscribeLogs(listener: (line: LocalLogLine) => void): () => void
  /** An "update now": fetch the target at once (and ignore update locks when forced). */
  update(force: boolean): void
  restartApp(appId: number): Promise<void>
  restartService(appId: number, serviceName: string): Promise<void>
  /** Removes the app's containers and named volumes and lets them be made afresh; rejects while the app's update lock is held, unless forced. */
  purge(appId: number, force: boolean): Promise<void>
  /** Stops the services and runs the host's reboot (power-off) command; rejects while an update lock is held, unless forced. */
  reboot(force: boolean): Promise<void>
  shutdown(force: boolean): Promise<void>
  /** Identifies the device (balena blinks its LED). */
  blink(): void
}

export interface LocalApi {
  port: number
  close(): Promise<void>
}

class HttpProblem extends Error {
  constructor(readonly status: number, message: string) {
    super(message)
  }
}

const MAX_BODY_BYTES = 64 * 1024

async function readJsonBody(request: IncomingMessage): Promise<Record<string, unknown>> {
  let text = ''
  for await (const chunk of request) {
    text += (chunk as Buffer).toString('utf8')
    if (text.length > MAX_BODY_BYTES) throw new HttpProblem(413, 'body too large')
  }

  if (!text.trim()) return {}
  try {
    const body: unknown = JSON.parse(text)
    if (typeof body === 'object' && body !== null && !Array.isArray(body)) return body as Record<string, unknown>
  } catch {
    // Answered below, as for any body that is not an object.
  }

  throw new HttpProblem(400, 'the body is not a JSON object')
}

function sendJson(response: ServerResponse, status: number, body: unknown): void {
  response.writeHead(status, {'content-type': 'application/json'}).end(JSON.stringify(body))
}

const isTrue = (value: unknown) => value === true || value === 'true' || value === 1 || value === '1'

/** Errors that carry their HTTP status (an update lock held: 423). */
function statusOf(error: unknown): number {
  const status = (error as {statusCode?: unknown}).statusCode
  return typeof status === 'number' && status >= 400 && status < 600 ? status : 500
}

function appIdOf(value: unknown): number {
  const appId = Number(value)
  if (!Number.isInteger(appId) || appId <= 0) throw new HttpProblem(400, 'appId must be a positive integer')
  return appId
}

/**
 * The local supervisor API on loopback (port 48484 by default), the subset that balena's tools and the
 * services themselves (through BALENA_SUPERVISOR_ADDRESS) use.
 */
export async function startLocalApi(options: {port?: number; host?: string; handlers: LocalApiHandlers}): Promise<LocalApi> {
  const {handlers} = options
  const server = createServer((request, response) => {
    handle(request, response).catch((error: unknown) => {
      if (response.headersSent) {
        response.destroy()
        return
      }

      if (error instanceof HttpProblem) sendJson(response, error.status, {status: 'failed', message: error.message})
      else sendJson(response, statusOf(error), {status: 'failed', message: (error as Error).message})
    })
  })

  async function handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const url = new URL(request.url ?? '/', 'http://localhost')
    const route = `${request.method} ${url.pathname.replace(/\/+$/, '') || '/'}`
    const restartService = /^POST \/v2\/applications\/(\d+)\/restart-service$/.exec(route)
    switch (true) {
      case route === 'GET /ping': {
        response.writeHead(200, {'content-type': 'text/plain'}).end('OK')
        return
      }

      case route === 'GET /v1/device': {
        sendJson(response, 200, handlers.device())
        return
      }

      case route === 'GET /v2/applications/state': {
        sendJson(response, 200, handlers.applicationsState())
        return
      }

      case route === 'GET /v2/state/status': {
        sendJson(response, 200, {status: 'success', ...handlers.stateStatus()})
        return
      }

      case route === 'GET /v2/version': {
        sendJson(response, 200, {status: 'success', version: handlers.version})
        return
      }

      case route === 'POST /v1/update': {
        const body = await readJsonBody(request)
        handlers.update(isTrue(body.force))
        response.writeHead(204).end()
        return
      }

      case route === 'POST /v1/blink': {
        handlers.blink()
        response.writeHead(200, {'content-type': 'text/plain'}).end('OK')
        return
      }

      case route === 'POST /v1/restart': {
        await handlers.restartApp(appIdOf((await readJsonBody(request)).appId))
        response.writeHead(200, {'content-type': 'text/plain'}).end('OK')
        return
      }

      // balena's supervisor answers these with its v1 shape.
      case route === 'POST /v1/purge': {
        const body = await readJsonBody(request)
        await handlers.purge(appIdOf(body.appId), isTrue(body.force))
        sendJson(response, 200, {Data: 'OK', Error: ''})
        return
      }

      case route === 'POST /v1/reboot':
      case route === 'POST /v1/shutdown': {
        const force = isTrue((await readJsonBody(request)).force)
        await (route === 'POST /v1/reboot' ? handlers.reboot(force) : handlers.shutdown(force))
        sendJson(response, 202, {Data: 'OK', Error: null})
        return
      }

      case restartService !== null: {
        const body = await readJsonBody(request)
        if (typeof body.serviceName !== 'string') throw new HttpProblem(400, 'serviceName is required')
        await handlers.restartService(appIdOf(restartService?.[1]), body.serviceName)
        response.writeHead(200, {'content-type': 'text/plain'}).end('OK')
        return
      }

      case route === 'GET /v2/local/logs': {
        response.writeHead(200, {'content-type': 'application/x-ndjson'})
        response.write(`${JSON.stringify({message: 'Streaming logs', isSystem: true})}\n`)
        const unsubscribe = handlers.subscribeLogs((line) => response.write(`${JSON.stringify(line)}\n`))
        response.once('close', unsubscribe)
        return
      }

      default: {
        throw new HttpProblem(404, `no route ${route}`)
      }
    }
  }

  return {
    port: await listen(server, options.port ?? 48484, options.host ?? '127.0.0.1'),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  }
}
