import {createHash} from 'node:crypto'

import {
  type DependencyCondition,
  dependenciesOf,
  engineSettingsOf,
  type EngineSettings,
  networkSettingsOf,
  type ServiceNetworkEndpoint,
  serviceNetworksOf,
  volumeSettingsOf,
} from '../protocol/service-config.js'
import type {ServiceComposition, TargetDevice, TargetRelease, TargetService} from '../protocol/target-state.js'
import {UPDATE_STRATEGIES} from './update-strategies.js'

/** Labels by which the agent (and balena's tools) recognise the containers and volumes it owns. */
export const LABELS = {
  supervised: 'io.balena.supervised',
  appId: 'io.balena.app-id',
  appUuid: 'io.balena.app-uuid',
  serviceName: 'io.balena.service-name',
  serviceId: 'io.balena.service-id',
  imageId: 'io.balena.image-id',
  releaseId: 'io.balena.release-id',
  commit: 'io.balena.commit',
  updateStrategy: 'io.balena.update.strategy',
  handoverTimeout: 'io.balena.update.handover-timeout',
  /** Hash of everything the container (or network) was created with: a different hash means a new one. */
  configHash: 'io.flotilla.config-hash',
  /** A service created under this label waits for the device's next boot before it starts. */
  requiresReboot: 'io.balena.update.requires-reboot',
  /** Which agent owns it, so agents sharing one engine (tests, several simulated devices) leave each other alone. */
  deviceUuid: 'io.flotilla.device-uuid',
  /** What runs on the host for an agent that runs in a container itself: a host session, a power command (host-container.ts). */
  hostContainer: 'io.flotilla.host-container',
} as const

/** The update lock directory of an app is mounted here in each of its services. */
export const LOCK_MOUNT_POINTS = ['/tmp/balena', '/tmp/resin']

export type ContainerStatus = 'created' | 'running' | 'restarting' | 'paused' | 'exited' | 'dead' | 'removing'

/** Which service of which release a container runs, or is to run, and the hash of what it was created with. */
export interface ServiceIdentity {
  appId: number
  appUuid: string
  serviceName: string
  serviceId: number
  imageId: number
  releaseId: number
  commit: string
  image: string
  configHash: string
}

export interface CurrentContainer extends ServiceIdentity {
  id: string
  name: string
  status: ContainerStatus
  /** The engine's verdict on its healthcheck, when it has one. */
  health?: 'starting' | 'healthy' | 'unhealthy'
  /** Engine names of the networks it is attached to. */
  networks?: string[]
  /** As the engine holds it: `container:<id>` for a service sharing another's network. */
  networkMode?: string
  /** Milliseconds since the epoch. */
  createdAt?: number
}

/** A network of an app the agent created, with the hash of the settings it was created with. */
export interface CurrentNetwork {
  name: string
  appId: number
  configHash: string
}

/** What the engine holds that the agent owns, plus which apps hold their update lock. */
export interface CurrentState {
  containers: CurrentContainer[]
  /** Every tag and digest reference the engine has an image for. */
  images: string[]
  /** The references among them that the agent pulled itself, so it may remove them once nothing uses them. */
  fetchedImages: string[]
  volumes: string[]
  /** The app networks this agent created. */
  networks?: CurrentNetwork[]
  lockedAppIds: number[]
  /** Images the engine holds but cannot run (made for another CPU, with no emulator for it), by reference: why. */
  unrunnableImages?: Record<string, string>
  /** When a service of the app last wrote /tmp/balena/handover-complete (ms since the epoch), by app id. */
  handoverCompletedAt?: Record<number, number>
}

/** Where a hand-over service's new container says it has taken over, in its app's lock folder (balena's path). */
export const HANDOVER_COMPLETE_FILE = 'handover-complete'
const DEFAULT_HANDOVER_TIMEOUT_MS = 60_000

export interface ContainerSpec {
  name: string
  image: string
  command?: string[]
  entrypoint?: string[]
  environment: Record<string, string>
  labels: Record<string, string>
  networkMode: string
  restart: 'no' | 'always' | 'on-failure' | 'unless-stopped'
  /** `<volume or host dir>:<container path>[:ro]` */
  binds: string[]
  /** Host paths a feature label asks for (`/lib/modules:/lib/modules`); bound only when the host has them. */
  featureBinds: string[]
  /** Engine networks joined, by name, with the endpoint settings (aliases, addresses) of each; the first is `networkMode`. */
  networks: Record<string, NetworkEndpoint>
  workingDir?: string
  user?: string
  privileged: boolean
  tty: boolean
  /** Everything else the compose keys ask of the engine. */
  settings: EngineSettings
}

export interface NetworkEndpoint {
  Aliases: string[]
  IPAMConfig?: {IPv4Address?: string; IPv6Address?: string; LinkLocalIPs?: string[]}
}

export interface DesiredNetwork {
  name: string
  appId: number
  settings: ReturnType<typeof networkSettingsOf>
  configHash: string
}

export interface DesiredVolume {
  name: string
  appId: number
  settings: ReturnType<typeof volumeSettingsOf>
}

export type UpdateStrategy = 'download-then-kill' | 'kill-then-download' | 'delete-then-download' | 'hand-over'

export interface DesiredService extends ServiceIdentity {
  appName: string
  strategy: UpdateStrategy
  spec: ContainerSpec
  volumes: string[]
  /** Services of the same app that must run (or be healthy) before this one starts. */
  dependsOn: Record<string, DependencyCondition>
  /** Created, then started only after the device's next boot. */
  requiresReboot: boolean
  /** hand-over: how long the old container runs beside the new one when the new one does not say it took over. */
  handoverTimeoutMs: number
}

export interface DesiredApp {
  appId: number
  appUuid: string
  name: string
  commit?: string
  releaseId?: number
  services: DesiredService[]
  volumes: DesiredVolume[]
  networks: DesiredNetwork[]
}

export interface PlanOptions {
  deviceUuid: string
  deviceType?: string
  /** Every service runs with the host's network, whatever its composition says. */
  hostNetwork?: boolean
  /** Host directory of an app's update lock, mounted into its services. */
  lockDirOf: (appId: number) => string
  supervisorAddress?: string
  /** Kill even when an app holds its update lock (a forced update). */
  overrideLock?: boolean
  /** What `io.balena.features.balena-api` gives a service: the server's API and the device's key. */
  apiEndpoint?: string
  deviceApiKey?: string
  /** The engine's socket on the host, for `io.balena.features.balena-socket` (default /var/run/docker.sock). */
  engineSocket?: string
  /** When the device booted (ms since the epoch): a requires-reboot service created since then waits. */
  bootTime?: number
  /** The time a hand-over's timeout is measured against (default now). */
  now?: number
  /** Where `io.balena.features.supervisor-api` services reach the local API, and its key; without it they get none. */
  supervisorApi?: SupervisorApiAccess
  /**
   * Containers the user stopped (stop-service): they stay stopped until started again. A new release or a changed
   * configuration makes a new container, which starts, as balena's supervisor does.
   */
  stoppedContainerIds?: readonly string[]
}

export interface SupervisorApiAccess {
  port: number
  apiKey: string
  /** The engine network a service on an app network joins to reach the API at its gateway (balena's supervisor0). */
  network?: {name: string; gateway: string}
}

export type Step =
  | {action: 'fetch'; image: string; appId: number; serviceName: string}
  | {action: 'createVolume'; name: string; appId: number; settings?: DesiredVolume['settings']}
  | {action: 'createNetwork'; network: DesiredNetwork}
  | {action: 'removeNetwork'; name: string}
  /** Creates the container and starts it. */
  | {action: 'createAndStart'; service: DesiredService}
  /** Creates the container of a service that starts only after the next boot. */
  | {action: 'create'; service: DesiredService}
  | {action: 'start'; container: CurrentContainer}
  | {action: 'kill'; container: CurrentContainer}
  | {action: 'remove'; container: CurrentContainer}
  | {action: 'removeImage'; image: string}

export interface Plan {
  steps: Step[]
  /** Services whose update waits for their app's update lock to be released. */
  waitingForLock: Array<{appId: number; serviceName: string}>
  /** Services not started because the engine cannot run their image; whatever runs of them meanwhile stays. */
  refused: Array<{appId: number; serviceName: string; serviceId: number; image: string; reason: string}>
}

export function containerNameOf(service: {serviceName: string; imageId: number; releaseId: number; commit: string}): string {
  return `${service.serviceName}_${service.imageId}_${service.releaseId}_${service.commit}`
}

export function volumeNameOf(appId: number, name: string): string {
  return `${appId}_${name}`
}

/** Networks are named like volumes, `<appId>_<name>`, as balena names them. */
export const networkNameOf = volumeNameOf

/** The network every service of an app joins when its composition names none. */
export const DEFAULT_NETWORK = 'default'

/** `busybox` and `busybox:latest` are one image; digests and explicit tags stay as they are. */
export function normalizeImageReference(reference: string): string {
  if (reference.includes('@')) return reference
  const lastSegment = reference.slice(reference.lastIndexOf('/') + 1)
  return lastSegment.includes(':') ? reference : `${reference}:latest`
}

/** Splits a compose command string as a shell would split words, honouring quotes and backslashes. */
export function splitCommand(command: string): string[] {
  const words: string[] = []
  let word: string | undefined
  let quote: '"' | "'" | undefined
  for (let index = 0; index < command.length; index++) {
    const character = command[index]
    if (quote) {
      if (character === quote) quote = undefined
      else if (character === '\\' && quote === '"' && index + 1 < command.length) word += command[++index]
      else word += character
    } else if (character === '"' || character === "'") {
      quote = character
      word ??= ''
    } else if (character === '\\' && index + 1 < command.length) {
      word = (word ?? '') + command[++index]
    } else if (/\s/.test(character)) {
      if (word !== undefined) words.push(word)
      word = undefined
    } else {
      word = (word ?? '') + character
    }
  }

  if (word !== undefined) words.push(word)
  return words
}

function asWords(value: string | string[] | undefined): string[] | undefined {
  if (value === undefined) return undefined
  return Array.isArray(value) ? value : splitCommand(value)
}

function asMap(value: Record<string, string> | string[] | undefined): Record<string, string> {
  if (!value) return {}
  if (!Array.isArray(value)) return Object.fromEntries(Object.entries(value).map(([key, entry]) => [key, String(entry ?? '')]))
  return Object.fromEntries(value.map((entry) => {
    const equals = entry.indexOf('=')
    return equals === -1 ? [entry, ''] : [entry.slice(0, equals), entry.slice(equals + 1)]
  }))
}

/** Named volumes of a composition as binds; host paths are not honoured, as on balena without a feature label. */
function namedVolumeBinds(appId: number, composition: ServiceComposition): {binds: string[]; volumes: string[]} {
  const binds: string[] = []
  const volumes: string[] = []
  for (const entry of composition.volumes ?? []) {
    let source: string | undefined
    let target: string
    let readOnly = false
    if (typeof entry === 'string') {
      const parts = entry.split(':')
      if (parts.length < 2) continue
      ;[source, target] = parts
      readOnly = parts[2] === 'ro'
    } else {
      if (entry.type !== undefined && entry.type !== 'volume') continue
      ;({source, target} = entry)
      readOnly = entry.read_only === true
    }

    if (!source || source.startsWith('/') || source.startsWith('.') || source.startsWith('~')) continue
    const name = volumeNameOf(appId, source)
    volumes.push(name)
    binds.push(`${name}:${target}${readOnly ? ':ro' : ''}`)
  }

  return {binds, volumes}
}

function strategyOf(labels: Record<string, string>): UpdateStrategy {
  const strategy = labels[LABELS.updateStrategy]
  return strategy === 'kill-then-download' || strategy === 'delete-then-download' || strategy === 'hand-over' ? strategy : 'download-then-kill'
}

/** Hash of a configuration with its keys in a fixed order, so equal configurations hash alike. */
export function hashConfig(config: unknown): string {
  const canonical = (value: unknown): unknown => {
    if (Array.isArray(value)) return value.map(canonical)
    if (value && typeof value === 'object') return Object.fromEntries(Object.keys(value).sort().map((key) => [key, canonical((value as Record<string, unknown>)[key])]))
    return value
  }

  return createHash('sha256').update(JSON.stringify(canonical(config))).digest('hex').slice(0, 32)
}

const truthy = (value: string | undefined) => value !== undefined && ['1', 'true', 'on', 'yes'].includes(value.toLowerCase())

/** `io.resin.*` labels (older releases, balena's single-Dockerfile defaults) also count under their `io.balena.*` names. */
function withBalenaLabelNames(labels: Record<string, string>): Record<string, string> {
  const renamed = Object.entries(labels).filter(([key]) => key.startsWith('io.resin.')).map(([key, value]) => [key.replaceAll('resin', 'balena'), value])
  return {...Object.fromEntries(renamed), ...labels}
}

/** The engine socket inside a service with the balena-socket feature, where balena puts it. */
const SERVICE_ENGINE_SOCKET = '/host/run/balena-engine.sock'

/** The host paths and variables that balena's feature labels give a service. */
function featuresOf(labels: Record<string, string>, options: PlanOptions): {binds: string[]; environment: Record<string, string>} {
  const has = (feature: string) => truthy(labels[`io.balena.features.${feature}`])
  const binds: string[] = []
  const environment: Record<string, string> = {}
  if (has('kernel-modules')) binds.push('/lib/modules:/lib/modules')
  if (has('firmware')) binds.push('/lib/firmware:/lib/firmware')
  if (has('dbus')) {
    binds.push('/run/dbus:/host/run/dbus')
    environment.DBUS_SYSTEM_BUS_ADDRESS = 'unix:path=/host/run/dbus/system_bus_socket'
  }

  if (has('balena-socket')) {
    const socket = options.engineSocket ?? '/var/run/docker.sock'
    binds.push(`${socket}:${SERVICE_ENGINE_SOCKET}`, `${socket}:/var/run/balena-engine.sock`, `${socket}:/var/run/balena.sock`)
    environment.DOCKER_HOST = `unix://${SERVICE_ENGINE_SOCKET}`
  }

  if (has('sysfs')) binds.push('/sys:/sys')
  if (has('procfs')) binds.push('/proc:/proc')
  if (has('journal-logs')) binds.push('/var/log/journal:/var/log/journal:ro', '/run/log/journal:/run/log/journal:ro', '/etc/machine-id:/etc/machine-id:ro')
  if (has('balena-api')) {
    for (const prefix of ['BALENA_', 'RESIN_']) {
      environment[`${prefix}API_KEY`] = options.deviceApiKey ?? ''
      environment[`${prefix}API_URL`] = options.apiEndpoint ?? ''
    }
  }

  return {binds, environment}
}

/**
 * What `io.balena.features.supervisor-api` gives a service, as balena's supervisor does: the API's host, port,
 * address and key, and the supervisor network joined when the service is on app networks (on the host's network
 * it reaches the API on loopback; sharing another container's network, through that one).
 */
function supervisorApiOf(networking: Pick<ContainerSpec, 'networkMode' | 'networks'>, access: SupervisorApiAccess | undefined): {environment: Record<string, string>; networks: Record<string, NetworkEndpoint>} {
  if (!access) return {environment: {}, networks: {}}
  const onAppNetworks = Object.keys(networking.networks).length > 0
  const host = onAppNetworks && access.network ? access.network.gateway : '127.0.0.1'
  const environment: Record<string, string> = {}
  for (const prefix of ['BALENA_', 'RESIN_']) {
    environment[`${prefix}SUPERVISOR_HOST`] = host
    environment[`${prefix}SUPERVISOR_PORT`] = String(access.port)
    environment[`${prefix}SUPERVISOR_ADDRESS`] = `http://${host}:${access.port}`
    environment[`${prefix}SUPERVISOR_API_KEY`] = access.apiKey
  }

  return {environment, networks: onAppNetworks && access.network ? {[access.network.name]: {Aliases: []}} : {}}
}

/** Which network a service's container is created in and which app networks it joins, with its aliases there. */
function networkingOf(appId: number, serviceName: string, composition: ServiceComposition, options: PlanOptions): Pick<ContainerSpec, 'networkMode' | 'networks'> {
  if (options.hostNetwork) return {networkMode: 'host', networks: {}}
  if (composition.network_mode) return {networkMode: composition.network_mode, networks: {}}
  const joined = Object.entries(serviceNetworksOf(composition))
  const entries: Array<[string, ServiceNetworkEndpoint]> = joined.length > 0 ? joined : [[DEFAULT_NETWORK, {}]]
  const networks = Object.fromEntries(entries.map(([name, endpoint]): [string, NetworkEndpoint] => {
    const addresses = {IPv4Address: endpoint.ipv4_address, IPv6Address: endpoint.ipv6_address, LinkLocalIPs: endpoint.link_local_ips}
    const hasAddress = Object.values(addresses).some((value) => value !== undefined)
    // The service's name is always an alias, so the other services reach it by name.
    return [networkNameOf(appId, name), {Aliases: [...new Set([...(endpoint.aliases ?? []), serviceName])], ...(hasAddress ? {IPAMConfig: addresses} : {})}]
  }))
  return {networkMode: Object.keys(networks)[0], networks}
}

/** The networks of a release the agent creates: the declared ones, and the default one when a service is on it. */
function desiredNetworksOf(appId: number, release: TargetRelease, services: DesiredService[], options: PlanOptions): DesiredNetwork[] {
  if (options.hostNetwork) return []
  const definitions: Record<string, Record<string, unknown>> = {}
  for (const [name, definition] of Object.entries(release.networks ?? {})) definitions[name] = (definition ?? {}) as Record<string, unknown>
  if (services.some((service) => service.spec.networks[networkNameOf(appId, DEFAULT_NETWORK)])) definitions[DEFAULT_NETWORK] ??= {}
  return Object.entries(definitions).map(([name, definition]) => {
    const settings = networkSettingsOf(definition)
    return {name: networkNameOf(appId, name), appId, settings, configHash: hashConfig(settings)}
  })
}

/** The named volumes of a release: the declared ones with their driver options, and any a service mounts without declaring. */
function desiredVolumesOf(appId: number, release: TargetRelease, services: DesiredService[]): DesiredVolume[] {
  const volumes = new Map<string, DesiredVolume>()
  for (const [name, definition] of Object.entries(release.volumes ?? {})) {
    volumes.set(volumeNameOf(appId, name), {name: volumeNameOf(appId, name), appId, settings: volumeSettingsOf((definition ?? {}) as Record<string, unknown>)})
  }

  for (const name of services.flatMap((service) => service.volumes)) {
    if (!volumes.has(name)) volumes.set(name, {name, appId, settings: volumeSettingsOf({})})
  }

  return [...volumes.values()]
}

function desiredServiceOf(
  app: {appId: number; appUuid: string; name: string; commit: string; releaseId: number},
  serviceName: string,
  target: TargetService,
  options: PlanOptions,
): DesiredService {
  const composition = target.composition ?? {}
  const identity = {serviceName, imageId: target.image_id, releaseId: app.releaseId, commit: app.commit}
  const {binds, volumes} = namedVolumeBinds(app.appId, composition)
  const lockDir = options.lockDirOf(app.appId)
  const supervisorAddress = options.supervisorAddress ?? 'http://127.0.0.1:48484'
  const deviceType = options.deviceType ?? ''
  const labels: Record<string, string> = {
    ...withBalenaLabelNames({...asMap(composition.labels), ...target.labels}),
    [LABELS.supervised]: 'true',
    [LABELS.appId]: String(app.appId),
    [LABELS.appUuid]: app.appUuid,
    [LABELS.serviceName]: serviceName,
    [LABELS.serviceId]: String(target.id),
    [LABELS.imageId]: String(target.image_id),
    [LABELS.releaseId]: String(app.releaseId),
    [LABELS.commit]: app.commit,
    [LABELS.deviceUuid]: options.deviceUuid,
  }
  const features = featuresOf(labels, options)
  const networking = networkingOf(app.appId, serviceName, composition, options)
  const supervisorApi = supervisorApiOf(networking, truthy(labels['io.balena.features.supervisor-api']) ? options.supervisorApi : undefined)
  const spec: ContainerSpec = {
    name: containerNameOf(identity),
    image: target.image,
    command: asWords(composition.command),
    entrypoint: asWords(composition.entrypoint),
    environment: {
      ...asMap(composition.environment),
      ...target.environment,
      BALENA: '1',
      RESIN: '1',
      BALENA_DEVICE_UUID: options.deviceUuid,
      RESIN_DEVICE_UUID: options.deviceUuid,
      BALENA_APP_ID: String(app.appId),
      RESIN_APP_ID: String(app.appId),
      BALENA_APP_UUID: app.appUuid,
      BALENA_APP_NAME: app.name,
      RESIN_APP_NAME: app.name,
      BALENA_SERVICE_NAME: serviceName,
      RESIN_SERVICE_NAME: serviceName,
      BALENA_DEVICE_TYPE: deviceType,
      RESIN_DEVICE_TYPE: deviceType,
      BALENA_SUPERVISOR_ADDRESS: supervisorAddress,
      RESIN_SUPERVISOR_ADDRESS: supervisorAddress,
      BALENA_APP_LOCK_PATH: '/tmp/balena/updates.lock',
    },
    labels,
    networkMode: networking.networkMode,
    networks: {...networking.networks, ...supervisorApi.networks},
    restart: composition.restart ?? 'always',
    binds: [...binds, ...LOCK_MOUNT_POINTS.map((mountPoint) => `${lockDir}:${mountPoint}`)],
    featureBinds: features.binds,
    workingDir: composition.working_dir,
    user: composition.user,
    privileged: composition.privileged === true,
    tty: composition.tty === true,
    settings: engineSettingsOf(composition),
  }
  const strategy = strategyOf(labels)
  // Only hand-over services get it, so an agent update does not recreate every other container.
  const handover = strategy === 'hand-over' ? Object.fromEntries(['BALENA_', 'RESIN_'].map((prefix) => [`${prefix}SERVICE_HANDOVER_COMPLETE_PATH`, `/tmp/balena/${HANDOVER_COMPLETE_FILE}`])) : {}
  spec.environment = {...features.environment, ...spec.environment, ...supervisorApi.environment, ...handover}
  const handoverTimeout = Number(labels[LABELS.handoverTimeout])
  return {
    ...identity,
    appId: app.appId,
    appUuid: app.appUuid,
    appName: app.name,
    serviceId: target.id,
    image: target.image,
    strategy,
    spec,
    configHash: hashConfig(spec),
    volumes,
    dependsOn: dependenciesOf(composition),
    requiresReboot: truthy(labels[LABELS.requiresReboot]),
    handoverTimeoutMs: Number.isFinite(handoverTimeout) && handoverTimeout >= 0 ? handoverTimeout : DEFAULT_HANDOVER_TIMEOUT_MS,
  }
}

/** The apps and services the target asks for, with the containers they should run as. */
export function desiredAppsOf(target: TargetDevice, options: PlanOptions): DesiredApp[] {
  // The host app is the operating system itself, updated by other means than containers.
  return Object.entries(target.apps).filter(([, app]) => !app.is_host).map(([appUuid, app]) => {
    const [commit, release] = Object.entries(app.releases ?? {})[0] ?? []
    if (!commit || !release) return {appId: app.id, appUuid, name: app.name, services: [], volumes: [], networks: []}
    const identity = {appId: app.id, appUuid, name: app.name, commit, releaseId: release.id}
    const services = Object.entries(release.services).map(([serviceName, service]) => desiredServiceOf(identity, serviceName, service, options))
    const networks = desiredNetworksOf(app.id, release, services, options)
    // A service joins the networks as they are configured now: a network created anew means a container created anew.
    for (const service of services) {
      const joined = networks.filter((network) => service.spec.networks[network.name]).map((network) => network.configHash)
      if (joined.length > 0) service.configHash = hashConfig({spec: service.spec, networks: joined})
    }

    return {...identity, services, volumes: desiredVolumesOf(app.id, release, services), networks}
  })
}

const isUp = (container: CurrentContainer) => container.status === 'running' || container.status === 'restarting' || container.status === 'paused'

const matches = (container: CurrentContainer, service: DesiredService) => container.name === service.spec.name && container.configHash === service.configHash

export function hasImage(current: CurrentState, image: string): boolean {
  const wanted = normalizeImageReference(image)
  return current.images.some((reference) => normalizeImageReference(reference) === wanted)
}

/** What decides whether a service may start now: its networks, volumes and the services it depends on. */
class Readiness {
  constructor(
    private readonly current: CurrentState,
    private readonly desired: DesiredService[],
    private readonly networks: DesiredNetwork[],
    private readonly options: PlanOptions,
  ) {}

  /** Every service it depends on runs (and is healthy when asked), in the configuration the target wants. */
  dependenciesMet(service: DesiredService): boolean {
    return Object.entries(service.dependsOn).every(([name, condition]) => {
      const dependency = this.desired.find((other) => other.appId === service.appId && other.serviceName === name)
      if (!dependency) return true
      const container = this.current.containers.find((candidate) => matches(candidate, dependency))
      return container?.status === 'running' && (condition !== 'service_healthy' || container.health === 'healthy')
    })
  }

  /** Its networks exist as the target configures them, and its volumes exist. */
  resourcesReady(service: DesiredService): boolean {
    const existing = this.current.networks ?? []
    const networksReady = Object.keys(service.spec.networks).every((name) => {
      const wanted = this.networks.find((network) => network.name === name)
      // Not an app network: the agent's own (the supervisor network), there before any plan uses it.
      if (!wanted) return true
      return existing.some((network) => network.name === name && network.configHash === wanted?.configHash)
    })
    return networksReady && service.volumes.every((volume) => this.current.volumes.includes(volume))
  }

  /** A container created since the device booted, for a service that asks for a reboot first, waits for that boot. */
  waitsForReboot(service: DesiredService, container: CurrentContainer): boolean {
    return service.requiresReboot && this.options.bootTime !== undefined && (container.createdAt ?? 0) > this.options.bootTime
  }

  /** A service in the network of another (`network_mode: service:<name>`) must join that one's current container. */
  joinsCurrentNetworkHost(service: DesiredService, container: CurrentContainer): boolean {
    const host = /^service:(.+)$/.exec(service.spec.networkMode)?.[1]
    if (!host || container.networkMode === undefined) return true
    const hostContainer = this.current.containers.find((candidate) => candidate.appId === service.appId && candidate.serviceName === host && isUp(candidate))
    return !hostContainer || container.networkMode === `container:${hostContainer.id}`
  }
}

/** Creates the networks the target wants; one whose settings changed is removed first, once no container uses it. */
function planNetworks(current: CurrentState, networks: DesiredNetwork[], steps: Step[]): void {
  const inUse = (name: string) => current.containers.some((container) => container.networks?.includes(name))
  for (const network of networks) {
    const existing = (current.networks ?? []).find((candidate) => candidate.name === network.name)
    if (!existing) steps.push({action: 'createNetwork', network})
    else if (existing.configHash !== network.configHash && !inUse(network.name)) steps.push({action: 'removeNetwork', name: network.name})
  }
}

/** Removes the agent's networks the target no longer has, once no container uses them. */
function planNetworkRemovals(current: CurrentState, networks: DesiredNetwork[], steps: Step[]): void {
  const wanted = new Set(networks.map((network) => network.name))
  for (const network of current.networks ?? []) {
    if (!wanted.has(network.name) && !current.containers.some((container) => container.networks?.includes(network.name))) steps.push({action: 'removeNetwork', name: network.name})
  }
}

/** Why the engine cannot run an image it holds, or undefined when it can (or does not hold it yet). */
export function unrunnableReason(current: CurrentState, image: string): string | undefined {
  if (!current.unrunnableImages) return undefined
  const wanted = normalizeImageReference(image)
  const found = Object.entries(current.unrunnableImages).find(([reference]) => normalizeImageReference(reference) === wanted)
  return found?.[1]
}

/** The plan being made, and how any container of it is stopped: at once, or once its app's update lock is released. */
class PlanDraft {
  readonly steps: Step[] = []
  readonly waitingForLock: Plan['waitingForLock'] = []
  readonly refused: Plan['refused'] = []

  constructor(private readonly current: CurrentState, private readonly options: PlanOptions) {}

  /** Plans the container's kill (when it runs) and removal; false when the kill waits for the update lock. */
  stopAndRemove = (container: CurrentContainer): boolean => {
    if (!isUp(container)) {
      this.steps.push({action: 'remove', container})
      return true
    }

    if (!this.options.overrideLock && this.current.lockedAppIds.includes(container.appId)) {
      this.waitingForLock.push({appId: container.appId, serviceName: container.serviceName})
      return false
    }

    this.steps.push({action: 'kill', container}, {action: 'remove', container})
    return true
  }

  plan(): Plan {
    return {steps: this.steps, waitingForLock: this.waitingForLock, refused: this.refused}
  }
}

/** What plans one service: the state, the plan so far, the target's services and what they wait for. */
interface ServicePlanning {
  current: CurrentState
  draft: PlanDraft
  desired: DesiredService[]
  readiness: Readiness
  options: PlanOptions
}

/** A service whose container runs the target's configuration: started when it should run, the others stopped. */
function planInstalled(service: DesiredService, installed: CurrentContainer, others: CurrentContainer[], {current, draft, readiness, options}: ServicePlanning): void {
  // A container that exited by itself stays down unless its restart policy says otherwise; one stopped by hand comes
  // back, unless the user stopped it through the supervisor API.
  const stoppedByUser = options.stoppedContainerIds?.includes(installed.id) === true
  const shouldRun = !stoppedByUser && ((installed.status === 'created' && !readiness.waitsForReboot(service, installed)) || (installed.status === 'exited' && service.spec.restart === 'always'))
  if (shouldRun && readiness.dependenciesMet(service)) draft.steps.push({action: 'start', container: installed})
  if (installed.status === 'dead') draft.stopAndRemove(installed)
  const strategy = UPDATE_STRATEGIES[service.strategy]
  for (const other of others) {
    const keep = isUp(other) && strategy.keepsOldRunning?.(service, installed, current, options.now ?? Date.now()) === true
    if (!keep) draft.stopAndRemove(other)
  }
}

/** A service with no container of the target's configuration: refused, or updated as its strategy says. */
function planUpdate(service: DesiredService, outdated: CurrentContainer[], {current, draft, desired, readiness, options}: ServicePlanning): void {
  const unrunnable = unrunnableReason(current, service.image)
  if (unrunnable !== undefined) {
    draft.refused.push({appId: service.appId, serviceName: service.serviceName, serviceId: service.serviceId, image: service.image, reason: unrunnable})
    return
  }

  const decision = UPDATE_STRATEGIES[service.strategy].plan({
    service,
    outdated,
    imageReady: hasImage(current, service.image),
    stopAndRemove: draft.stopAndRemove,
    imagesFreedBy: (gone) => imagesFreedBy(gone, current, desired),
  })
  draft.steps.push(...decision.steps)
  if (decision.create && readiness.resourcesReady(service) && readiness.dependenciesMet(service)) {
    draft.steps.push({action: service.requiresReboot && options.bootTime !== undefined ? 'create' : 'createAndStart', service})
  }
}

/**
 * The next steps from the current state towards the target. Only steps whose preconditions hold now are
 * planned; the executor applies them in order and plans again, until nothing remains.
 */
export function planSteps(current: CurrentState, target: TargetDevice, options: PlanOptions): Plan {
  const apps = desiredAppsOf(target, options)
  const desired = apps.flatMap((app) => app.services)
  const networks = apps.flatMap((app) => app.networks)
  const draft = new PlanDraft(current, options)
  const planning: ServicePlanning = {current, draft, desired, readiness: new Readiness(current, desired, networks, options), options}
  const existingVolumes = new Set(current.volumes)
  for (const volume of apps.flatMap((app) => app.volumes)) {
    if (!existingVolumes.has(volume.name)) draft.steps.push({action: 'createVolume', name: volume.name, appId: volume.appId, settings: volume.settings})
  }

  planNetworks(current, networks, draft.steps)
  for (const service of desired) {
    const containers = current.containers.filter((container) => container.appId === service.appId && container.serviceName === service.serviceName)
    const installed = containers.find((container) => matches(container, service) && planning.readiness.joinsCurrentNetworkHost(service, container))
    if (installed) planInstalled(service, installed, containers.filter((container) => container !== installed), planning)
    else planUpdate(service, containers, planning)
  }

  const wantedServices = new Set(desired.map((service) => `${service.appId}/${service.serviceName}`))
  for (const container of current.containers) {
    if (!wantedServices.has(`${container.appId}/${container.serviceName}`)) draft.stopAndRemove(container)
  }

  planNetworkRemovals(current, networks, draft.steps)
  const imagesInUse = new Set([...desired.map((service) => service.image), ...current.containers.map((container) => container.image)].map(normalizeImageReference))
  // A reference is removed, not the image: an image also known by another name stays for that name.
  for (const image of current.fetchedImages) {
    if (!imagesInUse.has(normalizeImageReference(image))) draft.steps.push({action: 'removeImage', image})
  }

  return draft.plan()
}

/** The images the agent fetched that nothing uses once `gone` are removed: neither the target nor another container. */
function imagesFreedBy(gone: CurrentContainer[], current: CurrentState, desired: DesiredService[]): Step[] {
  const goneIds = new Set(gone.map((container) => container.id))
  const goneImages = new Set(gone.map((container) => normalizeImageReference(container.image)))
  const stillUsed = new Set([...desired.map((service) => service.image), ...current.containers.filter((container) => !goneIds.has(container.id)).map((container) => container.image)].map(normalizeImageReference))
  return current.fetchedImages
    .filter((image) => goneImages.has(normalizeImageReference(image)) && !stillUsed.has(normalizeImageReference(image)))
    .map((image): Step => ({action: 'removeImage', image}))
}

/** What a step acts on, in words for the device's log. */
export function describeStep(step: Step): string {
  switch (step.action) {
    case 'fetch':
    case 'removeImage': {
      return `image '${step.image}'`
    }

    case 'createVolume':
    case 'removeNetwork': {
      return `${step.action === 'createVolume' ? 'volume' : 'network'} '${step.name}'`
    }

    case 'createNetwork': {
      return `network '${step.network.name}'`
    }

    case 'create':
    case 'createAndStart': {
      return `service '${step.service.serviceName}'`
    }

    default: {
      return `service '${step.container.serviceName}'`
    }
  }
}

/** The engine ran out of disk space: Docker says so in words, Node with a code. */
export function isDiskFull(error: unknown): boolean {
  return (error as NodeJS.ErrnoException | undefined)?.code === 'ENOSPC' || /no space left on device|ENOSPC/i.test(String((error as Error | undefined)?.message ?? error))
}

/** The device-log line for a step that failed, saying what to do when the disk is full. */
export function stepFailureLine(step: Step, error: unknown): string {
  const reason = (error as Error | undefined)?.message ?? String(error)
  if (step.action === 'fetch') {
    if (isDiskFull(error)) return `Failed to download image '${step.image}': no space left on device; free some disk space, the download is retried and the services keep their current release meanwhile`
    return `Failed to download image '${step.image}' due to '${reason}'`
  }

  if (isDiskFull(error)) return `Failed to ${step.action} ${describeStep(step)}: no space left on device; free some disk space, it is retried`
  return `Failed to ${step.action} ${describeStep(step)}: ${reason}`
}

/** The device-log line for a service whose image the engine cannot run, saying what to do. */
export function refusalLine(refusal: Plan['refused'][number]): string {
  return `Refusing to start service '${refusal.serviceName}': image '${refusal.image}' ${refusal.reason} — push a release built for this device's architecture, or install qemu-user-static and binfmt-support on the device to emulate it`
}

/** What the reconciler needs of an engine: read what it holds, apply one step. */
export interface StepExecutor {
  /** `wantedImages`: the target's images, whose platform the executor checks when the engine holds them. */
  readCurrentState(wantedImages?: string[]): Promise<CurrentState>
  apply(step: Step): Promise<void>
}

export interface ConvergeOptions extends PlanOptions {
  maxRounds?: number
  /** Each round's plan before it is applied, so progress can be reported while a long step (a download) runs. */
  onPlan?: (current: CurrentState, plan: Plan) => void
  onStepFailed?: (step: Step, error: unknown) => void
  /** Ends the attempt before the next step once aborted (a reboot or purge wants the engine to itself). */
  signal?: AbortSignal
}

export interface ConvergeResult {
  current: CurrentState
  plan: Plan
  /** True when the last plan had no steps left (it may still wait for an update lock). */
  settled: boolean
  failures: Array<{step: Step; error: unknown}>
}

function serviceKeyOf(step: Step): string {
  switch (step.action) {
    case 'fetch': return `${step.appId}/${step.serviceName}`
    case 'create':
    case 'createAndStart': return `${step.service.appId}/${step.service.serviceName}`
    case 'start':
    case 'kill':
    case 'remove': return `${step.container.appId}/${step.container.serviceName}`
    case 'createVolume': return `volume/${step.name}`
    case 'createNetwork': return `network/${step.network.name}`
    case 'removeNetwork': return `network/${step.name}`
    case 'removeImage': return `image/${step.image}`
  }
}

/**
 * Reads, plans and applies until no step remains, for a bounded number of rounds. A failed step skips the
 * later steps of the same service in that round; a round where every step failed ends the attempt.
 */
export async function converge(executor: StepExecutor, target: TargetDevice, options: ConvergeOptions): Promise<ConvergeResult> {
  const failures: ConvergeResult['failures'] = []
  const maxRounds = options.maxRounds ?? 10
  const wantedImages = [...new Set(desiredAppsOf(target, options).flatMap((app) => app.services.map((service) => service.image)))]
  for (let round = 0; ; round++) {
    const current = await executor.readCurrentState(wantedImages)
    const plan = planSteps(current, target, options)
    if (plan.steps.length === 0 || round === maxRounds || options.signal?.aborted) return {current, plan, settled: plan.steps.length === 0, failures}
    options.onPlan?.(current, plan)
    const failedServices = new Set<string>()
    let succeeded = 0
    for (const step of plan.steps) {
      if (options.signal?.aborted) return {current: await executor.readCurrentState(wantedImages), plan, settled: false, failures}
      const key = serviceKeyOf(step)
      if (failedServices.has(key)) continue
      try {
        await executor.apply(step)
        succeeded++
      } catch (error) {
        failedServices.add(key)
        failures.push({step, error})
        options.onStepFailed?.(step, error)
      }
    }

    if (succeeded === 0) return {current: await executor.readCurrentState(wantedImages), plan, settled: false, failures}
  }
}
