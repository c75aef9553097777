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

export function truncateLogMessage(message: string): string {
  return message.length > MAX_LOG_MESSAGE_LENGTH ? message.slice(0, MAX_LOG_MESSAGE_LENGTH) : message
}

export function toNdjson(lines: readonly LogLine[]): string {
  return lines.map((line) => `${JSON.stringify(line)}\n`).join('')
}
