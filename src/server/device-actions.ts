import type {DeviceAction} from '../protocol/device-action.js'

/**
 * Actions waiting for their devices, in memory: an action is handed to the first collect of its device and
 * then forgotten. A collect with nothing waiting is held open until an action comes or the wait ends.
 */
export class DeviceActionQueue {
  private readonly waiting = new Map<number, DeviceAction[]>()
  private readonly collectors = new Map<number, Set<() => void>>()

  enqueue(deviceId: number, action: DeviceAction): void {
    const actions = this.waiting.get(deviceId) ?? []
    actions.push(action)
    this.waiting.set(deviceId, actions)
    for (const wake of this.collectors.get(deviceId) ?? []) wake()
  }

  /** The device's waiting actions, waiting up to `waitMs` for one (or until `signal` aborts) when there are none. */
  async collect(deviceId: number, waitMs: number, signal?: AbortSignal): Promise<DeviceAction[]> {
    if (!this.waiting.has(deviceId) && waitMs > 0 && !signal?.aborted) {
      await new Promise<void>((resolve) => {
        let collectors = this.collectors.get(deviceId)
        if (!collectors) {
          collectors = new Set()
          this.collectors.set(deviceId, collectors)
        }

        const done = () => {
          clearTimeout(timer)
          signal?.removeEventListener('abort', done)
          collectors.delete(done)
          if (collectors.size === 0) this.collectors.delete(deviceId)
          resolve()
        }

        const timer = setTimeout(done, waitMs)
        signal?.addEventListener('abort', done)
        collectors.add(done)
      })
    }

    if (signal?.aborted) return []
    const actions = this.waiting.get(deviceId) ?? []
    this.waiting.delete(deviceId)
    return actions
  }
}
