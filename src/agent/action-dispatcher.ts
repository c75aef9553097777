import type {DeviceAction} from '../protocol/device-action.js'
import type {DeviceActions} from './device-actions.js'
import type {CurrentContainer} from './reconciler.js'

export interface ActionDispatcherOptions {
  /** The containers the reconcile loop last saw. */
  containers(): readonly CurrentContainer[]
  restartContainer(id: string): Promise<void>
  /** The actions that take the engine from the reconcile loop. */
  deviceActions: Pick<DeviceActions, 'stopService' | 'startService' | 'purge' | 'power'>
  /** Removes the agent's volumes of apps other than these; undefined until the device is registered. */
  volumeCleaner(): {removeVolumesOfAppsOtherThan(wanted: ReadonlySet<number>): Promise<{removed: string[]; kept: Array<{name: string; reason: string}>}>} | undefined
  /** The apps the target has. */
  wantedAppIds(): ReadonlySet<number>
  systemLine(message: string, serviceId?: number): void
  /** The agent's own diagnostics. */
  log?: (message: string) => void
}

/**
 * Carries out what users ask of the device, whichever way it comes: the server's device actions (collected, or
 * over the device link) and the local supervisor API. Each outcome is said in the device's logs, where whoever
 * asked is looking.
 */
export class ActionDispatcher {
  private actionsDone: Promise<unknown> = Promise.resolve()

  constructor(private readonly options: ActionDispatcherOptions) {}

  /**
   * One action at a time, in the order they came (link, collect or local API): a stop-service sent while a restart
   * still stops the service is not undone by the restart's start.
   */
  perform(action: DeviceAction): Promise<void> {
    return this.inOrder(() => this.performNow(action))
  }

  private inOrder(work: () => Promise<void>): Promise<void> {
    const done = this.actionsDone.then(work)
    this.actionsDone = done.catch(() => {})
    return done
  }

  private async performNow(action: DeviceAction): Promise<void> {
    switch (action.action) {
      case 'restart': {
        return this.restartContainers(action.appId)
      }

      case 'restart-service': {
        const serviceName = action.serviceName ?? this.options.containers().find((container) => container.imageId === action.imageId)?.serviceName
        if (serviceName) return this.restartContainers(action.appId, serviceName)
        this.options.systemLine(`No running service to restart for image ${action.imageId}`)
        return
      }

      case 'stop-service': {
        return this.options.deviceActions.stopService(action)
      }

      case 'start-service': {
        return this.options.deviceActions.startService(action)
      }

      case 'purge': {
        return this.options.deviceActions.purge(action.appId, action.force === true)
      }

      case 'reboot':
      case 'shutdown': {
        return this.options.deviceActions.power(action.action, action.force === true)
      }

      case 'blink': {
        return this.identify()
      }

      default: {
        this.options.systemLine(`This agent does not support the '${(action as {action: string}).action}' action`)
      }
    }
  }

  /** For the server's actions, whose failure is already in the device's logs: the agent's own diagnostic, never a rejection. */
  performLogged(action: DeviceAction): Promise<void> {
    return this.perform(action).catch((error: unknown) => this.options.log?.(`device action ${action.action} failed: ${(error as Error).message}`))
  }

  restartApp(appId: number): Promise<void> {
    return this.inOrder(() => this.restartContainers(appId))
  }

  /**
   * balena's supervisor blinks the board's LED; a host the agent does not own has none it may drive, so the device
   * says it in its logs.
   */
  identify(): void {
    this.options.systemLine('Identify requested: this is the device')
  }

  /** `/v2/cleanup-volumes`: the named volumes of apps the target no longer has (those in use stay). */
  async cleanupVolumes(): Promise<void> {
    const cleaner = this.options.volumeCleaner()
    if (!cleaner) throw new Error('the device is not registered yet')
    const {removed, kept} = await cleaner.removeVolumesOfAppsOtherThan(this.options.wantedAppIds())
    for (const name of removed) this.options.systemLine(`Removed volume '${name}'`)
    for (const {name, reason} of kept) this.options.log?.(`volume ${name} kept: ${reason}`)
  }

  private async restartContainers(appId: number, serviceName?: string): Promise<void> {
    const containers = this.options.containers().filter((container) => container.appId === appId && (!serviceName || container.serviceName === serviceName))
    for (const container of containers) {
      this.options.systemLine(`Restarting service '${container.serviceName} ${container.image}'`, container.serviceId)
      await this.options.restartContainer(container.id)
    }
  }
}
