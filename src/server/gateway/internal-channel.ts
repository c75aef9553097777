/**
 * [flotilla] The internal channel: how one server instance reaches a device linked to another instance of the same
 * database. The instance a user reached authorizes the user and finds the device's instance in `device_link`
 * (gateway/instance-registry.ts); it then asks that instance, over HTTP on its internal URL, for one channel of the
 * device's link (the channel kinds of protocol/device-link.ts) and relays the bytes. The owner checks only the
 * signature: the caller decided who may reach what.
 *
 *   GET /internal/v1/link-channel HTTP/1.1
 *   Connection: Upgrade
 *   Upgrade: flotilla-link-channel/1
 *   Flotilla-Instance: <id of the instance asked, as in server_instance.id>
 *   Flotilla-Device: <device id>
 *   Flotilla-Channel: tcp | shell | control
 *   Flotilla-Port: <0-65535: the device's port of a tcp channel, else 0>
 *   Flotilla-Expires: <ms since the epoch; at most 60 s ahead of the owner's clock>
 *   Flotilla-Nonce: <32 hex digits, random, never used twice>
 *   Flotilla-Signature: <64 hex digits>
 *
 * The signature is HMAC-SHA256, in hex, of the seven lines `flotilla-link-channel/1`, instance, device, channel,
 * port, expires and nonce, joined with "\n", under the key HKDF-SHA256(session signing secret, no salt,
 * info `flotilla internal link channel 1`, 32 bytes): every instance of one database shares the secret, and the key
 * serves nothing else.
 *
 * Answers: `101 Switching Protocols` (with the same Upgrade header), after which the connection carries the
 * channel's bytes both ways until either side ends it; or a one-line text/plain answer and the connection closes:
 * 401 for a missing or malformed field, a wrong signature, an expired request or a nonce seen before; 404 when the
 * request names another instance or a device not linked to this one (the caller's record is stale); 502 when the
 * agent refused the channel (for tcp: nothing listens on that port); 404 for any other upgrade path.
 */
import {createHmac, hkdfSync, randomBytes, timingSafeEqual} from 'node:crypto'
import {request as httpRequest, type IncomingMessage} from 'node:http'
import {request as httpsRequest} from 'node:https'
import type {Socket} from 'node:net'
import type {Duplex} from 'node:stream'

import {CHANNEL_CONTROL, CHANNEL_SHELL, CHANNEL_TCP} from '../../protocol/device-link.js'
import {splice} from '../../protocol/splice.js'
import {ChannelRefusedError, type ChannelKind, DeviceNotLinkedError, type RemoteLinks} from './device-links.js'
import type {InstanceAddress, InstanceRegistry} from './instance-registry.js'

export const INTERNAL_CHANNEL_PATH = '/internal/v1/link-channel'
const PROTOCOL = 'flotilla-link-channel/1'
const KEY_INFO = 'flotilla internal link channel 1'
/** How long a request stays valid: enough for clocks a little apart, short enough that few nonces are kept. */
export const REQUEST_LIFETIME_MS = 30_000
const MAX_LIFETIME_MS = 60_000
const CONNECT_TIMEOUT_MS = 10_000
const HEADERS = {instance: 'flotilla-instance', device: 'flotilla-device', channel: 'flotilla-channel', port: 'flotilla-port', expires: 'flotilla-expires', nonce: 'flotilla-nonce', signature: 'flotilla-signature'} as const

/** What one internal channel request asks for, as signed. */
export interface ChannelRequest {
  instance: string
  deviceId: number
  kind: ChannelKind
  port: number
  expires: number
  nonce: string
}

/** The internal channels' key, derived from the session signing secret so that the secret itself never signs them. */
export function internalChannelKey(secret: Uint8Array): Buffer {
  return Buffer.from(hkdfSync('sha256', secret, Buffer.alloc(0), KEY_INFO, 32))
}

export function signChannelRequest(key: Buffer, request: ChannelRequest): string {
  const lines = [PROTOCOL, request.instance, String(request.deviceId), request.kind, String(request.port), String(request.expires), request.nonce]
  return createHmac('sha256', key).update(lines.join('\n')).digest('hex')
}

/** The headers of a request for `kind` on the device's link at instance `instance`, valid for {@link REQUEST_LIFETIME_MS}. */
export function channelRequestHeaders(key: Buffer, target: Omit<ChannelRequest, 'expires' | 'nonce'>, clock = Date.now): Record<string, string> {
  const request: ChannelRequest = {...target, expires: clock() + REQUEST_LIFETIME_MS, nonce: randomBytes(16).toString('hex')}
  return {
    connection: 'Upgrade',
    upgrade: PROTOCOL,
    [HEADERS.instance]: request.instance,
    [HEADERS.device]: String(request.deviceId),
    [HEADERS.channel]: request.kind,
    [HEADERS.port]: String(request.port),
    [HEADERS.expires]: String(request.expires),
    [HEADERS.nonce]: request.nonce,
    [HEADERS.signature]: signChannelRequest(key, request),
  }
}

/** Reads the (at most one line of) text of a refusal. */
function refusalText(response: IncomingMessage): Promise<string> {
  return new Promise((resolve) => {
    let text = ''
    response.setEncoding('utf8')
    response.on('data', (chunk: string) => (text = (text + chunk).slice(0, 1000)))
    response.on('end', () => resolve(text.trim()))
    response.on('error', () => resolve(text.trim()))
  })
}

/**
 * Opens a channel of a device's link held by `owner`, as a byte stream. Fails with {@link DeviceNotLinkedError}
 * when the owner does not hold it (any more) or cannot be reached, {@link ChannelRefusedError} when the agent
 * refused the channel.
 */
export function openInternalChannel(key: Buffer, owner: InstanceAddress, target: {deviceId: number; uuid: string; kind: ChannelKind; port: number}): Promise<Duplex> {
  const url = new URL(INTERNAL_CHANNEL_PATH, owner.internalUrl)
  const headers = channelRequestHeaders(key, {instance: owner.id, deviceId: target.deviceId, kind: target.kind, port: target.port})
  const send = url.protocol === 'https:' ? httpsRequest : httpRequest
  return new Promise((resolve, reject) => {
    const request = send(url, {method: 'GET', headers, agent: false, timeout: CONNECT_TIMEOUT_MS})
    request.on('upgrade', (_response, socket: Socket, head: Buffer) => {
      socket.setTimeout(0)
      socket.setNoDelay(true)
      if (head.length > 0) socket.unshift(head)
      resolve(socket)
    })
    request.on('response', (response) => {
      refusalText(response).then((text) => {
        if (response.statusCode === 502) reject(new ChannelRefusedError(text))
        else if (response.statusCode === 404) reject(new DeviceNotLinkedError(target.uuid))
        else reject(new Error(`server instance ${owner.internalUrl} refused an internal channel (${response.statusCode}): ${text}`))
      }, reject)
    })
    request.on('timeout', () => request.destroy(new Error(`server instance ${owner.internalUrl} did not answer within ${CONNECT_TIMEOUT_MS / 1000} s`)))
    // An owner that cannot be reached has died or is dying: its devices relink elsewhere soon.
    request.on('error', () => reject(new DeviceNotLinkedError(target.uuid)))
    request.end()
  })
}

/** Links of the other instances: recorded in the registry, reached over internal channels signed with `key`. */
export function remoteLinks(registry: InstanceRegistry, key: Buffer): RemoteLinks {
  return {
    linked: (deviceId) => registry.linked(deviceId),
    unlinked: (deviceId) => registry.unlinked(deviceId),
    async openChannel(deviceId, uuid, kind, port) {
      const owner = await registry.ownerOf(deviceId)
      if (!owner) throw new DeviceNotLinkedError(uuid)
      return openInternalChannel(key, owner, {deviceId, uuid, kind, port})
    },
  }
}

function answer(socket: Duplex, status: string, message: string): void {
  const body = `${message}\n`
  socket.end(`HTTP/1.1 ${status}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`)
}

const CHANNEL_KINDS: readonly string[] = [CHANNEL_TCP, CHANNEL_SHELL, CHANNEL_CONTROL]

/** The request its headers describe, or undefined when a field is missing or malformed. */
function parseChannelRequest(request: IncomingMessage): (ChannelRequest & {signature: string}) | undefined {
  const header = (name: string) => {
    const value = request.headers[name]
    return typeof value === 'string' ? value : undefined
  }

  const [instance, device, kind, port, expires, nonce, signature] = Object.values(HEADERS).map(header)
  if (!instance || !/^[a-f\d]{1,64}$/.test(instance)) return undefined
  if (!device || !/^\d{1,15}$/.test(device) || !port || !/^\d{1,5}$/.test(port) || Number(port) > 65_535) return undefined
  if (!kind || !CHANNEL_KINDS.includes(kind) || !expires || !/^\d{1,15}$/.test(expires)) return undefined
  if (!nonce || !/^[a-f\d]{32}$/.test(nonce) || !signature || !/^[a-f\d]{64}$/.test(signature)) return undefined
  return {instance, deviceId: Number(device), kind: kind as ChannelKind, port: Number(port), expires: Number(expires), nonce, signature}
}

export interface InternalChannelSettings {
  key: Buffer
  /** This instance's id in the registry. */
  instanceId: string
  /** A channel of a link held by this instance, never routed further; rejects as DeviceLinks.openLocalChannel does. */
  openLocalChannel: (deviceId: number, kind: ChannelKind, port: number) => Promise<Duplex>
  log: (error: unknown, message: string) => void
  clock?: () => number
}

/** The owner's side: checks each request and splices the link's channel onto the upgraded connection. */
export function internalChannelServer(settings: InternalChannelSettings): (request: IncomingMessage, socket: Duplex, head: Buffer) => void {
  const clock = settings.clock ?? Date.now
  // Nonces of requests still valid, in the order they came; an expired one cannot be replayed anyway.
  const seen = new Map<string, number>()
  const accept = (request: ChannelRequest & {signature: string}): string | undefined => {
    const expected = Buffer.from(signChannelRequest(settings.key, request), 'hex')
    if (!timingSafeEqual(expected, Buffer.from(request.signature, 'hex'))) return 'the signature is wrong'
    const at = clock()
    if (request.expires <= at || request.expires > at + MAX_LIFETIME_MS) return 'the request has expired (or expires too far ahead)'
    for (const [nonce, expires] of seen) {
      if (expires > at) break
      seen.delete(nonce)
    }

    if (seen.has(request.nonce)) return 'the request was used already'
    seen.set(request.nonce, request.expires)
    return undefined
  }

  const serve = async (request: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> => {
    const parsed = parseChannelRequest(request)
    if (!parsed) return answer(socket, '401 Unauthorized', 'an internal channel request needs every Flotilla-* field, well formed')
    const refusal = accept(parsed)
    if (refusal) return answer(socket, '401 Unauthorized', refusal)
    if (parsed.instance !== settings.instanceId) return answer(socket, '404 Not Found', 'the request is for another server instance')
    let channel: Duplex
    try {
      channel = await settings.openLocalChannel(parsed.deviceId, parsed.kind, parsed.port)
    } catch (error) {
      if (error instanceof DeviceNotLinkedError) return answer(socket, '404 Not Found', `device ${parsed.deviceId} is not linked to this instance`)
      if (error instanceof ChannelRefusedError) return answer(socket, '502 Bad Gateway', error.message || 'the device refused the channel')
      throw error
    }

    if (socket.destroyed) return void channel.destroy()
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nupgrade: ${PROTOCOL}\r\n\r\n`)
    if (head.length > 0) channel.write(head)
    if ('setNoDelay' in socket) (socket as Socket).setNoDelay(true)
    splice(socket, channel)
  }

  return (request, socket, head) => {
    serve(request, socket, head).catch((error: unknown) => {
      settings.log(error, 'serving an internal channel failed')
      answer(socket, '500 Internal Server Error', 'the channel could not be opened')
    })
  }
}
