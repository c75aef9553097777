import type {IncomingMessage} from 'node:http'
import {hostname} from 'node:os'
import type {Duplex} from 'node:stream'
import path from 'node:path'

import type Docker from 'dockerode'
import Fastify, {type FastifyError, type FastifyInstance, LogController} from 'fastify'

import {ExpectedError} from '../errors.js'
import {ApiKeyCache} from './auth/api-key-cache.js'
import type {ClusterBus} from './cluster/bus.js'
import {openClusterBus} from './cluster/open.js'
import {DevicesWrittenBatcher, shareStateAcrossInstances} from './cluster/shared-state.js'
import {LoginRateLimiter} from './auth/rate-limit.js'
import {loadSigningSecret} from './auth/tokens.js'
import {type AdminSettings, type CreatedAdmin, ensureAdmin} from './bootstrap.js'
import type {ServerContext} from './context.js'
import {databaseLocation, type Db, openDatabase} from './db/database.js'
import {Heartbeats} from './heartbeats.js'
import {diskFull, HttpError, isDiskFullError, isInvalidValueError} from './http-errors.js'
import {registerApiKeyRoutes} from './routes/api-keys.js'
import {registerAuthRoutes} from './routes/auth.js'
import {DeviceActionQueue} from './device-actions.js'
import {DeviceLogStore} from './device-logs.js'
import {type BuilderSettings, registerBuildRoutes} from './routes/build.js'
import {registerDashboardRoutes} from './routes/dashboard.js'
import {DEFAULT_LOG_HEARTBEAT_MS, registerDeviceLogRoutes} from './routes/device-logs.js'
import {registerDeviceRegistrationRoute} from './routes/device-register.js'
import {DEFAULT_HEARTBEAT_TIMEOUT_MS, registerDeviceStateRoutes} from './routes/device-state.js'
import {registerDiscoveryRoutes} from './routes/discovery.js'
import {registerDownloadConfigRoute} from './routes/download-config.js'
import {registerOsDownloadRoute} from './routes/os-download.js'
import {registerPineRoutes} from './routes/pine.js'
import {registerRegistryTokenRoute} from './routes/registry-token.js'
import {registerReleaseAssetRoutes} from './routes/release-assets.js'
import {registerFleetRestartRoute, registerSupervisorRoute} from './routes/supervisor.js'
import {DeviceLinks} from './gateway/device-links.js'
import type {DeviceAction} from '../protocol/device-action.js'
import {publicHostKeyOf} from '../protocol/host-key.js'
import {InstanceRegistry} from './gateway/instance-registry.js'
import {INTERNAL_CHANNEL_PATH, internalChannelKey, internalChannelServer, type InternalChannelSettings, remoteLinks} from './gateway/internal-channel.js'
import {createSshGateway, loadGatewayHostKey} from './gateway/ssh-server.js'
import {serveTunnels} from './gateway/tunnel-proxy.js'
import {serveWebTerminals} from './gateway/web-terminal.js'
import {WEB_TERMINAL_PATH} from '../protocol/web-terminal.js'
import {startManagedRegistry} from './registry/managed-registry.js'
import type {RegistryProcess} from './registry/registry-process.js'
import {loadRegistryTokenKey} from './registry/token-key.js'
import {BuildCredentials, type RegistryAuthority} from './registry/tokens.js'
import {TargetStates} from './target-states.js'

/**
 * The largest JSON (or text) request body any route takes; twice balena's API's 512 KB. Uploads that are streams
 * (builds, log streams) are not parsed whole and keep limits of their own.
 */
export const JSON_BODY_LIMIT_BYTES = 1024 * 1024

export interface ServerOptions {
  /** Where the database (unless `databaseUrl`) and the session secret live; without one the server keeps everything in memory. */
  dataDir?: string
  /** A PostgreSQL database (`postgres://…`) to use instead of SQLite in the data dir. */
  databaseUrl?: string
  host?: string
  /** 0 picks a free port. */
  port?: number
  /** The SSH gateway's port (devices' links and users' shells); 0 picks a free one. */
  sshPort?: number
  /** Pino log level; one debug line a request. Logs go to stderr so stdout stays for the command's output. */
  logger?: {level: 'silent' | 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace'}
  /**
   * `host:port` of an external Docker registry images are pushed to, configured to trust this server's tokens
   * (its `auth.token.rootcertbundle` is `<data dir>/registry-token.crt`); null or absent: none, unless managed.
   */
  registry?: string | null
  /** Run Debian's docker-registry for this server (token auth, storage in the data dir, a loopback port); needs a data dir. */
  manageRegistry?: boolean
  /** The Docker engine builds run on and the limits a build context must keep to. */
  builder?: Partial<BuilderSettings>
  admin?: AdminSettings
  version?: string
  /** A device that has not reported its state for this long reads as offline. */
  deviceHeartbeatTimeoutMs?: number
  /** How often an idle log stream sends a bare newline. */
  logStreamHeartbeatMs?: number
  /** OS images to publish as hostApp releases and serve at /download: `<dir>/<device-type>/<version>/<image>`. */
  imagesDir?: string
  /**
   * The URL clients and devices reach the server at (`https://fleet.example.com`), put in the endpoints it hands
   * out; by default the listening URL (the machine's host name when listening on every address).
   */
  publicUrl?: string
  /**
   * The SSH port clients and devices reach the gateway at (a load balancer's), announced in the endpoints; by
   * default the one the gateway listens on.
   */
  publicSshPort?: number
  /**
   * The URL the other instances sharing the database reach this one's HTTP port at, for the internal channels
   * to devices linked here; by default the listening URL (the machine's host name when listening on every address).
   */
  internalUrl?: string
  /** Serve HTTPS (API, builder, tunnel proxy) with this certificate and key (PEM). */
  tls?: {cert: string | Buffer; key: string | Buffer}
}

export interface FlotillaServer {
  app: FastifyInstance
  db: Db
  /** The admin created on this first start, if any. */
  createdAdmin?: CreatedAdmin
  /** Starts listening; resolves to the base URL with the real port. */
  listen(): Promise<string>
  /** The bound address once listening, and the registry's (`host:port`) when there is one. */
  address(): {host: string; port: number; sshPort: number; registry: string | null}
  /** The URL the server tells clients and devices to reach it at (complete once listening). */
  publicUrl(): string
  close(): Promise<void>
}

/** What the routes reach beyond the context: the device links, and the device logs and actions shared across instances. */
interface InstanceParts {
  links: DeviceLinks
  deviceLogs: DeviceLogStore
  deviceActions: DeviceActionQueue
}

/** Every route of the server, registered in one place. */
function registerRoutes(app: FastifyInstance, context: ServerContext, options: ServerOptions, {links, deviceLogs, deviceActions}: InstanceParts): void {
  registerDiscoveryRoutes(app, context)
  registerRegistryTokenRoute(app, context)
  registerAuthRoutes(app, context)
  registerApiKeyRoutes(app, context)
  registerDeviceRegistrationRoute(app, context)
  const builder = registerBuildRoutes(app, context, {
    contentsFolder: options.dataDir && path.join(options.dataDir, 'build-contents'),
    ...options.builder,
    docker: options.builder?.docker ?? localDockerEngine(),
  })
  registerPineRoutes(app, context, {fleetsDeleted: (fleetIds) => builder.removeFleets(fleetIds)})
  registerReleaseAssetRoutes(app, context, options.dataDir && path.join(options.dataDir, 'release-assets'))
  registerDeviceStateRoutes(app, context, {
    actions: deviceActions,
    heartbeatTimeoutMs: options.deviceHeartbeatTimeoutMs ?? DEFAULT_HEARTBEAT_TIMEOUT_MS,
    linkedDeviceIds: () => links.linkedDeviceIds(),
  })
  app.addHook('onClose', async () => deviceLogs.flush())
  registerDeviceLogRoutes(app, context, {store: deviceLogs, heartbeatMs: options.logStreamHeartbeatMs ?? DEFAULT_LOG_HEARTBEAT_MS})
  registerDownloadConfigRoute(app, context)
  registerOsDownloadRoute(app, context, options.imagesDir)
  const deliverAction = async (deviceId: number, action: DeviceAction) => {
    if (!(await links.deliverAction(deviceId, action))) await deviceActions.enqueue(deviceId, action)
  }

  registerSupervisorRoute(app, context, deliverAction)
  registerFleetRestartRoute(app, context, deliverAction)
  registerDashboardRoutes(app)
}

type UpgradeHandler = (request: IncomingMessage, socket: Duplex, head: Buffer) => void

/** The HTTP port's connection upgrades, by path; any other is refused. */
function serveUpgrades(app: FastifyInstance, handlers: Record<string, UpgradeHandler>): void {
  app.server.on('upgrade', (request: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', () => {})
    const handler = handlers[request.url?.split('?')[0] ?? '']
    if (handler) handler(request, socket, head)
    else socket.end('HTTP/1.1 404 Not Found\r\nconnection: close\r\ncontent-length: 0\r\n\r\n')
  })
}

/**
 * Several servers on one database: this instance's row in the registry (listen() starts it), devices linked to
 * other instances reached through them, and the internal channels the others open to the devices linked here.
 */
function joinInstances(db: Db, secret: Uint8Array, links: DeviceLinks, log: (error: unknown, message: string) => void): {instances: InstanceRegistry; serveInternalChannel: UpgradeHandler} {
  const instances = new InstanceRegistry(db, {linkedDeviceIds: () => links.linkedDeviceIds(), onError: log})
  const key = internalChannelKey(secret)
  links.routeThrough(remoteLinks(instances, key))
  const openLocalChannel: InternalChannelSettings['openLocalChannel'] = (deviceId, kind, port) => links.openLocalChannel(deviceId, `device ${deviceId}`, kind, port)
  return {instances, serveInternalChannel: internalChannelServer({key, instanceId: instances.id, openLocalChannel, log})}
}

/** The local engine (DOCKER_HOST or its socket), connected on the first build: dockerode loads only then. */
function localDockerEngine(): BuilderSettings['docker'] {
  let engine: Promise<Docker> | undefined
  return () => {
    engine ??= import('dockerode').then(({default: Docker}) => new Docker())
    return engine
  }
}

function sendErrors(app: FastifyInstance): void {
  app.setNotFoundHandler(async (request, reply) => reply.code(404).type('application/json').send(JSON.stringify(`no such endpoint: ${request.method} ${request.url.split('?')[0]}`)))
  app.setErrorHandler(async (error: FastifyError | HttpError, request, reply) => {
    if (error instanceof HttpError) {
      reply.code(error.statusCode).headers(error.headers)
      if (error.headers['content-type']?.startsWith('text/plain')) return reply.send(error.message)
      if (error.message === '') return reply.send('')
      return reply.type('application/json').send(JSON.stringify(error.message))
    }

    if ((error as FastifyError).code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
      return reply.code(413).type('application/json').send(JSON.stringify(`the request body is larger than ${JSON_BODY_LIMIT_BYTES / 1024 / 1024} MiB, the most this server takes: send less`))
    }

    const status = (error as FastifyError).statusCode
    if (status && status >= 400 && status < 500) return reply.code(status).type('application/json').send(JSON.stringify(error.message))
    if (isInvalidValueError(error)) {
      return reply.code(400).type('application/json').send(JSON.stringify('a value does not fit its field: a number out of range, text where a number belongs, or a NUL character'))
    }

    if (isDiskFullError(error)) {
      request.log.error({err: error}, 'disk full: a write failed for want of space')
      const answer = diskFull()
      return reply.code(answer.statusCode).type('application/json').send(JSON.stringify(answer.message))
    }

    request.log.error({err: error}, 'request failed')
    return reply.code(500).type('application/json').send(JSON.stringify('Server error'))
  })
}

/** Whether a listening address means every address of the machine (then clients need another name for it). */
export function isWildcardAddress(host: string): boolean {
  return host === '0.0.0.0' || host === '::' || host === '[::]'
}

const urlHostOf = (host: string) => (host.includes(':') && !host.startsWith('[') ? `[${host}]` : host)

/** A public (or internal) URL as given: http(s), a host and maybe a port, nothing else; returned without a trailing slash. */
export function parsePublicUrl(text: string, name = 'public URL'): string {
  let url: URL
  try {
    url = new URL(text)
  } catch {
    throw new ExpectedError(`${name} "${text}" is not a URL — give one such as https://fleet.example.com or http://192.168.1.10:7171`)
  }

  if ((url.protocol !== 'http:' && url.protocol !== 'https:') || url.pathname !== '/' || url.search !== '' || url.hash !== '' || url.username !== '' || url.password !== '') {
    throw new ExpectedError(`${name} "${text}" must be http(s)://<host>[:<port>] with no path — such as https://fleet.example.com`)
  }

  return url.origin
}

/** The registry token key and build credentials when the server has a registry (its own or an external one). */
async function loadRegistryAuthority(db: Db, secret: Uint8Array, options: ServerOptions): Promise<RegistryAuthority | null> {
  if (options.manageRegistry && options.registry) throw new ExpectedError('a server runs its own registry or uses an external one, not both')
  if (options.manageRegistry && !options.dataDir) throw new ExpectedError('a server without a data dir cannot run a registry: it would have nowhere to store images')
  if (!options.manageRegistry && !options.registry) return null
  return {key: await loadRegistryTokenKey(db, options.dataDir), builds: new BuildCredentials(db, secret)}
}

/**
 * What one instance keeps in memory (caches, links, log followers, action collects), made to act with the other
 * instances of its database through the cluster bus.
 */
function instanceParts(db: Db, bus: ClusterBus, secret: Uint8Array, options: ServerOptions, log: (level: 'warn' | 'error') => (error: unknown, message: string) => void) {
  const devicesWritten = new DevicesWrittenBatcher((event) => bus.publish(event))
  const apiKeys = new ApiKeyCache(db, secret)
  const targetStates = new TargetStates(db)
  const heartbeats = new Heartbeats(db, {
    timeoutMs: options.deviceHeartbeatTimeoutMs ?? DEFAULT_HEARTBEAT_TIMEOUT_MS,
    onError: log('warn'),
    announce: (deviceId, reportDigest) => devicesWritten.add(deviceId, reportDigest),
  })
  const links = new DeviceLinks({db, targetStates, heartbeats, onError: log('warn')})
  const deviceLogs = new DeviceLogStore(db, {onStored: (deviceIds) => void bus.publish({type: 'logs', ids: deviceIds}), onError: log('warn')})
  const deviceActions = new DeviceActionQueue(db, (deviceId) => void bus.publish({type: 'actions', ids: [deviceId]}))
  const shared = shareStateAcrossInstances(bus, {targetStates, apiKeys, heartbeats, links, deviceLogs, deviceActions, onError: log('error')})
  return {apiKeys, targetStates, heartbeats, links, deviceLogs, deviceActions, shared}
}

/** The SSH gateway listening on `port` of `host`; the port bound. */
async function listenSsh(gateway: {listen(port: number, host: string): Promise<number>}, port: number, host: string): Promise<number> {
  try {
    return await gateway.listen(port, host)
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EADDRINUSE') throw new ExpectedError(`SSH port ${port} on ${host} is already in use — choose another with --ssh-port`)
    throw error
  }
}

/** Debian's docker-registry for a server started with `manageRegistry`, its address put in the context; else nothing. */
async function startOwnRegistry(options: ServerOptions, context: ServerContext, onUnexpectedExit: (reason: string) => void): Promise<RegistryProcess | undefined> {
  const certificateFile = context.registryAuthority?.key.certificateFile
  if (!options.manageRegistry || !options.dataDir || !certificateFile) return undefined
  const registry = await startManagedRegistry({dataDir: options.dataDir, realm: `${context.publicUrl}/auth/v1/token`, certificateFile, onUnexpectedExit})
  context.registry = registry.address
  return registry
}

/** Builds the fleet server over the database of its data dir: bootstrap, routes, error answers. Call listen() to serve. */
export async function createServer(options: ServerOptions = {}): Promise<FlotillaServer> {
  const publicUrl = options.publicUrl === undefined ? undefined : parsePublicUrl(options.publicUrl)
  const internalUrl = options.internalUrl === undefined ? undefined : parsePublicUrl(options.internalUrl, 'internal URL')
  const location = databaseLocation(options)
  // Told to the server's log once there is one (a checkpoint failing in the first moments leaves SQLite's own).
  let warnOfCheckpoints = (_message: string) => {}
  const db = await openDatabase(location, {checkpointsAside: {onError: (message) => warnOfCheckpoints(message)}})
  let bus: ClusterBus | undefined
  try {
    // Diagnostics go to the server's log, which exists by the time anything is published, received or polled.
    const log = (level: 'warn' | 'error') => (error: unknown, message: string) => app.log[level]({err: error}, isDiskFullError(error) ? `disk full: ${message}` : message)
    bus = await openClusterBus(db, location, log('warn'))
    const createdAdmin = await ensureAdmin(db, options.admin ?? {})
    const hostKey = await loadGatewayHostKey(db, options.dataDir)
    const secret = await loadSigningSecret(db, options.dataDir)
    const registryAuthority = await loadRegistryAuthority(db, secret, options)
    const {apiKeys, targetStates, heartbeats, links, deviceLogs, deviceActions, shared} = instanceParts(db, bus, secret, options, log)
    const {instances, serveInternalChannel} = joinInstances(db, secret, links, log('warn'))
    const context: ServerContext = {
      db,
      secret,
      loginLimiter: new LoginRateLimiter(db),
      registry: options.registry ?? null,
      registryAuthority,
      // Until listen() knows the port, when none was configured.
      publicUrl: publicUrl ?? 'http://127.0.0.1',
      sshPort: options.sshPort ?? 2222,
      publicSshPort: options.publicSshPort,
      instanceId: instances.id,
      sshHostKey: publicHostKeyOf(hostKey),
      version: options.version ?? '0.0.0',
      apiKeys,
      targetStates,
      heartbeats,
      // Here at once, and on every other instance of the database through the cluster bus.
      targetsMaybeChanged: shared.targetsMaybeChanged,
      keysMaybeRevoked: shared.keysMaybeRevoked,
    }
    const settings = {
      logger: {level: options.logger?.level ?? 'warn', stream: process.stderr},
      logController: new LogController({disableRequestLogging: true}),
      routerOptions: {maxParamLength: 8192},
      bodyLimit: JSON_BODY_LIMIT_BYTES,
    }
    // An HTTPS instance serves the same routes; only its server type differs.
    const app = options.tls ? (Fastify({...settings, https: options.tls}) as unknown as FastifyInstance) : Fastify(settings)
    warnOfCheckpoints = (message) => app.log.warn(message)
    // Only when asked for: a hook on every request costs every poll of every device.
    if (settings.logger.level === 'debug' || settings.logger.level === 'trace') {
      app.addHook('onResponse', async (request, reply) => {
        request.log.debug(`${request.method} ${request.url.split('?')[0]} ${reply.statusCode} ${reply.elapsedTime.toFixed(1)}ms`)
      })
    }
    sendErrors(app)
    const logError = (error: unknown, message: string) => app.log.error({err: error}, message)
    registerRoutes(app, context, options, {links, deviceLogs, deviceActions})
    serveTunnels(app.server, context, links, logError)
    const terminals = serveWebTerminals(context, links, logError)
    serveUpgrades(app, {[WEB_TERMINAL_PATH]: terminals.handleUpgrade, [INTERNAL_CHANNEL_PATH]: serveInternalChannel})
    const gateway = createSshGateway(context, links, hostKey, logError)
    let bound: {host: string; port: number; sshPort: number} | undefined
    let managedRegistry: RegistryProcess | undefined
    return {
      app,
      db,
      createdAdmin,
      async listen() {
        const host = options.host ?? '127.0.0.1'
        await app.listen({host, port: options.port ?? 7171})
        const address = app.server.address()
        if (!address || typeof address === 'string') throw new Error('the server is not bound to a TCP port')
        const scheme = options.tls ? 'https' : 'http'
        const listeningUrl = `${scheme}://${urlHostOf(isWildcardAddress(host) ? hostname() : host)}:${address.port}`
        // Before the first link: a link is recorded as this instance's.
        await instances.start(internalUrl ?? listeningUrl)
        context.sshPort = await listenSsh(gateway, context.sshPort, host)
        bound = {host, port: address.port, sshPort: context.sshPort}
        if (publicUrl === undefined) context.publicUrl = listeningUrl
        // Clients are sent to the token endpoint by the registry, so it starts once the server's URL is known.
        managedRegistry = await startOwnRegistry(options, context, (reason) => app.log.error(`the Docker registry stopped: ${reason}`))

        return `${scheme}://${urlHostOf(host)}:${address.port}`
      },
      address() {
        if (!bound) throw new Error('the server is not listening yet')
        return {...bound, registry: context.registry}
      },
      publicUrl: () => context.publicUrl,
      async close() {
        links.close()
        terminals.close()
        await gateway.close()
        await app.close()
        await instances.stop()
        await heartbeats.close()
        await managedRegistry?.stop()
        await bus?.close()
        await db.destroy()
      },
    }
  } catch (error) {
    await bus?.close()
    await db.destroy()
    throw error
  }
}
