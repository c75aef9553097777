import path from 'node:path'

import ssh2 from 'ssh2'
import type {AuthContext, ClientChannel, Connection, PseudoTtyInfo, ServerChannel, Session} from 'ssh2'

import {readTextIfPresent} from '../../atomic-file.js'
import {listen} from '../../listen.js'
import {isAuthorizedKey, parseAuthorizedKeys} from '../../protocol/authorized-keys.js'
import {LINK_FORWARD, parseGatewayCommand, uuidOfLinkUsername} from '../../protocol/device-link.js'
import {generateHostKey, isUsableHostKey} from '../../protocol/host-key.js'
import type {Actor} from '../auth/actor.js'
import type {ServerContext} from '../context.js'
import type {Db} from '../db/database.js'
import {sharedSecret} from '../db/server-secrets.js'
import type {DeviceLinks} from './device-links.js'
import {type DeviceSession, DeviceSessionError, openDeviceSession} from './device-session.js'

/** Where servers before the secrets moved into the database kept the gateway's host key. */
const LEGACY_HOST_KEY_FILE = 'ssh_host_ed25519_key'

/**
 * The gateway's host key, the same on every instance on the database so that clients can pin it across restarts
 * and instances: made on first start, or taken from the data dir's file where an older server kept it.
 */
export async function loadGatewayHostKey(db: Db, dataDir: string | undefined): Promise<string> {
  const make = async () => {
    const legacy = await readTextIfPresent(dataDir && path.join(dataDir, LEGACY_HOST_KEY_FILE))
    return legacy && isUsableHostKey(legacy) ? legacy : generateHostKey()
  }

  return sharedSecret(db, 'ssh-host-key', make, isUsableHostKey)
}

type UserActor = Extract<Actor, {kind: 'user'}>

async function userOfPublicKey(context: ServerContext, auth: Extract<AuthContext, {method: 'publickey'}>): Promise<UserActor | undefined> {
  const user = await context.db.selectFrom('user').select(['id', 'actor', 'username', 'email']).where('username', '=', auth.username).executeTakeFirst()
  if (!user) return undefined
  const keys = await context.db.selectFrom('user__has__public_key').select('public_key').where('user', '=', user.id).execute()
  if (!isAuthorizedKey(parseAuthorizedKeys(keys.map((key) => key.public_key)), auth)) return undefined
  return {kind: 'user', actorId: user.actor, userId: user.id, username: user.username, email: user.email, via: 'api-key'}
}

interface SessionRequest {
  pty?: PseudoTtyInfo
  window?: {rows: number; cols: number; height: number; width: number}
  remote?: ClientChannel
}

/** Ends a user's session with one line on stderr and an exit status, as OpenSSH shows a remote failure. */
function fail(channel: ServerChannel, message: string, status = 1): void {
  channel.stderr.write(`flotilla: ${message}\r\n`)
  channel.exit(status)
  channel.end()
}

/**
 * A user's session: the command names the device and what to run (`host <uuid> [command]`,
 * `enter <uuid> <container-or-service> [-- command]`); the
 * session is relayed to the agent's shell service, pty, window changes, signals and exit status included.
 */
function serveUserSession(context: ServerContext, links: DeviceLinks, user: UserActor, session: Session): void {
  const request: SessionRequest = {}
  session.on('pty', (accept, _reject, info) => {
    request.pty = info
    request.window = {rows: info.rows, cols: info.cols, height: info.height, width: info.width}
    accept?.()
  })
  session.on('window-change', (accept, _reject, info) => {
    request.window = {rows: info.rows, cols: info.cols, height: info.height, width: info.width}
    request.remote?.setWindow(info.rows, info.cols, info.height, info.width)
    accept?.()
  })
  session.on('signal', (accept, _reject, info) => {
    request.remote?.signal(info.name)
    accept?.()
  })
  session.on('env', (accept) => accept?.())
  session.on('shell', (accept) => {
    fail(accept(), 'name a device: ssh <user>@<gateway> host <uuid> [<command>], or enter <uuid> <container> [-- <command>]', 2)
  })
  session.on('exec', (accept, _reject, info) => {
    const channel = accept()
    relay(context, links, user, info.command, request, channel).catch((error: unknown) => fail(channel, (error as Error).message))
  })
}

async function relay(context: ServerContext, links: DeviceLinks, user: UserActor, commandLine: string, request: SessionRequest, channel: ServerChannel): Promise<void> {
  const parsed = parseGatewayCommand(commandLine)
  if ('error' in parsed) return fail(channel, parsed.error, 2)
  let session: DeviceSession
  try {
    session = await openDeviceSession(context, links, user, {...parsed, pty: request.pty ? {...request.pty, ...request.window} : undefined})
  } catch (error) {
    if (error instanceof DeviceSessionError) return fail(channel, error.message)
    throw error
  }

  // Whatever happens next, the user leaving ends the session on the device.
  const {client, remote} = session
  channel.once('close', () => client.end())
  if (channel.destroyed) return void client.end()
  request.remote = remote
  let exited = false
  session.onExit((code, signal) => {
    exited = true
    if (signal) channel.exit(signal)
    else channel.exit(code ?? 0)
  })
  remote.stderr.pipe(channel.stderr, {end: false})
  remote.pipe(channel)
  channel.pipe(remote)
  client.on('close', () => {
    if (!exited && channel.writable) {
      channel.stderr.write('\r\nflotilla: the connection to the device was lost\r\n')
      channel.exit(255)
    }

    channel.end()
  })
}

/** A device's link: it authenticated with its own key, and asks only for the one forwarding of the protocol. */
function serveDeviceLink(links: DeviceLinks, device: {deviceId: number; uuid: string; keyId: number}, connection: Connection, log: (error: unknown, message: string) => void): void {
  connection.on('request', (accept, reject, name, info) => {
    const bind = info as {bindAddr?: string; bindPort?: number}
    if (name === 'tcpip-forward' && bind.bindAddr === LINK_FORWARD.address && bind.bindPort === LINK_FORWARD.port) {
      links.add(device, connection).then(
        () => accept?.(),
        (error: unknown) => {
          log(error, `linking device ${device.uuid} failed`)
          reject?.()
        },
      )
      return
    }

    reject?.()
  })
  // A device opens nothing toward the server or other devices.
  connection.on('session', (_accept, reject) => reject())
  connection.on('tcpip', (_accept, reject) => reject())
}

export interface SshGateway {
  listen(port: number, host: string): Promise<number>
  close(): Promise<void>
}

/** The server's SSH port: devices' links (`d_<uuid>` + device key) and users' shells (username + their keys). */
export function createSshGateway(context: ServerContext, links: DeviceLinks, hostKey: string, log: (error: unknown, message: string) => void): SshGateway {
  const connections = new Set<Connection>()
  const server = new ssh2.Server({hostKeys: [hostKey]}, (connection) => {
    connections.add(connection)
    connection.on('close', () => connections.delete(connection))
    connection.on('error', () => {})
    let user: UserActor | undefined
    let device: {deviceId: number; uuid: string; keyId: number} | undefined
    connection.on('authentication', (auth) => {
      authenticate(auth).then(
        (accepted) => (accepted ? auth.accept() : auth.reject(['publickey', 'password'])),
        (error: unknown) => {
          log(error, 'authenticating an SSH client failed')
          auth.reject()
        },
      )
    })

    const authenticate = async (auth: AuthContext): Promise<boolean> => {
      const uuid = uuidOfLinkUsername(auth.username)
      if (uuid) {
        if (auth.method !== 'password') return false
        const actor = await context.apiKeys.resolve(auth.password)
        if (actor?.kind !== 'device' || actor.uuid !== uuid) return false
        device = {deviceId: actor.deviceId, uuid, keyId: actor.keyId}
        return true
      }

      if (auth.method !== 'publickey') return false
      user = await userOfPublicKey(context, auth)
      return user !== undefined
    }

    connection.on('ready', () => {
      if (device) serveDeviceLink(links, device, connection, log)
      else if (user) {
        const signedIn = user
        connection.on('session', (accept) => serveUserSession(context, links, signedIn, accept()))
        connection.on('request', (_accept, reject) => reject?.())
        connection.on('tcpip', (_accept, reject) => reject())
      }
    })
  })

  return {
    listen: (port, host) => listen(server, port, host),
    // A server that never listened calls back at once (with an error that means just that).
    close: () =>
      new Promise((resolve) => {
        for (const connection of connections) connection.end()
        server.close(() => resolve())
      }),
  }
}
