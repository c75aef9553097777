import type {CurrentContainer, CurrentState, DesiredService, Step, UpdateStrategy} from './reconciler.js'

/** A service none of whose containers runs the target's configuration, as its strategy sees it. */
export interface ServiceUpdate {
  service: DesiredService
  /** The service's containers, each of another release or configuration. */
  outdated: CurrentContainer[]
  /** The engine holds the target's image. */
  imageReady: boolean
  /** Plans the container's kill and removal; false when they wait for the app's update lock. */
  stopAndRemove(container: CurrentContainer): boolean
  /** The removals of the images the agent fetched that nothing uses once these containers are gone. */
  imagesFreedBy(containers: CurrentContainer[]): Step[]
}

export interface UpdateDecision {
  /** Steps that follow the kills and removals the strategy planned through `stopAndRemove`. */
  steps: Step[]
  /** The new container may be created now, once its networks, volumes and dependencies are ready. */
  create: boolean
}

export interface UpdateStrategyPlanner {
  plan(update: ServiceUpdate): UpdateDecision
  /**
   * Whether an old container that still runs beside the service's installed new one stays for now; without this,
   * it is stopped at once.
   */
  keepsOldRunning?(service: DesiredService, installed: CurrentContainer, current: CurrentState, now: number): boolean
}

const fetchOf = (service: DesiredService): Step => ({action: 'fetch', image: service.image, appId: service.appId, serviceName: service.serviceName})

/** Plans every outdated container's removal (none is skipped when one waits); true when all of them may go now. */
const removeAll = (update: ServiceUpdate): boolean => update.outdated.map((container) => update.stopAndRemove(container)).every(Boolean)

/** The default: the new image is downloaded while the old container runs, which is replaced only then. */
export const downloadThenKill: UpdateStrategyPlanner = {
  plan(update) {
    if (!update.imageReady) return {steps: [fetchOf(update.service)], create: false}
    return {steps: [], create: removeAll(update)}
  },
}

/** The old container stops before the download, so the two never run side by side. */
export const killThenDownload: UpdateStrategyPlanner = {
  plan(update) {
    const allGone = removeAll(update)
    if (!update.imageReady) return {steps: allGone ? [fetchOf(update.service)] : [], create: false}
    return {steps: [], create: allGone}
  },
}

/** For small disks: the old container and then its image go before the new image comes. */
export const deleteThenDownload: UpdateStrategyPlanner = {
  plan(update) {
    const allGone = removeAll(update)
    if (!update.imageReady) return {steps: allGone ? [...update.imagesFreedBy(update.outdated), fetchOf(update.service)] : [], create: false}
    return {steps: [], create: allGone}
  },
}

/**
 * The new container starts beside the old one (unless they would have the same name), and the old one stops once
 * the new one says it took over (the handover-complete file in the app's lock folder) or the timeout passes.
 */
export const handOver: UpdateStrategyPlanner = {
  plan(update) {
    if (!update.imageReady) return {steps: [fetchOf(update.service)], create: false}
    const besideOld = !update.outdated.some((container) => container.name === update.service.spec.name)
    return {steps: [], create: besideOld || removeAll(update)}
  },
  keepsOldRunning(service, installed, current, now) {
    const since = installed.createdAt ?? 0
    const completedAt = current.handoverCompletedAt?.[service.appId]
    const tookOver = completedAt !== undefined && completedAt >= since
    return !tookOver && now - since < service.handoverTimeoutMs
  },
}

/** Each strategy of `io.balena.update.strategy`, as balena's supervisor names them. */
export const UPDATE_STRATEGIES: Record<UpdateStrategy, UpdateStrategyPlanner> = {
  'download-then-kill': downloadThenKill,
  'kill-then-download': killThenDownload,
  'delete-then-download': deleteThenDownload,
  'hand-over': handOver,
}
