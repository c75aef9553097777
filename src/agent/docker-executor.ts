import {access, mkdir, readdir, readFile, stat} from 'node:fs/promises'
import path from 'node:path'

import type Docker from 'dockerode'

import {writeFileAtomic} from '../atomic-file.js'
import {ImagePlatformCheck} from './image-platform.js'
import {
  type ContainerStatus,
  type CurrentContainer,
  type CurrentState,
  type DesiredService,
  HANDOVER_COMPLETE_FILE,
  LABELS,
  normalizeImageReference,
  type Step,
  type StepExecutor,
} from './reconciler.js'

export type RegistryAuth = Docker.AuthConfig

export interface DockerExecutorOptions {
  docker: Docker
  deviceUuid: string
  dataDir: string
  /** Where the engine's host sees dataDir, when the agent runs in a container with it mounted elsewhere (default: dataDir). */
  hostDataDir?: string
  /** Credentials for pulling an image; asked for at each fetch, since they come from the server and expire. */
  registryAuth?: (image: string) => Promise<RegistryAuth | undefined> | RegistryAuth | undefined
  /** The agent's own lines for the device logs ("Downloading image …"). */
  onSystemLog?: (message: string, serviceId?: number) => void
  onDownloadProgress?: (image: string, percent: number) => void
  /** Where the kernel's binfmt_misc is mounted, to tell which foreign CPUs are emulated (default /proc/sys/fs/binfmt_misc). */
  binfmtMisc?: string
}

export interface ContainerEvent {
  action: 'start' | 'die'
  containerId: string
  serviceName: string
  serviceId: number
  exitCode?: number
}

/** Docker answers 304 for "already started/stopped" and 404 for "already gone": both mean the step is done. */
function isAlreadyDone(error: unknown): boolean {
  const status = (error as {statusCode?: number}).statusCode
  return status === 304 || status === 404
}

function labelNumber(labels: Record<string, string>, key: string): number {
  return Number(labels[key] ?? Number.NaN)
}

/** The engine's list says a container's health in its status line: "Up 5 seconds (healthy)". */
function healthOf(status: string | undefined): CurrentContainer['health'] {
  const match = /\((healthy|unhealthy|health: starting)\)/.exec(status ?? '')
  if (!match) return undefined
  return match[1] === 'health: starting' ? 'starting' : (match[1] as 'healthy' | 'unhealthy')
}

/** Feature binds whose host path exists; the others are left out, as balena does for /lib/modules and /lib/firmware. */
async function presentBinds(binds: string[]): Promise<string[]> {
  const present = await Promise.all(binds.map((bind) => access(bind.slice(0, bind.indexOf(':'))).then(() => true, () => false)))
  return binds.filter((_, index) => present[index])
}

/** The label filter that picks the containers of one device's agent. */
export function ownerLabel(deviceUuid: string): string {
  return `${LABELS.deviceUuid}=${deviceUuid}`
}

/** The thin side of the reconciler: reads what the engine holds and applies one step at a time. */
export class DockerExecutor implements StepExecutor {
  private readonly docker: Docker
  private readonly fetchedImagesFile: string
  private readonly platformCheck: ImagePlatformCheck

  constructor(private readonly options: DockerExecutorOptions) {
    this.docker = options.docker
    this.fetchedImagesFile = path.join(options.dataDir, 'fetched-images.json')
    this.platformCheck = new ImagePlatformCheck(options.docker, options.binfmtMisc)
  }

  get ownerLabel(): string {
    return ownerLabel(this.options.deviceUuid)
  }

  /** Host directory holding an app's update lock, mounted at /tmp/balena in each of its services. */
  lockDirOf = (appId: number): string => path.join(path.resolve(this.options.dataDir), 'update-locks', String(appId))

  /** The same folder as the engine sees it: what services bind-mount. */
  hostLockDirOf = (appId: number): string => path.join(path.resolve(this.options.hostDataDir ?? this.options.dataDir), 'update-locks', String(appId))

  async readCurrentState(wantedImages: string[] = []): Promise<CurrentState> {
    const [containers, images, volumes, fetched, lockedAppIds, networks, handoverCompletedAt] = await Promise.all([
      this.docker.listContainers({all: true, filters: {label: [`${LABELS.supervised}=true`, this.ownerLabel]}}),
      this.docker.listImages(),
      // Every volume by name, whoever made it: a named volume that exists is kept and reused, never created again.
      this.docker.listVolumes(),
      this.fetchedImages(),
      this.lockedAppIds(),
      this.docker.listNetworks({filters: {label: [`${LABELS.supervised}=true`, this.ownerLabel]}}),
      this.handoverCompletedAt(),
    ])
    const references = images.flatMap((image) => [...(image.RepoTags ?? []), ...(image.RepoDigests ?? [])]).filter((reference) => !reference.includes('<none>'))
    const unrunnableImages = await this.unrunnableAmong(images, wantedImages)
    return {
      containers: containers.map((container): CurrentContainer => {
        const labels = container.Labels ?? {}
        return {
          id: container.Id,
          name: (container.Names[0] ?? '').replace(/^\//, ''),
          appId: labelNumber(labels, LABELS.appId),
          appUuid: labels[LABELS.appUuid] ?? '',
          serviceName: labels[LABELS.serviceName] ?? '',
          serviceId: labelNumber(labels, LABELS.serviceId),
          imageId: labelNumber(labels, LABELS.imageId),
          releaseId: labelNumber(labels, LABELS.releaseId),
          commit: labels[LABELS.commit] ?? '',
          image: container.Image,
          configHash: labels[LABELS.configHash] ?? '',
          status: container.State as ContainerStatus,
          health: healthOf(container.Status),
          networks: Object.keys(container.NetworkSettings?.Networks ?? {}),
          networkMode: container.HostConfig?.NetworkMode,
          createdAt: container.Created * 1000,
        }
      }),
      networks: networks.map((network) => ({name: network.Name, appId: labelNumber(network.Labels ?? {}, LABELS.appId), configHash: network.Labels?.[LABELS.configHash] ?? ''})),
      images: references,
      fetchedImages: references.filter((reference) => fetched.has(normalizeImageReference(reference))),
      volumes: (volumes.Volumes ?? []).map((volume) => volume.Name),
      lockedAppIds,
      ...(Object.keys(unrunnableImages).length > 0 ? {unrunnableImages} : {}),
      handoverCompletedAt,
    }
  }

  /**
   * Which of the wanted images the engine holds but cannot run, and why: an image made for another CPU than the
   * engine's, with no emulator registered for it, would only crash at each start ("exec format error").
   */
  private async unrunnableAmong(images: Docker.ImageInfo[], wantedImages: string[]): Promise<Record<string, string>> {
    const unrunnable: Record<string, string> = {}
    if (wantedImages.length === 0) return unrunnable
    const wanted = new Set(wantedImages.map(normalizeImageReference))
    for (const image of images) {
      const reference = [...(image.RepoTags ?? []), ...(image.RepoDigests ?? [])].find((candidate) => wanted.has(normalizeImageReference(candidate)))
      if (!reference) continue
      const reason = await this.platformCheck.whyUnrunnable(image.Id)
      if (reason !== undefined) unrunnable[reference] = reason
    }

    return unrunnable
  }

  async apply(step: Step): Promise<void> {
    const log = this.options.onSystemLog ?? (() => {})
    switch (step.action) {
      case 'fetch': {
        log(`Downloading image '${step.image}'`)
        // Recorded before the pull: an agent killed once the engine has the image, before it could say so, would
        // otherwise leave the image behind for good. The record only counts while the engine has the image.
        await this.recordFetched(step.image, true)
        try {
          await this.pull(step.image)
        } catch (error) {
          await this.recordFetched(step.image, false).catch(() => {})
          throw error
        }

        log(`Downloaded image '${step.image}'`)
        return
      }

      case 'createVolume': {
        log(`Creating volume '${step.name}'`)
        const settings = step.settings ?? {Driver: 'local', DriverOpts: {}, Labels: {}}
        await this.docker.createVolume({Name: step.name, ...settings, Labels: {...settings.Labels, ...this.ownership(step.appId)}})
        return
      }

      case 'createNetwork': {
        const {network} = step
        log(`Creating network '${network.name}'`)
        await this.docker.createNetwork({
          Name: network.name,
          ...network.settings,
          CheckDuplicate: true,
          Labels: {...network.settings.Labels, ...this.ownership(network.appId), [LABELS.configHash]: network.configHash},
        })
        return
      }

      case 'removeNetwork': {
        log(`Removing network '${step.name}'`)
        await this.docker.getNetwork(step.name).remove().catch(this.unlessDone)
        return
      }

      case 'create':
      case 'createAndStart': {
        const {service} = step
        const container = await this.createContainer(service)
        if (step.action === 'create') {
          log(`Service '${service.serviceName}' is installed and starts after the device reboots (io.balena.update.requires-reboot)`, service.serviceId)
          return
        }

        log(`Starting service '${service.serviceName} ${service.image}'`, service.serviceId)
        await container.start()
        return
      }

      case 'start': {
        log(`Starting service '${step.container.serviceName} ${step.container.image}'`, step.container.serviceId)
        await this.docker.getContainer(step.container.id).start().catch(this.unlessDone)
        return
      }

      case 'kill': {
        log(`Killing service '${step.container.serviceName} ${step.container.image}'`, step.container.serviceId)
        // The engine waits the container's own stop_grace_period (10 s unless the composition says otherwise).
        await this.docker.getContainer(step.container.id).stop().catch(this.unlessDone)
        log(`Killed service '${step.container.serviceName} ${step.container.image}'`, step.container.serviceId)
        return
      }

      case 'remove': {
        await this.docker.getContainer(step.container.id).remove({v: true}).catch(this.unlessDone)
        return
      }

      case 'removeImage': {
        await this.docker.getImage(step.image).remove().catch(this.unlessDone)
        await this.recordFetched(step.image, false)
        log(`Deleted image '${step.image}'`)
      }
    }
  }

  /**
   * Removes the named volumes this agent created for an app (by their labels, so another device's or a
   * hand-made volume of the same name stays); their containers must be gone first. Returns their names.
   */
  async removeAppVolumes(appId: number): Promise<string[]> {
    const log = this.options.onSystemLog ?? (() => {})
    const {Volumes: volumes} = await this.docker.listVolumes({filters: {label: [`${LABELS.supervised}=true`, `${LABELS.appId}=${appId}`, this.ownerLabel]}})
    const names = (volumes ?? []).map((volume) => volume.Name).sort()
    for (const name of names) {
      log(`Removing volume '${name}'`)
      await this.docker.getVolume(name).remove().catch(this.unlessDone)
    }

    return names
  }

  /**
   * Removes this agent's named volumes of apps other than `wanted` (`/v2/cleanup-volumes`). A volume a container
   * still uses stays, with the engine's reason.
   */
  async removeVolumesOfAppsOtherThan(wanted: ReadonlySet<number>): Promise<{removed: string[]; kept: Array<{name: string; reason: string}>}> {
    const {Volumes: volumes} = await this.docker.listVolumes({filters: {label: [`${LABELS.supervised}=true`, this.ownerLabel]}})
    const result: {removed: string[]; kept: Array<{name: string; reason: string}>} = {removed: [], kept: []}
    for (const volume of volumes ?? []) {
      if (wanted.has(Number(volume.Labels?.[LABELS.appId]))) continue
      try {
        await this.docker.getVolume(volume.Name).remove()
        result.removed.push(volume.Name)
      } catch (error) {
        result.kept.push({name: volume.Name, reason: (error as Error).message})
      }
    }

    return result
  }

  /** Starts and deaths of the agent's containers, as they happen, until the returned function is called or the engine ends the stream. */
  async watchContainerEvents(onEvent: (event: ContainerEvent) => void, onEnded: () => void): Promise<() => void> {
    const stream = (await this.docker.getEvents({filters: {type: ['container'], event: ['start', 'die'], label: [this.ownerLabel]}})) as NodeJS.ReadableStream & {destroy(): void}
    let pending = ''
    stream.on('data', (chunk: Buffer) => {
      pending += chunk.toString('utf8')
      let newline: number
      while ((newline = pending.indexOf('\n')) !== -1) {
        const line = pending.slice(0, newline).trim()
        pending = pending.slice(newline + 1)
        if (!line) continue
        const event = JSON.parse(line) as {Action: string; Actor: {ID: string; Attributes: Record<string, string>}}
        const attributes = event.Actor.Attributes
        onEvent({
          action: event.Action as ContainerEvent['action'],
          containerId: event.Actor.ID,
          serviceName: attributes[LABELS.serviceName] ?? '',
          serviceId: labelNumber(attributes, LABELS.serviceId),
          exitCode: attributes.exitCode === undefined ? undefined : Number(attributes.exitCode),
        })
      }
    })
    stream.once('close', onEnded)
    stream.once('end', onEnded)
    stream.on('error', () => {})
    return () => {
      stream.removeListener('close', onEnded)
      stream.removeListener('end', onEnded)
      stream.destroy()
    }
  }

  private ownership(appId: number): Record<string, string> {
    return {[LABELS.supervised]: 'true', [LABELS.appId]: String(appId), [LABELS.deviceUuid]: this.options.deviceUuid}
  }

  /** Creates a service's container as its spec says, attached to each of its networks, without starting it. */
  private async createContainer(service: DesiredService): Promise<Docker.Container> {
    const {spec} = service
    await mkdir(this.lockDirOf(service.appId), {recursive: true})
    this.options.onSystemLog?.(`Installing service '${service.serviceName} ${service.image}'`, service.serviceId)
    const [mainNetwork, ...otherNetworks] = Object.entries(spec.networks)
    const container = await this.docker.createContainer({
      ...spec.settings.container,
      name: spec.name,
      Image: spec.image,
      Cmd: spec.command,
      Entrypoint: spec.entrypoint,
      Env: Object.entries(spec.environment).map(([name, value]) => `${name}=${value}`),
      Labels: {...spec.labels, [LABELS.configHash]: service.configHash},
      WorkingDir: spec.workingDir,
      User: spec.user,
      Tty: spec.tty,
      NetworkingConfig: mainNetwork ? {EndpointsConfig: {[mainNetwork[0]]: mainNetwork[1]}} : undefined,
      HostConfig: {
        ...spec.settings.host,
        NetworkMode: await this.networkModeOf(service),
        RestartPolicy: {Name: spec.restart === 'no' ? '' : spec.restart},
        Binds: [...spec.binds, ...(await presentBinds(spec.featureBinds))],
        Privileged: spec.privileged,
      },
    })
    // The engine attaches a new container to one network; it joins the others before it starts.
    for (const [name, endpoint] of otherNetworks) await this.docker.getNetwork(name).connect({Container: container.id, EndpointConfig: endpoint})
    return container
  }

  /** `service:<name>` becomes the container of that service of the same app, which the plan made sure runs. */
  private async networkModeOf(service: DesiredService): Promise<string> {
    const host = /^service:(.+)$/.exec(service.spec.networkMode)?.[1]
    if (!host) return service.spec.networkMode
    const [hostContainer] = await this.docker.listContainers({
      filters: {label: [this.ownerLabel, `${LABELS.appId}=${service.appId}`, `${LABELS.serviceName}=${host}`], status: ['running']},
    })
    if (!hostContainer) throw new Error(`service '${host}', whose network '${service.serviceName}' shares, is not running`)
    return `container:${hostContainer.Id}`
  }

  private readonly unlessDone = (error: unknown): void => {
    if (!isAlreadyDone(error)) throw error
  }

  private async pull(image: string): Promise<void> {
    const auth = await this.options.registryAuth?.(image)
    const stream = await this.docker.pull(image, auth ? {authconfig: auth} : {})
    const layers = new Map<string, {current: number; total: number}>()
    await new Promise<void>((resolve, reject) => {
      this.docker.modem.followProgress(
        stream,
        (error: Error | null) => (error ? reject(error) : resolve()),
        (event: {id?: string; error?: string; progressDetail?: {current?: number; total?: number}}) => {
          if (event.error) {
            reject(new Error(event.error))
            return
          }

          if (!event.id || !event.progressDetail?.total) return
          layers.set(event.id, {current: event.progressDetail.current ?? 0, total: event.progressDetail.total})
          const totals = [...layers.values()].reduce((sum, layer) => ({current: sum.current + layer.current, total: sum.total + layer.total}), {current: 0, total: 0})
          this.options.onDownloadProgress?.(image, Math.floor((100 * totals.current) / totals.total))
        },
      )
    })
  }

  private async fetchedImages(): Promise<Set<string>> {
    try {
      return new Set((JSON.parse(await readFile(this.fetchedImagesFile, 'utf8')) as string[]).map(normalizeImageReference))
    } catch {
      return new Set()
    }
  }

  private async recordFetched(image: string, fetched: boolean): Promise<void> {
    const images = await this.fetchedImages()
    if (fetched) images.add(normalizeImageReference(image))
    else images.delete(normalizeImageReference(image))
    await writeFileAtomic(this.fetchedImagesFile, JSON.stringify([...images]))
  }

  /** When a hand-over service last said it took over, by app: the mtime of handover-complete in the app's lock folder. */
  private async handoverCompletedAt(): Promise<Record<number, number>> {
    const root = path.join(path.resolve(this.options.dataDir), 'update-locks')
    const completed: Record<number, number> = {}
    for (const appDir of await readdir(root).catch(() => [] as string[])) {
      const written = await stat(path.join(root, appDir, HANDOVER_COMPLETE_FILE)).catch(() => undefined)
      if (written) completed[Number(appDir)] = written.mtimeMs
    }

    return completed
  }

  private async lockedAppIds(): Promise<number[]> {
    const root = path.join(path.resolve(this.options.dataDir), 'update-locks')
    const appDirs = await readdir(root).catch(() => [] as string[])
    const locked: number[] = []
    for (const appDir of appDirs) {
      const held = await Promise.any(['updates.lock', 'resin-updates.lock'].map((file) => access(path.join(root, appDir, file)))).then(() => true, () => false)
      if (held) locked.push(Number(appDir))
    }

    return locked
  }
}
