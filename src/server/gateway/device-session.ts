import ssh2 from 'ssh2'
import type {ClientChannel, PseudoTtyOptions} from 'ssh2'

import {CHANNEL_SHELL, type GatewayRequest, SERVICE_ENV} from '../../protocol/device-link.js'
import type {Actor} from '../auth/actor.js'
import type {ServerContext} from '../context.js'
import {reachableDevice} from './access.js'
import {DeviceNotLinkedError, type DeviceLinks} from './device-links.js'

/** A session a user may not open, or that cannot be opened now; the message is for that user. */
export class DeviceSessionError extends Error {}

/** A session on a device: the SSH connection to its shell service, and the shell or command running there. */
export interface DeviceSession {
  client: ssh2.Client
  remote: ClientChannel
}

/** Opens an SSH session to the agent's shell service through the device link, authorized already by the caller. */
async function connectToShellService(links: DeviceLinks, device: {id: number; uuid: string}): Promise<ssh2.Client> {
  const channel = await links.openChannel(device.id, device.uuid, CHANNEL_SHELL)
  const client = new ssh2.Client()
  return new Promise((resolve, reject) => {
    client.once('ready', () => resolve(client))
    client.once('error', reject)
    client.connect({
      sock: channel,
      username: 'root',
      // The channel runs inside the device's own authenticated link, so its key proves nothing more.
      hostVerifier: () => true,
      readyTimeout: 15_000,
    })
  })
}

/**
 * What `flotilla ssh <device> [service]` opens, for whoever asks (the SSH gateway, the dashboard's terminal): the
 * device's host or a service's container, a shell (on a pty when `pty` is given) or one command, on a device the
 * user may reach. Fails with {@link DeviceSessionError} when the device is not theirs or not connected.
 */
export async function openDeviceSession(context: ServerContext, links: DeviceLinks, user: Actor, request: GatewayRequest & {pty?: PseudoTtyOptions}): Promise<DeviceSession> {
  const device = await reachableDevice(context.db, user, request.uuid)
  if ('error' in device) throw new DeviceSessionError(device.error)
  let client: ssh2.Client
  try {
    client = await connectToShellService(links, device)
  } catch (error) {
    if (error instanceof DeviceNotLinkedError) throw new DeviceSessionError(`device ${device.uuid.slice(0, 7)} is not connected: it is offline, or its agent has no link to this server`)
    throw error
  }

  client.on('error', () => {})
  const env = request.service ? {[SERVICE_ENV]: request.service} : {}
  const remote = await new Promise<ClientChannel>((resolve, reject) => {
    const opened = (error: Error | undefined, stream: ClientChannel) => (error ? reject(error) : resolve(stream))
    if (request.command === undefined) client.shell(request.pty ?? false, {env}, opened)
    else client.exec(request.command, {env, pty: request.pty}, opened)
  }).catch((error: unknown) => {
    client.end()
    throw error
  })
  return {client, remote}
}
