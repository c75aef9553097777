import type {DeviceAction} from '../protocol/device-action.js'
import type {Db} from './db/database.js'
import {now} from './db/values.js'

/**
 * Actions waiting for devices that have no link, in the database (`device_action`), so that a device collects them
 * from whichever server instance it asks: an action is handed to the first collect of its device (the rows are
 * deleted as they are read, so two instances never hand one out twice) and then forgotten. A collect with nothing
 * waiting is held open until an action comes (queued here, or by another instance: {@link wake}) or the wait ends.
 */
export class DeviceActionQueue {
  private readonly collectors = new Map<number, Set<() => void>>()

  constructor(
    private readonly db: Db,
    /** Called once an action is stored (the server tells its other instances, whose collects then wake). */
    private readonly onQueued: (deviceId: number) => void = () => {},
  ) {}

  async enqueue(deviceId: number, action: DeviceAction): Promise<void> {
    await this.db.insertInto('device_action').values({device: deviceId, action: JSON.stringify(action), created_at: now()}).execute()
    this.wake([deviceId])
    this.onQueued(deviceId)
  }

  /** Actions may be waiting for these devices: their collects read again. */
  wake(deviceIds: Iterable<number>): void {
    for (const deviceId of deviceIds) for (const wake of this.collectors.get(deviceId) ?? []) wake()
  }

  /** Every collect reads again (the cluster bus may have missed events). */
  wakeAll(): void {
    this.wake([...this.collectors.keys()])
  }

  /** The device's waiting actions, waiting up to `waitMs` for one (or until `signal` aborts) when there are none. */
  async collect(deviceId: number, waitMs: number, signal?: AbortSignal): Promise<DeviceAction[]> {
    const deadline = Date.now() + waitMs
    while (true) {
      // Listening first: an action queued while the rows are read wakes the wait below.
      const woken = this.nextWake(deviceId)
      // A collect whose agent went away takes nothing: the actions wait for the next one.
      const actions = signal?.aborted ? [] : await this.take(deviceId)
      const left = deadline - Date.now()
      if (actions.length > 0 || left <= 0 || signal?.aborted) {
        woken.cancel()
        return actions
      }

      await woken.wait(left, signal)
    }
  }

  /** Reads and removes the device's waiting actions, oldest first. */
  private async take(deviceId: number): Promise<DeviceAction[]> {
    const rows = await this.db.deleteFrom('device_action').where('device', '=', deviceId).returning(['id', 'action']).execute()
    return rows.sort((a, b) => a.id - b.id).map((row) => JSON.parse(row.action) as DeviceAction)
  }

  private nextWake(deviceId: number): {wait(ms: number, signal?: AbortSignal): Promise<void>; cancel(): void} {
    let collectors = this.collectors.get(deviceId)
    if (!collectors) {
      collectors = new Set()
      this.collectors.set(deviceId, collectors)
    }

    let woken = false
    let resolveWait: (() => void) | undefined
    const wake = () => {
      woken = true
      resolveWait?.()
    }

    collectors.add(wake)
    const cancel = () => {
      collectors.delete(wake)
      if (collectors.size === 0 && this.collectors.get(deviceId) === collectors) this.collectors.delete(deviceId)
    }

    const wait = (ms: number, signal?: AbortSignal) =>
      new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer)
          signal?.removeEventListener('abort', done)
          cancel()
          resolve()
        }

        const timer = setTimeout(done, ms)
        signal?.addEventListener('abort', done)
        resolveWait = done
        if (woken || signal?.aborted) done()
      })
    return {wait, cancel}
  }
}
