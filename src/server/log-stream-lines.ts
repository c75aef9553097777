import {cutLogMessage, type LogLine} from '../protocol/log-line.js'
import {logLineOf} from './device-logs.js'
import {HttpError} from './http-errors.js'

/**
 * The longest NDJSON line read whole: a 10,000-character message fits even when every character is written as
 * a `\uXXXX` escape. A longer line keeps only its first this many bytes and its last SALVAGE_TAIL_BYTES.
 */
export const MAX_LOG_LINE_BYTES = 64 * 1024
/** The end of an over-long line, kept for the fields that follow its message. */
const SALVAGE_TAIL_BYTES = 1024
/** The most a log request may carry once decompressed (a gzip bomb is stopped here); a device sends more in a new request. */
export const MAX_LOG_BODY_BYTES = 16 * 1024 * 1024

export interface LogStreamLimits {
  maxLineBytes: number
  maxBodyBytes: number
}

const NEWLINE = 0x0a
const MESSAGE_START = /"message"\s*:\s*"/
/** The longest start of a JSON string's contents that is whole: no half escape, no raw control character. */
const STRING_CONTENTS = /(?:[^"\\\u0000-\u001F]|\\(?:["\\/bfnrt]|u[\dA-Fa-f]{4}))*/y
const SCALAR_FIELDS = {
  timestamp: /"timestamp"\s*:\s*(-?\d+(?:\.\d+)?(?:[Ee][+-]?\d+)?)/,
  isSystem: /"isSystem"\s*:\s*(true|false)/,
  isStdErr: /"isStdErr"\s*:\s*(true|false)/,
  serviceId: /"serviceId"\s*:\s*(\d+)/,
}

/**
 * A log line out of the start and the end of an NDJSON line too long to read whole: the message as far as the start
 * holds it (cut and marked when the line ended inside it), the other fields from around it. Undefined when the
 * start holds no message.
 */
export function salvageLongLine(head: string, tail: string): LogLine | undefined {
  const start = MESSAGE_START.exec(head)
  if (!start) return undefined
  const contentsAt = start.index + start[0].length
  STRING_CONTENTS.lastIndex = contentsAt
  const contents = STRING_CONTENTS.exec(head)?.[0] ?? ''
  const whole = head[contentsAt + contents.length] === '"'
  const message = JSON.parse(`"${contents}"`) as string
  const around = `${head.slice(0, start.index)}\n${whole ? head.slice(contentsAt + contents.length + 1) : ''}\n${tail}`
  const fields: Record<string, unknown> = {message: whole ? message : cutLogMessage(message)}
  for (const [name, pattern] of Object.entries(SCALAR_FIELDS)) {
    const value = pattern.exec(around)?.[1]
    if (value !== undefined) fields[name] = JSON.parse(value)
  }

  return logLineOf(fields)
}

/** Collects the bytes of one line: all of them up to the cap, then only the last few. */
class LineBuffer {
  private head: Buffer[] = []
  private headBytes = 0
  private tail?: Buffer

  constructor(private readonly maxBytes: number) {}

  add(bytes: Buffer): void {
    if (bytes.length === 0) return
    if (this.tail === undefined) {
      const room = this.maxBytes - this.headBytes
      if (bytes.length <= room) {
        this.head.push(bytes)
        this.headBytes += bytes.length
        return
      }

      this.head.push(bytes.subarray(0, room))
      this.headBytes += room
      this.tail = Buffer.alloc(0)
      bytes = bytes.subarray(room)
    }

    const kept = bytes.length >= SALVAGE_TAIL_BYTES ? bytes : Buffer.concat([this.tail, bytes])
    this.tail = Buffer.from(kept.subarray(Math.max(0, kept.length - SALVAGE_TAIL_BYTES)))
  }

  /** The line collected so far as a log line, if it is one; starts a new line. */
  take(): LogLine | undefined {
    const text = Buffer.concat(this.head).toString('utf8')
    const tail = this.tail
    this.head = []
    this.headBytes = 0
    this.tail = undefined
    if (tail !== undefined) return salvageLongLine(text, tail.toString('utf8'))
    if (text.trim() === '') return undefined
    try {
      return logLineOf(JSON.parse(text))
    } catch {
      return undefined
    }
  }
}

/**
 * The log lines of an NDJSON body (`POST /device/v2/:uuid/log-stream`), read as they arrive without ever holding
 * more than one capped line: a line over `maxLineBytes` is cut and marked, never buffered whole; a body over
 * `maxBodyBytes` fails with 413 after the lines before the limit. Text that is not a log line is skipped.
 */
export async function* logLinesOfNdjson(body: AsyncIterable<Buffer | string>, limits: LogStreamLimits = {maxLineBytes: MAX_LOG_LINE_BYTES, maxBodyBytes: MAX_LOG_BODY_BYTES}): AsyncGenerator<LogLine> {
  const line = new LineBuffer(limits.maxLineBytes)
  let total = 0
  for await (const chunk of body) {
    const bytes = typeof chunk === 'string' ? Buffer.from(chunk) : chunk
    total += bytes.length
    if (total > limits.maxBodyBytes) {
      throw new HttpError(413, `a log request may carry at most ${limits.maxBodyBytes} bytes once decompressed: send the rest in another request`)
    }

    let from = 0
    for (let newline = bytes.indexOf(NEWLINE, from); newline !== -1; newline = bytes.indexOf(NEWLINE, from)) {
      line.add(bytes.subarray(from, newline))
      from = newline + 1
      const parsed = line.take()
      if (parsed) yield parsed
    }

    line.add(bytes.subarray(from))
  }

  const last = line.take()
  if (last) yield last
}
