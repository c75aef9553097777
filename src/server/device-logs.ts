import {sql} from 'kysely'

import {type LogBatchId, type LogLine, type StoredLogLine, truncateLogMessage} from '../protocol/log-line.js'
import type {Db} from './db/database.js'

export const DEFAULT_LOG_RETENTION = 1000

/**
 * What a NUL character of a message is stored as: PostgreSQL's text cannot hold one (and would refuse the whole
 * batch), so both databases keep U+FFFD in its place and readers see the same line whichever the server runs on.
 */
const NUL_STAND_IN = '\uFFFD'

type Subscriber = (line: StoredLogLine) => void

function storedLineOf(row: {id: number; created_at: number; timestamp: number; message: string; is_system: number; is_std_err: number; service_id: number | null}): StoredLogLine {
  const line: StoredLogLine = {
    id: Number(row.id),
    message: row.message,
    timestamp: Number(row.timestamp),
    isSystem: Boolean(row.is_system),
    isStdErr: Boolean(row.is_std_err),
    createdAt: Number(row.created_at),
  }
  if (row.service_id !== null) line.serviceId = row.service_id
  return line
}

/** A log line as a device sent it, checked and cut to size; undefined when it is not a log line at all. */
export function logLineOf(value: unknown): LogLine | undefined {
  if (typeof value !== 'object' || value === null) return undefined
  const candidate = value as Record<string, unknown>
  if (typeof candidate.message !== 'string') return undefined
  const timestamp = Number(candidate.timestamp)
  const line: LogLine = {
    message: truncateLogMessage(candidate.message),
    timestamp: Number.isFinite(timestamp) ? timestamp : Date.now(),
    isSystem: candidate.isSystem === true,
    isStdErr: candidate.isStdErr === true,
  }
  if (Number.isInteger(candidate.serviceId)) line.serviceId = candidate.serviceId as number
  return line
}

interface PendingLine {
  device: number
  line: StoredLogLine
  settle: (error?: unknown) => void
}

/**
 * The last lines of every device. Lines of concurrent requests are written together in batches, each batch
 * trimming its devices to the retention; `append` resolves once its lines are in the database (so a device is
 * told its lines are kept only when they are) and rejects when the write failed, and only stored lines reach live
 * subscribers, in id order. Reads of history wait for the writes before them, so history and the live lines meet
 * without a gap.
 */
export class DeviceLogStore {
  private nextId?: number
  private readonly subscribers = new Map<number, Set<Subscriber>>()
  private pending: PendingLine[] = []
  private writing: Promise<void> = Promise.resolve()
  private flushScheduled = false

  constructor(
    private readonly db: Db,
    private readonly options: {retention?: number} = {},
  ) {}

  private async ids(): Promise<number> {
    if (this.nextId === undefined) {
      const row = await this.db.selectFrom('device_log').select(sql<number | null>`max(id)`.as('last')).executeTakeFirst()
      this.nextId ??= Number(row?.last ?? 0) + 1
    }

    return this.nextId
  }

  /** Stores lines of a device; resolves once they are in the database, then publishes them to its subscribers. */
  async append(deviceId: number, lines: LogLine[]): Promise<void> {
    if (lines.length === 0) return
    await this.ids()
    const createdAt = Date.now()
    const settled = lines.map((line) => {
      const stored: StoredLogLine = {...line, message: line.message.replaceAll('\0', NUL_STAND_IN), id: this.nextId!++, createdAt}
      return new Promise<void>((resolve, reject) => {
        this.pending.push({device: deviceId, line: stored, settle: (error) => (error === undefined ? resolve() : reject(error))})
      })
    })
    this.scheduleFlush()
    await Promise.all(settled)
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return
    this.flushScheduled = true
    this.writing = this.writing.then(
      () =>
        new Promise<void>((resolve) => {
          setImmediate(() => {
            this.flushScheduled = false
            const batch = this.pending
            this.pending = []
            this.write(batch).then(
              () => {
                for (const {device, line} of batch) for (const listener of this.subscribers.get(device) ?? []) listener(line)
                for (const entry of batch) entry.settle()
                resolve()
              },
              (error: unknown) => {
                for (const entry of batch) entry.settle(error)
                resolve()
              },
            )
          })
        }),
    )
  }

  private async write(batch: PendingLine[]): Promise<void> {
    if (batch.length === 0) return
    const devices = new Set(batch.map((entry) => entry.device))
    await this.db.transaction().execute(async (trx) => {
      for (let start = 0; start < batch.length; start += 100) {
        const rows = batch.slice(start, start + 100).map(({device, line}) => ({
          id: line.id!,
          device,
          created_at: line.createdAt,
          timestamp: line.timestamp,
          message: line.message,
          is_system: line.isSystem ? 1 : 0,
          is_std_err: line.isStdErr ? 1 : 0,
          service_id: line.serviceId ?? null,
        }))
        await trx.insertInto('device_log').values(rows).execute()
      }

      for (const device of devices) {
        const oldestKept = await trx.selectFrom('device_log').select('id').where('device', '=', device).orderBy('id', 'desc').offset((this.options.retention ?? DEFAULT_LOG_RETENTION) - 1).limit(1).executeTakeFirst()
        if (oldestKept) await trx.deleteFrom('device_log').where('device', '=', device).where('id', '<', oldestKept.id).execute()
      }
    })
  }

  /** Waits until every line appended so far is in the database. */
  async flush(): Promise<void> {
    await this.writing
  }

  /** The last `count` lines of a device (all kept with `'all'`), oldest first, only those after `since` when given. */
  async history(deviceId: number, options: {count: number | 'all'; since?: number}): Promise<StoredLogLine[]> {
    await this.flush()
    if (options.count === 0) return []
    let query = this.db.selectFrom('device_log').selectAll().where('device', '=', deviceId)
    if (options.since !== undefined) query = query.where('id', '>', options.since)
    query = query.orderBy('id', 'desc')
    if (options.count !== 'all') query = query.limit(options.count)
    const rows = await query.execute()
    return rows.reverse().map((row) => storedLineOf(row))
  }

  /** Calls `listener` with every new line of a device until the returned function is called. */
  subscribe(deviceId: number, listener: Subscriber): () => void {
    let listeners = this.subscribers.get(deviceId)
    if (!listeners) {
      listeners = new Set()
      this.subscribers.set(deviceId, listeners)
    }

    listeners.add(listener)
    return () => {
      listeners.delete(listener)
      if (listeners.size === 0) this.subscribers.delete(deviceId)
    }
  }
}

/**
 * [flotilla] The last log batch stored of each device (`X-Flotilla-Log-Batch`), so a batch the device sends again,
 * because it was killed or cut off before it heard the answer, is not stored twice. A device's batches are handled
 * one at a time. Kept in memory: a server restarted (or another instance reached) between the store and the replay
 * stores that one batch again.
 */
export class LogBatchLedger {
  private readonly lastStored = new Map<number, LogBatchId>()
  private readonly turns = new Map<number, Promise<unknown>>()

  /** Runs `store` unless the batch, or a later one of the same journal, was stored; resolves with whether it ran. */
  async storeOnce(deviceId: number, batch: LogBatchId, store: () => Promise<void>): Promise<boolean> {
    const turn = (this.turns.get(deviceId) ?? Promise.resolve()).catch(() => {}).then(async () => {
      const last = this.lastStored.get(deviceId)
      if (last?.journal === batch.journal && batch.number <= last.number) return false
      await store()
      this.lastStored.set(deviceId, batch)
      return true
    })
    this.turns.set(deviceId, turn)
    try {
      return await turn
    } finally {
      if (this.turns.get(deviceId) === turn) this.turns.delete(deviceId)
    }
  }
}
