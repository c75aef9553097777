import {hash} from 'node:crypto'
import {setImmediate as nextTurn} from 'node:timers/promises'

import type {Db} from './db/database.js'

/** How often the heartbeats gathered in memory are written. */
export const HEARTBEAT_FLUSH_MS = 1000
/**
 * Ids in one UPDATE: a statement of a millisecond or so on SQLite, so that a batch written one statement per turn of
 * the event loop never holds up the requests arriving meanwhile (500 at once held it 10–60 ms at 20,000 devices).
 */
export const IDS_PER_STATEMENT = 100

export interface HeartbeatSettings {
  /** A device silent for this long reads as offline (the sweep in routes/device-state.ts marks it). */
  timeoutMs: number
  flushEveryMs?: number
  onError: (error: unknown, message: string) => void
  /**
   * Called when this server wrote a device's row outside its heartbeats, so that other server instances forget what
   * they remember of it ({@link forgetWrittenElsewhere}): a link opening or closing, a failed write; or, for a state
   * report, keep it if their last report of the device is this one ({@link reportsWrittenElsewhere}).
   */
  announce?: (deviceId: number, reportDigest?: string) => void
}

/**
 * Devices' heartbeats (each target-state poll is one). A device that may read as offline is written before its
 * poll is answered (with the others first seen in the same turn of the event loop), so it reads online as soon as
 * it is answered; after that its last connectivity event is refreshed only when older than a quarter of the
 * timeout, in batches written every second, so a fleet polling every few seconds costs a few writes a minute per
 * device rather than one a poll, and stays online (the sweep marks offline only what has been silent for the whole
 * timeout). A heartbeat is never a request's failure: a failed write is logged and tried again.
 *
 * It also remembers each device's last state report, so that one repeated word for word (an agent reports on a
 * timer) is a heartbeat only. {@link forgetAll} drops what it knows when another write may have changed a device
 * (pine, a link closing): the next heartbeat and report of each device are written.
 */
export class Heartbeats {
  /** When this server last wrote each device as online. */
  private readonly written = new Map<number, number>()
  private due = new Set<number>()
  /** The devices to be written online at the next turn of the event loop (their first beats), with its promise. */
  private soon?: {ids: number[]; written: Promise<void>}
  /** The digest ({@link reportDigest}) of the last state report written of each device. */
  private readonly reports = new Map<number, string>()
  private readonly timer: NodeJS.Timeout
  private flushing?: Promise<void>

  constructor(
    private readonly db: Db,
    private readonly settings: HeartbeatSettings,
  ) {
    this.timer = setInterval(() => void this.flush(), settings.flushEveryMs ?? HEARTBEAT_FLUSH_MS)
    this.timer.unref()
  }

  /** The device is alive now; resolves once it reads as online (at once when it already does). */
  async beat(deviceId: number): Promise<void> {
    const now = Date.now()
    const written = this.written.get(deviceId)
    if (written !== undefined && now - written < this.settings.timeoutMs / 4) return
    if (written !== undefined && now - written < this.settings.timeoutMs / 2) {
      this.due.add(deviceId)
      return
    }

    this.written.set(deviceId, now)
    await this.writeSoon(deviceId)
  }

  /**
   * Many devices are alive now (those holding a link): those whose last connectivity event may be getting old are
   * written at once, a chunk at a time; resolves when done.
   */
  async beatAll(deviceIds: number[]): Promise<void> {
    const now = Date.now()
    const stale = deviceIds.filter((id) => {
      const written = this.written.get(id)
      return written === undefined || now - written >= this.settings.timeoutMs / 4
    })
    await this.writeInTurns(stale, now)
  }

  /** The device was just written as online by someone else: its state report (remembered, when given), its link. */
  wroteOnline(deviceId: number, report?: string): void {
    this.written.set(deviceId, Date.now())
    const digest = report === undefined ? undefined : reportDigest(report)
    if (digest !== undefined) this.reports.set(deviceId, digest)
    this.settings.announce?.(deviceId, digest)
  }

  /** Whether this report is the last one written of the device (then it need not be written again). */
  isRepeatedReport(deviceId: number, report: string): boolean {
    return this.reports.get(deviceId) === reportDigest(report)
  }

  /** Forgets what this server wrote of one device (its link closed and marked it offline; its report failed to be written). */
  forget(deviceId: number): void {
    this.forgetWrittenElsewhere([deviceId])
    this.settings.announce?.(deviceId)
  }

  /**
   * Another server instance wrote these devices' rows (a link opening or closing, another report): what this one
   * wrote or was told last may no longer be what the rows hold, so their next heartbeat and report are written.
   */
  forgetWrittenElsewhere(deviceIds: Iterable<number>): void {
    for (const deviceId of deviceIds) {
      this.written.delete(deviceId)
      this.reports.delete(deviceId)
    }
  }

  /**
   * Another server instance wrote these devices online with these state reports (digests, `digests[i]` of
   * `deviceIds[i]`). Where this instance's last report of a device is that one, the row holds what it would write
   * again (behind a load balancer a device's reports alternate between instances, and each was written in full);
   * any other is forgotten, as another write was.
   */
  reportsWrittenElsewhere(deviceIds: number[], digests: string[]): void {
    const now = Date.now()
    deviceIds.forEach((deviceId, index) => {
      if (this.reports.get(deviceId) === digests[index]) this.written.set(deviceId, now)
      else this.forgetWrittenElsewhere([deviceId])
    })
  }

  /** A write may have changed devices behind this cache (pine): their next heartbeat and report are written. */
  forgetAll(): void {
    this.written.clear()
    this.reports.clear()
  }

  /** Writes the heartbeats due so far. */
  flush(): Promise<void> {
    this.flushing ??= this.writeDue().finally(() => (this.flushing = undefined))
    return this.flushing
  }

  async close(): Promise<void> {
    clearInterval(this.timer)
    await this.soon?.written
    await this.flush()
  }

  /**
   * Writes the device online with the others beating in the same turn of the event loop, then resolves: a server
   * restarted under its fleet sees every device's first poll within one poll interval, and one statement a device
   * (20,000 of them) held it for seconds.
   */
  private writeSoon(deviceId: number): Promise<void> {
    let batch = this.soon
    if (!batch) {
      const ids: number[] = []
      const written = nextTurn().then(() => {
        this.soon = undefined
        return this.writeInTurns(ids, Date.now())
      })
      batch = this.soon = {ids, written}
    }

    batch.ids.push(deviceId)
    return batch.written
  }

  private async writeDue(): Promise<void> {
    if (this.due.size === 0) return
    const ids = [...this.due]
    this.due = new Set()
    await this.writeInTurns(ids, Date.now())
  }

  /**
   * Writes devices online a statement at a time, each in a turn of the event loop of its own: SQLite runs a
   * statement on the event loop, and a batch written at once would be one long pause in serving requests. In id
   * order, so that neighbouring rows share their pages: fewer pages are written, to the WAL and then back.
   */
  private async writeInTurns(ids: number[], now: number): Promise<void> {
    const sorted = [...ids].sort((a, b) => a - b)
    for (let start = 0; start < sorted.length; start += IDS_PER_STATEMENT) {
      if (start > 0) await nextTurn()
      await this.writeOnline(sorted.slice(start, start + IDS_PER_STATEMENT), now)
    }
  }

  private async writeOnline(ids: number[], now: number): Promise<void> {
    try {
      await this.db
        .updateTable('device')
        .set({is_online: 1, api_heartbeat_state: 'online', last_connectivity_event: new Date(now).toISOString()})
        .where('id', 'in', ids)
        .execute()
      for (const id of ids) this.written.set(id, now)
    } catch (error) {
      for (const id of ids) this.written.delete(id)
      this.settings.onError(error, 'writing devices\u2019 heartbeats failed; they are written again with their next poll')
    }
  }
}

/** What a state report is remembered by, and told to other instances as: 128 bits of its SHA-256, in base64url. */
export function reportDigest(report: string): string {
  return hash('sha256', report, 'base64url').slice(0, 22)
}
