import {randomBytes} from 'node:crypto'

import type {Db} from '../db/database.js'
import {now} from '../db/values.js'

/** How often a live instance says so. */
export const INSTANCE_REFRESH_MS = 5000
/** An instance silent for this long is dead: its links are forgotten, and sessions are no longer routed to it. */
export const INSTANCE_TIMEOUT_MS = 20_000

/** Another instance, as far as routing to it goes. */
export interface InstanceAddress {
  id: string
  /** Where its internal channels are served (gateway/internal-channel.ts). */
  internalUrl: string
}

export interface InstanceRegistryOptions {
  onError: (error: unknown, message: string) => void
  /** The devices linked to this instance now: recorded again should this instance's row have been taken for dead. */
  linkedDeviceIds: () => number[]
  refreshMs?: number
  timeoutMs?: number
}

/**
 * The server processes sharing one database and which of them holds each device's link (tables `server_instance`
 * and `device_link`), so that a session arriving at any instance reaches a device linked to another. Each start is
 * a new instance (a random id); one that stops saying it is alive for {@link INSTANCE_TIMEOUT_MS} is dead, and the
 * next instance to notice removes it with its links. One instance alone (SQLite) keeps the same rows, unused.
 */
export class InstanceRegistry {
  readonly id = randomBytes(16).toString('hex')
  private internalUrl?: string
  private timer?: NodeJS.Timeout
  private readonly refreshMs: number
  private readonly timeoutMs: number

  constructor(
    private readonly db: Db,
    private readonly options: InstanceRegistryOptions,
  ) {
    this.refreshMs = options.refreshMs ?? INSTANCE_REFRESH_MS
    this.timeoutMs = options.timeoutMs ?? INSTANCE_TIMEOUT_MS
  }

  /** Joins the registry as reachable at `internalUrl`, after removing the instances that died; then stays alive. */
  async start(internalUrl: string): Promise<void> {
    this.internalUrl = internalUrl
    await this.removeDeadInstances()
    await this.insertSelf()
    this.timer = setInterval(() => {
      this.refresh().catch((error: unknown) => this.options.onError(error, 'refreshing this server instance\u2019s row failed'))
    }, this.refreshMs)
    this.timer.unref()
  }

  /** Leaves the registry, with every link recorded as this instance's. */
  async stop(): Promise<void> {
    clearInterval(this.timer)
    if (this.internalUrl === undefined) return
    this.internalUrl = undefined
    await this.db.deleteFrom('server_instance').where('id', '=', this.id).execute()
  }

  /** Records that this instance holds the device's link (taking it from whichever held it before). */
  async linked(deviceId: number): Promise<void> {
    if (this.internalUrl === undefined) return
    const row = {device: deviceId, instance: this.id, linked_at: now()}
    await this.db
      .insertInto('device_link')
      .values(row)
      .onConflict((conflict) => conflict.column('device').doUpdateSet({instance: row.instance, linked_at: row.linked_at}))
      .execute()
  }

  /** Forgets the device's link if it is still recorded as this instance's; whether it was. */
  async unlinked(deviceId: number): Promise<boolean> {
    const result = await this.db.deleteFrom('device_link').where('device', '=', deviceId).where('instance', '=', this.id).executeTakeFirst()
    return result.numDeletedRows > 0n
  }

  /** The live instance other than this one that holds the device's link, if any. */
  async ownerOf(deviceId: number): Promise<InstanceAddress | undefined> {
    const row = await this.db
      .selectFrom('device_link')
      .innerJoin('server_instance', 'server_instance.id', 'device_link.instance')
      .select(['server_instance.id', 'server_instance.internal_url'])
      .where('device_link.device', '=', deviceId)
      .where('server_instance.id', '!=', this.id)
      .where('server_instance.last_seen_at', '>', this.deadline())
      .executeTakeFirst()
    return row && {id: row.id, internalUrl: row.internal_url}
  }

  private deadline(): string {
    return new Date(Date.now() - this.timeoutMs).toISOString()
  }

  private async insertSelf(): Promise<void> {
    const at = now()
    await this.db.insertInto('server_instance').values({id: this.id, internal_url: this.internalUrl!, started_at: at, last_seen_at: at}).execute()
  }

  private async refresh(): Promise<void> {
    if (this.internalUrl === undefined) return
    const result = await this.db.updateTable('server_instance').set({last_seen_at: now()}).where('id', '=', this.id).executeTakeFirst()
    // Taken for dead (the process stalled for longer than the timeout) and removed by another: join again.
    if (result.numUpdatedRows === 0n) {
      await this.insertSelf()
      for (const deviceId of this.options.linkedDeviceIds()) await this.linked(deviceId)
    }

    await this.removeDeadInstances()
  }

  private async removeDeadInstances(): Promise<void> {
    // Their links go with them (the foreign key cascades).
    await this.db.deleteFrom('server_instance').where('last_seen_at', '<=', this.deadline()).execute()
  }
}
