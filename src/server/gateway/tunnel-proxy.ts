import type {IncomingMessage, Server} from 'node:http'
import type {Socket} from 'node:net'
import type {Duplex} from 'node:stream'

import {CHANNEL_TCP} from '../../protocol/device-link.js'
import {splice} from '../../protocol/splice.js'
import {resolveActor} from '../auth/actor.js'
import type {ServerContext} from '../context.js'
import {reachableDevice} from './access.js'
import {ChannelRefusedError, DeviceNotLinkedError, type DeviceLinks} from './device-links.js'

const TUNNEL_HOST = /^([a-f\d]+)\.(balena|resin|vpn)(?::(\d{1,5}))?$/i

function answer(socket: Duplex, status: number, reason: string, message: string, headers: Record<string, string> = {}): void {
  const lines = [`HTTP/1.0 ${status} ${reason}`, 'Content-Type: text/plain', ...Object.entries(headers).map(([name, value]) => `${name}: ${value}`)]
  socket.end(`${lines.join('\r\n')}\r\n\r\n${message}\n`)
}

/** The token of `Proxy-Authorization: Basic base64(<username>:<token>)`; the username is informative only. */
function proxyToken(request: IncomingMessage): string | undefined {
  const header = request.headers['proxy-authorization']?.match(/^Basic\s+(\S+)\s*$/i)
  if (!header) return undefined
  const decoded = Buffer.from(header[1], 'base64').toString('utf8')
  const colon = decoded.indexOf(':')
  return colon === -1 ? undefined : decoded.slice(colon + 1) || undefined
}

async function connect(context: ServerContext, links: DeviceLinks, request: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
  const target = TUNNEL_HOST.exec(request.url ?? '')
  const port = Number(target?.[3] ?? 80)
  if (!target || port < 1 || port > 65_535) return answer(socket, 403, 'Forbidden', `tunnel to <uuid>.balena:<port>, not ${request.url}`)
  const token = proxyToken(request)
  const actor = token ? await resolveActor(context.db, context.secret, token) : undefined
  const challenge = {'Proxy-Authenticate': 'Basic realm="flotilla"'}
  if (actor?.kind !== 'user') return answer(socket, 407, 'Proxy Authentication Required', 'log in: the tunnel needs your username and a token', challenge)
  const device = await reachableDevice(context.db, actor, target[1])
  if ('error' in device) return answer(socket, 407, 'Proxy Authentication Required', device.error, challenge)
  let channel: Duplex
  try {
    channel = await links.openChannel(device.id, device.uuid, CHANNEL_TCP, port)
  } catch (error) {
    if (error instanceof DeviceNotLinkedError) return answer(socket, 503, 'Service Unavailable', `device ${device.uuid.slice(0, 7)} is not connected`)
    if (error instanceof ChannelRefusedError) return answer(socket, 502, 'Bad Gateway', `nothing accepts connections on port ${port} of device ${device.uuid.slice(0, 7)}`)
    throw error
  }

  if (socket.destroyed) {
    channel.destroy()
    return
  }

  socket.write('HTTP/1.0 200 Connection Established\r\n\r\n')
  if (head.length > 0) channel.write(head)
  if ('setNoDelay' in socket) (socket as Socket).setNoDelay(true)
  splice(socket, channel)
}

/**
 * HTTP CONNECT on the API port: `CONNECT <uuid>.balena:<port>` with the user's credentials in
 * `Proxy-Authorization` splices the connection to that port of the device, through its link.
 */
export function serveTunnels(server: Server, context: ServerContext, links: DeviceLinks, log: (error: unknown, message: string) => void): void {
  server.on('connect', (request: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', () => {})
    connect(context, links, request, socket, head).catch((error: unknown) => {
      log(error, 'opening a tunnel failed')
      answer(socket, 500, 'Server Error', 'the tunnel could not be opened')
    })
  })
}
