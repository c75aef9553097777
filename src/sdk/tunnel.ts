import {type ClientRequest, type IncomingMessage, request as httpRequest} from 'node:http'
import {request as httpsRequest} from 'node:https'
import {createServer, isIPv4, type Server, type Socket} from 'node:net'

import {ExpectedError, UsageError} from '../errors.js'
import {listen} from '../listen.js'
import {splice} from '../protocol/splice.js'

/** One `-p` of `tunnel`: a device port and where it is offered locally. */
export interface PortMapping {
  remotePort: number
  localAddress: string
  /** 0 lets the system pick a free port. */
  localPort: number
}

const MAPPING_USAGE = 'expected <remotePort>[:[<localAddress>:]<localPort>], e.g. 22222, 22222:4321 or 8080:0.0.0.0:9000'

function parsePort(text: string, mapping: string, what: string, allowZero: boolean): number {
  const port = /^\d{1,5}$/.test(text) ? Number(text) : Number.NaN
  if (!(port >= (allowZero ? 0 : 1) && port <= 65_535)) {
    throw new UsageError(`invalid ${what} "${text}" in port mapping "${mapping}" — ports are 1–65535${allowZero ? ' (0 for any free local port)' : ''}; ${MAPPING_USAGE}`)
  }

  return port
}

/** Parses `22222`, `22222:4321` or `8080:0.0.0.0:9000`; the local address defaults to 127.0.0.1, the local port to the remote one. */
export function parsePortMapping(text: string): PortMapping {
  const parts = text.trim().split(':')
  if (parts.length > 3 || parts.some((part) => part === '')) throw new UsageError(`invalid port mapping "${text}" — ${MAPPING_USAGE}`)
  const remotePort = parsePort(parts[0], text, 'device port', false)
  if (parts.length === 1) return {remotePort, localAddress: '127.0.0.1', localPort: remotePort}
  const localPort = parsePort(parts.at(-1) as string, text, 'local port', true)
  const localAddress = parts.length === 3 ? parts[1] : '127.0.0.1'
  if (parts.length === 3 && !isIPv4(localAddress) && localAddress.toLowerCase() !== 'localhost') {
    throw new UsageError(`invalid local address "${localAddress}" in port mapping "${text}" — give an IPv4 address such as 127.0.0.1 or 0.0.0.0; ${MAPPING_USAGE}`)
  }

  return {remotePort, localAddress, localPort}
}

/** A mapping once it listens, with the port the system gave it. */
export interface BoundMapping extends PortMapping {
  /** The port actually listened on (differs from localPort when that was 0). */
  boundPort: number
}

export type TunnelEvent =
  | {type: 'connection'; mapping: BoundMapping; remoteAddress: string}
  | {type: 'connection-failed'; mapping: BoundMapping; message: string; statusCode?: number}
  | {type: 'connection-closed'; mapping: BoundMapping}

export interface TunnelOptions {
  /** The tunnel proxy: `http://host:port` (plain CONNECT) or `https://host:port` (TLS, then CONNECT). */
  proxy: string
  uuid: string
  username: string
  token: string
  mappings: PortMapping[]
  /** Told of each connection and each failure; the tunnel keeps serving other connections either way. */
  onEvent?: (event: TunnelEvent) => void
  /** How long to wait for the proxy's answer to a CONNECT (default 20 s). */
  connectTimeoutMs?: number
}

export interface Tunnel {
  readonly mappings: BoundMapping[]
  /** Connections open now, spliced or still waiting for the proxy. */
  readonly openConnections: number
  /** Stops listening and ends every open connection. */
  close(): Promise<void>
}

/** What a failed CONNECT answer means for the person who made the connection. */
export function describeConnectFailure(statusCode: number, statusMessage: string, uuid: string, remotePort: number, detail = ''): string {
  const device = uuid.slice(0, 7)
  const suffix = detail ? `: ${detail}` : ''
  if (statusCode === 407) return `no access to device ${device} (407${suffix}) — check that you are logged in ("flotilla whoami") and can see the device`
  if (statusCode === 503) return `device ${device} is not connected to the server (503${suffix})`
  if (statusCode === 403) return `the tunnel proxy refused the destination ${uuid}.balena:${remotePort} (403${suffix})`
  return `the tunnel proxy answered ${statusCode} ${statusMessage}`.trimEnd() + suffix
}

/** The printable start of what a proxy sent after a failure status, if anything. */
function detailOf(body: Buffer): string {
  const text = body.toString('utf8').replaceAll(/\s+/g, ' ').trim()
  if (text === '' || /[^\P{C}]/u.test(text.replaceAll('\t', ' '))) return ''
  return text.length > 200 ? `${text.slice(0, 200)}…` : text
}

/**
 * Listens on each mapping's local address and, for every connection made there, opens one HTTP CONNECT to
 * `<uuid>.balena:<remotePort>` through the proxy, then splices both ways. A failed CONNECT ends only that
 * connection. Resolves once every mapping listens; a mapping that cannot listen closes the others and rejects.
 */
export async function openTunnel(options: TunnelOptions): Promise<Tunnel> {
  const proxy = new URL(options.proxy)
  if (proxy.protocol !== 'http:' && proxy.protocol !== 'https:') throw new ExpectedError(`unsupported tunnel endpoint ${options.proxy} — expected an http:// or https:// URL`)
  const secure = proxy.protocol === 'https:'
  const proxyHost = proxy.hostname.replace(/^\[(.*)\]$/, '$1')
  const proxyPort = proxy.port === '' ? (secure ? 443 : 80) : Number(proxy.port)
  const authorization = `Basic ${Buffer.from(`${options.username}:${options.token}`).toString('base64')}`
  const timeoutMs = options.connectTimeoutMs ?? 20_000
  /** Local connections, and the proxy connections spliced to them: what close() ends. */
  const locals = new Set<Socket>()
  const sockets = new Set<Socket>()
  const requests = new Set<ClientRequest>()
  const servers: Server[] = []
  const bound: BoundMapping[] = []
  let closed = false

  const emit = (event: TunnelEvent) => options.onEvent?.(event)

  const handle = (mapping: BoundMapping, local: Socket) => {
    locals.add(local)
    sockets.add(local)
    local.once('close', () => {
      locals.delete(local)
      sockets.delete(local)
    })
    local.on('error', () => local.destroy())
    // Paused (pauseOnConnect) until the proxy answers: what the client sends meanwhile waits in the socket.
    emit({type: 'connection', mapping, remoteAddress: `${local.remoteAddress ?? ''}:${local.remotePort ?? ''}`})
    let failed = false
    const fail = (message: string, statusCode?: number) => {
      if (failed) return
      failed = true
      emit({type: 'connection-failed', mapping, message, statusCode})
      local.destroy()
    }

    const destination = `${options.uuid}.balena:${mapping.remotePort}`
    const request = (secure ? httpsRequest : httpRequest)({
      host: proxyHost,
      port: proxyPort,
      method: 'CONNECT',
      path: destination,
      headers: {host: destination, 'proxy-authorization': authorization},
      agent: false,
      servername: secure ? proxyHost : undefined,
      timeout: timeoutMs,
    })
    requests.add(request)
    request.once('close', () => requests.delete(request))
    request.once('timeout', () => {
      request.destroy()
      fail(`the tunnel proxy at ${proxy.host} did not answer in ${Math.round(timeoutMs / 1000)} s`)
    })
    request.once('error', (error: NodeJS.ErrnoException) => {
      if (closed) return
      fail(
        error.code === 'ECONNREFUSED' || error.code === 'ENOTFOUND' || error.code === 'EHOSTUNREACH'
          ? `cannot reach the tunnel proxy at ${proxy.host} (${error.code})`
          : `the tunnel proxy connection failed: ${error.message}`,
      )
    })
    local.once('close', () => {
      if (!request.destroyed && requests.has(request)) request.destroy()
    })
    request.once('connect', (response: IncomingMessage, remote: Socket, head: Buffer) => {
      requests.delete(request)
      if (local.destroyed) {
        remote.destroy()
        return
      }

      if (response.statusCode !== 200) {
        collectFailureBody(remote, head).then((body) => {
          fail(describeConnectFailure(response.statusCode ?? 0, response.statusMessage ?? '', options.uuid, mapping.remotePort, detailOf(body)), response.statusCode)
        })
        return
      }

      remote.setTimeout(0)
      sockets.add(remote)
      remote.once('close', () => sockets.delete(remote))
      // Small writes go out at once: a tunnel carries interactive protocols (ssh, HTTP request/answer).
      local.setNoDelay(true)
      remote.setNoDelay(true)
      // Bytes the proxy sent right after its answer's head belong to the device's side of the stream.
      if (head.length > 0) local.write(head)
      splice(local, remote, () => emit({type: 'connection-closed', mapping}))
    })
    request.end()
  }

  try {
    for (const mapping of options.mappings) {
      const server = createServer({allowHalfOpen: true, pauseOnConnect: true})
      servers.push(server)
      const boundPort = await listen(server, mapping.localPort, mapping.localAddress).catch((error: NodeJS.ErrnoException) => {
        const where = `${mapping.localAddress}:${mapping.localPort}`
        throw error.code === 'EADDRINUSE'
          ? new ExpectedError(`cannot listen on ${where}: the port is in use — choose another local port (-p ${mapping.remotePort}:<localPort>)`)
          : new ExpectedError(`cannot listen on ${where}: ${error.message}`, {cause: error})
      })
      const boundMapping = {...mapping, boundPort}
      bound.push(boundMapping)
      server.on('connection', (socket: Socket) => handle(boundMapping, socket))
    }
  } catch (error) {
    await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))))
    throw error
  }

  return {
    mappings: bound,
    get openConnections() {
      return locals.size
    },
    async close() {
      if (closed) return
      closed = true
      const closing = servers.map((server) => new Promise((resolve) => server.close(resolve)))
      for (const request of requests) request.destroy()
      for (const socket of sockets) socket.destroy()
      await Promise.all(closing)
    },
  }
}

/** Whatever the proxy sends after a failure status, for a short while, to tell the person why. */
async function collectFailureBody(remote: Socket, head: Buffer): Promise<Buffer> {
  const chunks = [head]
  let size = head.length
  await new Promise<void>((resolve) => {
    const done = () => {
      clearTimeout(timer)
      remote.destroy()
      resolve()
    }

    const timer = setTimeout(done, 300)
    remote.on('data', (chunk: Buffer) => {
      chunks.push(chunk)
      size += chunk.length
      if (size > 1024) done()
    })
    remote.once('end', done)
    remote.once('error', done)
    remote.once('close', done)
  })
  return Buffer.concat(chunks)
}

