import {sql, type Transaction} from 'kysely'

import {type LogBatchId, type LogLine, type StoredLogLine, truncateLogMessage} from '../protocol/log-line.js'
import type {Db} from './db/database.js'
import {type DialectName, dialectOf} from './db/dialect.js'
import type {Database} from './db/schema.js'

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

interface PendingAppend {
  device: number
  lines: StoredLogLine[]
  /** The numbered batch these lines are (X-Flotilla-Log-Batch): stored only if it was not before. */
  batch?: LogBatchId
  settle: (error: unknown, stored?: boolean) => void
}

export interface DeviceLogStoreOptions {
  retention?: number
  /** Called once lines of these devices are in the database (the server tells its other instances). */
  onStored?: (deviceIds: number[]) => void
  /** Where a failed read of lines other instances stored is reported (their followers get them with the next ones). */
  onError?: (error: unknown, message: string) => void
}

/**
 * The last lines of every device. Lines of concurrent requests are written together in batches, each batch
 * trimming its devices to the retention; `append` resolves once its lines are in the database (so a device is
 * told its lines are kept only when they are) and rejects when the write failed, and only stored lines reach live
 * subscribers, in id order. Reads of history wait for the writes before them, so history and the live lines meet
 * without a gap. Lines other server instances stored reach this one's subscribers through {@link catchUp}.
 *
 * Ids grow with every line stored: SQLite's are counted here (one process), PostgreSQL's come from a sequence at
 * the write, so instances sharing the database never hand out one twice and a device's lines keep their order.
 */
export class DeviceLogStore {
  private nextId?: number
  private readonly subscribers = new Map<number, Set<Subscriber>>()
  /** The last line id given to each followed device's subscribers. */
  private readonly published = new Map<number, number>()
  private pending: PendingAppend[] = []
  private writing: Promise<void> = Promise.resolve()
  private flushScheduled = false
  private readonly dialect: DialectName

  constructor(
    private readonly db: Db,
    private readonly options: DeviceLogStoreOptions = {},
  ) {
    this.dialect = dialectOf(db)
  }

  /** Ids for `count` new lines, in increasing order. */
  private async newIds(trx: Db | Transaction<Database>, count: number): Promise<number[]> {
    if (this.dialect === 'postgres') {
      const {rows} = await sql<{id: number}>`select nextval('device_log_id_seq') as id from generate_series(1, ${count})`.execute(trx)
      return rows.map((row) => Number(row.id)).sort((a, b) => a - b)
    }

    if (this.nextId === undefined) {
      const row = await trx.selectFrom('device_log').select(sql<number | null>`max(id)`.as('last')).executeTakeFirst()
      this.nextId = Number(row?.last ?? 0) + 1
    }

    return Array.from({length: count}, () => this.nextId!++)
  }

  /**
   * Stores lines of a device; resolves once they are in the database, then publishes them to its subscribers.
   * With `batch`, the lines are stored only when that batch (or a later one of its journal) was not, by any
   * instance; resolves with whether they were.
   */
  async append(deviceId: number, lines: LogLine[], batch?: LogBatchId): Promise<boolean> {
    if (lines.length === 0) return false
    const createdAt = Date.now()
    const stored = lines.map((line): StoredLogLine => ({...line, message: line.message.replaceAll('\0', NUL_STAND_IN), createdAt}))
    const settled = new Promise<boolean>((resolve, reject) => {
      this.pending.push({device: deviceId, lines: stored, batch, settle: (error, done) => (error === undefined ? resolve(done ?? false) : reject(error))})
    })
    this.scheduleFlush()
    return settled
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return
    this.flushScheduled = true
    this.writing = this.writing.then(
      () =>
        new Promise<void>((resolve) => {
          setImmediate(() => {
            this.flushScheduled = false
            const appends = this.pending
            this.pending = []
            this.write(appends).then(
              (stored) => {
                for (const entry of appends) if (stored.has(entry)) for (const line of entry.lines) this.publish(entry.device, line)
                for (const entry of appends) entry.settle(undefined, stored.has(entry))
                const devices = [...new Set(appends.filter((entry) => stored.has(entry)).map((entry) => entry.device))]
                if (devices.length > 0) this.options.onStored?.(devices)
                resolve()
              },
              (error: unknown) => {
                for (const entry of appends) entry.settle(error)
                resolve()
              },
            )
          })
        }),
    )
  }

  private publish(device: number, line: StoredLogLine): void {
    const listeners = this.subscribers.get(device)
    if (!listeners) return
    this.published.set(device, Math.max(this.published.get(device) ?? 0, line.id ?? 0))
    for (const listener of listeners) listener(line)
  }

  /** Records a numbered batch as stored unless it (or a later one of its journal) was; whether it was recorded now. */
  private async recordBatch(trx: Transaction<Database>, device: number, batch: LogBatchId): Promise<boolean> {
    const recorded = await trx
      .insertInto('device_log_batch')
      .values({device, journal: batch.journal, number: batch.number})
      .onConflict((conflict) =>
        conflict
          .column('device')
          .doUpdateSet({journal: (eb) => eb.ref('excluded.journal'), number: (eb) => eb.ref('excluded.number')})
          .where((eb) => eb.or([eb('device_log_batch.journal', '<>', eb.ref('excluded.journal')), eb('device_log_batch.number', '<', eb.ref('excluded.number'))])),
      )
      .returning('device')
      .executeTakeFirst()
    return recorded !== undefined
  }

  /** Writes the appends in one transaction; resolves with those stored (a batch stored before is not). */
  private async write(appends: PendingAppend[]): Promise<Set<PendingAppend>> {
    const stored = new Set<PendingAppend>()
    if (appends.length === 0) return stored
    await this.db.transaction().execute(async (trx) => {
      for (const entry of appends) if (!entry.batch || (await this.recordBatch(trx, entry.device, entry.batch))) stored.add(entry)
      const lines = [...stored].flatMap((entry) => entry.lines.map((line) => ({device: entry.device, line})))
      if (lines.length === 0) return
      const ids = await this.newIds(trx, lines.length)
      for (const [index, {line}] of lines.entries()) line.id = ids[index]
      for (let start = 0; start < lines.length; start += 100) {
        const rows = lines.slice(start, start + 100).map(({device, line}) => ({
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

      for (const device of new Set(lines.map((entry) => entry.device))) {
        const oldestKept = await trx.selectFrom('device_log').select('id').where('device', '=', device).orderBy('id', 'desc').offset((this.options.retention ?? DEFAULT_LOG_RETENTION) - 1).limit(1).executeTakeFirst()
        if (oldestKept) await trx.deleteFrom('device_log').where('device', '=', device).where('id', '<', oldestKept.id).execute()
      }
    })
    return stored
  }

  /**
   * Another instance stored lines of these devices: the followed ones' subscribers get the lines they have not
   * had, in order, after this instance's own writes so far.
   */
  catchUp(deviceIds: Iterable<number>): Promise<void> {
    const followed = [...deviceIds].filter((device) => this.subscribers.has(device))
    if (followed.length === 0) return this.writing
    this.writing = this.writing.then(async () => {
      for (const device of followed) {
        if (!this.subscribers.has(device)) continue
        const since = this.published.get(device)
        // A device first followed has no line published yet: its retention is read, and each follower drops what its history had.
        const lines = await this.history(device, since === undefined ? {count: this.options.retention ?? DEFAULT_LOG_RETENTION} : {count: 'all', since}, {waitForWrites: false})
        for (const line of lines) this.publish(device, line)
      }
    }).catch((error: unknown) => this.options.onError?.(error, 'reading log lines other server instances stored failed'))
    return this.writing
  }

  /** Every followed device may have missed lines (the cluster bus reconnected). */
  catchUpAll(): Promise<void> {
    return this.catchUp(this.subscribers.keys())
  }

  /** Waits until every line appended so far is in the database. */
  async flush(): Promise<void> {
    await this.writing
  }

  /** The last `count` lines of a device (all kept with `'all'`), oldest first, only those after `since` when given. */
  async history(deviceId: number, options: {count: number | 'all'; since?: number}, read: {waitForWrites?: boolean} = {}): Promise<StoredLogLine[]> {
    if (read.waitForWrites !== false) await this.flush()
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
      if (listeners.size === 0) {
        this.subscribers.delete(deviceId)
        this.published.delete(deviceId)
      }
    }
  }
}
