/** One line of `POST /device/v2/:uuid/log-stream` (NDJSON) and of the device logs read back. */
export interface LogLine {
  message: string
  /** Milliseconds since the epoch. */
  timestamp: number
  isSystem: boolean
  isStdErr: boolean
  serviceId?: number
}

/** A line as the agent's local API streams it: it names the service. */
export interface LocalLogLine extends LogLine {
  serviceName?: string
}

/** A log line as `GET /device/v2/:uuid/logs` returns it. */
export interface StoredLogLine extends LogLine {
  createdAt: number
  /** [flotilla] increases with every line the server stores: `?since=<id>` resumes a stream after it. */
  id?: number
}

/** The server keeps at most this many characters of a message. */
export const MAX_LOG_MESSAGE_LENGTH = 10_000

/**
 * The most a device sends in one log request: at most this many lines, of fewer message characters than this.
 * The server stores such a request whole or not at all, so a device that retries a failed request repeats nothing.
 */
export const MAX_LOG_BATCH_LINES = 500
export const MAX_LOG_BATCH_CHARACTERS = 1024 * 1024

/** Ends a message that was cut to MAX_LOG_MESSAGE_LENGTH, so a reader knows the rest is missing. */
export const TRUNCATED_MARK = ' [truncated]'

/** The start of a message that goes on, marked: TRUNCATED_MARK ends it, in at most MAX_LOG_MESSAGE_LENGTH characters. */
export function cutLogMessage(start: string): string {
  let end = Math.min(start.length, MAX_LOG_MESSAGE_LENGTH - TRUNCATED_MARK.length)
  // Never keep half of a surrogate pair.
  const last = start.charCodeAt(end - 1)
  if (last >= 0xd8_00 && last <= 0xdb_ff) end--
  return start.slice(0, end) + TRUNCATED_MARK
}

/** The message, or its start marked as cut when it is longer than MAX_LOG_MESSAGE_LENGTH. */
export function truncateLogMessage(message: string): string {
  return message.length > MAX_LOG_MESSAGE_LENGTH ? cutLogMessage(message) : message
}

export function toNdjson(lines: readonly LogLine[]): string {
  return lines.map((line) => `${JSON.stringify(line)}\n`).join('')
}

/**
 * [flotilla] The header naming a log-stream request's batch, `<journal>/<number>`: the agent's log journal (random
 * hex, new with each data dir) and the batch's number in it, which grows by one a batch. A batch the agent was not
 * told was stored is sent again as it was, with its number; the server stores a batch of a journal only once.
 */
export const LOG_BATCH_HEADER = 'x-flotilla-log-batch'

export interface LogBatchId {
  journal: string
  number: number
}

export function formatLogBatchId(id: LogBatchId): string {
  return `${id.journal}/${id.number}`
}

/** The batch a header value names; undefined when it is not of the form `<hex>/<positive integer>`. */
export function parseLogBatchId(value: string): LogBatchId | undefined {
  const match = /^([\da-f]{8,64})\/(\d{1,15})$/.exec(value)
  if (!match || Number(match[2]) < 1) return undefined
  return {journal: match[1], number: Number(match[2])}
}
