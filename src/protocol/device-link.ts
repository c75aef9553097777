import type {DeviceAction} from './device-action.js'

/**
 * [flotilla] The device link: one outbound SSH connection from each agent to the server's SSH port, over which
 * the server reaches the device. The agent never accepts a connection from outside, and the server is the only
 * side that opens channels.
 *
 * - The agent authenticates with username `d_<uuid>` and its device API key as the password.
 * - It then asks for one remote forwarding (`tcpip-forward` of {@link LINK_FORWARD}); every channel the server
 *   opens arrives as a `forwarded-tcpip` channel on that forwarding. What a channel is for is carried in the
 *   originator fields of the channel open, since the "connected" fields must name the forwarding itself:
 *   - originator address {@link CHANNEL_TCP}, originator port P: a TCP connection to 127.0.0.1:P on the device
 *     (tunnels). The agent accepts the channel only once that connection is made, so a closed port is an open
 *     failure the server can report.
 *   - {@link CHANNEL_SHELL}: an SSH connection to the agent's embedded shell service, already authorized by the
 *     server (the gateway authenticates to it with method `none`). Session requests as in OpenSSH; the service to
 *     enter, if any, comes in the {@link SERVICE_ENV} environment request before `shell`/`exec`.
 *   - {@link CHANNEL_CONTROL}: the server writes one {@link LinkMessage} as a JSON line and ends the channel.
 *
 * This replaces the `flotilla-notify` global request of PROTOCOL.md: ssh2 has no way to send an arbitrary global
 * request, and a channel also carries a payload (the action) and flow control.
 */
export const LINK_FORWARD = {address: 'flotilla-device', port: 0} as const

export const CHANNEL_TCP = 'tcp'
export const CHANNEL_SHELL = 'shell'
export const CHANNEL_CONTROL = 'control'

/** The port balenaOS's host SSH server listens on; a tunnel to it reaches the agent's shell service. */
export const DEVICE_SSH_PORT = 22222

/** Names the service (or container id) a shell session enters; unset or empty means the device's host. */
export const SERVICE_ENV = 'FLOTILLA_SERVICE'

export type LinkMessage =
  /** The device's target state changed: fetch it now. */
  | {type: 'update'}
  | {type: 'action'; action: DeviceAction}

const LINK_USERNAME_PREFIX = 'd_'

export function linkUsername(uuid: string): string {
  return `${LINK_USERNAME_PREFIX}${uuid}`
}

/** The device uuid a link username names, or undefined when it is not one (a user's username). */
export function uuidOfLinkUsername(username: string): string | undefined {
  if (!username.startsWith(LINK_USERNAME_PREFIX)) return undefined
  const uuid = username.slice(LINK_USERNAME_PREFIX.length)
  return /^[a-f\d]{32}$|^[a-f\d]{62}$/i.test(uuid) ? uuid.toLowerCase() : undefined
}

export function encodeLinkMessage(message: LinkMessage): string {
  return `${JSON.stringify(message)}\n`
}

/** A control channel's message, or undefined when the text is not one this agent knows. */
export function decodeLinkMessage(text: string): LinkMessage | undefined {
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch {
    return undefined
  }

  if (typeof parsed !== 'object' || parsed === null) return undefined
  const message = parsed as {type?: unknown; action?: unknown}
  if (message.type === 'update') return {type: 'update'}
  if (message.type === 'action' && typeof message.action === 'object' && message.action !== null && typeof (message.action as {action?: unknown}).action === 'string') {
    return {type: 'action', action: message.action as DeviceAction}
  }

  return undefined
}

/**
 * What a user asks of the SSH gateway, as the command of their session, in balena's words:
 * `host <uuid> [<command…>]` for the device's host (balena-cli lists a device's containers this way, with an
 * engine `ps` command) and `enter <uuid> <container-or-service> [-- <command…>]` for a service's container.
 * `host <uuid> -- <command…>` is taken too. Without a command the session is an interactive shell.
 */
export interface GatewayRequest {
  uuid: string
  service?: string
  command?: string
}

export function formatGatewayCommand(request: GatewayRequest): string {
  if (request.service) return [`enter ${request.uuid} ${request.service}`, ...(request.command === undefined ? [] : ['--', request.command])].join(' ')
  // A command that itself starts with "--" keeps a separator before it, so it is not read as one.
  const command = request.command?.trim() ? (/^--(\s|$)/.test(request.command.trim()) ? `-- ${request.command}` : request.command) : undefined
  return command === undefined ? `host ${request.uuid}` : `host ${request.uuid} ${command}`
}

const GATEWAY_USAGE = 'expected "host <uuid> [<command>]" or "enter <uuid> <container> [-- <command>]"'

/** What follows an explicit "--": the command, or undefined when nothing does. */
function commandAfterSeparator(text: string): string | undefined {
  const command = text.replace(/^--(\s|$)/, '')
  return command.trim() === '' ? undefined : command
}

/** Parses a gateway session command; returns an error message for anything else. */
export function parseGatewayCommand(commandLine: string): GatewayRequest | {error: string} {
  const match = /^\s*(\S+)(?:\s+(\S+))?(?:\s+([^]*))?$/.exec(commandLine)
  const [verb, uuid, rest = ''] = match ? [match[1], match[2], match[3]] : []
  if ((verb !== 'host' && verb !== 'enter') || uuid === undefined) return {error: GATEWAY_USAGE}
  if (!/^[a-f\d]{7,62}$/i.test(uuid)) return {error: `"${uuid}" is not a device uuid; ${GATEWAY_USAGE}`}
  if (verb === 'host') {
    // balena's form: everything after the uuid is the command, quotes and all, for the device's shell to read.
    const command = /^--(\s|$)/.test(rest) ? commandAfterSeparator(rest) : rest.trim() === '' ? undefined : rest
    return {uuid: uuid.toLowerCase(), service: undefined, command}
  }

  const enter = /^(?!--(?:\s|$))(\S+)(?:\s+(--(?:\s[^]*)?))?\s*$/.exec(rest)
  if (!enter) {
    if (rest.trim() === '') return {error: GATEWAY_USAGE}
    return {error: `unexpected "${rest.trim().split(/\s+/).slice(1).join(' ')}": put a command after "--"; ${GATEWAY_USAGE}`}
  }

  return {uuid: uuid.toLowerCase(), service: enter[1], command: enter[2] === undefined ? undefined : commandAfterSeparator(enter[2])}
}
