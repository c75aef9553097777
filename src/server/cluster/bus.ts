import {randomBytes} from 'node:crypto'

/**
 * The cluster event bus: how one server instance tells the others sharing its database what it learned, so that
 * N `flotilla server start` processes on one PostgreSQL act as one server. Each instance acts on what it did
 * itself at once (drops its own caches, tells its own linked devices) and publishes an event; the others act on
 * the event when it arrives. An instance never receives its own events.
 *
 * Wire format (PostgreSQL): `NOTIFY flotilla_cluster, '<json>'` (sent with `pg_notify`), one JSON object per
 * notification, always under PostgreSQL's 8000-byte payload limit (lists of ids are split over several):
 *
 *   {"v":1,"o":"<sender instance id, 16 hex>","t":"targets"}            something devices' targets are made of may
 *                                                                        have changed (any pine write, a release
 *                                                                        promoted): drop kept targets, API keys'
 *                                                                        actors and heartbeats; tell linked devices
 *   {"v":1,"o":"…","t":"keys"}                                           keys may have been revoked (deleted): drop
 *                                                                        API keys' actors; close links of gone keys
 *   {"v":1,"o":"…","t":"devices","ids":[<device id>, …]}                 these devices' rows were written by the
 *                                                                        sender (a link opening or closing, a failed
 *                                                                        write): forget what this instance remembers
 *                                                                        of their heartbeats and reports
 *   {"v":1,"o":"…","t":"devices","ids":[…],"d":[<report digest>, …]}     these devices' rows were written online with
 *                                                                        these state reports (`d[i]` of `ids[i]`,
 *                                                                        base64url): an instance whose last report of
 *                                                                        a device is that one keeps it (the device is
 *                                                                        online as of now), any other forgets it. An
 *                                                                        instance that knows no `d` forgets them all.
 *   {"v":1,"o":"…","t":"logs","ids":[<device id>, …]}                    log lines of these devices were stored:
 *                                                                        followers of them read the new lines
 *   {"v":1,"o":"…","t":"actions","ids":[<device id>, …]}                 device actions were queued (table
 *                                                                        device_action) for these devices: a collect
 *                                                                        waiting for one reads them
 *
 * An unknown `v` or `t` is ignored (a newer instance in a rolling upgrade). On SQLite the server is one process:
 * the bus is in-process (instances opened in one process on the same database file reach each other).
 * Locally only, after the PostgreSQL listener lost its connection and got it back, handlers get `{"t":"resync"}`:
 * events may have been missed, so everything is treated as changed.
 */
export type ClusterEvent =
  | {type: 'targets'}
  | {type: 'keys'}
  | {type: 'devices'; ids: number[]; digests?: string[]}
  | {type: 'logs'; ids: number[]}
  | {type: 'actions'; ids: number[]}

/** What handlers receive: another instance's event, or the local notice that events may have been missed. */
export type ReceivedClusterEvent = ClusterEvent | {type: 'resync'}

export type ClusterEventHandler = (event: ReceivedClusterEvent) => void

export interface ClusterBus {
  /** Tells the other instances; resolves once sent (a failure is reported to the bus's onError, never thrown). */
  publish(event: ClusterEvent): Promise<void>
  /** Calls `handler` with every event of the other instances until the returned function is called. */
  subscribe(handler: ClusterEventHandler): () => void
  close(): Promise<void>
}

export const CLUSTER_CHANNEL = 'flotilla_cluster'
export const CLUSTER_PROTOCOL_VERSION = 1
/** PostgreSQL refuses a NOTIFY payload of 8000 bytes or more. */
export const MAX_PAYLOAD_BYTES = 7999
/** Ids in one notification: 500 ids of up to 12 characters each stay far under the payload limit. */
const IDS_PER_PAYLOAD = 500
/** Ids with their report digests (up to 43 characters) in one notification, under the payload limit too. */
const DIGESTS_PER_PAYLOAD = 100
const DIGEST = /^[\w-]{1,43}$/

const EVENT_TYPES = new Set(['targets', 'keys', 'devices', 'logs', 'actions'])
const EVENTS_WITH_IDS = new Set(['devices', 'logs', 'actions'])

/** A fresh id for this instance, which its own events carry. */
export function newInstanceId(): string {
  return randomBytes(8).toString('hex')
}

/** The payloads of one event, each under the NOTIFY limit: an event naming many devices becomes several. */
export function encodeClusterEvent(origin: string, event: ClusterEvent): string[] {
  const header = {v: CLUSTER_PROTOCOL_VERSION, o: origin, t: event.type}
  if (!('ids' in event)) return [JSON.stringify(header)]
  // Digests pair with ids by position: those ids are sent as they are, others once each.
  const digests = 'digests' in event ? event.digests : undefined
  const ids = digests ? event.ids : [...new Set(event.ids)]
  const perPayload = digests ? DIGESTS_PER_PAYLOAD : IDS_PER_PAYLOAD
  const payloads: string[] = []
  for (let start = 0; start < ids.length; start += perPayload) {
    const slice = {ids: ids.slice(start, start + perPayload), ...(digests && {d: digests.slice(start, start + perPayload)})}
    payloads.push(JSON.stringify({...header, ...slice}))
  }

  return payloads
}

/** The event a payload carries with its sender, or undefined when it is none this version knows (it is then ignored). */
export function decodeClusterEvent(payload: string): {origin: string; event: ClusterEvent} | undefined {
  let value: unknown
  try {
    value = JSON.parse(payload)
  } catch {
    return undefined
  }

  if (typeof value !== 'object' || value === null) return undefined
  const {v, o, t, ids, d} = value as Record<string, unknown>
  if (v !== CLUSTER_PROTOCOL_VERSION || typeof o !== 'string' || typeof t !== 'string' || !EVENT_TYPES.has(t)) return undefined
  if (!EVENTS_WITH_IDS.has(t)) return {origin: o, event: {type: t} as ClusterEvent}
  if (!Array.isArray(ids) || !ids.every((id) => Number.isSafeInteger(id))) return undefined
  if (t === 'devices' && d !== undefined) {
    // Digests that do not pair with the ids are no knowledge: the devices are forgotten, as without any.
    const digests = Array.isArray(d) && d.length === ids.length && d.every((digest) => typeof digest === 'string' && DIGEST.test(digest)) ? (d as string[]) : undefined
    return {origin: o, event: digests ? {type: 'devices', ids, digests} : {type: 'devices', ids}}
  }

  return {origin: o, event: {type: t, ids} as ClusterEvent}
}

/** The handlers of one bus, each called in turn; one that throws is reported and does not stop the others. */
export class ClusterHandlers {
  private readonly handlers = new Set<ClusterEventHandler>()

  constructor(private readonly onError: (error: unknown, message: string) => void) {}

  add(handler: ClusterEventHandler): () => void {
    this.handlers.add(handler)
    return () => this.handlers.delete(handler)
  }

  deliver(event: ReceivedClusterEvent): void {
    for (const handler of this.handlers) {
      try {
        handler(event)
      } catch (error) {
        this.onError(error, `handling the cluster event "${event.type}" failed`)
      }
    }
  }
}

/** Buses of one process by database file: instances opened in one process on the same SQLite file hear each other. */
const hubs = new Map<string, Set<InProcessBus>>()

/**
 * The bus of a server on SQLite (one process): events go, through the same payloads as on PostgreSQL, to the
 * other buses opened on the same `hub` (the database file) in this process, asynchronously as a NOTIFY would.
 */
export class InProcessBus implements ClusterBus {
  readonly instanceId = newInstanceId()
  private readonly handlers: ClusterHandlers

  constructor(
    private readonly hub: string,
    onError: (error: unknown, message: string) => void,
  ) {
    this.handlers = new ClusterHandlers(onError)
    const members = hubs.get(hub) ?? new Set()
    members.add(this)
    hubs.set(hub, members)
  }

  async publish(event: ClusterEvent): Promise<void> {
    const payloads = encodeClusterEvent(this.instanceId, event)
    for (const member of hubs.get(this.hub) ?? []) {
      if (member !== this) for (const payload of payloads) setImmediate(() => member.receive(payload))
    }
  }

  subscribe(handler: ClusterEventHandler): () => void {
    return this.handlers.add(handler)
  }

  async close(): Promise<void> {
    const members = hubs.get(this.hub)
    members?.delete(this)
    if (members?.size === 0) hubs.delete(this.hub)
  }

  private receive(payload: string): void {
    const decoded = decodeClusterEvent(payload)
    if (decoded && decoded.origin !== this.instanceId) this.handlers.deliver(decoded.event)
  }
}
