import type {Duplex} from 'node:stream'

import type {Connection} from 'ssh2'

import type {DeviceAction} from '../../protocol/device-action.js'
import {CHANNEL_CONTROL, CHANNEL_SHELL, CHANNEL_TCP, encodeLinkMessage, LINK_FORWARD, type LinkMessage} from '../../protocol/device-link.js'
import type {Db} from '../db/database.js'
import {now} from '../db/values.js'
import type {Heartbeats} from '../heartbeats.js'
import type {TargetStates} from '../target-states.js'

/** The device has no link open: it cannot be reached now. */
export class DeviceNotLinkedError extends Error {
  constructor(readonly uuid: string) {
    super(`device ${uuid.slice(0, 7)} is not connected`)
  }
}

/** The agent refused a channel: for a tunnel, nothing listens on that port of the device. */
export class ChannelRefusedError extends Error {}

interface Link {
  deviceId: number
  uuid: string
  /** The device key the link was opened with: revoking it closes the link. */
  keyId: number
  connection: Connection
  /** The target's ETag as of the last time the device was told (or linked), to tell only on real changes. */
  targetTag?: string
}

export type ChannelKind = typeof CHANNEL_TCP | typeof CHANNEL_SHELL | typeof CHANNEL_CONTROL

/**
 * The links of the other server instances sharing the database, and the record of this one's: a link is
 * recorded when it opens and forgotten when it closes, and a channel to a device linked elsewhere goes through
 * the instance holding it (gateway/internal-channel.ts).
 */
export interface RemoteLinks {
  linked(deviceId: number): Promise<void>
  /** Whether the link was still recorded as this instance's (it was not when the device has relinked elsewhere). */
  unlinked(deviceId: number): Promise<boolean>
  /** A channel through the live instance holding the device's link; {@link DeviceNotLinkedError} when none does. */
  openChannel(deviceId: number, uuid: string, kind: ChannelKind, port: number): Promise<Duplex>
}

/** How long a burst of writes is gathered before linked devices' targets are compared. */
const TARGET_CHECK_DELAY_MS = 100

/**
 * The devices linked right now, and the server's way to reach them: channels for shells and tunnels, and
 * control messages (update now, actions). A link also makes its device read as online, and its loss offline.
 */
export class DeviceLinks {
  private readonly links = new Map<number, Link>()
  private targetCheck?: NodeJS.Timeout
  private targetCheckRunning?: Promise<void>
  private targetCheckAgain = false

  private readonly db: Db
  private readonly targetStates: TargetStates
  private readonly heartbeats: Heartbeats
  private readonly onError: (error: unknown, message: string) => void
  private remote?: RemoteLinks

  constructor(options: {db: Db; targetStates: TargetStates; heartbeats: Heartbeats; onError: (error: unknown, message: string) => void}) {
    ;({db: this.db, targetStates: this.targetStates, heartbeats: this.heartbeats, onError: this.onError} = options)
  }

  /** Reaches devices linked to other instances through `remote` from now on, and records links there. */
  routeThrough(remote: RemoteLinks): void {
    this.remote = remote
  }

  /** Records a device's link; a link the device had before is closed, since an agent keeps only one. */
  async add(device: {deviceId: number; uuid: string; keyId: number}, connection: Connection): Promise<void> {
    const {deviceId} = device
    const previous = this.links.get(deviceId)
    const link: Link = {...device, connection}
    this.links.set(deviceId, link)
    if (previous && previous.connection !== connection) previous.connection.end()
    connection.once('close', () => {
      if (this.links.get(deviceId) !== link) return
      this.links.delete(deviceId)
      // Its next poll must write it online again.
      this.heartbeats.forget(deviceId)
      this.markUnlinked(deviceId).catch((error: unknown) => this.onError(error, 'marking an unlinked device offline failed'))
    })
    await this.remote?.linked(deviceId)
    // balena's is_connected_to_vpn: the link is the device's VPN here.
    await this.db.updateTable('device').set({is_online: 1, is_connected_to_vpn: 1, api_heartbeat_state: 'online', last_connectivity_event: now()}).where('id', '=', deviceId).execute()
    this.heartbeats.wroteOnline(deviceId)
    link.targetTag = (await this.targetStates.of(deviceId))?.etag
  }

  /** Offline, unless it has relinked to another instance meanwhile. */
  private async markUnlinked(deviceId: number): Promise<void> {
    if (this.remote && !(await this.remote.unlinked(deviceId))) return
    await this.db
      .updateTable('device')
      .set({is_online: 0, is_connected_to_vpn: 0, api_heartbeat_state: 'offline', last_connectivity_event: now()})
      .where('id', '=', deviceId)
      .execute()
  }

  isLinked(deviceId: number): boolean {
    return this.links.has(deviceId)
  }

  linkedDeviceIds(): number[] {
    return [...this.links.keys()]
  }

  /**
   * Opens a channel to the device, through this instance's link or the instance holding it: `tcp` to a port of
   * its loopback, `shell` to its shell service, `control` for one message. Fails with {@link DeviceNotLinkedError}
   * or {@link ChannelRefusedError}.
   */
  openChannel(deviceId: number, uuid: string, kind: ChannelKind, port = 0): Promise<Duplex> {
    if (!this.links.has(deviceId) && this.remote) return this.remote.openChannel(deviceId, uuid, kind, port)
    return this.openLocalChannel(deviceId, uuid, kind, port)
  }

  /** A channel of this instance's own link to the device, never routed elsewhere (what other instances ask for). */
  openLocalChannel(deviceId: number, uuid: string, kind: ChannelKind, port = 0): Promise<Duplex> {
    const link = this.links.get(deviceId)
    if (!link) return Promise.reject(new DeviceNotLinkedError(uuid))
    return new Promise((resolve, reject) => {
      link.connection.forwardOut(LINK_FORWARD.address, LINK_FORWARD.port, kind, port, (error, channel) => {
        if (error) reject(this.links.get(deviceId) === link ? new ChannelRefusedError(error.message) : new DeviceNotLinkedError(uuid))
        else resolve(channel)
      })
    })
  }

  /**
   * Sends one control message, over the device's link to this instance or to another one; false when the device
   * is not linked or the message did not get through.
   */
  async send(deviceId: number, message: LinkMessage): Promise<boolean> {
    const uuid = this.links.get(deviceId)?.uuid
    if (!uuid && !this.remote) return false
    try {
      const channel = await this.openChannel(deviceId, uuid ?? `device ${deviceId}`, CHANNEL_CONTROL)
      await new Promise<void>((resolve, reject) => {
        channel.once('error', reject)
        channel.end(encodeLinkMessage(message), () => resolve())
      })
      channel.resume()
      return true
    } catch (error) {
      if (!(error instanceof DeviceNotLinkedError)) this.onError(error, `sending ${message.type} to device ${uuid ?? deviceId} failed`)
      return false
    }
  }

  deliverAction(deviceId: number, action: DeviceAction): Promise<boolean> {
    return this.send(deviceId, {type: 'action', action})
  }

  /**
   * Something a target state is made of may have changed: soon, every linked device whose target did change is
   * told to fetch it. Bursts of calls make one comparison.
   */
  targetsMaybeChanged(): void {
    if (this.links.size === 0) return
    if (this.targetCheckRunning) {
      this.targetCheckAgain = true
      return
    }

    this.targetCheck ??= setTimeout(() => {
      this.targetCheck = undefined
      this.targetCheckRunning = this.notifyChangedTargets()
        .catch((error: unknown) => this.onError(error, 'comparing linked devices\u2019 targets failed'))
        .finally(() => {
          this.targetCheckRunning = undefined
          if (this.targetCheckAgain) {
            this.targetCheckAgain = false
            this.targetsMaybeChanged()
          }
        })
    }, TARGET_CHECK_DELAY_MS)
  }

  private async notifyChangedTargets(): Promise<void> {
    // Kept targets: what devices share is computed once, and a block of devices at a time.
    for (const link of [...this.links.values()]) {
      const tag = (await this.targetStates.of(link.deviceId))?.etag
      if (tag === link.targetTag) continue
      link.targetTag = tag
      void this.send(link.deviceId, {type: 'update'})
    }
  }

  /**
   * Closes at once the links whose device key is gone (revoked, or deleted with its device), so a revoked key
   * keeps no device reachable in its name. Called after every deletion that may take keys with it.
   */
  async closeLinksOfRevokedKeys(): Promise<void> {
    const links = [...this.links.values()]
    if (links.length === 0) return
    const rows = await this.db
      .selectFrom('api_key')
      .select('id')
      .where('id', 'in', links.map((link) => link.keyId))
      .execute()
    const live = new Set(rows.map((row) => row.id))
    for (const link of links) {
      if (!live.has(link.keyId)) link.connection.end()
    }
  }

  /** Ends every link (server shutdown); agents reconnect to whoever serves next. */
  close(): void {
    clearTimeout(this.targetCheck)
    for (const link of this.links.values()) link.connection.end()
    this.links.clear()
  }
}
