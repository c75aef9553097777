import {randomBytes} from 'node:crypto'
import {closeSync, fsyncSync, openSync, readFileSync, renameSync, writeSync} from 'node:fs'

import {type LogBatchId, type LogLine, MAX_LOG_BATCH_CHARACTERS, MAX_LOG_BATCH_LINES} from '../protocol/log-line.js'

export type StreamName = 'stdout' | 'stderr'

/** Where a stream of a container was read up to: the timestamp of its last line (ns) and how many lines carried it. */
export interface StreamCursor {
  at: bigint
  count: number
}

/** A container line's place in its container's output: the cursor of its stream once it is read. */
export interface LinePosition extends StreamCursor {
  container: string
  stream: StreamName
}

/** Lines to send in one request, within the server's per-write cap, and what acknowledging them settles. */
export interface LogBatch {
  /** The journal's and the batch's number: sent again, a batch keeps it and its lines, so the server stores it once. */
  readonly id: LogBatchId
  lines: LogLine[]
  /** Journal lines in the batch (the notice of suppressed lines is not one). */
  readonly taken: number
  readonly upTo: number
  /** Suppressed lines the batch's notice tells of. */
  readonly noticed: number
}

export interface LogJournalOptions {
  /** Journal bytes of unsent lines kept; the oldest ones beyond it are dropped, and a notice says how many. */
  maxUnsentBytes?: number
  /** Bytes of settled records the file may hold beyond twice its unsent lines before it is rewritten. */
  compactSlackBytes?: number
  now?: () => number
}

export const DEFAULT_MAX_UNSENT_BYTES = 4 * 1024 * 1024
const DEFAULT_COMPACT_SLACK_BYTES = 1024 * 1024
/** Containers whose cursors are kept (the most recently read): those of removed containers go eventually. */
const MAX_CURSOR_CONTAINERS = 256

/** A batch taken and not yet acknowledged: its first `taken` unsent lines, up to seq `upTo`, after a notice of `noticed`. */
interface PendingBatch {
  number: number
  taken: number
  upTo: number
  noticed: number
}

type JournalRecord =
  | {kind: 'start'; since: string; id?: string; nextBatch?: number}
  | {kind: 'line'; seq: number; line: LogLine; container?: string; stream?: StreamName; at?: string; count?: number}
  | ({kind: 'batch'} & PendingBatch)
  | {kind: 'sent'; upTo: number; noticed: number; batch?: number}
  | {kind: 'unbatched'; batch: number}
  | {kind: 'dropped'; from: number; to: number}
  | {kind: 'suppressed'; count: number}
  | {kind: 'cursor'; container: string; stream: StreamName; at: string; count: number}

interface Entry {
  seq: number
  line: LogLine
  /** The line's record as the file holds it (with its newline): compaction writes it again as it is. */
  record: string
  bytes: number
}

function suppressedNotice(count: number, timestamp: number): LogLine {
  return {message: `Suppressed ${count} log line${count === 1 ? '' : 's'} while the server was unreachable`, timestamp, isSystem: true, isStdErr: false}
}

function isStream(value: unknown): value is StreamName {
  return value === 'stdout' || value === 'stderr'
}

function isLogLine(value: unknown): value is LogLine {
  const line = value as LogLine | undefined
  return typeof line?.message === 'string' && typeof line.timestamp === 'number' && typeof line.isSystem === 'boolean' && typeof line.isStdErr === 'boolean'
}

function recordText(record: JournalRecord): string {
  return `${JSON.stringify(record)}\n`
}

/**
 * The agent's log lines not yet acknowledged by the server, and where it read each container's streams up to, in
 * one append-only file in its data dir: each line is written with the cursor it moves, so the agent killed at any
 * moment starts again with every line it read and not yet sent, and reads again from the engine exactly the lines
 * it had not journaled (a torn last record is one of those). "sent" and "dropped" records settle lines; the file is
 * rewritten from what is unsettled when settled records make up most of it, and on every start.
 *
 * Batches are numbered and journaled before they are sent ("batch" records; the journal has a random id). One whose
 * answer was lost (the agent killed, the connection cut) is sent again as it was, with its number, and the server
 * stores a batch of a journal once ([flotilla] X-Flotilla-Log-Batch): no line repeats. Its lines are not dropped
 * while they wait, so an outage may keep up to one batch beyond the byte bound.
 *
 * Durability: every record is one write() to the file, which the page cache keeps when the process is killed
 * (kill -9, an out-of-memory kill, a crash). A power loss can lose the records the kernel had not written back
 * yet (seconds of them): lines of those the engine still holds are read again, and a batch whose "sent" record was
 * lost is sent once more, with its number. A rewrite is synced before it replaces the file, so a power loss never loses the
 * journal as a whole.
 */
export class LogJournal {
  /** Containers with no cursor are read from this time (ns): when this data dir's journal began. */
  readonly followSince: bigint
  /** Names this journal to the server, whose batches it numbers (random, made with the journal). */
  readonly id: string
  private nextBatch = 1
  /** The batch out or last refused: sent again as it is until the server takes it. */
  private pending?: PendingBatch
  private out = false
  private readonly unsent: Entry[] = []
  private unsentBytes = 0
  /** The first lines of `unsent`, sent and not yet answered: never dropped meanwhile. */
  private inFlight = 0
  private suppressedCount = 0
  private nextSeq = 1
  private readonly cursors = new Map<string, Partial<Record<StreamName, StreamCursor>>>()
  /** Undefined while the file cannot be written (`damaged`). */
  private fd?: number
  private fileBytes = 0
  /** A write failed (a full disk): lines are kept in memory until the file can be rewritten whole. */
  private damaged = false
  private readonly maxUnsentBytes: number
  private readonly compactSlackBytes: number
  private readonly now: () => number

  private constructor(
    private readonly file: string,
    options: LogJournalOptions,
  ) {
    this.maxUnsentBytes = options.maxUnsentBytes ?? DEFAULT_MAX_UNSENT_BYTES
    this.compactSlackBytes = options.compactSlackBytes ?? DEFAULT_COMPACT_SLACK_BYTES
    this.now = options.now ?? Date.now
    const {since, id} = this.replay()
    this.followSince = since ?? BigInt(this.now()) * 1_000_000n
    this.id = id ?? randomBytes(8).toString('hex')
    this.compact()
    this.trim()
  }

  /** The journal at `file`, as the last run left it (or a new one), rewritten without its settled records. */
  static open(file: string, options: LogJournalOptions = {}): LogJournal {
    return new LogJournal(file, options)
  }

  get suppressed(): number {
    return this.suppressedCount
  }

  cursor(container: string, stream: StreamName): StreamCursor | undefined {
    return this.cursors.get(container)?.[stream]
  }

  /** Keeps a line until it is acknowledged; a container line moves its stream's cursor to `position` with it. */
  append(line: LogLine, position?: LinePosition): void {
    const seq = this.nextSeq++
    const where = position ? {container: position.container, stream: position.stream, at: String(position.at), count: position.count} : {}
    const record = recordText({kind: 'line', seq, line, ...where})
    this.write(record)
    if (position) this.setCursor(position.container, position.stream, {at: position.at, count: position.count})
    const bytes = Buffer.byteLength(record)
    this.unsent.push({seq, line, record, bytes})
    this.unsentBytes += bytes
    this.trim()
    if (!this.damaged && this.overgrown()) this.compact()
  }

  /**
   * The oldest lines up to the server's per-write cap (MAX_LOG_BATCH_LINES lines, MAX_LOG_BATCH_CHARACTERS of
   * message), after a notice of lines suppressed; undefined when there is nothing to send or a batch is out.
   */
  takeBatch(): LogBatch | undefined {
    if (this.out) return undefined
    this.pending ??= this.nextPending()
    if (!this.pending) return undefined
    const {number, taken, upTo, noticed} = this.pending
    const lines: LogLine[] = noticed > 0 ? [suppressedNotice(noticed, this.unsent[0]?.line.timestamp ?? this.now())] : []
    for (const {line} of this.unsent.slice(0, taken)) lines.push(line)
    this.out = true
    this.inFlight = taken
    return {id: {journal: this.id, number}, lines, taken, upTo, noticed}
  }

  /** The server stored the batch: its lines are settled. */
  acknowledge(batch: LogBatch): void {
    this.write(recordText({kind: 'sent', upTo: batch.upTo, noticed: batch.noticed, batch: batch.id.number}))
    for (const entry of this.unsent.splice(0, batch.taken)) this.unsentBytes -= entry.bytes
    this.suppressedCount -= batch.noticed
    this.pending = undefined
    this.out = false
    this.inFlight = 0
    this.trim()
    if (this.damaged || this.overgrown()) this.compact()
  }

  /**
   * The batch was not acknowledged. When the server may have stored it (the answer was lost), it is sent again as
   * it is, with its number, and its lines are not dropped meanwhile; when it surely did not (it refused the batch, or
   * could not be reached), its lines go back among the others and the next batch is taken afresh.
   */
  release(options: {notStored?: boolean} = {}): void {
    this.out = false
    if (!options.notStored || !this.pending) return
    this.write(recordText({kind: 'unbatched', batch: this.pending.number}))
    this.pending = undefined
    this.inFlight = 0
    this.trim()
  }

  /** A new batch of the oldest lines, numbered and journaled before it is sent; undefined when nothing waits. */
  private nextPending(): PendingBatch | undefined {
    if (this.unsent.length === 0 && this.suppressedCount === 0) return undefined
    const noticed = this.suppressedCount
    let count = noticed > 0 ? 1 : 0
    let characters = noticed > 0 ? suppressedNotice(noticed, 0).message.length : 0
    let taken = 0
    for (const {line} of this.unsent) {
      if (count >= MAX_LOG_BATCH_LINES || (taken > 0 && characters + line.message.length > MAX_LOG_BATCH_CHARACTERS)) break
      characters += line.message.length
      count++
      taken++
    }

    const batch = {number: this.nextBatch++, taken, upTo: taken > 0 ? this.unsent[taken - 1].seq : 0, noticed}
    this.write(recordText({kind: 'batch', ...batch}))
    return batch
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd)
    this.fd = undefined
  }

  /** Drops the oldest lines not in flight while the unsent lines are over the byte bound, and counts them. */
  private trim(): void {
    let excess = this.unsentBytes - this.maxUnsentBytes
    let dropped = 0
    while (excess > 0 && this.inFlight + dropped < this.unsent.length) {
      excess -= this.unsent[this.inFlight + dropped].bytes
      dropped++
    }

    if (dropped === 0) return
    const removed = this.unsent.splice(this.inFlight, dropped)
    this.write(recordText({kind: 'dropped', from: removed[0].seq, to: removed.at(-1)!.seq}))
    for (const entry of removed) this.unsentBytes -= entry.bytes
    this.suppressedCount += dropped
  }

  private setCursor(container: string, stream: StreamName, cursor: StreamCursor): void {
    const cursors = this.cursors.get(container) ?? {}
    cursors[stream] = cursor
    // Most recently read last: the oldest are forgotten first.
    this.cursors.delete(container)
    this.cursors.set(container, cursors)
    if (this.cursors.size > MAX_CURSOR_CONTAINERS) this.cursors.delete(this.cursors.keys().next().value!)
  }

  private write(record: string): void {
    if (this.damaged || this.fd === undefined) return
    try {
      const bytes = Buffer.from(record)
      if (writeSync(this.fd, bytes) !== bytes.length) this.damaged = true
      this.fileBytes += bytes.length
    } catch {
      // A full disk: the lines stay in memory, and the file is rewritten from them once it can be.
      this.damaged = true
    }
  }

  /** Settled records make up most of the file. */
  private overgrown(): boolean {
    return this.fileBytes > 2 * this.unsentBytes + this.compactSlackBytes
  }

  private compact(): void {
    try {
      const fd = this.rewrite()
      this.close()
      this.fd = fd
      this.damaged = false
    } catch {
      // No room (or no right) to write: the lines stay in memory, and the next settled batch tries again.
      this.damaged = true
    }
  }

  /** Rebuilds the state from the file's records; returns when the journal began and its id, if it says. */
  private replay(): {since?: bigint; id?: string} {
    let text: string
    try {
      text = readFileSync(this.file, 'utf8')
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return {}
      throw error
    }

    const unsent = new Map<number, Entry>()
    let since: bigint | undefined
    let id: string | undefined
    // The text after the last newline is a record torn by a kill: left out, as is any record that is not whole.
    for (const record of text.split('\n').slice(0, -1)) {
      let parsed: JournalRecord
      try {
        parsed = JSON.parse(record) as JournalRecord
      } catch {
        continue
      }

      if (parsed?.kind === 'start' && /^\d+$/.test(String(parsed.since))) {
        since = BigInt(parsed.since)
        if (typeof parsed.id === 'string' && /^[\da-f]{8,64}$/.test(parsed.id)) id = parsed.id
        if (Number.isSafeInteger(parsed.nextBatch)) this.nextBatch = Math.max(this.nextBatch, parsed.nextBatch!)
      } else {
        this.replayRecord(parsed, `${record}\n`, unsent)
      }
    }

    this.unsent.push(...unsent.values())
    this.unsentBytes = this.unsent.reduce((sum, entry) => sum + entry.bytes, 0)
    this.resumePending()
    return {since, id}
  }

  /**
   * A batch out when the last run ended is sent again with its number, as the server may have stored it; unless its
   * lines are not all there as taken (a torn or foreign file), when they go in a batch of a new number.
   */
  private resumePending(): void {
    const pending = this.pending
    if (!pending) return
    const lines = this.unsent.slice(0, pending.taken)
    const whole = lines.length === pending.taken && (pending.taken === 0 || lines.at(-1)!.seq === pending.upTo) && pending.noticed <= this.suppressedCount
    if (whole) this.inFlight = pending.taken
    else this.pending = undefined
  }

  private replayRecord(record: JournalRecord, text: string, unsent: Map<number, Entry>): void {
    switch (record?.kind) {
      case 'line': {
        if (!Number.isSafeInteger(record.seq) || !isLogLine(record.line)) return
        unsent.set(record.seq, {seq: record.seq, line: record.line, record: text, bytes: Buffer.byteLength(text)})
        this.nextSeq = Math.max(this.nextSeq, record.seq + 1)
        if (typeof record.container === 'string' && isStream(record.stream)) this.replayCursor(record.container, record.stream, record.at, record.count)
        return
      }

      case 'batch': {
        if (![record.number, record.taken, record.upTo, record.noticed].every((value) => Number.isSafeInteger(value) && value >= 0)) return
        this.pending = {number: record.number, taken: record.taken, upTo: record.upTo, noticed: record.noticed}
        this.nextBatch = Math.max(this.nextBatch, record.number + 1)
        return
      }

      case 'unbatched': {
        if (record.batch === this.pending?.number) this.pending = undefined
        return
      }

      case 'sent': {
        if (record.batch !== undefined && record.batch === this.pending?.number) this.pending = undefined
        if (!Number.isSafeInteger(record.upTo)) return
        for (const seq of unsent.keys()) {
          if (seq > record.upTo) break
          unsent.delete(seq)
        }

        if (Number.isSafeInteger(record.noticed)) this.suppressedCount = Math.max(0, this.suppressedCount - record.noticed)
        return
      }

      case 'dropped': {
        if (!Number.isSafeInteger(record.from) || !Number.isSafeInteger(record.to)) return
        for (let seq = record.from; seq <= record.to; seq++) if (unsent.delete(seq)) this.suppressedCount++
        return
      }

      case 'suppressed': {
        if (Number.isSafeInteger(record.count) && record.count > 0) this.suppressedCount += record.count
        return
      }

      case 'cursor': {
        if (typeof record.container === 'string' && isStream(record.stream)) this.replayCursor(record.container, record.stream, record.at, record.count)
      }
    }
  }

  private replayCursor(container: string, stream: StreamName, at: unknown, count: unknown): void {
    if (typeof at !== 'string' || !/^\d+$/.test(at) || !Number.isSafeInteger(count) || (count as number) < 1) return
    this.setCursor(container, stream, {at: BigInt(at), count: count as number})
  }

  /**
   * Writes the unsettled state to a new file, synced, and puts it in the journal's place: when it began, the count
   * of suppressed lines, the unsent lines, then the cursors (after the lines, whose own cursors are older).
   */
  private rewrite(): number {
    const records = [recordText({kind: 'start', since: String(this.followSince), id: this.id, nextBatch: this.nextBatch})]
    if (this.suppressedCount > 0) records.push(recordText({kind: 'suppressed', count: this.suppressedCount}))
    for (const entry of this.unsent) records.push(entry.record)
    if (this.pending) records.push(recordText({kind: 'batch', ...this.pending}))
    for (const [container, cursors] of this.cursors) {
      for (const stream of ['stdout', 'stderr'] as const) {
        const cursor = cursors[stream]
        if (cursor) records.push(recordText({kind: 'cursor', container, stream, at: String(cursor.at), count: cursor.count}))
      }
    }

    const text = Buffer.from(records.join(''))
    const temporary = `${this.file}.new`
    const fd = openSync(temporary, 'w', 0o600)
    try {
      if (writeSync(fd, text) !== text.length) throw new Error(`${temporary}: short write`)
      fsyncSync(fd)
    } finally {
      closeSync(fd)
    }

    renameSync(temporary, this.file)
    this.fileBytes = text.length
    return openSync(this.file, 'a', 0o600)
  }
}
