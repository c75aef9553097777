import {ApiError} from '../errors.js'
import {type DeviceAction, deviceActionsOf, deviceActionsPath} from '../protocol/device-action.js'
import type {FleetClient} from '../sdk/client.js'

/** How long the server may hold a collect open; under the client's own request timeout. */
const COLLECT_WAIT_SECONDS = 25

export interface ActionListenerOptions {
  /** Collects the actions waiting for the device, waiting up to `waitSeconds` for one. */
  collect: (waitSeconds: number, signal: AbortSignal) => Promise<DeviceAction[]>
  onAction: (action: DeviceAction) => Promise<void>
  onError?: (error: unknown) => void
  /** Pause after a failed collect, so an unreachable server is not asked in a tight loop. */
  retryDelayMs?: number
}

/** [flotilla] `GET /device/v3/<uuid>/actions?wait=N`: the actions users sent through `POST /supervisor/…`. */
export function actionCollector(client: FleetClient, uuid: string): ActionListenerOptions['collect'] {
  return async (waitSeconds, signal) => {
    const timeout = AbortSignal.timeout((waitSeconds + 20) * 1000)
    return deviceActionsOf(await client.request<unknown>('GET', deviceActionsPath(uuid), {searchParams: {wait: waitSeconds}, signal: AbortSignal.any([signal, timeout])}))
  }
}

/**
 * Keeps one long poll open for device actions and hands each to `onAction`, in order. A server without the
 * endpoint (balenaCloud, which reaches devices over its VPN instead) answers 404: then it stops asking.
 */
export class ActionListener {
  private stopped = false
  private readonly stopping = new AbortController()
  private running?: Promise<void>
  private wakeRetry?: () => void

  constructor(private readonly options: ActionListenerOptions) {}

  start(): void {
    this.running ??= this.loop()
  }

  async stop(): Promise<void> {
    this.stopped = true
    this.stopping.abort()
    this.wakeRetry?.()
    await this.running
  }

  private async loop(): Promise<void> {
    while (!this.stopped) {
      let actions: DeviceAction[]
      try {
        actions = await this.options.collect(COLLECT_WAIT_SECONDS, this.stopping.signal)
      } catch (error) {
        if (this.stopped) return
        if (error instanceof ApiError && error.statusCode === 404) return
        this.options.onError?.(error)
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, this.options.retryDelayMs ?? 5000)
          this.wakeRetry = () => {
            clearTimeout(timer)
            resolve()
          }
        })
        continue
      }

      for (const action of actions) {
        try {
          await this.options.onAction(action)
        } catch (error) {
          this.options.onError?.(error)
        }
      }
    }
  }
}
