import {EventEmitter, once} from 'node:events'
import {readFile} from 'node:fs/promises'
import {connect} from 'node:net'
import path from 'node:path'

import ssh2 from 'ssh2'
import type {ClientChannel, TcpConnectionDetails} from 'ssh2'

import {writeFileAtomic} from '../atomic-file.js'
import {ApiError} from '../errors.js'
import type {RegisteredConfigJson} from '../protocol/config-json.js'
import type {DeviceAction} from '../protocol/device-action.js'
import {CHANNEL_CONTROL, CHANNEL_SHELL, CHANNEL_TCP, decodeLinkMessage, DEVICE_SSH_PORT, LINK_FORWARD, linkUsername} from '../protocol/device-link.js'
import {splice} from '../protocol/splice.js'
import {FleetClient} from '../sdk/client.js'
import type {Endpoints} from '../sdk/endpoints.js'
import type {ShellService} from './shell-service.js'

export type LinkEndpoint = Endpoints['ssh']

/**
 * Where the server takes device links: config.json's copy of the server's endpoints, else the server's well-known
 * document. Undefined for a server that has none (balenaCloud, openBalena answer 404): such a device makes no link.
 */
export async function discoverLinkEndpoint(config: RegisteredConfigJson): Promise<LinkEndpoint | undefined> {
  if (config.flotillaEndpoints?.ssh) return config.flotillaEndpoints.ssh
  const client = new FleetClient({remote: config.apiEndpoint, retries: 0})
  try {
    return (await client.endpoints()).ssh
  } catch (error) {
    if (error instanceof ApiError && error.statusCode === 404) return undefined
    throw error
  }
}

/** Exponential backoff with jitter: half to all of `baseMs · 2^failures`, at most `capMs`. */
export function linkRetryDelayMs(failures: number, baseMs: number, capMs: number, random = Math.random): number {
  const ceiling = Math.min(capMs, baseMs * 2 ** Math.min(failures, 30))
  return Math.round(ceiling * (0.5 + random() / 2))
}

export interface DeviceLinkOptions {
  uuid: string
  deviceApiKey: string
  /** Holds the server's host key once seen, when the endpoint does not name it. */
  dataDir: string
  /** Asked before each connection; undefined means the server takes no links, and none is made. */
  endpoint: () => Promise<LinkEndpoint | undefined>
  shell: Pick<ShellService, 'injectDirectConnection' | 'injectLinkConnection'>
  /** The server says the target state changed. */
  onUpdate: () => void
  onAction: (action: DeviceAction) => void
  logger?: (message: string) => void
  firstRetryDelayMs?: number
  maxRetryDelayMs?: number
}

const KNOWN_HOSTS_FILE = 'link_known_hosts'
const KEEPALIVE_INTERVAL_MS = 10_000
const KEEPALIVE_COUNT_MAX = 3
const READY_TIMEOUT_MS = 20_000
const FIRST_RETRY_DELAY_MS = 1000
const MAX_RETRY_DELAY_MS = 60_000
/** A link that stayed up this long counts as healthy: the next loss retries quickly again. */
const STABLE_LINK_MS = 60_000
/** A control message is one short JSON line; anything longer is not one. */
const MAX_CONTROL_MESSAGE_BYTES = 64 * 1024

/** `ssh-ed25519 AAAA…` for a host key blob, whose first field names its type. */
function openSshLineOf(keyBlob: Buffer): string {
  const type = keyBlob.subarray(4, 4 + keyBlob.readUInt32BE(0)).toString('latin1')
  return `${type} ${keyBlob.toString('base64')}`
}

function sameKey(openSshLine: string, keyBlob: Buffer): boolean {
  const parsed = ssh2.utils.parseKey(openSshLine)
  return !(parsed instanceof Error) && (Array.isArray(parsed) ? parsed[0] : parsed).getPublicSSH().equals(keyBlob)
}

/**
 * The agent's one outbound connection to the server (see protocol/device-link.ts): it keeps it up, reconnecting
 * with backoff, and serves the channels the server opens on it: tunnels, shells and control messages.
 */
export class DeviceLink {
  private stopped = false
  private up = false
  private client?: ssh2.Client
  private running?: Promise<void>
  private wakeRetry?: () => void
  private readonly events = new EventEmitter()
  private readonly log: (message: string) => void

  constructor(private readonly options: DeviceLinkOptions) {
    this.log = options.logger ?? (() => {})
  }

  get isLinked(): boolean {
    return this.up
  }

  /** Resolves once the link is up (at once when it is). */
  async linked(): Promise<void> {
    if (!this.up) await once(this.events, 'up')
  }

  start(): void {
    this.running ??= this.keepLinked()
  }

  /** Closes the link and everything that runs over it; no reconnection follows. */
  async stop(): Promise<void> {
    this.stopped = true
    this.wakeRetry?.()
    this.client?.end()
    await this.running
  }

  private async keepLinked(): Promise<void> {
    const firstDelay = this.options.firstRetryDelayMs ?? FIRST_RETRY_DELAY_MS
    const maxDelay = this.options.maxRetryDelayMs ?? MAX_RETRY_DELAY_MS
    for (let failures = 0; !this.stopped; failures++) {
      let failure: string
      try {
        const endpoint = await this.options.endpoint()
        if (!endpoint) {
          this.log('no device link: the server takes none (ssh and tunnels reach this device some other way)')
          return
        }

        if (this.stopped) return

        const {reason, upForMs} = await this.connectOnce(endpoint)
        if (this.stopped) return
        if (upForMs >= STABLE_LINK_MS) failures = 0
        failure = upForMs > 0 ? `device link lost: ${reason}` : `device link failed: ${reason}`
      } catch (error) {
        failure = `device link failed: ${(error as Error).message}`
      }

      if (this.stopped) return
      const delay = linkRetryDelayMs(failures, firstDelay, maxDelay)
      this.log(`${failure}, retrying in ${Math.ceil(delay / 1000)} s`)
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, delay)
        this.wakeRetry = () => {
          clearTimeout(timer)
          resolve()
        }
      })
    }
  }

  /** One connection, from connect to close: why it ended, and how long it was up (0 if it never came up). */
  private connectOnce(endpoint: LinkEndpoint): Promise<{reason: string; upForMs: number}> {
    return new Promise((resolve) => {
      const client = new ssh2.Client()
      this.client = client
      let reason: string | undefined
      let upSince: number | undefined
      client.on('ready', () => {
        client.forwardIn(LINK_FORWARD.address, LINK_FORWARD.port, (error) => {
          if (error) {
            reason = `the server refused the link (${error.message})`
            client.end()
            return
          }

          upSince = Date.now()
          this.up = true
          this.log(`device link up (${endpoint.host}:${endpoint.port})`)
          this.events.emit('up')
        })
      })
      client.on('tcp connection', (details, accept, reject) => this.serveChannel(details, accept, reject))
      // The first error says why; what follows (a reset after a refused host key) only repeats it.
      client.on('error', (error) => {
        reason ??= error.message
      })
      client.on('close', () => {
        this.up = false
        if (this.client === client) this.client = undefined
        resolve({reason: reason ?? 'the server closed the connection', upForMs: upSince === undefined ? 0 : Date.now() - upSince})
      })
      client.connect({
        host: endpoint.host,
        port: endpoint.port,
        username: linkUsername(this.options.uuid),
        password: this.options.deviceApiKey,
        hostVerifier: (key: Buffer, verify: (valid: boolean) => void) => {
          this.verifyHostKey(endpoint, key).then(
            (problem) => {
              if (problem) reason = problem
              verify(problem === undefined)
            },
            (error: unknown) => {
              reason = `cannot check the server's host key: ${(error as Error).message}`
              verify(false)
            },
          )
        },
        keepaliveInterval: KEEPALIVE_INTERVAL_MS,
        keepaliveCountMax: KEEPALIVE_COUNT_MAX,
        readyTimeout: READY_TIMEOUT_MS,
      })
    })
  }

  /** Undefined when the key is the server's; else what is wrong. Without a key to pin, the first key seen is kept. */
  private async verifyHostKey(endpoint: LinkEndpoint, key: Buffer): Promise<string | undefined> {
    if (endpoint.hostKey) return sameKey(endpoint.hostKey, key) ? undefined : `the server's host key is not the one its endpoints name (${endpoint.hostKey.slice(0, 40)}…)`
    const file = path.join(this.options.dataDir, KNOWN_HOSTS_FILE)
    const server = `${endpoint.host}:${endpoint.port}`
    const lines = (
      await readFile(file, 'utf8').catch((error: NodeJS.ErrnoException) => {
        if (error.code === 'ENOENT') return ''
        throw error
      })
    )
      .split('\n')
      .filter(Boolean)
    const known = lines.find((line) => line.startsWith(`${server} `))
    if (known) return sameKey(known.slice(server.length + 1), key) ? undefined : `the server's host key changed since the first link (remove its line from ${file} if that is expected)`
    await writeFileAtomic(file, [...lines, `${server} ${openSshLineOf(key)}`, ''].join('\n'), 0o600)
    return undefined
  }

  private serveChannel(details: TcpConnectionDetails, accept: () => ClientChannel, reject: () => void): void {
    const kind = details.srcIP
    const port = details.srcPort
    if (kind === CHANNEL_TCP && port === DEVICE_SSH_PORT) this.options.shell.injectDirectConnection(accept())
    else if (kind === CHANNEL_TCP && Number.isInteger(port) && port > 0 && port < 65_536) this.forwardToPort(port, accept, reject)
    else if (kind === CHANNEL_SHELL) this.options.shell.injectLinkConnection(accept())
    else if (kind === CHANNEL_CONTROL) this.readControlMessage(accept())
    else reject()
  }

  /** A tunnel: the channel is accepted only once the port answers, so a closed port fails the open. */
  private forwardToPort(port: number, accept: () => ClientChannel, reject: () => void): void {
    const socket = connect({host: '127.0.0.1', port})
    socket.once('error', reject)
    socket.once('connect', () => {
      socket.off('error', reject)
      socket.setNoDelay(true)
      splice(socket, accept())
    })
  }

  private readControlMessage(channel: ClientChannel): void {
    const chunks: Buffer[] = []
    let size = 0
    channel.on('data', (chunk: Buffer) => {
      size += chunk.length
      if (size > MAX_CONTROL_MESSAGE_BYTES) {
        this.log(`ignoring a control message over ${MAX_CONTROL_MESSAGE_BYTES} bytes`)
        channel.destroy()
        return
      }

      chunks.push(chunk)
    })
    channel.on('error', () => {})
    channel.once('end', () => {
      channel.end()
      if (size > MAX_CONTROL_MESSAGE_BYTES) return
      const message = decodeLinkMessage(Buffer.concat(chunks).toString('utf8'))
      if (!message) this.log('ignoring a control message this agent does not know')
      else if (message.type === 'update') this.options.onUpdate()
      else this.options.onAction(message.action)
    })
  }
}
