import {createHash} from 'node:crypto'

import type {ServiceComposition, TargetDevice, TargetService} from '../protocol/target-state.js'

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
  /** Hash of everything the container was created with: a different hash means a new container. */
  configHash: 'io.flotilla.config-hash',
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
}

/** What the engine holds that the agent owns, plus which apps hold their update lock. */
export interface CurrentState {
  containers: CurrentContainer[]
  /** Every tag and digest reference the engine has an image for. */
  images: string[]
  /** The references among them that the agent pulled itself, so it may remove them once nothing uses them. */
  fetchedImages: string[]
  volumes: string[]
  lockedAppIds: number[]
  /** Images the engine holds but cannot run (made for another CPU, with no emulator for it), by reference: why. */
  unrunnableImages?: Record<string, string>
}

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
  workingDir?: string
  user?: string
  privileged: boolean
  tty: boolean
}

export type UpdateStrategy = 'download-then-kill' | 'kill-then-download' | 'delete-then-download' | 'hand-over'

export interface DesiredService extends ServiceIdentity {
  appName: string
  strategy: UpdateStrategy
  spec: ContainerSpec
  volumes: string[]
}

export interface DesiredApp {
  appId: number
  appUuid: string
  name: string
  commit?: string
  releaseId?: number
  services: DesiredService[]
  volumes: string[]
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
}

export type Step =
  | {action: 'fetch'; image: string; appId: number; serviceName: string}
  | {action: 'createVolume'; name: string; appId: number}
  /** Creates the container and starts it. */
  | {action: 'createAndStart'; service: DesiredService}
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

/** Hash of a container spec with its keys in a fixed order, so equal specs hash alike. */
export function hashSpec(spec: ContainerSpec): string {
  const canonical = (value: unknown): unknown => {
    if (Array.isArray(value)) return value.map(canonical)
    if (value && typeof value === 'object') return Object.fromEntries(Object.keys(value).sort().map((key) => [key, canonical((value as Record<string, unknown>)[key])]))
    return value
  }

  return createHash('sha256').update(JSON.stringify(canonical(spec))).digest('hex').slice(0, 32)
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
  const labels = {
    ...asMap(composition.labels),
    ...target.labels,
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
    networkMode: options.hostNetwork ? 'host' : (composition.network_mode ?? 'bridge'),
    restart: composition.restart ?? 'always',
    binds: [...binds, ...LOCK_MOUNT_POINTS.map((mountPoint) => `${lockDir}:${mountPoint}`)],
    workingDir: composition.working_dir,
    user: composition.user,
    privileged: composition.privileged === true,
    tty: composition.tty === true,
  }
  return {
    ...identity,
    appId: app.appId,
    appUuid: app.appUuid,
    appName: app.name,
    serviceId: target.id,
    image: target.image,
    strategy: strategyOf(labels),
    spec,
    configHash: hashSpec(spec),
    volumes,
  }
}

/** The apps and services the target asks for, with the containers they should run as. */
export function desiredAppsOf(target: TargetDevice, options: PlanOptions): DesiredApp[] {
  // The host app is the operating system itself, updated by other means than containers.
  return Object.entries(target.apps).filter(([, app]) => !app.is_host).map(([appUuid, app]) => {
    const [commit, release] = Object.entries(app.releases ?? {})[0] ?? []
    if (!commit || !release) return {appId: app.id, appUuid, name: app.name, services: [], volumes: []}
    const identity = {appId: app.id, appUuid, name: app.name, commit, releaseId: release.id}
    return {
      ...identity,
      services: Object.entries(release.services).map(([serviceName, service]) => desiredServiceOf(identity, serviceName, service, options)),
      volumes: Object.keys(release.volumes ?? {}).map((name) => volumeNameOf(app.id, name)),
    }
  })
}

const isUp = (container: CurrentContainer) => container.status === 'running' || container.status === 'restarting' || container.status === 'paused'

const matches = (container: CurrentContainer, service: DesiredService) => container.name === service.spec.name && container.configHash === service.configHash

export function hasImage(current: CurrentState, image: string): boolean {
  const wanted = normalizeImageReference(image)
  return current.images.some((reference) => normalizeImageReference(reference) === wanted)
}

/** Why the engine cannot run an image it holds, or undefined when it can (or does not hold it yet). */
export function unrunnableReason(current: CurrentState, image: string): string | undefined {
  if (!current.unrunnableImages) return undefined
  const wanted = normalizeImageReference(image)
  const found = Object.entries(current.unrunnableImages).find(([reference]) => normalizeImageReference(reference) === wanted)
  return found?.[1]
}

/**
 * The next steps from the current state towards the target. Only steps whose preconditions hold now are
 * planned; the executor applies them in order and plans again, until nothing remains.
 */
export function planSteps(current: CurrentState, target: TargetDevice, options: PlanOptions): Plan {
  const steps: Step[] = []
  const waitingForLock: Plan['waitingForLock'] = []
  const refused: Plan['refused'] = []
  const apps = desiredAppsOf(target, options)
  const desired = apps.flatMap((app) => app.services)
  const locked = (appId: number) => !options.overrideLock && current.lockedAppIds.includes(appId)
  const existingVolumes = new Set(current.volumes)

  const stopAndRemove = (container: CurrentContainer): boolean => {
    if (!isUp(container)) {
      steps.push({action: 'remove', container})
      return true
    }

    if (locked(container.appId)) {
      waitingForLock.push({appId: container.appId, serviceName: container.serviceName})
      return false
    }

    steps.push({action: 'kill', container}, {action: 'remove', container})
    return true
  }

  for (const app of apps) {
    for (const volume of new Set([...app.volumes, ...app.services.flatMap((service) => service.volumes)])) {
      if (!existingVolumes.has(volume)) steps.push({action: 'createVolume', name: volume, appId: app.appId})
    }
  }

  for (const service of desired) {
    const containers = current.containers.filter((container) => container.appId === service.appId && container.serviceName === service.serviceName)
    const installed = containers.find((container) => matches(container, service))
    if (installed) {
      // A container that exited by itself stays down unless its restart policy says otherwise; one stopped by hand comes back.
      const shouldRun = installed.status === 'created' || (installed.status === 'exited' && service.spec.restart === 'always')
      if (shouldRun) steps.push({action: 'start', container: installed})
      if (installed.status === 'dead') stopAndRemove(installed)
      for (const other of containers.filter((container) => container !== installed)) stopAndRemove(other)
      continue
    }

    const unrunnable = unrunnableReason(current, service.image)
    if (unrunnable !== undefined) {
      refused.push({appId: service.appId, serviceName: service.serviceName, serviceId: service.serviceId, image: service.image, reason: unrunnable})
      continue
    }

    const outdated = containers
    const imageReady = hasImage(current, service.image)
    const killFirst = service.strategy === 'kill-then-download' || service.strategy === 'delete-then-download'
    if (!imageReady && !killFirst) {
      steps.push({action: 'fetch', image: service.image, appId: service.appId, serviceName: service.serviceName})
      continue
    }

    const allGone = outdated.map(stopAndRemove).every(Boolean)
    if (!imageReady) {
      if (allGone) steps.push({action: 'fetch', image: service.image, appId: service.appId, serviceName: service.serviceName})
      continue
    }

    const volumesReady = service.volumes.every((volume) => existingVolumes.has(volume))
    if (allGone && volumesReady) steps.push({action: 'createAndStart', service})
  }

  const wantedServices = new Set(desired.map((service) => `${service.appId}/${service.serviceName}`))
  for (const container of current.containers) {
    if (!wantedServices.has(`${container.appId}/${container.serviceName}`)) stopAndRemove(container)
  }

  const imagesInUse = new Set([...desired.map((service) => service.image), ...current.containers.map((container) => container.image)].map(normalizeImageReference))
  // A reference is removed, not the image: an image also known by another name stays for that name.
  for (const image of current.fetchedImages) {
    if (!imagesInUse.has(normalizeImageReference(image))) steps.push({action: 'removeImage', image})
  }

  return {steps, waitingForLock, refused}
}

/** What a step acts on, in words for the device's log. */
export function describeStep(step: Step): string {
  switch (step.action) {
    case 'fetch':
    case 'removeImage': {
      return `image '${step.image}'`
    }

    case 'createVolume': {
      return `volume '${step.name}'`
    }

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
    case 'createAndStart': return `${step.service.appId}/${step.service.serviceName}`
    case 'start':
    case 'kill':
    case 'remove': return `${step.container.appId}/${step.container.serviceName}`
    case 'createVolume': return `volume/${step.name}`
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
