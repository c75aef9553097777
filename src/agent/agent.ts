import {mkdir, readFile} from 'node:fs/promises'
import {uptime} from 'node:os'
import path from 'node:path'
import {fileURLToPath} from 'node:url'

import Docker from 'dockerode'

import {type ConfigJson, type RegisteredConfigJson} from '../protocol/config-json.js'
import type {DeviceAction} from '../protocol/device-action.js'
import {DEVICE_SSH_PORT} from '../protocol/device-link.js'
import type {TargetDevice} from '../protocol/target-state.js'
import {FleetClient} from '../sdk/client.js'
import {actionCollector, ActionListener} from './action-listener.js'
import {loadConfig, pollIntervalOf} from './config.js'
import {DeviceLink, discoverLinkEndpoint} from './device-link.js'
import {DeviceActions, runHostCommand} from './device-actions.js'
import {DockerExecutor, type RegistryAuth} from './docker-executor.js'
import {ownContainerImage, runInHostContainer} from './host-container.js'
import {ensureSupervisorNetwork, loadLocalApiKey, startLocalApi} from './local-api.js'
import {LogShipper, logStreamSender} from './log-shipper.js'
import {PullBackoff, PullDeferredError} from './pull-backoff.js'
import {ensureRegistered} from './provisioning.js'
import {converge, type CurrentState, desiredAppsOf, LABELS, type Plan, type PlanOptions, refusalLine, stepFailureLine} from './reconciler.js'
import {directAccessOf, startShellService} from './shell-service.js'
import {buildStateReport, type DeviceFacts, gatherDeviceFacts, StateReporter, stateReportSender} from './state-reporter.js'
import {TargetPoller, fetchTargetState} from './target-poller.js'
import {TargetStore} from './target-store.js'

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

const FACTS_REFRESH_MS = 5 * 60_000

async function packageVersion(): Promise<string> {
  for (let directory = path.dirname(fileURLToPath(import.meta.url)); directory !== path.dirname(directory); directory = path.dirname(directory)) {
    const text = await readFile(path.join(directory, 'package.json'), 'utf8').catch(() => undefined)
    if (!text) continue
    const manifest = JSON.parse(text) as {name?: string; version?: string}
    if (manifest.name === 'flotilla' && manifest.version) return manifest.version
  }

  return '0.0.0'
}

/** A sleep that `wake()` cuts short; a wake while nobody sleeps cuts the next sleep, so no trigger is lost. */
class Wakeup {
  private resolve?: () => void
  private woken = false

  wait(ms: number): Promise<void> {
    if (this.woken) {
      this.woken = false
      return Promise.resolve()
    }

    return new Promise((resolve) => {
      const timer = setTimeout(() => this.wake(), ms)
      this.resolve = () => {
        clearTimeout(timer)
        resolve()
      }
    })
  }

  wake(): void {
    const resolve = this.resolve
    this.resolve = undefined
    if (resolve) {
      this.woken = false
      resolve()
    } else {
      this.woken = true
    }
  }
}

interface Snapshot {
  current?: CurrentState
  plan?: Plan
  target?: TargetDevice
  commitOf: Map<number, string | undefined>
}

function defaultRegistryAuth(config: RegisteredConfigJson): (image: string) => RegistryAuth | undefined {
  return (image) => {
    const registry = config.registryEndpoint
    if (!registry || !image.startsWith(`${registry}/`)) return undefined
    return {username: `d_${config.uuid}`, password: config.deviceApiKey, serveraddress: registry}
  }
}

/**
 * Runs the device agent: registers with the provisioning key when needed, polls the target state, keeps
 * the engine converged on the last target stored (also offline and across restarts), ships logs, reports
 * state and serves the local API, until `stop()`.
 */
export async function startAgent(options: AgentOptions): Promise<RunningAgent> {
  const log = options.logger ?? (() => {})
  const config: ConfigJson = await loadConfig(options.configPath)
  const dataDir = path.resolve(options.dataDir)
  await mkdir(dataDir, {recursive: true})
  const agentVersion = options.agentVersion ?? (await packageVersion())
  const docker = new Docker(options.dockerOptions)
  const store = new TargetStore(dataDir)
  const reconcileWakeup = new Wakeup()
  const retryWakeup = new Wakeup()
  const snapshot: Snapshot = {commitOf: new Map()}
  let stopped = false
  let forceNextUpdate = false
  let client: FleetClient | undefined
  let poller: TargetPoller | undefined
  let actionListener: ActionListener | undefined
  let reporter: StateReporter | undefined
  let unwatchEvents: (() => void) | undefined
  let deviceUuid: string | undefined
  let link: DeviceLink | undefined
  let registered: RegisteredConfigJson | undefined
  let executor: DockerExecutor | undefined
  let pulls: PullBackoff | undefined

  const shipper = new LogShipper({
    journalPath: path.join(dataDir, 'logs.journal'),
    send: async (lines) => {
      if (!client || !deviceUuid) throw new Error('not registered yet')
      await logStreamSender(client, deviceUuid)(lines)
    },
  })

  const restartContainers = async (appId: number, serviceName?: string) => {
    const containers = (snapshot.current?.containers ?? []).filter((container) => container.appId === appId && (!serviceName || container.serviceName === serviceName))
    for (const container of containers) {
      shipper.systemLine(`Restarting service '${container.serviceName} ${container.image}'`, container.serviceId)
      await docker.getContainer(container.id).restart()
    }
  }

  // Purge, reboot and shutdown take the engine from the reconcile loop: they hold it, and wait for a round to end.
  let reconcileHolds = 0
  let reconciling: Promise<void> = Promise.resolve()
  let abortReconcile: AbortController | undefined
  const holdReconciler = async (): Promise<() => void> => {
    reconcileHolds++
    abortReconcile?.abort()
    await reconciling
    let released = false
    return () => {
      if (released) return
      released = true
      reconcileHolds--
      reconcileWakeup.wake()
    }
  }

  // What must run on the host (a host session, a power command) runs in a sibling container when the agent runs in
  // a container of the engine. Found when first needed rather than now, when the engine may not answer yet; kept
  // once the engine answered.
  let ownImage: Promise<string | undefined> | undefined
  const hostContainerImage = () => {
    ownImage ??= ownContainerImage(docker).catch((error: unknown) => {
      ownImage = undefined
      throw error
    })
    return ownImage
  }

  const deviceActions = new DeviceActions({
    engine: () => executor,
    systemLine: (message, serviceId) => shipper.systemLine(message, serviceId),
    holdReconciler,
    lockOverridden: () => snapshot.target?.config.BALENA_SUPERVISOR_OVERRIDE_LOCK === '1',
    commands: {reboot: options.rebootCommand, shutdown: options.shutdownCommand},
    runCommand: async (words) => {
      const image = await hostContainerImage()
      return image ? runInHostContainer(docker, image, words, deviceUuid) : runHostCommand(words)
    },
    flushLogs: async () => {
      await shipper.flush()
      await shipper.flush()
    },
  })

  const performOneAction = async (action: DeviceAction) => {
    switch (action.action) {
      case 'restart': {
        return restartContainers(action.appId)
      }

      case 'restart-service': {
        const serviceName = action.serviceName ?? snapshot.current?.containers.find((container) => container.imageId === action.imageId)?.serviceName
        if (serviceName) return restartContainers(action.appId, serviceName)
        shipper.systemLine(`No running service to restart for image ${action.imageId}`)
        return
      }

      case 'stop-service': {
        return deviceActions.stopService(action)
      }

      case 'start-service': {
        return deviceActions.startService(action)
      }

      case 'purge': {
        return deviceActions.purge(action.appId, action.force === true)
      }

      case 'reboot':
      case 'shutdown': {
        return deviceActions.power(action.action, action.force === true)
      }

      case 'blink': {
        return identify()
      }

      default: {
        shipper.systemLine(`This agent does not support the '${(action as {action: string}).action}' action`)
      }
    }
  }

  // One action at a time, in the order they came (link, collect or local API): a stop-service sent while a restart
  // still stops the service is not undone by the restart's start.
  let actionsDone: Promise<unknown> = Promise.resolve()
  const performAction = (action: DeviceAction): Promise<void> => {
    const done = actionsDone.then(() => performOneAction(action))
    actionsDone = done.catch(() => {})
    return done
  }

  // balena's supervisor blinks the board's LED; a host the agent does not own has none it may drive, so the
  // device says it in its logs, where whoever asked is looking.
  function identify(): void {
    shipper.systemLine('Identify requested: this is the device')
  }

  // Holds nothing open until it listens, so a failure of what follows leaves nothing behind.
  const shell = await startShellService({
    dataDir,
    docker,
    deviceUuid: () => deviceUuid,
    directAccess: async () => directAccessOf(await loadConfig(options.configPath)),
    hostShellImage: hostContainerImage,
  })
  const localApiKey = await loadLocalApiKey(dataDir)
  const localApi = await startLocalApi({
    port: options.localApiPort ?? config.listenPort ?? 48484,
    apiKey: localApiKey,
    handlers: {
      version: agentVersion,
      healthy: () => !stopped,
      app: (appId) => v1AppOf(appId),
      deviceName: () => snapshot.target?.name ?? '',
      deviceTags: async () => {
        if (!client) throw new Error('the device is not registered yet')
        const tags = await client.pine.get<{id: number; tag_key: string; value: string}>('device_tag', {$select: ['id', 'tag_key', 'value'], $orderby: 'tag_key asc'})
        return tags.map((tag) => ({id: tag.id, name: tag.tag_key, value: tag.value}))
      },
      serviceAction: (action, appId, service) => performAction({action, appId, ...service}),
      cleanupVolumes,
      device: () => {
        const updating = !snapshot.plan || snapshot.plan.steps.length > 0 || snapshot.plan.waitingForLock.length > 0
        return {
          api_port: localApi.port,
          supervisor_version: agentVersion,
          uuid: deviceUuid,
          commit: [...snapshot.commitOf.values()][0],
          status: updating ? 'Updating' : 'Idle',
          update_pending: updating,
          update_downloaded: snapshot.plan ? !snapshot.plan.steps.some((step) => step.action === 'fetch') : false,
          update_failed: (snapshot.plan?.refused.length ?? 0) > 0 || (pulls?.failures.size ?? 0) > 0,
          download_progress: null,
        }
      },
      applicationsState: () => {
        const result: Record<string, unknown> = {}
        if (!snapshot.target || !deviceUuid) return result
        for (const app of desiredAppsOf(snapshot.target, planOptions())) {
          const services: Record<string, unknown> = {}
          for (const service of app.services) {
            const container = snapshot.current?.containers.find((candidate) => candidate.name === service.spec.name)
            services[service.serviceName] = {status: container?.status ?? 'Downloading', releaseId: service.releaseId, downloadProgress: null}
          }

          result[app.name] = {appId: app.appId, commit: app.commit, services}
        }

        return result
      },
      stateStatus: () => ({
        appState: snapshot.plan && snapshot.plan.steps.length === 0 && snapshot.plan.waitingForLock.length === 0 ? 'applied' : 'applying',
        overallDownloadProgress: null,
        containers: (snapshot.current?.containers ?? []).map((container) => ({
          status: container.status,
          serviceName: container.serviceName,
          appId: container.appId,
          imageId: container.imageId,
          serviceId: container.serviceId,
          containerId: container.id,
          commit: container.commit,
        })),
        release: [...snapshot.commitOf.values()][0],
      }),
      subscribeLogs: (listener) => shipper.subscribe(listener),
      update: (force) => {
        forceNextUpdate ||= force
        pulls?.reset()
        void poller?.pollNow()
        reconcileWakeup.wake()
      },
      restartApp: (appId) => restartContainers(appId),
      blink: identify,
      purge: (appId, force) => deviceActions.purge(appId, force),
      reboot: (force) => deviceActions.power('reboot', force),
      shutdown: (force) => deviceActions.power('shutdown', force),
    },
  })

  const sshListen = options.sshListen ?? (config.developmentMode ? {host: '0.0.0.0', port: DEVICE_SSH_PORT} : false)
  let sshPort: number | undefined
  try {
    if (sshListen) sshPort = await shell.listen(sshListen.port, sshListen.host)
  } catch (error) {
    await shell.close()
    await localApi.close()
    throw error
  }

  const planOptions = (): PlanOptions => ({
    deviceUuid: registered?.uuid ?? '',
    deviceType: registered?.deviceType,
    hostNetwork: options.hostNetwork,
    lockDirOf: (appId) => executor?.hostLockDirOf(appId) ?? '',
    apiEndpoint: registered?.apiEndpoint,
    deviceApiKey: registered?.deviceApiKey,
    bootTime: Date.now() - uptime() * 1000,
    stoppedContainerIds: deviceActions.stoppedContainerIds(),
    // A port picked at random (0) is not worth a new container at each start: the address stays the configured one.
    supervisorAddress: `http://127.0.0.1:${options.localApiPort || config.listenPort || 48484}`,
    supervisorApi: {port: localApi.port, apiKey: localApiKey, network: supervisorNetwork},
  })

  // Made when a service first needs it, so an agent whose services do not use the API adds nothing to the engine.
  let supervisorNetwork: {name: string; gateway: string} | undefined
  async function exposeLocalApiTo(target: TargetDevice): Promise<void> {
    if (supervisorNetwork || options.hostNetwork) return
    const needed = desiredAppsOf(target, planOptions()).some((app) => app.services.some((service) => service.spec.environment.BALENA_SUPERVISOR_API_KEY && Object.keys(service.spec.networks).length > 0))
    if (!needed) return
    const name = options.supervisorNetwork ?? 'supervisor0'
    try {
      const gateway = await ensureSupervisorNetwork(docker, name)
      await localApi.listenAlso(gateway)
      supervisorNetwork = {name, gateway}
    } catch (error) {
      log(`the local API cannot be reached from the services' networks: ${(error as Error).message}`)
    }
  }

  function v1AppOf(appId: number) {
    const app = snapshot.target ? desiredAppsOf(snapshot.target, planOptions()).find((candidate) => candidate.appId === appId) : undefined
    if (!app) throw Object.assign(new Error(`app ${appId} is not on this device`), {statusCode: 404})
    if (app.services.length !== 1) throw Object.assign(new Error('this endpoint serves single-container apps only: use the v2 API'), {statusCode: 400})
    const [service] = app.services
    const container = snapshot.current?.containers.find((candidate) => candidate.appId === appId && candidate.serviceName === service.serviceName)
    return {appId, commit: app.commit, containerId: container?.id, env: service.spec.environment, imageId: service.imageId, releaseId: service.releaseId, serviceName: service.serviceName}
  }

  /** `GET /v2/cleanup-volumes`: the named volumes of apps the target no longer has (those in use stay). */
  async function cleanupVolumes(): Promise<void> {
    if (!deviceUuid) throw new Error('the device is not registered yet')
    const wanted = new Set(snapshot.target ? desiredAppsOf(snapshot.target, planOptions()).map((app) => app.appId) : [])
    const {Volumes: volumes} = await docker.listVolumes({filters: {label: [`${LABELS.supervised}=true`, `${LABELS.deviceUuid}=${deviceUuid}`]}})
    for (const volume of volumes ?? []) {
      if (wanted.has(Number(volume.Labels?.[LABELS.appId]))) continue
      try {
        await docker.getVolume(volume.Name).remove()
        shipper.systemLine(`Removed volume '${volume.Name}'`)
      } catch (error) {
        log(`volume ${volume.Name} kept: ${(error as Error).message}`)
      }
    }
  }

  async function register(): Promise<RegisteredConfigJson | undefined> {
    for (let failures = 0; !stopped; failures++) {
      try {
        return await ensureRegistered(options.configPath, config, {supervisorVersion: agentVersion, clientName: `flotilla-agent/${agentVersion}`})
      } catch (error) {
        log(`registration failed: ${(error as Error).message}`)
        await retryWakeup.wait(Math.min(5 * 60_000, 1000 * 2 ** failures))
      }
    }

    return undefined
  }

  // Each refusal is said once in the device's logs, not at every round; again only if it comes back.
  let announcedRefusals = new Set<string>()
  const announceRefusals = (plan: Plan) => {
    const now = new Set<string>()
    for (const refusal of plan.refused) {
      const key = `${refusal.appId}/${refusal.serviceName}/${refusal.image}`
      now.add(key)
      if (!announcedRefusals.has(key)) shipper.systemLine(refusalLine(refusal), refusal.serviceId)
    }

    announcedRefusals = now
  }

  let facts: DeviceFacts = {}
  let factsAt = 0
  const downloadProgress = new Map<string, number>()
  async function reconcileOnce(device: RegisteredConfigJson, runner: PullBackoff, signal: AbortSignal): Promise<void> {
    const stored = await store.load()
    if (!stored) return
    const force = forceNextUpdate
    forceNextUpdate = false
    await exposeLocalApiTo(stored.target)
    const common = planOptions()
    if (Date.now() - factsAt > FACTS_REFRESH_MS) {
      facts = await gatherDeviceFacts({dataDir, agentVersion, apiPort: localApi.port})
      factsAt = Date.now()
    }

    const report = (current: CurrentState, plan: Plan) =>
      reporter?.update(buildStateReport({deviceUuid: device.uuid, target: stored.target, current, plan, planOptions: common, facts, downloadProgress, pullFailures: runner.failures}))
    const result = await converge(runner, stored.target, {
      ...common,
      overrideLock: force || stored.target.config.BALENA_SUPERVISOR_OVERRIDE_LOCK === '1',
      onPlan: report,
      signal,
      onStepFailed: (step, error) => {
        // A download waiting out its delay was said once, when it failed.
        if (error instanceof PullDeferredError) return
        log(`${step.action} failed: ${(error as Error).message}`)
        const retry = step.action === 'fetch' ? runner.failures.get(step.image) : undefined
        shipper.systemLine(retry ? `${stepFailureLine(step, error)}; update failed, retrying in ${Math.ceil((retry.retryAt - Date.now()) / 1000)} s` : stepFailureLine(step, error))
      },
    })
    announceRefusals(result.plan)
    snapshot.current = result.current
    snapshot.plan = result.plan
    snapshot.target = stored.target
    snapshot.commitOf = new Map(desiredAppsOf(stored.target, common).map((app) => [app.appId, app.commit]))
    // Stopped ones too: what they wrote while the agent was away is read once.
    for (const container of result.current.containers) void shipper.followContainer(docker, {id: container.id, serviceId: container.serviceId, serviceName: container.serviceName})

    downloadProgress.clear()
    report(result.current, result.plan)
  }

  async function run(): Promise<void> {
    registered = await register()
    if (!registered) return
    const device = registered
    deviceUuid = device.uuid
    resolveRegistered(device.uuid)
    client = new FleetClient({remote: device.apiEndpoint, token: device.deviceApiKey, clientName: `flotilla-agent/${agentVersion}`})
    const runner = new DockerExecutor({
      docker,
      deviceUuid: device.uuid,
      dataDir,
      hostDataDir: options.hostDataDir,
      registryAuth: options.registryAuth ?? defaultRegistryAuth(device),
      onSystemLog: (message, serviceId) => shipper.systemLine(message, serviceId),
      onDownloadProgress: (image, percent) => downloadProgress.set(image, percent),
    })
    executor = runner
    const backoff = new PullBackoff(runner, {baseDelayMs: options.pullRetryDelayMs})
    pulls = backoff
    reporter = new StateReporter({send: stateReportSender(client), minIntervalMs: options.reportIntervalMs, onError: (error) => log(`state report failed: ${(error as Error).message}`)})
    const stored = await store.load()
    const fleetClient = client
    const poll = pollIntervalOf(device, options.configPath)
    if (poll.raisedFrom !== undefined && options.pollIntervalMs === undefined) log(`appUpdatePollInterval ${poll.raisedFrom} ms is below the minimum: polling every ${poll.intervalMs} ms`)
    poller = new TargetPoller({
      fetch: (etag) => fetchTargetState(fleetClient, device.uuid, etag),
      onTarget: async (target, etag) => {
        await store.save({target, etag, fetchedAt: new Date().toISOString()})
        backoff.reset()
        reconcileWakeup.wake()
      },
      onError: (error) => log(`target state poll failed: ${(error as Error).message}`),
      intervalMs: options.pollIntervalMs ?? poll.intervalMs,
      initialEtag: stored?.etag,
    })
    poller.start()
    actionListener = new ActionListener({
      collect: actionCollector(fleetClient, device.uuid),
      // A refused or failed action is already in the device's logs; this is the agent's own diagnostic.
      onAction: (action) => performAction(action).catch((error: unknown) => log(`device action ${action.action} failed: ${(error as Error).message}`)),
      onError: (error) => log(`collecting device actions failed: ${(error as Error).message}`),
    })
    actionListener.start()
    link = new DeviceLink({
      uuid: device.uuid,
      deviceApiKey: device.deviceApiKey,
      dataDir,
      endpoint: () => discoverLinkEndpoint(device),
      shell,
      onUpdate: () => void poller?.pollNow(),
      onAction: (action) => void performAction(action).catch((error: unknown) => log(`device action ${action.action} failed: ${(error as Error).message}`)),
      logger: log,
    })
    if (!stopped) link.start()
    linkReady()

    while (!stopped) {
      try {
        unwatchEvents ??= await runner.watchContainerEvents((event) => {
          if (event.action === 'start') void shipper.followContainer(docker, {id: event.containerId, serviceId: event.serviceId, serviceName: event.serviceName})
          else shipper.systemLine(`Service exited '${event.serviceName}'${event.exitCode === undefined ? '' : ` with code ${event.exitCode}`}`, event.serviceId)
          reconcileWakeup.wake()
        }, () => {
          // The engine restarted or dropped the stream: watch again on the next round.
          unwatchEvents = undefined
        })
        if (reconcileHolds === 0) {
          const controller = new AbortController()
          abortReconcile = controller
          reconciling = reconcileOnce(device, backoff, controller.signal).catch((error: unknown) => log(`reconcile failed: ${(error as Error).message}`))
          await reconciling
        }
      } catch (error) {
        log(`reconcile failed: ${(error as Error).message}`)
      }

      if (!stopped) await reconcileWakeup.wait(options.reconcileIntervalMs ?? 10_000)
    }
  }

  let resolveRegistered: (uuid: string) => void = () => {}
  const registeredPromise = new Promise<string>((resolve) => {
    resolveRegistered = resolve
  })
  let linkReady: () => void = () => {}
  const linkCreated = new Promise<void>((resolve) => {
    linkReady = resolve
  })
  const running = run().catch((error: unknown) => log(`agent stopped: ${(error as Error).message}`))

  return {
    localApiPort: localApi.port,
    localApiKey,
    sshPort,
    link: {
      linked: async () => {
        await linkCreated
        await link?.linked()
      },
      get isLinked() {
        return link?.isLinked ?? false
      },
    },
    registered: registeredPromise,
    pollNow: async () => poller?.pollNow(),
    async stop() {
      stopped = true
      poller?.stop()
      await actionListener?.stop()
      retryWakeup.wake()
      reconcileWakeup.wake()
      await running
      await link?.stop()
      await shell.close()
      unwatchEvents?.()
      reporter?.stop()
      await reporter?.flush()
      await shipper.stop()
      await localApi.close()
    },
  }
}
