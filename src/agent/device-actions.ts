import {execFile} from 'node:child_process'

import {type CurrentContainer, type CurrentState, splitCommand, type Step} from './reconciler.js'

/** An action refused because an app holds its update lock; the local API answers 423, as balena's supervisor does. */
export class UpdateLockedError extends Error {
  readonly statusCode = 423
}

/** What the actions need of the engine: the reconciler's executor plus removing an app's volumes. */
export interface ActionEngine {
  readCurrentState(): Promise<CurrentState>
  apply(step: Step): Promise<void>
  removeAppVolumes(appId: number): Promise<string[]>
}

export type PowerAction = 'reboot' | 'shutdown'

/** What asks the host to go down: the agent does not own the host, so this is configuration. */
export const DEFAULT_POWER_COMMANDS: Record<PowerAction, string> = {
  // What balenaOS's supervisor asks of systemd through logind over D-Bus.
  reboot: 'systemctl reboot',
  shutdown: 'systemctl poweroff',
}

const POWER_COMMAND_TIMEOUT_MS = 60_000

export interface DeviceActionsOptions {
  /** The engine once the device is registered; before that the actions are refused. */
  engine: () => ActionEngine | undefined
  /** A line for the device's logs. */
  systemLine: (message: string, serviceId?: number) => void
  /** Stops the reconcile loop and resolves once no round runs; the returned function lets it run again. */
  holdReconciler: () => Promise<() => void>
  /** The target's BALENA_SUPERVISOR_OVERRIDE_LOCK: every action then ignores update locks. */
  lockOverridden?: () => boolean
  /** Command lines (split into words as a shell would, run without one) that reboot and power off the host. */
  commands?: Partial<Record<PowerAction, string>>
  /** Runs a command's words; by default as a child process, failing on a non-zero exit. */
  runCommand?: (words: string[]) => Promise<void>
  /** Sends the device logs now, so the last lines leave before the host goes down. */
  flushLogs?: () => Promise<void>
}

/** Runs a command's words as a child process of the agent, which runs on the host; fails on a non-zero exit. */
export function runHostCommand(words: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(words[0], words.slice(1), {timeout: POWER_COMMAND_TIMEOUT_MS}, (error, _stdout, stderr) => {
      if (!error) resolve()
      else reject(new Error(`${words.join(' ')}: ${String(stderr).trim() || error.message}`))
    })
  })
}

const isUp = (container: CurrentContainer) => container.status === 'running' || container.status === 'restarting' || container.status === 'paused'

/** A service of an app, named as balena's API names it: by its name or by the id of its image. */
export interface ServiceSelector {
  appId: number
  serviceName?: string
  imageId?: number
}

const describeService = (selector: ServiceSelector) => (selector.serviceName === undefined ? `of image ${selector.imageId}` : `'${selector.serviceName}'`)

const selects = (selector: ServiceSelector) => (container: CurrentContainer) =>
  container.appId === selector.appId && (selector.serviceName === undefined ? container.imageId === selector.imageId : container.serviceName === selector.serviceName)

const WORDS: Record<PowerAction, {doing: string; noun: string; infinitive: string}> = {
  reboot: {doing: 'Rebooting', noun: 'Reboot', infinitive: 'rebooting'},
  shutdown: {doing: 'Shutting down', noun: 'Shutdown', infinitive: 'shutting down'},
}

/**
 * The supervisor actions that act on the device as a whole: purge an app's data, reboot, shut down. Each
 * holds the reconcile loop while it works, honours the apps' update locks unless forced, and says what it
 * does in the device's logs.
 */
export class DeviceActions {
  /** Containers stopped by stop-service; kept in memory, as balena's supervisor keeps what it started. */
  private readonly stopped = new Set<string>()

  constructor(private readonly options: DeviceActionsOptions) {}

  /** The containers the reconciler must leave stopped (PlanOptions.stoppedContainerIds). */
  stoppedContainerIds(): string[] {
    return [...this.stopped]
  }

  /**
   * balena's stop-service: stops the service's containers, which then stay stopped across reconciles until
   * start-service, or until a new release or configuration replaces them. Honours the app's update lock.
   */
  async stopService(selector: ServiceSelector, force = false): Promise<void> {
    await this.withService(selector, 'stop', async (engine, containers, current) => {
      if (current.lockedAppIds.includes(selector.appId) && !this.overrides(force)) {
        const message = `Not stopping service ${describeService(selector)}: the update lock of app ${selector.appId} is held; force to override`
        this.options.systemLine(message)
        throw new UpdateLockedError(message)
      }

      for (const container of containers) {
        this.stopped.add(container.id)
        if (isUp(container)) await engine.apply({action: 'kill', container})
      }
    })
  }

  /** balena's start-service: starts the service's containers and lets the reconciler keep them running again. */
  async startService(selector: ServiceSelector): Promise<void> {
    await this.withService(selector, 'start', async (engine, containers) => {
      for (const container of containers) {
        this.stopped.delete(container.id)
        if (!isUp(container)) await engine.apply({action: 'start', container})
      }
    })
  }

  /** Holds the reconciler while it acts on the selected service's containers; forgets containers that are gone. */
  private async withService(
    selector: ServiceSelector,
    verb: 'stop' | 'start',
    act: (engine: ActionEngine, containers: CurrentContainer[], current: CurrentState) => Promise<void>,
  ): Promise<void> {
    const engine = this.engineOrFail()
    const release = await this.options.holdReconciler()
    try {
      const current = await engine.readCurrentState()
      for (const id of this.stopped) if (!current.containers.some((container) => container.id === id)) this.stopped.delete(id)
      const containers = current.containers.filter(selects(selector))
      if (containers.length === 0) this.options.systemLine(`No service ${describeService(selector)} of app ${selector.appId} to ${verb}`)
      else await act(engine, containers, current)
    } finally {
      release()
    }
  }

  /**
   * As balena's supervisor: stops and removes the app's containers, removes its named volumes, then lets the
   * reconciler create them afresh and start the services again.
   */
  async purge(appId: number, force = false): Promise<void> {
    const engine = this.engineOrFail()
    const release = await this.options.holdReconciler()
    try {
      const current = await engine.readCurrentState()
      if (current.lockedAppIds.includes(appId) && !this.overrides(force)) {
        const message = `Not purging data for app ${appId}: its update lock is held; force to override`
        this.options.systemLine(message)
        throw new UpdateLockedError(message)
      }

      this.options.systemLine(`Purging data for app ${appId}`)
      try {
        for (const container of current.containers.filter((candidate) => candidate.appId === appId)) {
          if (isUp(container)) await engine.apply({action: 'kill', container})
          await engine.apply({action: 'remove', container})
        }

        await engine.removeAppVolumes(appId)
      } catch (error) {
        this.options.systemLine(`Error purging data: ${(error as Error).message}`)
        throw error
      }

      this.options.systemLine('Purged data')
    } finally {
      release()
    }
  }

  /**
   * Stops every service gracefully, then runs the configured reboot or power-off command. Once the command
   * has run, the reconcile loop stays held: the host is going down and must not see the services started
   * again. A failed command lets the loop start them again.
   */
  async power(action: PowerAction, force = false): Promise<void> {
    const words = WORDS[action]
    const engine = this.engineOrFail()
    const release = await this.options.holdReconciler()
    try {
      const current = await engine.readCurrentState()
      if (current.lockedAppIds.length > 0 && !this.overrides(force)) {
        const apps = current.lockedAppIds.join(', ')
        const message = `Not ${words.infinitive}: the update lock is held (app ${apps}); force to override`
        this.options.systemLine(message)
        throw new UpdateLockedError(message)
      }

      this.options.systemLine(`Stopping services before ${words.infinitive}`)
      for (const container of current.containers.filter(isUp)) await engine.apply({action: 'kill', container})
      this.options.systemLine(words.doing)
      await this.options.flushLogs?.().catch(() => {})
      const command = splitCommand(this.options.commands?.[action] ?? DEFAULT_POWER_COMMANDS[action])
      if (command.length === 0) throw new Error(`the ${action} command is empty`)
      await (this.options.runCommand ?? runHostCommand)(command)
    } catch (error) {
      if (!(error instanceof UpdateLockedError)) this.options.systemLine(`${words.noun} failed: ${(error as Error).message}`)
      release()
      throw error
    }
  }

  private overrides(force: boolean): boolean {
    return force || this.options.lockOverridden?.() === true
  }

  private engineOrFail(): ActionEngine {
    const engine = this.options.engine()
    if (!engine) throw new Error('the device is not registered yet')
    return engine
  }
}
