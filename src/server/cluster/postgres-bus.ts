import type {Client} from 'pg'

import {CLUSTER_CHANNEL, type ClusterBus, type ClusterEvent, type ClusterEventHandler, ClusterHandlers, decodeClusterEvent, encodeClusterEvent, newInstanceId} from './bus.js'

/** The listener's reconnection delays: doubling from the first to the last, then staying there. */
export const RECONNECT_FIRST_DELAY_MS = 250
export const RECONNECT_MAX_DELAY_MS = 10_000

export interface PostgresBusOptions {
  url: string
  /** Sends one notification (`select pg_notify(channel, payload)`), on the server's pool: publishing needs no listener. */
  notify: (channel: string, payload: string) => Promise<void>
  onError: (error: unknown, message: string) => void
  firstDelayMs?: number
  maxDelayMs?: number
}

/**
 * The bus of servers sharing one PostgreSQL database: `LISTEN flotilla_cluster` on a connection of its own (pg,
 * loaded only here), `pg_notify` through the pool. When the listening connection drops it is opened again with
 * growing delays; once it listens again the handlers get `resync`, since events may have been missed meanwhile.
 */
export class PostgresBus implements ClusterBus {
  readonly instanceId = newInstanceId()
  private readonly handlers: ClusterHandlers
  private client?: Client
  private closed = false
  private retryTimer?: NodeJS.Timeout
  private delayMs: number

  private constructor(private readonly options: PostgresBusOptions) {
    this.handlers = new ClusterHandlers(options.onError)
    this.delayMs = options.firstDelayMs ?? RECONNECT_FIRST_DELAY_MS
  }

  /** A bus listening already: an event published by another instance once this resolves reaches it. */
  static async open(options: PostgresBusOptions): Promise<PostgresBus> {
    const bus = new PostgresBus(options)
    await bus.listen()
    return bus
  }

  async publish(event: ClusterEvent): Promise<void> {
    try {
      for (const payload of encodeClusterEvent(this.instanceId, event)) await this.options.notify(CLUSTER_CHANNEL, payload)
    } catch (error) {
      this.options.onError(error, `telling the other server instances "${event.type}" failed`)
    }
  }

  subscribe(handler: ClusterEventHandler): () => void {
    return this.handlers.add(handler)
  }

  async close(): Promise<void> {
    this.closed = true
    clearTimeout(this.retryTimer)
    const client = this.client
    this.client = undefined
    await client?.end().catch(() => undefined)
  }

  /** Ends the listening connection as a network failure would (tests of the reconnection). */
  dropConnectionForTest(): void {
    ;(this.client as unknown as {connection?: {stream?: {destroy(): void}}})?.connection?.stream?.destroy()
  }

  private async listen(): Promise<void> {
    const {default: pg} = await import('pg')
    // TCP keepalive: a listener whose peer vanished without a word (a dead host, a dropped NAT entry) notices.
    const client = new pg.Client({connectionString: this.options.url, application_name: 'flotilla-cluster-bus', keepAlive: true})
    // Either may come when the connection fails; one reconnection is enough. A failed first connection is the caller's.
    let listening = false
    let lost = false
    const onLost = (error?: unknown) => {
      if (!listening || lost) return
      lost = true
      if (this.client === client) this.client = undefined
      if (!this.closed) {
        if (error) this.options.onError(error, 'the cluster event listener lost its database connection; reconnecting')
        this.scheduleReconnect()
      }
    }

    client.on('error', onLost)
    client.on('end', () => onLost())
    client.on('notification', (message) => {
      if (message.channel !== CLUSTER_CHANNEL || message.payload === undefined) return
      const decoded = decodeClusterEvent(message.payload)
      if (decoded && decoded.origin !== this.instanceId) this.handlers.deliver(decoded.event)
    })
    try {
      await client.connect()
      await client.query(`LISTEN ${CLUSTER_CHANNEL}`)
    } catch (error) {
      await client.end().catch(() => undefined)
      throw error
    }

    listening = true

    if (this.closed) {
      await client.end().catch(() => undefined)
      return
    }

    this.client = client
  }

  private scheduleReconnect(): void {
    const delay = this.delayMs
    this.delayMs = Math.min(this.delayMs * 2, this.options.maxDelayMs ?? RECONNECT_MAX_DELAY_MS)
    this.retryTimer = setTimeout(() => {
      this.listen().then(
        () => {
          if (this.closed) return
          this.delayMs = this.options.firstDelayMs ?? RECONNECT_FIRST_DELAY_MS
          this.handlers.deliver({type: 'resync'})
        },
        (error: unknown) => {
          if (this.closed) return
          this.options.onError(error, 'the cluster event listener could not reconnect; trying again')
          this.scheduleReconnect()
        },
      )
    }, delay)
    this.retryTimer.unref()
  }
}
