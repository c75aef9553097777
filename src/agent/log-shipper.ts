import {PassThrough, type Readable} from 'node:stream'

import type Docker from 'dockerode'

import {formatLogBatchId, type LocalLogLine, LOG_BATCH_HEADER, type LogBatchId, type LogLine, toNdjson, truncateLogMessage} from '../protocol/log-line.js'
import type {FleetClient} from '../sdk/client.js'
import {type LinePosition, LogJournal, type StreamName} from './log-journal.js'

/** Sends a batch of lines; `batch` names it, so the server stores it once however often it is sent. */
export type LogSender = (lines: LogLine[], batch?: LogBatchId) => Promise<void>

/** The server surely did not store a batch: it answered with an error, or refused the connection. */
function surelyNotStored(error: unknown): boolean {
  for (let cause: unknown = error; cause instanceof Error; cause = cause.cause) {
    if ((cause as {code?: unknown}).code === 'ECONNREFUSED' || typeof (cause as {statusCode?: unknown}).statusCode === 'number') return true
  }

  return false
}

/**
 * Sends lines to `POST /device/v2/<uuid>/log-stream` in batches: one short NDJSON request per batch rather
 * than one long request, so a failed request loses nothing (its lines stay in the journal). Each names its batch
 * ([flotilla] X-Flotilla-Log-Batch), so a batch sent again because its answer was lost is stored once.
 */
export function logStreamSender(client: FleetClient, deviceUuid: string): LogSender {
  return async (lines, batch) => {
    const headers: Record<string, string> = {'content-type': 'application/x-ndjson', ...(batch ? {[LOG_BATCH_HEADER]: formatLogBatchId(batch)} : {})}
    await client.request('POST', `/device/v2/${deviceUuid}/log-stream`, {body: toNdjson(lines), headers})
  }
}

export interface LogShipperOptions {
  send: LogSender
  /** The journal file (in the agent's data dir) holding unsent lines and the containers' cursors across restarts. */
  journalPath: string
  batchIntervalMs?: number
  /** Journal bytes of lines kept while the server is unreachable; older ones are dropped beyond it. */
  maxUnsentBytes?: number
  maxRetryDelayMs?: number
  now?: () => number
}

export interface FollowedContainer {
  id: string
  serviceId: number
  serviceName: string
}

/** Nanoseconds since the epoch of a Docker RFC 3339 timestamp (`…T12:00:00.123456789Z`). */
function nanosecondsOf(timestamp: string): bigint {
  const match = /^(.*?)(?:\.(\d+))?Z$/.exec(timestamp)
  if (!match) return 0n
  return BigInt(Date.parse(`${match[1]}Z`)) * 1_000_000n + BigInt((match[2] ?? '').padEnd(9, '0').slice(0, 9))
}

function sinceArgument(nanoseconds: bigint): string {
  const fraction = (nanoseconds % 1_000_000_000n).toString().padStart(9, '0')
  return `${nanoseconds / 1_000_000_000n}.${fraction}`
}

/**
 * Follows the service containers' output and the agent's own system lines, hands every line to local
 * subscribers at once and ships them to the server in batches, each within the server's per-write cap. A line
 * is kept in the journal until the server acknowledged it, also across restarts of the agent; while the server
 * cannot be reached the journal keeps the newest lines up to a bound and, once through again, says how many it
 * had to drop.
 */
export class LogShipper {
  /**
   * Unsent lines, and per container and per stream where its output was read up to, so following again (also
   * after a restart) sends no line twice and misses none: stdout and stderr are read apart, and either may run
   * ahead of the other.
   */
  private readonly journal: LogJournal
  private failures = 0
  private nextAttemptAt = 0
  private sending?: Promise<void>
  private readonly timer: NodeJS.Timeout
  private readonly listeners = new Set<(line: LocalLogLine) => void>()
  private readonly followed = new Map<string, Readable>()
  /** Stopped containers whose output was read to its end: nothing new comes until they start again. */
  private readonly readToEnd = new Set<string>()
  private stopped = false
  private readonly now: () => number

  constructor(private readonly options: LogShipperOptions) {
    this.now = options.now ?? Date.now
    this.journal = LogJournal.open(options.journalPath, {maxUnsentBytes: options.maxUnsentBytes, now: this.now})
    this.timer = setInterval(() => void this.flush(), options.batchIntervalMs ?? 1000)
  }

  systemLine(message: string, serviceId?: number): void {
    this.push({message, timestamp: this.now(), isSystem: true, isStdErr: false, ...(serviceId === undefined ? {} : {serviceId})})
  }

  /** Live lines for the local API's log stream. */
  subscribe(listener: (line: LocalLogLine) => void): () => void {
    this.listeners.add(listener)
    return () => this.listeners.delete(listener)
  }

  /**
   * Follows a container's stdout and stderr until it stops, from where its streams were read up to (a container
   * never read from the journal's start); following a container already followed, or a stopped one already read
   * to its end, does nothing. A container that stopped while the agent was away has its last lines read.
   */
  async followContainer(docker: Docker, container: FollowedContainer): Promise<void> {
    if (this.stopped || this.followed.has(container.id)) return
    const handle = docker.getContainer(container.id)
    const placeholder = new PassThrough()
    this.followed.set(container.id, placeholder)
    try {
      const {Config: config, State: initial} = await handle.inspect()
      if (!initial.Running && this.readToEnd.has(container.id)) return
      // From the stream read least far (a stream not read yet starts with the journal). Docker's `since` includes
      // lines at that very time: the lines already read there are skipped by count.
      const starts = (['stdout', 'stderr'] as const).map((name) => this.journal.cursor(container.id, name)?.at ?? this.journal.followSince)
      const since = starts[0] < starts[1] ? starts[0] : starts[1]
      const raw = (await handle.logs({follow: true, stdout: true, stderr: true, timestamps: true, since: sinceArgument(since)})) as unknown as Readable
      if (this.stopped) {
        raw.destroy()
        return
      }

      this.followed.set(container.id, raw)
      const stdout = new PassThrough()
      const stderr = new PassThrough()
      if (config.Tty) raw.pipe(stdout)
      else docker.modem.demuxStream(raw, stdout, stderr)
      const finished = Promise.all([this.readLines(stdout, container, 'stdout'), this.readLines(stderr, container, 'stderr')])
      let ended = false
      const endBoth = () => {
        if (ended) return
        ended = true
        stdout.end()
        stderr.end()
      }

      raw.once('end', endBoth)
      raw.once('close', endBoth)
      raw.once('error', endBoth)
      await finished
    } catch {
      // The container went away while we looked at it: there is nothing left to follow.
    } finally {
      this.followed.delete(container.id)
    }

    if (this.stopped) return
    const state = await handle.inspect().then((info) => info.State, () => undefined)
    if (state?.Running) await this.followContainer(docker, container)
    else this.readToEnd.add(container.id)
  }

  /**
   * Sends the oldest unsent lines, as many as one request of the server's cap holds; resolves when that attempt
   * is over. They are settled only once the server answered 2xx; a failure keeps them for a later try.
   */
  async flush(): Promise<void> {
    if (this.sending) return this.sending
    if (this.now() < this.nextAttemptAt) return
    const batch = this.journal.takeBatch()
    if (!batch) return
    this.sending = this.options.send(batch.lines, batch.id).then(
      () => {
        this.journal.acknowledge(batch)
        this.failures = 0
        this.nextAttemptAt = 0
      },
      (error: unknown) => {
        this.journal.release({notStored: surelyNotStored(error)})
        this.failures++
        this.nextAttemptAt = this.now() + Math.min(this.options.maxRetryDelayMs ?? 30_000, 500 * 2 ** this.failures)
      },
    ).finally(() => {
      this.sending = undefined
    })
    return this.sending
  }

  /** Stops following and sends what is left, once; what the server did not take stays in the journal for the next start. */
  async stop(): Promise<void> {
    this.stopped = true
    clearInterval(this.timer)
    for (const stream of this.followed.values()) stream.destroy()
    await this.sending
    this.nextAttemptAt = 0
    await this.flush()
    this.journal.close()
  }

  private async readLines(stream: Readable, container: FollowedContainer, name: StreamName): Promise<void> {
    let partial = ''
    // Lines at the cursor's own timestamp seen again in this reading: the first `count` of them were read before.
    const replayed = {at: this.journal.cursor(container.id, name)?.at, count: 0}
    for await (const chunk of stream) {
      partial += (chunk as Buffer).toString('utf8')
      let newline: number
      while ((newline = partial.indexOf('\n')) !== -1) {
        this.containerLine(partial.slice(0, newline).replace(/\r$/, ''), container, name, replayed)
        partial = partial.slice(newline + 1)
      }
    }

    if (partial) this.containerLine(partial, container, name, replayed)
  }

  private containerLine(text: string, container: FollowedContainer, name: StreamName, replayed: {at?: bigint; count: number}): void {
    const space = text.indexOf(' ')
    const stamp = space === -1 ? text : text.slice(0, space)
    const nanoseconds = nanosecondsOf(stamp)
    const cursor = this.journal.cursor(container.id, name)
    if (cursor && nanoseconds < cursor.at) return
    if (cursor && nanoseconds === cursor.at && replayed.at === cursor.at && replayed.count < cursor.count) {
      replayed.count++
      return
    }

    const count = cursor && nanoseconds === cursor.at ? cursor.count + 1 : 1
    const message = space === -1 ? '' : text.slice(space + 1)
    const line = {message, timestamp: Number(nanoseconds / 1_000_000n), isSystem: false, isStdErr: name === 'stderr', serviceId: container.serviceId}
    this.push(line, {serviceName: container.serviceName, position: {container: container.id, stream: name, at: nanoseconds, count}})
  }

  private push(line: LogLine, from?: {serviceName: string; position: LinePosition}): void {
    const shipped = {...line, message: truncateLogMessage(line.message)}
    for (const listener of this.listeners) listener(from ? {...shipped, serviceName: from.serviceName} : shipped)
    this.journal.append(shipped, from?.position)
  }
}
