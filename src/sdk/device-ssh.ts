import {spawn} from 'node:child_process'
import {isIP} from 'node:net'
import path from 'node:path'

import {writeFileAtomic} from '../atomic-file.js'
import {ExpectedError, UsageError} from '../errors.js'
import {DEVICE_SSH_PORT, formatGatewayCommand, SERVICE_ENV} from '../protocol/device-link.js'
import {whoami} from './auth.js'
import type {FleetClient} from './client.js'
import {type Device, getDevice, listDevices} from './devices.js'

/**
 * What the `<device>` argument of `ssh` and `tunnel` names:
 * - `device`: a UUID or a prefix of 7+ hex characters, resolved through the API;
 * - `fleet`: a fleet slug (`org/name`) or name, whose online devices are offered to choose from;
 * - `address`: an IP address, `localhost` or a dotted host name (`mypi.local`): a device on the local network,
 *   reached directly on its own SSH port without the server (development mode).
 */
export type DeviceArgument = {kind: 'device'; reference: string} | {kind: 'fleet'; reference: string} | {kind: 'address'; host: string}

const UUID_LIKE = /^[\da-f]{7,}$/i
const HOST_NAME = /^(?=.{1,253}$)[a-z\d](?:[a-z\d-]*[a-z\d])?(?:\.[a-z\d](?:[a-z\d-]*[a-z\d])?)*\.?$/i

export function classifyDeviceArgument(argument: string): DeviceArgument {
  const trimmed = argument.trim()
  if (trimmed === '') throw new UsageError('a device UUID, fleet or device address is required')
  if (UUID_LIKE.test(trimmed)) return {kind: 'device', reference: trimmed.toLowerCase()}
  const bracketless = trimmed.replace(/^\[(.*)\]$/, '$1')
  if (isIP(bracketless)) return {kind: 'address', host: bracketless}
  if (trimmed.toLowerCase() === 'localhost' || (trimmed.includes('.') && !trimmed.includes('/') && HOST_NAME.test(trimmed))) {
    return {kind: 'address', host: trimmed}
  }

  return {kind: 'fleet', reference: trimmed}
}

/** The 7 characters a device is shown by. */
export function shortUuid(uuid: string): string {
  return uuid.slice(0, 7)
}

/** The error for a device that the server cannot reach now. */
export function deviceOfflineError(device: Device): ExpectedError {
  const seen = device.last_connectivity_event ? ` (last seen ${device.last_connectivity_event})` : ''
  return new ExpectedError(`device ${shortUuid(device.uuid)} (${device.device_name}) is offline${seen} — its agent must be running and connected to the server`)
}

/** A device by UUID or prefix that exists and is online. */
export async function getOnlineDevice(client: FleetClient, reference: string): Promise<Device> {
  const device = await getDevice(client, reference)
  if (!device.is_online) throw deviceOfflineError(device)
  return device
}

/** The online devices of a fleet, for a picker; none online is an error naming the fleet. */
export async function listOnlineDevices(client: FleetClient, fleet: string): Promise<Device[]> {
  const online = (await listDevices(client, {fleet})).filter((device) => device.is_online)
  if (online.length === 0) throw new ExpectedError(`fleet "${fleet}" has no online devices — run "flotilla device list --fleet ${fleet}" to see its devices`)
  return online
}

/** The error for a fleet named without a terminal to choose one of its devices on. */
export function fleetNeedsDeviceError(fleet: string, devices: Device[]): UsageError {
  const some = devices.slice(0, 3).map((device) => shortUuid(device.uuid)).join(', ')
  return new UsageError(
    `"${fleet}" is a fleet with ${devices.length} online device${devices.length === 1 ? '' : 's'} (${some}${devices.length > 3 ? ', …' : ''}) — name one by UUID, or run in a terminal to pick one`,
  )
}

/** Where users' SSH sessions go, and as whom. */
export interface GatewayTarget {
  username: string
  host: string
  port: number
  /** The gateway's public host key (`ssh-ed25519 AAAA…`) when the remote announces it. */
  hostKey?: string
}

/** The user name for the gateway (whoami's) and its endpoint (the remote's announced one, or `ssh.<proxy>:22`). */
export async function getGatewayTarget(client: FleetClient): Promise<GatewayTarget> {
  const [actor, ssh] = await Promise.all([whoami(client), client.endpoint('ssh')])
  if (!actor.username) {
    const owner = actor.actorType === 'user' ? 'a user without a username' : `${/^[aeiou]/.test(actor.actorType) ? 'an' : 'a'} ${actor.actorType}`
    throw new ExpectedError(`ssh needs a user's credentials, and these belong to ${owner} — run "flotilla login"`)
  }

  return {username: actor.username, host: ssh.host, port: ssh.port, hostKey: ssh.hostKey}
}

/** A known_hosts line pinning a host key: `host key` on port 22, `[host]:port key` on any other. */
export function knownHostsLine(host: string, port: number, hostKey: string): string {
  const name = port === 22 ? host : `[${host}]:${port}`
  return `${name} ${hostKey.trim()}`
}

/** Writes a known_hosts file of one line for the gateway under `directory`, and returns its path. */
export async function writeGatewayKnownHosts(directory: string, host: string, port: number, hostKey: string): Promise<string> {
  const file = path.join(directory, 'ssh', `known_hosts-${host.replaceAll(/[^\w.-]/g, '_')}-${port}`)
  await writeFileAtomic(file, knownHostsLine(host, port, hostKey) + '\n', 0o600)
  return file
}

/** A pseudo-terminal when asked for, or when a person is there: stdin and stdout both terminals. */
export function wantsTty(force: boolean, streams: {stdin: {isTTY?: boolean}; stdout: {isTTY?: boolean}} = process): boolean {
  return force || Boolean(streams.stdin.isTTY && streams.stdout.isTTY)
}

/** How OpenSSH is asked to connect, whichever the target. */
export interface SshClientOptions {
  /** Ask for a pseudo-terminal (`-t`). */
  tty?: boolean
  verbose?: boolean
  /** A private key file (`-i`); otherwise OpenSSH's usual identities and the user's ssh config apply. */
  identity?: string
  /** Overrides the gateway's or the device's port. */
  port?: number
  service?: string
  /** A command to run instead of an interactive shell. */
  command?: string
}

function commonArgs(options: SshClientOptions, port: number, defaultPort: number): string[] {
  const args: string[] = []
  if (options.tty) args.push('-t')
  if (port !== defaultPort || options.port !== undefined) args.push('-p', String(port))
  if (options.identity) args.push('-i', options.identity)
  if (options.verbose) args.push('-v')
  return args
}

/** The argv (after the binary) of an OpenSSH session to a device through the server's gateway. */
export function gatewaySshArgs(target: GatewayTarget, uuid: string, options: SshClientOptions & {knownHostsFile?: string}): string[] {
  const port = options.port ?? target.port
  const args = commonArgs(options, port, 22)
  if (options.knownHostsFile) args.push('-o', `UserKnownHostsFile=${options.knownHostsFile}`, '-o', 'StrictHostKeyChecking=yes')
  args.push(`${target.username}@${target.host}`, formatGatewayCommand({uuid, service: options.service, command: options.command}))
  return args
}

/** The argv (after the binary) of an OpenSSH session straight to a device on the local network, as root on its port 22222. */
export function directSshArgs(host: string, options: SshClientOptions): string[] {
  const args = commonArgs(options, options.port ?? DEVICE_SSH_PORT, 22)
  // A device's key is learnt on first contact (there is no server to vouch for it) and checked from then on.
  args.push('-o', 'StrictHostKeyChecking=accept-new')
  if (options.service) args.push('-o', `SetEnv=${SERVICE_ENV}=${options.service}`)
  args.push(`root@${host}`)
  if (options.command !== undefined) args.push(options.command)
  return args
}

/** The OpenSSH client to run: `FLOTILLA_SSH_BINARY`, else `ssh` from the PATH. */
export function sshBinary(env: NodeJS.ProcessEnv = process.env): string {
  return env.FLOTILLA_SSH_BINARY || 'ssh'
}

const SIGNAL_NUMBERS: Partial<Record<NodeJS.Signals, number>> = {SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGKILL: 9, SIGTERM: 15}
const FORWARDED_SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP']

/**
 * Runs the OpenSSH client with the terminal handed over (stdin, stdout and stderr inherited) and resolves with its
 * exit status (128 + the signal number when a signal ended it). While it runs, SIGINT, SIGTERM and SIGHUP go to
 * the child rather than ending this process first.
 */
export async function runSsh(binary: string, args: string[]): Promise<number> {
  const child = spawn(binary, args, {stdio: 'inherit'})
  const forward = (signal: NodeJS.Signals) => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal)
  }

  for (const signal of FORWARDED_SIGNALS) process.on(signal, forward)
  try {
    return await new Promise<number>((resolve, reject) => {
      child.once('error', (error: NodeJS.ErrnoException) => {
        reject(
          error.code === 'ENOENT'
            ? new ExpectedError(`the OpenSSH client "${binary}" was not found — install it (openssh-client) or set FLOTILLA_SSH_BINARY to its path`)
            : new ExpectedError(`cannot run the OpenSSH client "${binary}": ${error.message}`, {cause: error}),
        )
      })
      child.once('exit', (code, signal) => resolve(code ?? 128 + (signal ? (SIGNAL_NUMBERS[signal] ?? 1) : 1)))
    })
  } finally {
    for (const signal of FORWARDED_SIGNALS) process.off(signal, forward)
  }
}
