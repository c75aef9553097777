import type {TargetDevice} from '../protocol/target-state.js'
import type {ContainerEvent} from './docker-executor.js'
import type {FollowedContainer} from './log-shipper.js'
import {PullBackoff, PullDeferredError, type PullFailure} from './pull-backoff.js'
import {converge, type CurrentState, desiredAppsOf, type Plan, type PlanOptions, refusalLine, type StepExecutor, stepFailureLine} from './reconciler.js'
import type {StoredTarget} from './target-store.js'
import {Wakeup} from './wakeup.js'

/** What the loop last saw: the engine's state, the plan towards the target, and the commit each app runs. */
export interface ReconcileSnapshot {
  current?: CurrentState
  plan?: Plan
  target?: TargetDevice
  commitOf: ReadonlyMap<number, string | undefined>
}

/** The engine as the loop drives it: read, apply, and say when the agent's containers start or die. */
export interface ReconcileEngine extends StepExecutor {
  watchContainerEvents(onEvent: (event: ContainerEvent) => void, onEnded: () => void): Promise<() => void>
}

/** The state after a plan or a round, as the state report tells it. */
export interface ReconcileProgress {
  target: TargetDevice
  current: CurrentState
  plan: Plan
  planOptions: PlanOptions
  downloadProgress: ReadonlyMap<string, number>
  pullFailures: ReadonlyMap<string, PullFailure>
}

export interface ReconcileLoopOptions {
  store: {load(): Promise<StoredTarget | undefined>}
  /** The device's logs: system lines, and the containers whose output is shipped. */
  logs: {systemLine(message: string, serviceId?: number): void; followContainer(container: FollowedContainer): void}
  /** Read at each round: what the device is and how its services reach the agent. */
  planOptions(): PlanOptions
  /** Before each round, what the target needs besides the engine's steps (the supervisor network, fresh device facts). */
  prepare?(target: TargetDevice): Promise<void>
  onProgress?(progress: ReconcileProgress): void
  /** How often the engine is checked against the target even when nothing happened (default 10 s). */
  intervalMs?: number
  /** The pause after an image's download failed, doubled at each further failure (default 10 s). */
  pullRetryDelayMs?: number
  /** The agent's own diagnostics. */
  log?: (message: string) => void
}

/**
 * The level-triggered core of the agent: at each round it reads the engine and the stored target, converges
 * one onto the other and reports, then sleeps until the interval passes or something wakes it (a new target,
 * a container that started or died, an "update now"). Purge, reboot and shutdown take the engine from it:
 * `hold()` aborts the round under way, waits for it to end and keeps further rounds from starting until released.
 */
export class ReconcileLoop {
  private readonly wakeup = new Wakeup()
  private state: ReconcileSnapshot = {commitOf: new Map()}
  private pulls?: PullBackoff
  private stopped = false
  private running?: Promise<void>
  private forceNextUpdate = false
  private holds = 0
  private reconciling: Promise<void> = Promise.resolve()
  private abortRound?: AbortController
  private announcedRefusals = new Set<string>()
  private readonly downloadProgress = new Map<string, number>()
  private unwatchEvents?: () => void
  private readonly log: (message: string) => void

  constructor(private readonly options: ReconcileLoopOptions) {
    this.log = options.log ?? (() => {})
  }

  get snapshot(): ReconcileSnapshot {
    return this.state
  }

  /** The images whose last download failed, with why (none before the loop runs). */
  get pullFailures(): ReadonlyMap<string, PullFailure> {
    return this.pulls?.failures ?? new Map()
  }

  /** Runs rounds on the engine until `stop()`. */
  start(engine: ReconcileEngine): void {
    this.pulls = new PullBackoff(engine, {baseDelayMs: this.options.pullRetryDelayMs})
    this.running ??= this.run(engine, this.pulls)
  }

  async stop(): Promise<void> {
    this.stopped = true
    this.wakeup.wake()
    await this.running
    this.unwatchEvents?.()
    this.unwatchEvents = undefined
  }

  /** A round now, rather than at the end of the interval. */
  wake(): void {
    this.wakeup.wake()
  }

  /** A new target was stored: every image may be downloaded at once again. */
  targetChanged(): void {
    this.pulls?.reset()
    this.wakeup.wake()
  }

  /** An "update now": failed downloads are tried at once, and a forced one ignores the update locks for one round. */
  requestUpdate(force: boolean): void {
    this.forceNextUpdate ||= force
    this.targetChanged()
  }

  noteDownloadProgress(image: string, percent: number): void {
    this.downloadProgress.set(image, percent)
  }

  /** Takes the engine from the loop: resolves once no round runs, with the function that gives it back. */
  async hold(): Promise<() => void> {
    this.holds++
    this.abortRound?.abort()
    await this.reconciling
    let released = false
    return () => {
      if (released) return
      released = true
      this.holds--
      this.wakeup.wake()
    }
  }

  /** One round, unless the engine is held: converges on the stored target, if any. */
  async reconcileOnce(engine: StepExecutor): Promise<void> {
    if (this.holds > 0) return
    const controller = new AbortController()
    this.abortRound = controller
    this.reconciling = this.round(engine, controller.signal).catch((error: unknown) => this.log(`reconcile failed: ${(error as Error).message}`))
    await this.reconciling
  }

  private async run(engine: ReconcileEngine, pulls: PullBackoff): Promise<void> {
    while (!this.stopped) {
      try {
        this.unwatchEvents ??= await engine.watchContainerEvents((event) => this.onContainerEvent(event), () => {
          // The engine restarted or dropped the stream: watch again on the next round.
          this.unwatchEvents = undefined
        })
        await this.reconcileOnce(pulls)
      } catch (error) {
        this.log(`reconcile failed: ${(error as Error).message}`)
      }

      if (!this.stopped) await this.wakeup.wait(this.options.intervalMs ?? 10_000)
    }
  }

  private onContainerEvent(event: ContainerEvent): void {
    if (event.action === 'start') this.options.logs.followContainer({id: event.containerId, serviceId: event.serviceId, serviceName: event.serviceName})
    else this.options.logs.systemLine(`Service exited '${event.serviceName}'${event.exitCode === undefined ? '' : ` with code ${event.exitCode}`}`, event.serviceId)
    this.wakeup.wake()
  }

  private async round(engine: StepExecutor, signal: AbortSignal): Promise<void> {
    const stored = await this.options.store.load()
    if (!stored) return
    const force = this.forceNextUpdate
    this.forceNextUpdate = false
    await this.options.prepare?.(stored.target)
    const planOptions = this.options.planOptions()
    const progress = (current: CurrentState, plan: Plan) =>
      this.options.onProgress?.({target: stored.target, current, plan, planOptions, downloadProgress: this.downloadProgress, pullFailures: this.pullFailures})
    const result = await converge(engine, stored.target, {
      ...planOptions,
      overrideLock: force || stored.target.config.BALENA_SUPERVISOR_OVERRIDE_LOCK === '1',
      onPlan: progress,
      signal,
      onStepFailed: (step, error) => {
        // A download waiting out its delay was said once, when it failed.
        if (error instanceof PullDeferredError) return
        this.log(`${step.action} failed: ${(error as Error).message}`)
        const retry = step.action === 'fetch' ? this.pullFailures.get(step.image) : undefined
        this.options.logs.systemLine(retry ? `${stepFailureLine(step, error)}; update failed, retrying in ${Math.ceil((retry.retryAt - Date.now()) / 1000)} s` : stepFailureLine(step, error))
      },
    })
    this.announceRefusals(result.plan)
    this.state = {
      current: result.current,
      plan: result.plan,
      target: stored.target,
      commitOf: new Map(desiredAppsOf(stored.target, planOptions).map((app) => [app.appId, app.commit])),
    }
    // Stopped ones too: what they wrote while the agent was away is read once.
    for (const container of result.current.containers) this.options.logs.followContainer({id: container.id, serviceId: container.serviceId, serviceName: container.serviceName})
    this.downloadProgress.clear()
    progress(result.current, result.plan)
  }

  /** Each refusal is said once in the device's logs, not at every round; again only if it comes back. */
  private announceRefusals(plan: Plan): void {
    const now = new Set<string>()
    for (const refusal of plan.refused) {
      const key = `${refusal.appId}/${refusal.serviceName}/${refusal.image}`
      now.add(key)
      if (!this.announcedRefusals.has(key)) this.options.logs.systemLine(refusalLine(refusal), refusal.serviceId)
    }

    this.announcedRefusals = now
  }
}
