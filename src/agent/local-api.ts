import {spawn} from 'node:child_process'
import {createHash, randomBytes, timingSafeEqual} from 'node:crypto'
import {readFile, writeFile} from 'node:fs/promises'
import {createServer, type IncomingMessage, type Server, type ServerResponse} from 'node:http'
import path from 'node:path'
import type {Readable} from 'node:stream'

import type Docker from 'dockerode'

import {listen} from '../listen.js'
import type {LocalLogLine} from '../protocol/log-line.js'

export type ServiceAction = 'restart-service' | 'stop-service' | 'start-service'

/** Which service of an app a v2 service action names: by name, or by the image it runs. */
export interface ServiceSelector {
  serviceName?: string
  imageId?: number
}

/** A single-container app as the v1 endpoints describe it. */
export interface V1App {
  appId: number
  commit?: string
  containerId?: string
  env: Record<string, string>
  imageId: number
  releaseId?: number
  serviceName: string
}

/** What the local API asks of the running agent; each answer is computed when asked. */
export interface LocalApiHandlers {
  version: string
  /** The agent's loop runs as it should (balena's watchdog asks `/v1/healthy`). */
  healthy(): boolean
  device(): Record<string, unknown>
  /** The app's single service; throws an error with `statusCode` 404 (no such app) or 400 (more than one service). */
  app(appId: number): V1App
  applicationsState(): Record<string, unknown>
  stateStatus(): Record<string, unknown>
  deviceName(): string
  deviceTags(): Promise<Array<{id: number; name: string; value: string}>>
  subscribeLogs(listener: (line: LocalLogLine) => void): () => void
  /** An "update now": fetch the target at once (and ignore update locks when forced). */
  update(force: boolean): void
  restartApp(appId: number): Promise<void>
  /** Restarts, stops or starts one service, as the server's device action of the same name does. */
  serviceAction(action: ServiceAction, appId: number, service: ServiceSelector): Promise<void>
  /** Removes the app's containers and named volumes and lets them be made afresh; rejects while the app's update lock is held, unless forced. */
  purge(appId: number, force: boolean): Promise<void>
  /** Removes the named volumes of apps the device no longer runs. */
  cleanupVolumes(): Promise<void>
  /** Stops the services and runs the host's reboot (power-off) command; rejects while an update lock is held, unless forced. */
  reboot(force: boolean): Promise<void>
  shutdown(force: boolean): Promise<void>
  /** Identifies the device (balena blinks its LED). */
  blink(): void
  /** The host journal's output for journalctl's arguments (default: journalctl run by the agent). */
  journal?(args: string[]): Readable
}

export interface LocalApi {
  port: number
  /** Also serves on `host` (the supervisor network's gateway), on the same port and with the same key; once per host. */
  listenAlso(host: string): Promise<void>
  close(): Promise<void>
}

class HttpProblem extends Error {
  constructor(readonly status: number, message: string) {
    super(message)
  }
}

const MAX_BODY_BYTES = 64 * 1024
const API_KEY_FILE = 'supervisor-api-key'

/**
 * The key services present to the local API (`BALENA_SUPERVISOR_API_KEY`), made once and kept in the data dir,
 * readable by the agent's user only: a key that changed at each start would recreate every service using it.
 */
export async function loadLocalApiKey(dataDir: string): Promise<string> {
  const file = path.join(dataDir, API_KEY_FILE)
  const stored = (await readFile(file, 'utf8').catch(() => '')).trim()
  if (/^[\da-f]{32,}$/.test(stored)) return stored
  const key = randomBytes(24).toString('hex')
  await writeFile(file, `${key}\n`, {mode: 0o600})
  return key
}

/**
 * The engine network services with `io.balena.features.supervisor-api` join to reach the local API, as balena's
 * `supervisor0`: an internal bridge (it leads nowhere else), made when missing. Resolves with its gateway, the
 * host's address on it, where the local API then listens.
 */
export async function ensureSupervisorNetwork(docker: Docker, name: string): Promise<string> {
  const inspect = () => docker.getNetwork(name).inspect() as Promise<{IPAM?: {Config?: Array<{Gateway?: string}>}}>
  const missing = (error: unknown) => {
    if ((error as {statusCode?: number}).statusCode !== 404) throw error
    return undefined
  }

  let network = await inspect().catch(missing)
  if (!network) {
    await docker.createNetwork({Name: name, Driver: 'bridge', Internal: true, CheckDuplicate: true, Labels: {'io.flotilla.supervisor-network': 'true'}}).catch((error: unknown) => {
      // Another agent made it meanwhile.
      if ((error as {statusCode?: number}).statusCode !== 409) throw error
    })
    network = await inspect()
  }

  const gateway = network.IPAM?.Config?.find((config) => config.Gateway)?.Gateway
  if (!gateway) throw new Error(`the engine network ${name} has no gateway address for the local API to listen on`)
  return gateway
}

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

function sendText(response: ServerResponse, status: number, text: string): void {
  response.writeHead(status, {'content-type': 'text/plain'}).end(text)
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

function serviceSelectorOf(body: Record<string, unknown>): ServiceSelector {
  if (typeof body.serviceName === 'string' && body.serviceName) return {serviceName: body.serviceName}
  const imageId = Number(body.imageId)
  if (body.imageId !== undefined && Number.isInteger(imageId) && imageId > 0) return {imageId}
  throw new HttpProblem(400, 'serviceName or imageId is required')
}

const sha256 = (text: string) => createHash('sha256').update(text).digest()

/** The key a request carries: `?apikey=`, or `Authorization: Bearer <key>`, as balena's supervisor takes it. */
function presentedKey(request: IncomingMessage, url: URL): string | undefined {
  const header = /^Bearer\s+(\S+)$/i.exec(request.headers.authorization ?? '')?.[1]
  return header ?? url.searchParams.get('apikey') ?? undefined
}

const JOURNAL_FORMATS = new Set(['short', 'short-iso', 'short-iso-precise', 'short-precise', 'short-monotonic', 'short-unix', 'verbose', 'export', 'json', 'json-pretty', 'json-sse', 'json-seq', 'cat', 'with-unit'])

/** journalctl's arguments for `POST /v2/journal-logs`, each value passed as `--option=value` so none reads as an option. */
export function journalArgsOf(body: Record<string, unknown>): string[] {
  const args = ['--no-pager']
  if (isTrue(body.all)) args.push('--all')
  if (isTrue(body.follow)) args.push('--follow')
  const text = (key: string) => {
    const value = body[key]
    if (value === undefined) return undefined
    if (typeof value !== 'string' || !value || /[\n\0]/.test(value)) throw new HttpProblem(400, `${key} must be a non-empty string`)
    return value
  }

  if (body.count !== undefined) {
    const count = Number(body.count)
    if (!Number.isInteger(count) || count <= 0) throw new HttpProblem(400, 'count must be a positive integer')
    args.push(`--lines=${count}`)
  }

  const unit = text('unit')
  if (unit) args.push(`--unit=${unit}`)
  const containerId = text('containerId')
  if (containerId) {
    if (!/^[\da-f]{12,64}$/.test(containerId)) throw new HttpProblem(400, 'containerId must be a container id')
    args.push(`CONTAINER_ID${containerId.length === 64 ? '_FULL' : ''}=${containerId}`)
  }

  const format = text('format') ?? 'short'
  if (!JOURNAL_FORMATS.has(format)) throw new HttpProblem(400, `format must be one of ${[...JOURNAL_FORMATS].join(', ')}`)
  args.push(`--output=${format}`)
  const since = text('since')
  if (since) args.push(`--since=${since}`)
  const until = text('until')
  if (until) args.push(`--until=${until}`)
  return args
}

function spawnJournal(args: string[]): Readable {
  const child = spawn('journalctl', args, {stdio: ['ignore', 'pipe', 'ignore']})
  child.once('error', (error) => child.stdout.destroy(error))
  return child.stdout
}

type Route = (match: RegExpExecArray, request: IncomingMessage, response: ServerResponse) => Promise<void> | void

/** The routes balena's supervisor serves that flotilla's agent serves too, with the answers of balena's. */
function routesOf(handlers: LocalApiHandlers): Array<[RegExp, Route]> {
  const body = readJsonBody
  const ok = (response: ServerResponse) => sendText(response, 200, 'OK')
  const serviceRoute = (action: ServiceAction): Route => async (match, request, response) => {
    await handlers.serviceAction(action, appIdOf(match[1]), serviceSelectorOf(await body(request)))
    ok(response)
  }

  const v1AppRoute = (action: 'stop-service' | 'start-service'): Route => async (match, request, response) => {
    const app = handlers.app(appIdOf(match[1]))
    await body(request)
    await handlers.serviceAction(action, app.appId, {serviceName: app.serviceName})
    sendJson(response, 200, {containerId: app.containerId})
  }

  return [
    [/^GET \/v1\/healthy$/, (_match, _request, response) => (handlers.healthy() ? ok(response) : sendText(response, 500, 'Unhealthy'))],
    [/^GET \/v1\/device$/, (_match, _request, response) => sendJson(response, 200, handlers.device())],
    [/^GET \/v1\/apps\/([^/]+)$/, (match, _request, response) => sendJson(response, 200, handlers.app(appIdOf(match[1])))],
    [/^POST \/v1\/apps\/([^/]+)\/stop$/, v1AppRoute('stop-service')],
    [/^POST \/v1\/apps\/([^/]+)\/start$/, v1AppRoute('start-service')],
    [/^POST \/v1\/update$/, async (_match, request, response) => {
      handlers.update(isTrue((await body(request)).force))
      response.writeHead(204).end()
    }],
    [/^POST \/v1\/blink$/, (_match, _request, response) => {
      handlers.blink()
      ok(response)
    }],
    [/^POST \/v1\/restart$/, async (_match, request, response) => {
      await handlers.restartApp(appIdOf((await body(request)).appId))
      ok(response)
    }],
    [/^POST \/v1\/purge$/, async (_match, request, response) => {
      const {appId, force} = await body(request)
      await handlers.purge(appIdOf(appId), isTrue(force))
      sendJson(response, 200, {Data: 'OK', Error: ''})
    }],
    [/^POST \/v1\/(reboot|shutdown)$/, async (match, request, response) => {
      const force = isTrue((await body(request)).force)
      await (match[1] === 'reboot' ? handlers.reboot(force) : handlers.shutdown(force))
      sendJson(response, 202, {Data: 'OK', Error: null})
    }],
    [/^POST \/v2\/applications\/([^/]+)\/restart$/, async (match, request, response) => {
      await body(request)
      await handlers.restartApp(appIdOf(match[1]))
      ok(response)
    }],
    [/^POST \/v2\/applications\/([^/]+)\/purge$/, async (match, request, response) => {
      await handlers.purge(appIdOf(match[1]), isTrue((await body(request)).force))
      ok(response)
    }],
    [/^POST \/v2\/applications\/([^/]+)\/restart-service$/, serviceRoute('restart-service')],
    [/^POST \/v2\/applications\/([^/]+)\/stop-service$/, serviceRoute('stop-service')],
    [/^POST \/v2\/applications\/([^/]+)\/start-service$/, serviceRoute('start-service')],
    [/^GET \/v2\/applications\/state$/, (_match, _request, response) => sendJson(response, 200, handlers.applicationsState())],
    [/^GET \/v2\/state\/status$/, (_match, _request, response) => sendJson(response, 200, {status: 'success', ...handlers.stateStatus()})],
    [/^GET \/v2\/device\/name$/, (_match, _request, response) => sendJson(response, 200, {status: 'success', deviceName: handlers.deviceName()})],
    [/^GET \/v2\/device\/tags$/, async (_match, _request, response) => sendJson(response, 200, {status: 'success', tags: await handlers.deviceTags()})],
    [/^GET \/v2\/version$/, (_match, _request, response) => sendJson(response, 200, {status: 'success', version: handlers.version})],
    [/^GET \/v2\/cleanup-volumes$/, async (_match, _request, response) => {
      await handlers.cleanupVolumes()
      sendJson(response, 200, {status: 'success'})
    }],
    [/^GET \/v2\/local\/logs$/, (_match, _request, response) => {
      response.writeHead(200, {'content-type': 'application/x-ndjson'})
      response.write(`${JSON.stringify({message: 'Streaming logs', isSystem: true})}\n`)
      const unsubscribe = handlers.subscribeLogs((line) => response.write(`${JSON.stringify(line)}\n`))
      response.once('close', unsubscribe)
    }],
    [/^POST \/v2\/journal-logs$/, async (_match, request, response) => streamJournal(handlers, journalArgsOf(await body(request)), response)],
  ]
}

/** journalctl's output as it comes; a host without journalctl is answered 503 before anything is sent. */
async function streamJournal(handlers: LocalApiHandlers, args: string[], response: ServerResponse): Promise<void> {
  const output = (handlers.journal ?? spawnJournal)(args)
  // Waits for the first output (or its end) without taking it, so a journalctl that cannot start is answered 503.
  const failure = await new Promise<Error | undefined>((resolve) => {
    const ready = () => {
      output.off('error', resolve)
      resolve(undefined)
    }

    output.once('readable', ready)
    output.once('error', (error: Error) => {
      output.off('readable', ready)
      resolve(error)
    })
  })
  if (failure) {
    output.destroy()
    throw new HttpProblem(503, `cannot read the host's journal: ${failure.message}`)
  }

  response.writeHead(200, {'content-type': 'text/plain'})
  output.on('error', () => response.destroy())
  output.pipe(response)
  response.once('close', () => output.destroy())
}

/**
 * The local supervisor API (port 48484 by default), the subset that balena's tools and the services themselves
 * (through BALENA_SUPERVISOR_ADDRESS) use. Every route but `/ping` asks for the API key; it listens on loopback,
 * and on the supervisor network's gateway once a service needs it (`listenAlso`).
 */
export async function startLocalApi(options: {port?: number; host?: string; apiKey: string; handlers: LocalApiHandlers}): Promise<LocalApi> {
  const routes = routesOf(options.handlers)
  const expectedKey = sha256(options.apiKey)
  const onRequest = (request: IncomingMessage, response: ServerResponse) => {
    handle(request, response).catch((error: unknown) => {
      if (response.headersSent) {
        response.destroy()
        return
      }

      if (error instanceof HttpProblem) sendJson(response, error.status, {status: 'failed', message: error.message})
      else sendJson(response, statusOf(error), {status: 'failed', message: (error as Error).message})
    })
  }

  async function handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const url = new URL(request.url ?? '/', 'http://localhost')
    const route = `${request.method} ${url.pathname.replace(/\/+$/, '') || '/'}`
    if (route === 'GET /ping') return sendText(response, 200, 'OK')
    const key = presentedKey(request, url)
    // Compared as digests: the same length whatever was sent, in constant time.
    if (key === undefined || !timingSafeEqual(sha256(key), expectedKey)) return sendText(response, 401, 'Unauthorized')
    for (const [pattern, run] of routes) {
      const match = pattern.exec(route)
      if (match) return run(match, request, response)
    }

    throw new HttpProblem(404, `no route ${route}`)
  }

  const servers: Server[] = [createServer(onRequest)]
  const port = await listen(servers[0], options.port ?? 48484, options.host ?? '127.0.0.1')
  const hosts = new Map<string, Promise<void>>()
  return {
    port,
    listenAlso(host) {
      let listening = hosts.get(host)
      if (!listening) {
        const server = createServer(onRequest)
        listening = listen(server, port, host).then(() => void servers.push(server))
        listening.catch(() => hosts.delete(host))
        hosts.set(host, listening)
      }

      return listening
    },
    close: async () => {
      await Promise.all(servers.map((server) => new Promise<void>((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      })))
    },
  }
}
