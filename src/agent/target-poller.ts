import {ApiError} from '../errors.js'
import {type TargetDevice, targetDeviceOf} from '../protocol/target-state.js'
import type {FleetClient} from '../sdk/client.js'

export type TargetFetch = {changed: false} | {changed: true; target: TargetDevice; etag?: string}

const FETCH_TIMEOUT_MS = 30_000

/** `GET /device/v3/<uuid>/state`, conditional on the last ETag: a `304` means the target has not changed. */
export async function fetchTargetState(client: FleetClient, uuid: string, etag?: string): Promise<TargetFetch> {
  const response = await client.requestWithResponse<unknown>('GET', `/device/v3/${uuid}/state`, {
    headers: etag ? {'if-none-match': etag} : {},
    signal: AbortSignal.timeout(FETCH_TIMEOUT_MS),
  })
  if (response.statusCode === 304) return {changed: false}
  if (response.statusCode !== 200) throw new ApiError(`unexpected status ${response.statusCode} for the target state`, response.statusCode)
  if (typeof response.body !== 'object' || response.body === null) throw new ApiError('the target state is not JSON', response.statusCode)
  const newEtag = response.headers.etag
  return {changed: true, target: targetDeviceOf(response.body, uuid), etag: typeof newEtag === 'string' ? newEtag : undefined}
}

export interface TargetPollerOptions {
  fetch: (etag?: string) => Promise<TargetFetch>
  onTarget: (target: TargetDevice, etag: string | undefined) => Promise<void> | void
  onError?: (error: unknown) => void
  intervalMs: number
  /** Fraction of the interval added or removed at random, so a fleet does not poll in step. */
  jitter?: number
  maxBackoffMs?: number
  initialEtag?: string
}

/** The delay before the next poll: the interval with jitter, or an exponential backoff after failures. */
export function nextPollDelay(intervalMs: number, failures: number, options: {jitter?: number; maxBackoffMs?: number; random?: () => number} = {}): number {
  const random = options.random ?? Math.random
  if (failures > 0) {
    const backoff = Math.min(options.maxBackoffMs ?? 15 * 60_000, 1000 * 2 ** (failures - 1))
    return Math.round(backoff / 2 + (random() * backoff) / 2)
  }

  const jitter = options.jitter ?? 0.1
  return Math.max(0, Math.round(intervalMs * (1 + jitter * (2 * random() - 1))))
}

/** Polls the target state on an interval (with jitter, backing off on errors) and on demand with `pollNow()`. */
export class TargetPoller {
  private etag?: string
  private failures = 0
  private timer?: NodeJS.Timeout
  private running?: Promise<void>
  private stopped = true

  constructor(private readonly options: TargetPollerOptions) {
    this.etag = options.initialEtag
  }

  start(): void {
    this.stopped = false
    void this.pollNow()
  }

  stop(): void {
    this.stopped = true
    clearTimeout(this.timer)
  }

  /** Polls at once (an "update now" trigger); concurrent calls share one request. */
  pollNow(): Promise<void> {
    this.running ??= this.poll().finally(() => {
      this.running = undefined
      this.schedule()
    })
    return this.running
  }

  private async poll(): Promise<void> {
    clearTimeout(this.timer)
    try {
      const result = await this.options.fetch(this.etag)
      this.failures = 0
      if (result.changed) {
        await this.options.onTarget(result.target, result.etag)
        this.etag = result.etag
      }
    } catch (error) {
      this.failures++
      this.options.onError?.(error)
    }
  }

  private schedule(): void {
    if (this.stopped) return
    clearTimeout(this.timer)
    const delay = nextPollDelay(this.options.intervalMs, this.failures, this.options)
    this.timer = setTimeout(() => void this.pollNow(), delay)
  }
}
