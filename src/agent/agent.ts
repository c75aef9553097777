import {mkdir, readFile} from 'node:fs/promises'
import {uptime} from 'node:os'
import path from 'node:path'
import {fileURLToPath} from 'node:url'

import Docker from 'dockerode'

import {type ConfigJson, type RegisteredConfigJson} from '../protocol/config-json.js'
import {DEVICE_SSH_PORT} from '../protocol/device-link.js'
import {FleetClient} from '../sdk/client.js'
import {ActionDispatcher} from './action-dispatcher.js'
import {actionCollector, ActionListener} from './action-listener.js'
import {loadConfig, pollIntervalOf} from './config.js'
import {DeviceActions, runHostCommand} from './device-actions.js'
import {DeviceLink, discoverLinkEndpoint} from './device-link.js'
import {DeviceStateView} from './device-state-view.js'
import {DockerExecutor, type RegistryAuth} from './docker-executor.js'
import {ownContainerImage, runInHostContainer} from './host-container.js'
import {ensureSupervisorNetwork, type LocalApiHandlers, loadLocalApiKey, startLocalApi} from './local-api.js'
import {LogShipper, logStreamSender} from './log-shipper.js'
import {ensureRegistered, registerWithRetry} from './provisioning.js'
import {ReconcileLoop} from './reconcile-loop.js'
import {desiredAppsOf, type PlanOptions} from './reconciler.js'
import {directAccessOf, type ShellService, startShellService} from './shell-service.js'
import {SupervisorNetwork} from './supervisor-network.js'
import {buildStateReport, DeviceFactsCache, gatherDeviceFacts, StateReporter, stateReportSender} from './state-reporter.js'
import {fetchTargetState, TargetPoller} from './target-poller.js'
import {TargetStore} from './target-store.js'
import {Wakeup} from './wakeup.js'

export interface AgentOptions {
  configPath: string
  dataDir: string
  /** Where the engine's host sees dataDir, when the agent runs in a container with it mounted elsewhere (default: dataDir). */
  hostDataDir?: string
  dockerOptions?: Docker.DockerOptions
  /** Every service runs with the host's network, whatever its composition says. */
  hostNetwork?: boolean
  /** Overrides config.json's appUpdatePollInterval. */
  pollIntervalMs?: number
  /** 0 picks a free port (tests); default config.json's listenPort, else 48484. */
  localApiPort?: number
  /**
   * The engine network services with io.balena.features.supervisor-api join to reach the local API at its gateway
   * (made, internal, when first needed; default balena's name, supervisor0).
   */
  supervisorNetwork?: string
  /** How often the engine is checked against the target even when nothing happened. */
  reconcileIntervalMs?: number
  /** At most one state report this often (default 10 s), however often the state changes. */
  reportIntervalMs?: number
  /** The pause after an image's download failed, doubled at each further failure up to 15 min (default 10 s). */
  pullRetryDelayMs?: number
  agentVersion?: string
  /** Registry credentials for an image; by default the device's own key for the config's registry. */
  registryAuth?: (image: string) => RegistryAuth | undefined
  /** The agent's own diagnostics (not device logs), for whoever runs it to print. */
  logger?: (message: string) => void
  /**
   * Where the shell service takes direct SSH logins (`ssh -p 22222 root@<device>`, keys from config.json's
   * os.sshKeys); port 0 picks a free one. Default: 0.0.0.0:22222 on a development device (config.json's
   * developmentMode), else none; `false`: none.
   */
  sshListen?: {host: string; port: number} | false
  /**
   * What reboots and powers off the host, as a command line split into words as a shell would (run without
   * one): the agent runs on a host it does not own. Default `systemctl reboot` and `systemctl poweroff`.
   */
  rebootCommand?: string
  shutdownCommand?: string
}

export interface RunningAgent {
  localApiPort: number
  /** The key the local API asks for (BALENA_SUPERVISOR_API_KEY). */
  localApiKey: string
  /** The shell service's direct port, when it listens. */
  sshPort?: number
  /** The link to the server, which ssh and tunnels come through; it never comes up with a server that takes none. */
  link: {linked(): Promise<void>; readonly isLinked: boolean}
  /** Resolves with the device's uuid once it is registered. */
  registered: Promise<string>
  /** Fetches the target now ("update now"). */
  pollNow(): Promise<void>
  stop(): Promise<void>
}

async function packageVersion(): Promise<string> {
  for (let directory = path.dirname(fileURLToPath(import.meta.url)); directory !== path.dirname(directory); directory = path.dirname(directory)) {
    const text = await readFile(path.join(directory, 'package.json'), 'utf8').catch(() => undefined)
    if (!text) continue
    const manifest = JSON.parse(text) as {name?: string; version?: string}
    if (manifest.name === 'flotilla' && manifest.version) return manifest.version
  }

  return '0.0.0'
}

function defaultRegistryAuth(config: RegisteredConfigJson): (image: string) => RegistryAuth | undefined {
  return (image) => {
    const registry = config.registryEndpoint
    if (!registry || !image.startsWith(`${registry}/`)) return undefined
    return {username: `d_${config.uuid}`, password: config.deviceApiKey, serveraddress: registry}
  }
}

/**
 * The image of the agent's own container, when it runs in one: what must run on the host (a host session, a power
 * command) then runs in a sibling container of it. Found when first needed rather than at start, when the engine
 * may not answer yet; kept once the engine answered.
 */
function ownImageFinder(docker: Docker): () => Promise<string | undefined> {
  let ownImage: Promise<string | undefined> | undefined
  return () => {
    ownImage ??= ownContainerImage(docker).catch((error: unknown) => {
      ownImage = undefined
      throw error
    })
    return ownImage
  }
}

/** The parts that run once the device is registered: its API client, engine, and the channels from the server. */
interface RegisteredDevice {
  config: RegisteredConfigJson
  client: FleetClient
  executor: DockerExecutor
  reporter: StateReporter
  poller: TargetPoller
  actionListener: ActionListener
  link: DeviceLink
}

/** What changes while the agent runs: the device once registered, and whether it was told to stop. */
interface AgentRuntime {
  device?: RegisteredDevice
  stopped: boolean
}

/** What the composition root shares with the parts it wires. */
interface AgentParts {
  options: AgentOptions
  log: (message: string) => void
  dataDir: string
  agentVersion: string
  docker: Docker
  store: TargetStore
  shipper: LogShipper
  loop: ReconcileLoop
  dispatcher: ActionDispatcher
  shell: ShellService
}

/** Wires the device's parts once it is registered, and starts fetching its target, its actions and its link. */
async function connectDevice(config: RegisteredConfigJson, parts: AgentParts): Promise<RegisteredDevice> {
  const {options, log, dataDir, agentVersion, docker, store, shipper, loop, dispatcher, shell} = parts
  const client = new FleetClient({remote: config.apiEndpoint, token: config.deviceApiKey, clientName: `flotilla-agent/${agentVersion}`})
  const executor = new DockerExecutor({
    docker,
    deviceUuid: config.uuid,
    dataDir,
    hostDataDir: options.hostDataDir,
    registryAuth: options.registryAuth ?? defaultRegistryAuth(config),
    onSystemLog: (message, serviceId) => shipper.systemLine(message, serviceId),
    onDownloadProgress: (image, percent) => loop.noteDownloadProgress(image, percent),
  })
  const reporter = new StateReporter({send: stateReportSender(client), minIntervalMs: options.reportIntervalMs, onError: (error) => log(`state report failed: ${(error as Error).message}`)})
  const poll = pollIntervalOf(config, options.configPath)
  if (poll.raisedFrom !== undefined && options.pollIntervalMs === undefined) log(`appUpdatePollInterval ${poll.raisedFrom} ms is below the minimum: polling every ${poll.intervalMs} ms`)
  const poller = new TargetPoller({
    fetch: (etag) => fetchTargetState(client, config.uuid, etag),
    onTarget: async (target, etag) => {
      await store.save({target, etag, fetchedAt: new Date().toISOString()})
      loop.targetChanged()
    },
    onError: (error) => log(`target state poll failed: ${(error as Error).message}`),
    intervalMs: options.pollIntervalMs ?? poll.intervalMs,
    initialEtag: (await store.load())?.etag,
  })
  // A refused or failed action is already in the device's logs; the agent's own diagnostic says it too.
  const actionListener = new ActionListener({
    collect: actionCollector(client, config.uuid),
    onAction: (action) => dispatcher.performLogged(action),
    onError: (error) => log(`collecting device actions failed: ${(error as Error).message}`),
  })
  const link = new DeviceLink({
    uuid: config.uuid,
    deviceApiKey: config.deviceApiKey,
    dataDir,
    endpoint: () => discoverLinkEndpoint(config),
    shell,
    onUpdate: () => void poller.pollNow(),
    onAction: (action) => void dispatcher.performLogged(action),
    logger: log,
  })
  poller.start()
  actionListener.start()
  link.start()
  return {config, client, executor, reporter, poller, actionListener, link}
}

/** What the local supervisor API answers with: the state view, the dispatcher and the device's own data. */
function localApiHandlers(parts: AgentParts, view: DeviceStateView, deviceActions: DeviceActions, device: () => RegisteredDevice | undefined, healthy: () => boolean): LocalApiHandlers {
  const {loop, dispatcher, shipper} = parts
  return {
    version: parts.agentVersion,
    healthy,
    app: (appId) => view.app(appId),
    device: () => view.device(),
    applicationsState: () => view.applicationsState(),
    stateStatus: () => view.stateStatus(),
    deviceName: () => view.deviceName(),
    async deviceTags() {
      const client = device()?.client
      if (!client) throw new Error('the device is not registered yet')
      const tags = await client.pine.get<{id: number; tag_key: string; value: string}>('device_tag', {$select: ['id', 'tag_key', 'value'], $orderby: 'tag_key asc'})
      return tags.map((tag) => ({id: tag.id, name: tag.tag_key, value: tag.value}))
    },
    serviceAction: (action, appId, service) => dispatcher.perform({action, appId, ...service}),
    cleanupVolumes: () => dispatcher.cleanupVolumes(),
    subscribeLogs: (listener) => shipper.subscribe(listener),
    update(force) {
      loop.requestUpdate(force)
      void device()?.poller.pollNow()
    },
    restartApp: (appId) => dispatcher.restartApp(appId),
    blink: () => dispatcher.identify(),
    purge: (appId, force) => deviceActions.purge(appId, force),
    reboot: (force) => deviceActions.power('reboot', force),
    shutdown: (force) => deviceActions.power('shutdown', force),
  }
}

/** Device logs, kept in the data dir until the server stored them; sent once the device is registered. */
function logShipperOf(dataDir: string, runtime: AgentRuntime): LogShipper {
  return new LogShipper({
    journalPath: path.join(dataDir, 'logs.journal'),
    send: async (lines, batch) => {
      if (!runtime.device) throw new Error('not registered yet')
      await logStreamSender(runtime.device.client, runtime.device.config.uuid)(lines, batch)
    },
  })
}

/** What users ask of the device, from the server or the local API, carried out on what the reconcile loop last saw. */
function actionDispatcherOf(docker: Docker, deviceActions: DeviceActions, shipper: LogShipper, loop: ReconcileLoop, view: DeviceStateView, runtime: AgentRuntime, log: (message: string) => void): ActionDispatcher {
  return new ActionDispatcher({
    containers: () => loop.snapshot.current?.containers ?? [],
    restartContainer: async (id) => {
      await docker.getContainer(id).restart()
    },
    deviceActions,
    volumeCleaner: () => runtime.device?.executor,
    wantedAppIds: () => view.wantedAppIds(),
    systemLine: (message, serviceId) => shipper.systemLine(message, serviceId),
    log,
  })
}

/** Purge, reboot, shutdown, stop and start a service: what takes the engine from the reconcile loop. */
function deviceActionsOf(options: AgentOptions, docker: Docker, hostContainerImage: () => Promise<string | undefined>, shipper: LogShipper, loop: ReconcileLoop, runtime: AgentRuntime): DeviceActions {
  return new DeviceActions({
    engine: () => runtime.device?.executor,
    systemLine: (message, serviceId) => shipper.systemLine(message, serviceId),
    holdReconciler: () => loop.hold(),
    lockOverridden: () => loop.snapshot.target?.config.BALENA_SUPERVISOR_OVERRIDE_LOCK === '1',
    commands: {reboot: options.rebootCommand, shutdown: options.shutdownCommand},
    runCommand: async (words) => {
      const image = await hostContainerImage()
      return image ? runInHostContainer(docker, image, words, runtime.device?.config.uuid) : runHostCommand(words)
    },
    flushLogs: async () => {
      await shipper.flush()
      await shipper.flush()
    },
  })
}

/** Registers (retrying until it works or the agent stops), then wires the device's parts and starts the reconcile loop. */
async function registerAndConnect(config: ConfigJson, parts: AgentParts, runtime: AgentRuntime, retryWakeup: Wakeup, onRegistered: (uuid: string) => void): Promise<void> {
  const {options, agentVersion, log} = parts
  const registration = () => ensureRegistered(options.configPath, config, {supervisorVersion: agentVersion, clientName: `flotilla-agent/${agentVersion}`})
  const deviceConfig = await registerWithRetry(registration, {wait: (ms) => retryWakeup.wait(ms), stopped: () => runtime.stopped, log})
  if (!deviceConfig) return
  onRegistered(deviceConfig.uuid)
  if (runtime.stopped) return
  runtime.device = await connectDevice(deviceConfig, parts)
  parts.loop.start(runtime.device.executor)
}

/**
 * Runs the device agent: registers with the provisioning key when needed, polls the target state, keeps
 * the engine converged on the last target stored (also offline and across restarts), ships logs, reports
 * state and serves the local API, until `stop()`. This is the composition root: each part is made and wired here.
 */
export async function startAgent(options: AgentOptions): Promise<RunningAgent> {
  const log = options.logger ?? (() => {})
  const config: ConfigJson = await loadConfig(options.configPath)
  const dataDir = path.resolve(options.dataDir)
  await mkdir(dataDir, {recursive: true})
  const agentVersion = options.agentVersion ?? (await packageVersion())
  const docker = new Docker(options.dockerOptions)
  const store = new TargetStore(dataDir)
  const retryWakeup = new Wakeup()
  const runtime: AgentRuntime = {stopped: false}
  const shipper = logShipperOf(dataDir, runtime)
  const systemLine = (message: string, serviceId?: number) => shipper.systemLine(message, serviceId)
  const facts = new DeviceFactsCache(() => gatherDeviceFacts({dataDir, agentVersion, apiPort: localApi.port}))
  const supervisorNetwork = new SupervisorNetwork({
    name: options.supervisorNetwork ?? 'supervisor0',
    ensure: (name) => ensureSupervisorNetwork(docker, name),
    listenAlso: (host) => localApi.listenAlso(host),
    log,
  })
  const planOptions = (): PlanOptions => ({
    deviceUuid: runtime.device?.config.uuid ?? '',
    deviceType: runtime.device?.config.deviceType,
    hostNetwork: options.hostNetwork,
    lockDirOf: (appId) => runtime.device?.executor.hostLockDirOf(appId) ?? '',
    apiEndpoint: runtime.device?.config.apiEndpoint,
    deviceApiKey: runtime.device?.config.deviceApiKey,
    bootTime: Date.now() - uptime() * 1000,
    stoppedContainerIds: deviceActions.stoppedContainerIds(),
    // A port picked at random (0) is not worth a new container at each start: the address stays the configured one.
    supervisorAddress: `http://127.0.0.1:${options.localApiPort || config.listenPort || 48484}`,
    supervisorApi: {port: localApi.port, apiKey: localApiKey, network: supervisorNetwork.network},
  })
  const loop = new ReconcileLoop({
    store,
    logs: {systemLine, followContainer: (container) => void shipper.followContainer(docker, container)},
    planOptions,
    async prepare(target) {
      if (!options.hostNetwork) await supervisorNetwork.exposeFor(desiredAppsOf(target, planOptions()))
      await facts.refresh()
    },
    onProgress: (progress) => runtime.device?.reporter.update(buildStateReport({deviceUuid: runtime.device.config.uuid, facts: facts.current, ...progress})),
    intervalMs: options.reconcileIntervalMs,
    pullRetryDelayMs: options.pullRetryDelayMs,
    log,
  })
  const hostContainerImage = ownImageFinder(docker)
  const deviceActions = deviceActionsOf(options, docker, hostContainerImage, shipper, loop, runtime)
  const view = new DeviceStateView({snapshot: () => loop.snapshot, planOptions, deviceUuid: () => runtime.device?.config.uuid, agentVersion, apiPort: () => localApi.port, pullFailureCount: () => loop.pullFailures.size})
  const dispatcher = actionDispatcherOf(docker, deviceActions, shipper, loop, view, runtime, log)
  // Holds nothing open until it listens, so a failure of what follows leaves nothing behind.
  const shell = await startShellService({dataDir, docker, deviceUuid: () => runtime.device?.config.uuid, directAccess: async () => directAccessOf(await loadConfig(options.configPath)), hostShellImage: hostContainerImage})
  const parts: AgentParts = {options, log, dataDir, agentVersion, docker, store, shipper, loop, dispatcher, shell}
  const localApiKey = await loadLocalApiKey(dataDir)
  const localApi = await startLocalApi({port: options.localApiPort ?? config.listenPort ?? 48484, apiKey: localApiKey, handlers: localApiHandlers(parts, view, deviceActions, () => runtime.device, () => !runtime.stopped)})
  const sshListen = options.sshListen ?? (config.developmentMode ? {host: '0.0.0.0', port: DEVICE_SSH_PORT} : false)
  const sshPort = sshListen ? await shell.listen(sshListen.port, sshListen.host).catch(async (error: unknown) => {
    await shell.close()
    await localApi.close()
    throw error
  }) : undefined

  let resolveRegistered: (uuid: string) => void = () => {}
  const registered = new Promise<string>((resolve) => {
    resolveRegistered = resolve
  })
  const connected = registerAndConnect(config, parts, runtime, retryWakeup, resolveRegistered).catch((error: unknown) => log(`agent stopped: ${(error as Error).message}`))

  return {
    localApiPort: localApi.port,
    localApiKey,
    sshPort,
    link: {
      linked: async () => {
        await connected
        await runtime.device?.link.linked()
      },
      get isLinked() {
        return runtime.device?.link.isLinked ?? false
      },
    },
    registered,
    pollNow: async () => runtime.device?.poller.pollNow(),
    async stop() {
      runtime.stopped = true
      retryWakeup.wake()
      await connected
      runtime.device?.poller.stop()
      await runtime.device?.actionListener.stop()
      await loop.stop()
      await runtime.device?.link.stop()
      await shell.close()
      runtime.device?.reporter.stop()
      await runtime.device?.reporter.flush()
      await shipper.stop()
      await localApi.close()
    },
  }
}
