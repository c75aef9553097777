import {createInterface} from 'node:readline'
import {PassThrough, type Readable} from 'node:stream'
import {createGunzip, createInflate} from 'node:zlib'

import type {FastifyInstance} from 'fastify'

import type {LogLine, StoredLogLine} from '../../protocol/log-line.js'
import type {ServerContext} from '../context.js'
import type {DeviceLogStore} from '../device-logs.js'
import {logLineOf} from '../device-logs.js'
import {badRequest} from '../http-errors.js'
import {deviceForRequest} from './device-state.js'

export interface DeviceLogSettings {
  store: DeviceLogStore
  /** How often a log stream with nothing to say sends a bare newline, so proxies keep it open. */
  heartbeatMs: number
}

export const DEFAULT_LOG_HEARTBEAT_MS = 58_000

/** Lines of one request written to the store together, so a fast writer does not make one write a line. */
const APPEND_BATCH = 50

function decodedBody(payload: Readable, encoding: string | string[] | undefined): Readable {
  if (encoding === 'gzip') return payload.pipe(createGunzip())
  if (encoding === 'deflate') return payload.pipe(createInflate())
  if (encoding === undefined || encoding === 'identity') return payload
  throw badRequest(`unsupported content-encoding "${String(encoding)}"`)
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
      let batch: LogLine[] = []
      for await (const text of createInterface({input: decodedBody(body, request.headers['content-encoding']), crlfDelay: Number.POSITIVE_INFINITY})) {
        if (text.trim() === '') continue
        let parsed: unknown
        try {
          parsed = JSON.parse(text)
        } catch {
          continue
        }

        const line = logLineOf(parsed)
        if (line) batch.push(line)
        if (batch.length >= APPEND_BATCH) {
          await store.append(deviceId, batch)
          batch = []
        }
      }

      await store.append(deviceId, batch)
      return reply.code(201).send()
    })
  })

  app.post<{Params: {uuid: string}}>('/device/v2/:uuid/logs', async (request, reply) => {
    const deviceId = await deviceForRequest(context, request, request.params.uuid, 'write-logs')
    if (!Array.isArray(request.body)) throw badRequest('send the log lines as a JSON array')
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
