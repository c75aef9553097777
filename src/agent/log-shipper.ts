import {PassThrough, type Readable} from 'node:stream'

import type Docker from 'dockerode'

import {type LocalLogLine, type LogLine, toNdjson, truncateLogMessage} from '../protocol/log-line.js'
import type {FleetClient} from '../sdk/client.js'

export type LogSender = (lines: LogLine[]) => Promise<void>

/**
 * Sends lines to `POST /device/v2/<uuid>/log-stream` in batches: one short NDJSON request per batch rather
 * than one long request, so a failed request loses nothing (its lines go back in the buffer).
 */
export function logStreamSender(client: FleetClient, deviceUuid: string): LogSender {
  return async (lines) => {
    await client.request('POST', `/device/v2/${deviceUuid}/log-stream`, {body: toNdjson(lines), headers: {'content-type': 'application/x-ndjson'}})
  }
}

export interface LogShipperOptions {
  send: LogSender
  batchIntervalMs?: number
  maxBatchLines?: number
  /** Lines kept while the server is unreachable; older ones are dropped beyond it. */
  maxBufferedLines?: number
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

type StreamName = 'stdout' | 'stderr'

/** Where a stream of a container was read up to: the timestamp of its last line and how many lines carried it. */
interface StreamCursor {
  at: bigint
  count: number
}

/**
 * Follows the service containers' output and the agent's own system lines, hands every line to local
 * subscribers at once and ships them to the server in batches. While the server cannot be reached it keeps
 * the newest lines up to a bound and, once through again, says how many it had to drop.
 */
export class LogShipper {
  private pending: LogLine[] = []
  private dropped = 0
  private failures = 0
  private nextAttemptAt = 0
  private sending?: Promise<void>
  private readonly timer: NodeJS.Timeout
  private readonly listeners = new Set<(line: LocalLogLine) => void>()
  private readonly followed = new Map<string, Readable>()
  /**
   * Per container and per stream, where its output was read up to, so following again sends no line twice and
   * misses none: stdout and stderr are read apart, and either may run ahead of the other.
   */
  private readonly cursors = new Map<string, Partial<Record<StreamName, StreamCursor>>>()
  private stopped = false
  private readonly now: () => number

  constructor(private readonly options: LogShipperOptions) {
    this.now = options.now ?? Date.now
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
   * Follows a container's stdout and stderr until it stops; following a container already followed does
   * nothing. Lines older than `sinceMs` are skipped (the agent passes its start time for containers it found running).
   */
  async followContainer(docker: Docker, container: FollowedContainer, sinceMs = 0): Promise<void> {
    if (this.stopped || this.followed.has(container.id)) return
    const handle = docker.getContainer(container.id)
    const placeholder = new PassThrough()
    this.followed.set(container.id, placeholder)
    try {
      const {Config: config} = await handle.inspect()
      const cursors = this.cursors.get(container.id) ?? {}
      // From the stream read least far (a stream not read yet starts at sinceMs). Docker's `since` includes lines
      // at that very time: the lines already read there are skipped by count.
      const starts = (['stdout', 'stderr'] as const).map((name) => cursors[name]?.at ?? BigInt(sinceMs) * 1_000_000n)
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
    if (state?.Running) await this.followContainer(docker, container, sinceMs)
  }

  /** Sends what is buffered now; resolves when that attempt is over. */
  async flush(): Promise<void> {
    if (this.sending) return this.sending
    if (this.pending.length === 0 || this.now() < this.nextAttemptAt) return
    const batch = this.pending.splice(0, this.options.maxBatchLines ?? 500)
    const dropped = this.dropped
    this.dropped = 0
    const notice: LogLine[] = dropped > 0
      ? [{message: `Suppressed ${dropped} log line${dropped === 1 ? '' : 's'} while the server was unreachable`, timestamp: batch[0].timestamp, isSystem: true, isStdErr: false}]
      : []
    this.sending = this.options.send([...notice, ...batch]).then(
      () => {
        this.failures = 0
        this.nextAttemptAt = 0
      },
      () => {
        this.pending.unshift(...batch)
        this.dropped += dropped
        this.trim()
        this.failures++
        this.nextAttemptAt = this.now() + Math.min(this.options.maxRetryDelayMs ?? 30_000, 500 * 2 ** this.failures)
      },
    ).finally(() => {
      this.sending = undefined
    })
    return this.sending
  }

  /** Stops following and sends what is left, once. */
  async stop(): Promise<void> {
    this.stopped = true
    clearInterval(this.timer)
    for (const stream of this.followed.values()) stream.destroy()
    await this.sending
    this.nextAttemptAt = 0
    await this.flush()
  }

  private async readLines(stream: Readable, container: FollowedContainer, name: StreamName): Promise<void> {
    let partial = ''
    // Lines at the cursor's own timestamp seen again in this reading: the first `count` of them were read before.
    const replayed = {at: this.cursors.get(container.id)?.[name]?.at, count: 0}
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
    const cursors = this.cursors.get(container.id) ?? {}
    this.cursors.set(container.id, cursors)
    const cursor = cursors[name]
    if (cursor && nanoseconds < cursor.at) return
    if (cursor && nanoseconds === cursor.at) {
      if (replayed.at === cursor.at && replayed.count < cursor.count) {
        replayed.count++
        return
      }

      cursor.count++
    } else {
      cursors[name] = {at: nanoseconds, count: 1}
    }

    const message = space === -1 ? '' : text.slice(space + 1)
    this.push({message, timestamp: Number(nanoseconds / 1_000_000n), isSystem: false, isStdErr: name === 'stderr', serviceId: container.serviceId}, container.serviceName)
  }

  private push(line: LogLine, serviceName?: string): void {
    const shipped = {...line, message: truncateLogMessage(line.message)}
    for (const listener of this.listeners) listener(serviceName ? {...shipped, serviceName} : shipped)
    this.pending.push(shipped)
    this.trim()
  }

  private trim(): void {
    const excess = this.pending.length - (this.options.maxBufferedLines ?? 2000)
    if (excess <= 0) return
    this.pending.splice(0, excess)
    this.dropped += excess
  }
}
