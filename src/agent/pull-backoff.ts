import {type CurrentState, type Step, type StepExecutor} from './reconciler.js'

/** A download not tried this round: its image failed lately and waits out its delay. */
export class PullDeferredError extends Error {}

export interface PullFailure {
  /** Why the last download of the image failed. */
  reason: string
  failures: number
  /** When the next download may start (ms since the epoch). */
  retryAt: number
}

export interface PullBackoffOptions {
  /** The delay after the first failure; each further failure doubles it (default 10 s). */
  baseDelayMs?: number
  /** The longest delay (default 15 min). */
  maxDelayMs?: number
  now?: () => number
}

/**
 * The engine as the reconciler sees it, with a growing pause between downloads of an image that failed: an image
 * that cannot be pulled is tried again after 10 s, 20 s, 40 s… up to 15 min, not at every round. What failed is
 * kept (with its reason) for the state report until the image is pulled or the target changes.
 */
export class PullBackoff implements StepExecutor {
  private readonly failed = new Map<string, PullFailure>()
  private readonly now: () => number

  constructor(private readonly engine: StepExecutor, private readonly options: PullBackoffOptions = {}) {
    this.now = options.now ?? Date.now
  }

  readCurrentState(wantedImages?: string[]): Promise<CurrentState> {
    return this.engine.readCurrentState(wantedImages)
  }

  async apply(step: Step): Promise<void> {
    if (step.action !== 'fetch') return this.engine.apply(step)
    const failure = this.failed.get(step.image)
    if (failure && this.now() < failure.retryAt) throw new PullDeferredError(`the download of '${step.image}' waits until ${new Date(failure.retryAt).toISOString()}: ${failure.reason}`)
    try {
      await this.engine.apply(step)
      this.failed.delete(step.image)
    } catch (error) {
      const failures = (failure?.failures ?? 0) + 1
      this.failed.set(step.image, {reason: (error as Error)?.message ?? String(error), failures, retryAt: this.now() + this.delayAfter(failures)})
      throw error
    }
  }

  /** The images whose last download failed, with why. */
  get failures(): ReadonlyMap<string, PullFailure> {
    return this.failed
  }

  /** How long until the image's next download, after its last one failed. */
  delayAfter(failures: number): number {
    return Math.min(this.options.maxDelayMs ?? 15 * 60_000, (this.options.baseDelayMs ?? 10_000) * 2 ** Math.min(failures - 1, 30))
  }

  /** A new target or an "update now": every image is tried at once again. */
  reset(): void {
    this.failed.clear()
  }
}
