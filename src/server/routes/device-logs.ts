import {type Duplex, PassThrough, type Readable} from 'node:stream'
import {createGunzip, createInflate} from 'node:zlib'

import type {FastifyInstance} from 'fastify'

import {LOG_BATCH_HEADER, type LogBatchId, type LogLine, MAX_LOG_BATCH_CHARACTERS, MAX_LOG_BATCH_LINES, MAX_LOG_MESSAGE_LENGTH, parseLogBatchId, type StoredLogLine} from '../../protocol/log-line.js'
import type {ServerContext} from '../context.js'
import {type DeviceLogStore, logLineOf} from '../device-logs.js'
import {badRequest, HttpError} from '../http-errors.js'
import {logLinesOfNdjson, MAX_LOG_LINE_BYTES} from '../log-stream-lines.js'
import {deviceForRequest} from './device-state.js'

export interface DeviceLogSettings {
  store: DeviceLogStore
  /** How often a log stream with nothing to say sends a bare newline, so proxies keep it open. */
  heartbeatMs: number
}

export const DEFAULT_LOG_HEARTBEAT_MS = 58_000

/** Lines of one request stored together: a request of the agent (no more than this) is kept whole or not at all. */
const APPEND_BATCH_LINES = MAX_LOG_BATCH_LINES
const APPEND_BATCH_CHARACTERS = MAX_LOG_BATCH_CHARACTERS
/** A long-lived request (balena's supervisor keeps one open) has its lines stored at least this soon. */
const APPEND_BATCH_DELAY_MS = 200
/** The batch form: at most this many lines a request, each read as a log-stream line is. */
const MAX_BATCH_LINES = 10

/**
 * Stores the lines of one log request in batches, one write at a time, so a slow database slows the reading of the
 * request instead of piling lines up in memory; the first failure stops the writes and is thrown by `finish`.
 */
class LogRequestWriter {
  private batch: LogLine[] = []
  private characters = 0
  private timer?: NodeJS.Timeout
  private stored: Promise<void> = Promise.resolve()
  failure?: unknown

  constructor(
    private readonly store: DeviceLogStore,
    private readonly deviceId: number,
  ) {}

  async add(line: LogLine): Promise<void> {
    this.batch.push(line)
    this.characters += line.message.length
    if (this.batch.length < APPEND_BATCH_LINES && this.characters < APPEND_BATCH_CHARACTERS) {
      this.timer ??= setTimeout(() => this.write(), APPEND_BATCH_DELAY_MS)
      return
    }

    this.write()
    await this.stored
  }

  /** Resolves once every line added is stored; throws what made a write fail. */
  async finish(): Promise<void> {
    this.write()
    await this.stored
    if (this.failure !== undefined) throw this.failure
  }

  /** Forgets the lines not written yet (the request failed: the device sends them again). */
  abandon(): void {
    clearTimeout(this.timer)
    this.batch = []
  }

  private write(): void {
    clearTimeout(this.timer)
    this.timer = undefined
    const lines = this.batch
    this.batch = []
    this.characters = 0
    if (lines.length === 0) return
    this.stored = this.stored.then(async () => {
      if (this.failure === undefined) await this.store.append(this.deviceId, lines)
    }).catch((error: unknown) => {
      this.failure ??= error
    })
  }
}

/**
 * The body as sent before its content-encoding. The request itself is piped, never consumed here: when reading stops
 * early (a limit, a failed write) the server discards the rest of the request and answers, instead of resetting
 * the connection under the client.
 */
function decodedBody(payload: Readable, encoding: string | string[] | undefined): Readable {
  let decoded: Duplex
  if (encoding === 'gzip') decoded = createGunzip()
  else if (encoding === 'deflate') decoded = createInflate()
  else if (encoding === undefined || encoding === 'identity') decoded = new PassThrough()
  else throw badRequest(`unsupported content-encoding "${String(encoding)}"`)
  payload.once('error', (error) => decoded.destroy(error))
  return payload.pipe(decoded)
}

async function* decompressionErrorsAsBadRequests(lines: AsyncIterable<LogLine>, encoding: string | string[] | undefined): AsyncGenerator<LogLine> {
  try {
    yield* lines
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    if (code?.startsWith('Z_')) throw badRequest(`the body is not valid ${String(encoding)} data (${code})`)
    throw error
  }
}

/** The batch a log-stream request names, if it names one. */
function logBatchOf(value: string | string[] | undefined): LogBatchId | undefined {
  if (value === undefined) return undefined
  const batch = typeof value === 'string' ? parseLogBatchId(value) : undefined
  if (!batch) throw badRequest(`${LOG_BATCH_HEADER} must be <journal (hex)>/<batch number>, once`)
  return batch
}

/** Stores the lines of a log-stream body; resolves once every one is stored. */
async function storeLogStream(store: DeviceLogStore, deviceId: number, body: Readable, encoding: string | string[] | undefined): Promise<void> {
  const writer = new LogRequestWriter(store, deviceId)
  try {
    for await (const line of decompressionErrorsAsBadRequests(logLinesOfNdjson(decodedBody(body, encoding)), encoding)) {
      if (writer.failure !== undefined) break
      await writer.add(line)
    }
  } catch (error) {
    writer.abandon()
    throw error
  } finally {
    // Whatever is left of a request refused midway (or of a batch stored before) is read and discarded, so the
    // answer reaches the client.
    body.unpipe()
    body.resume()
  }

  await writer.finish()
}

/**
 * Stores a numbered batch (X-Flotilla-Log-Batch) whole, in one write with its number, unless any instance stored it
 * before: it is read completely first (no more than an agent's batch may hold), so it is kept whole or not at all.
 */
async function storeLogBatch(store: DeviceLogStore, deviceId: number, batch: LogBatchId, body: Readable, encoding: string | string[] | undefined): Promise<void> {
  const lines: LogLine[] = []
  let characters = 0
  try {
    for await (const line of decompressionErrorsAsBadRequests(logLinesOfNdjson(decodedBody(body, encoding)), encoding)) {
      lines.push(line)
      characters += line.message.length
      if (lines.length > MAX_LOG_BATCH_LINES || characters > MAX_LOG_BATCH_CHARACTERS + MAX_LOG_MESSAGE_LENGTH) {
        throw new HttpError(413, `a numbered log batch holds at most ${MAX_LOG_BATCH_LINES} lines and ${MAX_LOG_BATCH_CHARACTERS / 1024 / 1024} MiB of messages: send the rest in the next batch`)
      }
    }
  } finally {
    body.unpipe()
    body.resume()
  }

  await store.append(deviceId, lines, batch)
}

function parseCount(value: string | undefined, fallback: number | 'all'): number | 'all' {
  if (value === undefined || value === '') return fallback
  if (value === 'all') return 'all'
  const count = Number(value)
  if (!Number.isInteger(count) || count < 0) throw badRequest('count must be a whole number or "all"')
  return count
}

function parseSince(value: string | undefined): number | undefined {
  if (value === undefined || value === '') return undefined
  const since = Number(value)
  if (!Number.isInteger(since) || since < 0) throw badRequest('since must be the id of a log line')
  return since
}

/**
 * Device logs: devices write them (`log-stream` NDJSON, optionally gzip, read line by line; or a JSON batch),
 * users read the history or follow it live (`stream=1`: history, then new lines as NDJSON, a bare newline as
 * heartbeat). [flotilla] every line carries an `id`; `since=<id>` answers only the lines after it, so a client
 * that lost its connection resumes without repeating or missing lines.
 */
export function registerDeviceLogRoutes(app: FastifyInstance, context: ServerContext, settings: DeviceLogSettings): void {
  const {store} = settings
  const openStreams = new Set<() => void>()
  // Followers never end by themselves: end them when the server closes, or closing would wait for them.
  app.addHook('preClose', async () => {
    for (const stop of openStreams) stop()
  })

  app.register(async (scope) => {
    scope.addContentTypeParser('application/x-ndjson', (_request, payload, done) => done(null, payload))
    scope.post<{Params: {uuid: string}}>('/device/v2/:uuid/log-stream', async (request, reply) => {
      const deviceId = await deviceForRequest(context, request, request.params.uuid, 'write-logs')
      const body = request.body as Readable | undefined
      if (!body || typeof body.pipe !== 'function') throw badRequest('send the log lines as application/x-ndjson')
      let batch: LogBatchId | undefined
      try {
        batch = logBatchOf(request.headers[LOG_BATCH_HEADER])
      } catch (error) {
        body.resume()
        throw error
      }

      const encoding = request.headers['content-encoding']
      // 201 only once every line is stored: a device that gets an error keeps its lines and sends them again. A
      // batch stored before (by any instance) is answered 201 and not stored again.
      if (batch) await storeLogBatch(store, deviceId, batch, body, encoding)
      else await storeLogStream(store, deviceId, body, encoding)
      return reply.code(201).send()
    })
  })

  app.post<{Params: {uuid: string}}>('/device/v2/:uuid/logs', {bodyLimit: MAX_BATCH_LINES * MAX_LOG_LINE_BYTES}, async (request, reply) => {
    const deviceId = await deviceForRequest(context, request, request.params.uuid, 'write-logs')
    if (!Array.isArray(request.body)) throw badRequest('send the log lines as a JSON array')
    if (request.body.length > MAX_BATCH_LINES) throw badRequest(`send at most ${MAX_BATCH_LINES} log lines a request (or use /device/v2/:uuid/log-stream)`)
    await store.append(
      deviceId,
      request.body.map((item) => logLineOf(item)).filter((line): line is LogLine => line !== undefined),
    )
    return reply.code(201).send()
  })

  app.get<{Params: {uuid: string}; Querystring: {count?: string; stream?: string; since?: string}}>('/device/v2/:uuid/logs', async (request, reply) => {
    const deviceId = await deviceForRequest(context, request, request.params.uuid, 'read-logs')
    const streaming = request.query.stream === '1' || request.query.stream === 'true'
    const since = parseSince(request.query.since)
    const count = parseCount(request.query.count, streaming && since === undefined ? 0 : 'all')
    if (!streaming) return reply.type('application/json').send(JSON.stringify(await store.history(deviceId, {count, since})))

    const output = new PassThrough()
    let lastId = since ?? 0
    const send = (line: StoredLogLine) => {
      if ((line.id ?? 0) <= lastId) return
      lastId = line.id ?? lastId
      output.write(`${JSON.stringify(line)}\n`)
    }

    // Subscribe before reading the history, so no line falls between them; the ids drop the ones seen twice.
    let early: StoredLogLine[] | undefined = []
    const unsubscribe = store.subscribe(deviceId, (line) => (early ? early.push(line) : send(line)))
    const heartbeat = setInterval(() => output.write('\n'), settings.heartbeatMs)
    const stop = () => {
      openStreams.delete(stop)
      clearInterval(heartbeat)
      unsubscribe()
      output.end()
    }

    openStreams.add(stop)
    reply.raw.once('close', stop)
    try {
      for (const line of await store.history(deviceId, {count, since})) send(line)
    } catch (error) {
      stop()
      throw error
    }

    const buffered = early
    early = undefined
    for (const line of buffered) send(line)
    return reply.code(200).type('application/x-ndjson').header('cache-control', 'no-cache').send(output)
  })
}
