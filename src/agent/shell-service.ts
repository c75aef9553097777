import {spawn} from 'node:child_process'
import type {Socket} from 'node:net'
import {constants as osConstants, homedir} from 'node:os'
import path from 'node:path'
import type {Duplex} from 'node:stream'

import type * as Pty from '@lydell/node-pty'
import type Docker from 'dockerode'
import ssh2 from 'ssh2'
import type {AuthContext, Connection, ServerChannel, Session} from 'ssh2'

import {listen} from '../listen.js'
import type {ConfigJson} from '../protocol/config-json.js'
import {SERVICE_ENV} from '../protocol/device-link.js'
import {loadHostKey} from '../protocol/host-key.js'
import {isAuthorizedKey, parseAuthorizedKeys} from '../protocol/authorized-keys.js'
import {deviceContainers, formatContainerListing, isContainerListingCommand} from './container-listing.js'
import {hostContainerOptions, removeHostContainer, removeLeftoverHostContainers, startHostContainer} from './host-container.js'
import {LABELS} from './reconciler.js'

/** Who may log in to the shell service without the server's word: a direct listener or a tunnel to its port. */
export interface DirectAccess {
  /** OpenSSH authorized_keys lines (config.json's `os.sshKeys`). */
  authorizedKeys: string[]
  /** Anyone may log in, as on a balenaOS development image. */
  open: boolean
}

/** config.json's rules for direct logins: its keys; on a development device without keys, anyone. */
export function directAccessOf(config: ConfigJson): DirectAccess {
  const authorizedKeys = config.os?.sshKeys ?? []
  return {authorizedKeys, open: config.developmentMode === true && authorizedKeys.length === 0}
}

export interface ShellServiceOptions {
  dataDir: string
  docker: Docker
  /** The device whose service containers sessions may enter; undefined until it is registered. */
  deviceUuid: () => string | undefined
  /** Asked at each direct login, so keys added to config.json count without a restart. */
  directAccess: () => Promise<DirectAccess>
  /**
   * Asked at each host session: an image to run it from in a sibling container on the engine's host (the agent's
   * own, when it runs in a container of the engine it drives), else undefined: the agent's host is the host.
   */
  hostShellImage?: () => Promise<string | undefined>
  /** Where host terminals come from (default: {@link importHostPty}, once). */
  loadPty?: () => Promise<PtyModule>
}

export type PtyModule = typeof Pty

/**
 * node-pty from the prebuilt binary of this platform (Linux x64 and arm64; none for 32-bit ARM), or an error saying
 * why a host terminal cannot be had. Without it the agent still runs: commands and service shells need no pty of the
 * agent's own, and a session asking for a terminal on the host is refused in one line.
 */
export async function importHostPty(importPty: () => Promise<PtyModule> = () => import('@lydell/node-pty')): Promise<PtyModule> {
  try {
    return await importPty()
  } catch (error) {
    const cause = (error as Error).message.split('\n')[0]
    throw new Error(`this device's agent cannot open a terminal on its host (${process.platform}-${process.arch}: ${cause}); run the command without one (its input not a terminal), or enter a service`, {cause: error})
  }
}

let hostPty: Promise<PtyModule> | undefined
/** {@link importHostPty}, once: at the first host terminal, not at the agent's start. */
const loadHostPty = () => (hostPty ??= importHostPty())

/** The agent's embedded SSH server: shells and commands on the host or inside a service's container. */
export interface ShellService {
  /** A connection the server opened over the device link: the server authorized it already. */
  injectLinkConnection(stream: Duplex): void
  /** A connection that logs in by key (see {@link DirectAccess}): a tunnel to the device's SSH port. */
  injectDirectConnection(stream: Duplex): void
  /** Listens for direct connections; resolves with the bound port. */
  listen(port: number, host: string): Promise<number>
  /** Ends every connection, kills every session's process and stops listening. */
  close(): Promise<void>
}

const HOST_KEY_FILE = 'shell_host_ed25519_key'

const LOGIN_SHELL = 'if command -v bash >/dev/null 2>&1; then exec bash; else exec sh; fi'

/** Signals SSH can name in an exit-signal message (RFC 4254 §6.10); others are reported as a shell does, 128 + number. */
const SSH_SIGNALS = new Set(['ABRT', 'ALRM', 'FPE', 'HUP', 'ILL', 'INT', 'KILL', 'PIPE', 'QUIT', 'SEGV', 'TERM', 'USR1', 'USR2'])

/** Bounds the wait for the engine to record an exec's exit code once its stream has ended. */
const EXEC_EXIT_POLLS = 50
const EXEC_EXIT_POLL_MS = 20

interface PtyRequest {
  term: string
  cols: number
  rows: number
}

/** A session's process, wherever it runs. */
interface SessionProcess {
  resize(cols: number, rows: number): void
  /** Sends a signal (SSH's name, without "SIG"); false when the process cannot be signalled. */
  signal(name: string): boolean
  kill(): void
}

interface ExitStatus {
  code: number | null
  signal?: NodeJS.Signals | null
}

function signalNameOf(signal: number): NodeJS.Signals | undefined {
  return (Object.keys(osConstants.signals) as NodeJS.Signals[]).find((name) => osConstants.signals[name] === signal)
}

/** Tells the client how the process ended, then ends the channel. */
function reportExit(channel: ServerChannel, status: ExitStatus): void {
  const signal = status.signal?.replace(/^SIG/, '')
  if (signal && SSH_SIGNALS.has(signal)) channel.exit(signal)
  else if (status.signal) channel.exit(128 + osConstants.signals[status.signal])
  else channel.exit(status.code ?? 0)
  channel.end()
}

function fail(channel: ServerChannel, message: string, withPty: boolean): void {
  channel.stderr.write(`error: ${message}${withPty ? '\r\n' : '\n'}`)
  reportExit(channel, {code: 1})
}

/** A session's request for a terminal, with what opens one on the host. */
interface HostTerminal {
  request: PtyRequest
  pty: PtyModule
}

function runOnHost(channel: ServerChannel, command: string | undefined, hostTerminal: HostTerminal | undefined): SessionProcess {
  if (hostTerminal) {
    const {request: ptyRequest, pty} = hostTerminal
    const shell = process.env.SHELL || '/bin/sh'
    const terminal = pty.spawn(shell, command === undefined ? [] : ['-c', command], {
      name: ptyRequest.term || 'xterm',
      cols: ptyRequest.cols || 80,
      rows: ptyRequest.rows || 24,
      cwd: homedir(),
      env: {...process.env, TERM: ptyRequest.term || 'xterm'},
    })
    terminal.onData((data) => channel.write(data))
    // The bytes as they came: the pty's socket takes a Buffer, though the typings say string.
    channel.on('data', (data: Buffer) => terminal.write(data as unknown as string))
    terminal.onExit(({exitCode, signal}) => reportExit(channel, {code: exitCode, signal: signal ? signalNameOf(signal) : undefined}))
    return {
      resize: (cols, rows) => terminal.resize(cols, rows),
      signal(name) {
        try {
          terminal.kill(`SIG${name}`)
          return true
        } catch {
          // A name this system has no signal for.
          return false
        }
      },
      kill: () => terminal.kill(),
    }
  }

  // Its own process group, so a hang-up reaches what the command started too.
  const child = spawn('/bin/sh', command === undefined ? [] : ['-c', command], {cwd: homedir(), stdio: 'pipe', detached: true})
  const signalGroup = (signal: NodeJS.Signals) => {
    if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return false
    try {
      process.kill(-child.pid, signal)
      return true
    } catch {
      return false
    }
  }

  // A command that exits without reading its input makes the rest of the input fail to write: nobody is owed it.
  child.stdin.on('error', () => {})
  channel.pipe(child.stdin)
  child.stdout.pipe(channel, {end: false})
  child.stderr.pipe(channel.stderr, {end: false})
  child.once('error', (error) => fail(channel, `cannot run /bin/sh: ${error.message}`, false))
  child.once('close', (code, signal) => reportExit(channel, {code, signal}))
  return {
    resize: () => {},
    signal: (name) => signalGroup(`SIG${name}` as NodeJS.Signals),
    kill: () => signalGroup('SIGHUP'),
  }
}

/**
 * Joins a session's channel to the engine's attach or exec stream (raw with a pty, multiplexed without); resolves
 * once the output is whole. Like sshd with a pty, the end of the client's input does not hang up the terminal.
 */
function joinEngineStream(docker: Docker, stream: NodeJS.ReadWriteStream, channel: ServerChannel, ptyRequest: PtyRequest | undefined, resize: (cols: number, rows: number) => void): Promise<void> {
  if (ptyRequest) {
    stream.pipe(channel, {end: false})
    resize(ptyRequest.cols, ptyRequest.rows)
  } else {
    docker.modem.demuxStream(stream, channel, channel.stderr)
  }

  channel.pipe(stream, {end: ptyRequest === undefined})
  stream.on('error', () => {})
  return new Promise((resolve) => {
    stream.once('end', resolve)
    stream.once('close', resolve)
  })
}

/**
 * A host session for an agent that runs in a container, in a host container (see {@link hostContainerOptions}).
 * Unlike `docker exec`, it can be signalled. It is removed once it ended.
 */
async function runHostSessionInContainer(
  docker: Docker,
  image: string,
  deviceUuid: string | undefined,
  channel: ServerChannel,
  command: string | undefined,
  ptyRequest: PtyRequest | undefined,
): Promise<SessionProcess> {
  const options = hostContainerOptions(image, ['/bin/sh', '-c', command ?? LOGIN_SHELL], deviceUuid)
  const {container, stream, exited} = await startHostContainer(
    docker,
    {
      ...options,
      Env: [...(options.Env ?? []), ...(ptyRequest ? [`TERM=${ptyRequest.term || 'xterm'}`] : [])],
      Tty: ptyRequest !== undefined,
      OpenStdin: true,
      StdinOnce: true,
      AttachStdin: true,
      AttachStdout: true,
      AttachStderr: true,
      HostConfig: {...options.HostConfig, ConsoleSize: ptyRequest ? [ptyRequest.rows, ptyRequest.cols] : undefined},
    },
    {stdin: true, hijack: true},
  )
  const resize = (cols: number, rows: number) => void container.resize({h: rows, w: cols}).catch(() => {})
  void joinEngineStream(docker, stream, channel, ptyRequest, resize)
  exited
    .then(
      (code) => reportExit(channel, {code}),
      () => reportExit(channel, {code: 255}),
    )
    .finally(() => removeHostContainer(container))
  return {
    resize,
    signal(name) {
      container.kill({signal: `SIG${name}`}).catch(() => {})
      return true
    },
    kill: () => void removeHostContainer(container),
  }
}

type ContainerSummary = Pick<Docker.ContainerInfo, 'Created' | 'Id' | 'Labels'>

/**
 * The running container a session names: by service name (the newest, should an update run two), else by a
 * unique container id prefix, as balena's `enter <uuid> <containerId>` gives it.
 */
export function findServiceContainer<T extends ContainerSummary>(containers: readonly T[], name: string): T | undefined {
  const byService = containers.filter((container) => container.Labels?.[LABELS.serviceName] === name).sort((a, b) => b.Created - a.Created)
  if (byService.length > 0) return byService[0]
  if (!/^[a-f\d]+$/i.test(name)) return undefined
  const byId = containers.filter((container) => container.Id.startsWith(name.toLowerCase()))
  return byId.length === 1 ? byId[0] : undefined
}

function noSuchServiceMessage(containers: readonly ContainerSummary[], name: string): string {
  const running = [...new Set(containers.map((container) => container.Labels?.[LABELS.serviceName]).filter(Boolean))].sort()
  return `no running service "${name}" on this device (${running.length > 0 ? `running: ${running.join(', ')}` : 'none is running'})`
}

async function exitCodeOf(exec: Docker.Exec): Promise<number | null> {
  for (let poll = 0; poll < EXEC_EXIT_POLLS; poll++) {
    const info = await exec.inspect()
    if (!info.Running) return info.ExitCode
    await new Promise((resolve) => setTimeout(resolve, EXEC_EXIT_POLL_MS))
  }

  return null
}

async function runInService(
  docker: Docker,
  deviceUuid: string | undefined,
  service: string,
  channel: ServerChannel,
  command: string | undefined,
  ptyRequest: PtyRequest | undefined,
): Promise<SessionProcess | undefined> {
  const containers = await deviceContainers(docker, deviceUuid)
  const container = findServiceContainer(containers, service)
  if (!container) {
    fail(channel, noSuchServiceMessage(containers, service), ptyRequest !== undefined)
    return undefined
  }

  const tty = ptyRequest !== undefined
  const exec = await docker.getContainer(container.Id).exec({
    Cmd: ['/bin/sh', '-c', command ?? LOGIN_SHELL],
    AttachStdin: true,
    AttachStdout: true,
    AttachStderr: true,
    Tty: tty,
    Env: ptyRequest ? [`TERM=${ptyRequest.term || 'xterm'}`] : undefined,
    // Engines before API 1.42 ignore it: for them the resize below sets the size, a moment after the start.
    ConsoleSize: ptyRequest ? [ptyRequest.rows, ptyRequest.cols] : undefined,
  })
  const stream = await exec.start({hijack: true, stdin: true, Tty: tty})
  const resize = (cols: number, rows: number) => void exec.resize({h: rows, w: cols}).catch(() => {})
  joinEngineStream(docker, stream, channel, ptyRequest, resize)
    .then(() => exitCodeOf(exec))
    .then(
      (code) => reportExit(channel, {code: code ?? 255}),
      () => reportExit(channel, {code: 255}),
    )
  return {
    resize,
    // The engine has no way to signal an exec's process.
    signal: () => false,
    kill: () => stream.destroy(),
  }
}

/** balena-cli's container listing (see {@link isContainerListingCommand}), answered without running it. */
async function answerContainerListing(docker: Docker, deviceUuid: string | undefined, channel: ServerChannel): Promise<undefined> {
  channel.write(formatContainerListing(await deviceContainers(docker, deviceUuid)))
  reportExit(channel, {code: 0})
  return undefined
}

/** Starts the shell service; it serves injected connections at once, and direct ones once `listen` is called. */
export async function startShellService(options: ShellServiceOptions): Promise<ShellService> {
  const hostKey = await loadHostKey(path.join(options.dataDir, HOST_KEY_FILE))
  const connections = new Set<Connection>()
  const processes = new Set<SessionProcess>()
  let leftoversRemoved: Promise<void> | undefined

  const serveSession = (session: Session) => {
    let ptyRequest: PtyRequest | undefined
    let service: string | undefined
    let running: SessionProcess | undefined
    session.on('pty', (accept, _reject, info) => {
      ptyRequest = {term: info.term, cols: info.cols, rows: info.rows}
      accept?.()
    })
    session.on('window-change', (accept, _reject, info) => {
      if (ptyRequest) ptyRequest = {...ptyRequest, cols: info.cols, rows: info.rows}
      running?.resize(info.cols, info.rows)
      accept?.()
    })
    session.on('env', (accept, reject, info) => {
      if (info.key !== SERVICE_ENV) return void reject?.()
      service = info.val || undefined
      accept?.()
    })
    session.on('signal', (accept, reject, info) => (running?.signal(info.name) ? accept?.() : reject?.()))

    const runAtHost = async (channel: ServerChannel, command: string | undefined) => {
      const image = await options.hostShellImage?.()
      if (!image) return runOnHost(channel, command, ptyRequest && {request: ptyRequest, pty: await (options.loadPty ?? loadHostPty)()})
      const deviceUuid = options.deviceUuid()
      if (deviceUuid) leftoversRemoved ??= removeLeftoverHostContainers(options.docker, deviceUuid)
      await leftoversRemoved
      return runHostSessionInContainer(options.docker, image, deviceUuid, channel, command, ptyRequest)
    }

    const start = async (channel: ServerChannel, command: string | undefined) => {
      let closed = false
      channel.once('close', () => {
        closed = true
        if (running) {
          running.kill()
          processes.delete(running)
        }
      })
      if (service) running = await runInService(options.docker, options.deviceUuid(), service, channel, command, ptyRequest)
      else if (command !== undefined && isContainerListingCommand(command)) running = await answerContainerListing(options.docker, options.deviceUuid(), channel)
      else running = await runAtHost(channel, command)
      if (!running) return
      if (closed) running.kill()
      else processes.add(running)
    }

    const startOrFail = (channel: ServerChannel, command: string | undefined) =>
      start(channel, command).catch((error: unknown) => fail(channel, (error as Error).message, ptyRequest !== undefined))
    session.once('shell', (accept) => void startOrFail(accept(), undefined))
    session.once('exec', (accept, _reject, info) => void startOrFail(accept(), info.command))
  }

  const serveConnection = (connection: Connection, authorize: (auth: AuthContext) => Promise<boolean>) => {
    connections.add(connection)
    connection.on('close', () => connections.delete(connection))
    // A client that goes away mid-handshake is its own business.
    connection.on('error', () => {})
    connection.on('authentication', (auth) => {
      authorize(auth).then(
        (allowed) => (allowed ? auth.accept() : auth.reject(['publickey'])),
        () => auth.reject(['publickey']),
      )
    })
    connection.on('ready', () => connection.on('session', (accept) => serveSession(accept())))
  }

  const authorizeDirect = async (auth: AuthContext): Promise<boolean> => {
    const access = await options.directAccess()
    if (access.open) return true
    return auth.method === 'publickey' && isAuthorizedKey(parseAuthorizedKeys(access.authorizedKeys), auth)
  }

  const linkServer = new ssh2.Server({hostKeys: [hostKey]}, (connection) => serveConnection(connection, async () => true))
  const directServer = new ssh2.Server({hostKeys: [hostKey]}, (connection) => serveConnection(connection, authorizeDirect))

  return {
    // ssh2 reads and writes an injected stream as it does a socket; a channel has every member it uses.
    injectLinkConnection: (stream) => linkServer.injectSocket(stream as Socket),
    injectDirectConnection: (stream) => directServer.injectSocket(stream as Socket),
    listen: (port, host) => listen(directServer, port, host),
    close: () =>
      new Promise((resolve) => {
        for (const running of processes) running.kill()
        processes.clear()
        for (const connection of connections) connection.end()
        // A server that never listened calls back at once (with an error that means just that).
        directServer.close(() => resolve())
      }),
  }
}
