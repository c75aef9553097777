import {createInterface} from 'node:readline'
import {setTimeout as sleep} from 'node:timers/promises'

import {ApiError, ExpectedError} from '../errors.js'
import type {StoredLogLine} from '../protocol/log-line.js'
import type {FleetClient} from './client.js'
import {getDevice} from './devices.js'

/** A device log line with the name of its service, when it has one. */
export interface DeviceLogLine extends StoredLogLine {
  serviceName?: string
}

export interface LogStreamOptions {
  /** Keep following new lines after the history. */
  tail?: boolean
  /** Lines of history first: a number or 'all' (default: all kept without --tail, the last 100 with it). */
  count?: number | 'all'
  /** Only these services' lines (and system lines when `system` is set too). */
  services?: string[]
  /** Only system lines (and the named services' lines). */
  system?: boolean
  /** Reconnections after a dropped stream before giving up. */
  maxRetry?: number
  retryDelayMs?: number
  signal?: AbortSignal
}

const DEFAULT_TAIL_HISTORY = 100
const DEFAULT_RETRY_DELAY_MS = 1000

/** Names services by id (`/v7/service(<id>)`), asking once per id. */
function serviceNamer(client: FleetClient): (serviceId: number) => Promise<string | undefined> {
  const names = new Map<number, Promise<string | undefined>>()
  return (serviceId) => {
    let name = names.get(serviceId)
    if (!name) {
      name = client.pine
        .getOne<{service_name: string}>('service', serviceId, {$select: ['service_name']})
        .then((row) => row?.service_name)
        .catch(() => undefined)
      names.set(serviceId, name)
    }

    return name
  }
}

function lineFilter(options: LogStreamOptions): (line: DeviceLogLine) => boolean {
  const services = new Set(options.services ?? [])
  if (services.size === 0 && !options.system) return () => true
  return (line) => (options.system === true && line.isSystem) || (line.serviceName !== undefined && services.has(line.serviceName))
}

/**
 * A device's logs: the history, then (with `tail`) the new lines as they arrive. A dropped stream is reopened
 * up to `maxRetry` times in a row; a flotilla server numbers its lines, so the stream resumes after the last
 * line seen, without repeats or gaps (elsewhere it resumes with the lines that are new from then on).
 */
export async function* streamLogs(client: FleetClient, deviceReference: string, options: LogStreamOptions = {}): AsyncGenerator<DeviceLogLine> {
  const device = await getDevice(client, deviceReference)
  const nameOf = serviceNamer(client)
  const keep = lineFilter(options)
  const named = async (line: StoredLogLine): Promise<DeviceLogLine> => {
    if (line.serviceId === undefined || line.serviceId === null) return line
    const serviceName = await nameOf(line.serviceId)
    return serviceName === undefined ? line : {...line, serviceName}
  }

  const path = `/device/v2/${device.uuid}/logs`
  if (!options.tail) {
    const lines = await client.request<StoredLogLine[]>('GET', path, {searchParams: {count: options.count ?? 'all'}, signal: options.signal})
    for (const line of lines ?? []) {
      const withName = await named(line)
      if (keep(withName)) yield withName
    }

    return
  }

  let lastId: number | undefined
  let failures = 0
  const maxRetry = options.maxRetry ?? 0
  for (;;) {
    const searchParams: Record<string, string | number> = {stream: 1}
    if (lastId === undefined) searchParams.count = failures === 0 ? options.count ?? DEFAULT_TAIL_HISTORY : 0
    else searchParams.since = lastId
    let failure: unknown
    try {
      const stream = await client.openStream('GET', `${client.apiUrl.replace(/\/+$/, '')}${path}`, {searchParams, signal: options.signal})
      for await (const text of createInterface({input: stream, crlfDelay: Number.POSITIVE_INFINITY})) {
        if (text.trim() === '') continue
        const line = JSON.parse(text) as StoredLogLine
        failures = 0
        if (typeof line.id === 'number') {
          if (lastId !== undefined && line.id <= lastId) continue
          lastId = line.id
        }

        const withName = await named(line)
        if (keep(withName)) yield withName
      }
    } catch (error) {
      // A refusal (no such device, no access) will not change by asking again.
      if (error instanceof ApiError && error.statusCode < 500) throw error
      failure = error
    }

    if (options.signal?.aborted) return
    if (failures >= maxRetry) {
      const reason = failure instanceof Error ? `: ${failure.message}` : ''
      throw new ExpectedError(`the log stream of ${device.uuid.slice(0, 7)} ended${reason}${maxRetry > 0 ? ` (after ${maxRetry} reconnection attempts)` : ' — use --max-retry to reconnect'}`)
    }

    failures++
    await sleep(options.retryDelayMs ?? DEFAULT_RETRY_DELAY_MS, undefined, {signal: options.signal}).catch(() => undefined)
  }
}
