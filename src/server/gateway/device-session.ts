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
  /**
   * Calls `listener` with how the shell or command ended: at once when it has ended already. The agent may answer
   * with the channel's opening (a command it refuses, one it answers itself), and ssh2 announces an exit once,
   * before the caller had a chance to listen.
   */
  onExit(listener: ExitListener): void
}

export type ExitListener = (code: number | null, signal?: string) => void

/** Keeps a channel's exit from the moment it opened, for listeners that come later. */
function keptExit(channel: ClientChannel): (listener: ExitListener) => void {
  let exit: [number | null, string?] | undefined
  const listeners: ExitListener[] = []
  channel.once('exit', (code: number | null, signal?: string) => {
    exit = [code, signal]
    for (const listener of listeners) listener(code, signal)
  })
  return (listener) => (exit ? listener(...exit) : void listeners.push(listener))
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
  const opened = await new Promise<Omit<DeviceSession, 'client'>>((resolve, reject) => {
    const onOpen = (error: Error | undefined, remote: ClientChannel) => (error ? reject(error) : resolve({remote, onExit: keptExit(remote)}))
    if (request.command === undefined) client.shell(request.pty ?? false, {env}, onOpen)
    else client.exec(request.command, {env, pty: request.pty}, onOpen)
  }).catch((error: unknown) => {
    client.end()
    throw error
  })
  return {client, ...opened}
}
