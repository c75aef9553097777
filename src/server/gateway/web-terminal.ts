import type {IncomingMessage} from 'node:http'
import type {Duplex} from 'node:stream'

import {type RawData, type WebSocket, WebSocketServer} from 'ws'

import {MAX_MESSAGE_BYTES, OPEN_TIMEOUT_MS, parseTerminalMessage, type TerminalNews, type TerminalOpen} from '../../protocol/web-terminal.js'
import {type Actor, resolveActor} from '../auth/actor.js'
import type {ServerContext} from '../context.js'
import type {DeviceLinks} from './device-links.js'
import {type DeviceSession, DeviceSessionError, openDeviceSession} from './device-session.js'

/** How often an open terminal checks that its session token still stands (signed out, password changed, expired). */
export const TOKEN_RECHECK_MS = 5000

/** Output waiting for the browser beyond this pauses the device's side until it drains. */
const HIGH_WATER_BYTES = 1024 * 1024

/** WebSocket close codes: 1000 the shell ended, 1008 refused (credentials, access, a bad message), 1011 a failure. */
const CLOSE = {done: 1000, refused: 1008, failed: 1011} as const

function refuseUpgrade(socket: Duplex, status: string): void {
  socket.end(`HTTP/1.1 ${status}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`)
}

/**
 * Whether a browser's request comes from a page of this server. The token in the first message is what lets a
 * socket in; this keeps other sites' pages from even opening one. Clients other than browsers send no Origin.
 */
function fromOwnPage(request: IncomingMessage, publicUrl: string): boolean {
  const origin = request.headers.origin
  if (origin === undefined) return true
  try {
    const {host} = new URL(origin)
    return host === request.headers.host || origin === publicUrl
  } catch {
    return false
  }
}

function send(socket: WebSocket, news: TerminalNews): void {
  if (socket.readyState === socket.OPEN) socket.send(JSON.stringify(news))
}

function closeWith(socket: WebSocket, code: number, message?: string): void {
  if (message) send(socket, {type: 'error', message})
  // A paused socket would never read the browser's answer to the close.
  socket.resume()
  socket.close(code)
}

const textOf = (data: RawData) => (Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as ArrayBuffer)).toString('utf8')

type MessageHandler = (data: RawData, isBinary: boolean) => void

/**
 * Relays a session both ways: keystrokes and resizes in, output and the exit status out, with flow control.
 * `receive` hands it the browser's messages, those that came while the session opened first.
 */
function relay(socket: WebSocket, session: DeviceSession, receive: (handler: MessageHandler) => void, stillSignedIn: () => Promise<boolean>): void {
  const {client, remote} = session
  const output = (chunk: Buffer) => {
    socket.send(chunk, () => {
      if (remote.isPaused() && socket.bufferedAmount < HIGH_WATER_BYTES) remote.resume()
    })
    if (socket.bufferedAmount >= HIGH_WATER_BYTES) remote.pause()
  }

  remote.on('data', output)
  remote.stderr.on('data', output)
  remote.on('drain', () => socket.resume())
  let exited = false
  session.onExit((code, signal) => {
    exited = true
    send(socket, {type: 'exit', code: signal ? null : code, ...(signal ? {signal} : {})})
  })
  remote.on('close', () => socket.close(CLOSE.done))
  client.on('close', () => (exited ? socket.close(CLOSE.done) : closeWith(socket, CLOSE.failed, 'the connection to the device was lost')))
  socket.on('close', () => client.end())
  receive((data, isBinary) => {
    if (isBinary) {
      if (!remote.write(Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as ArrayBuffer))) socket.pause()
      return
    }

    const message = parseTerminalMessage(textOf(data))
    if ('error' in message || message.type !== 'resize') return closeWith(socket, CLOSE.refused, 'error' in message ? message.error : 'the terminal is open already')
    remote.setWindow(message.rows, message.cols, 0, 0)
  })
  const recheck = setInterval(() => {
    stillSignedIn().then(
      (signedIn) => signedIn || closeWith(socket, CLOSE.refused, 'your session has ended — sign in again'),
      () => undefined,
    )
  }, TOKEN_RECHECK_MS)
  socket.on('close', () => clearInterval(recheck))
  send(socket, {type: 'opened'})
  socket.resume()
}

async function openTerminal(context: ServerContext, links: DeviceLinks, socket: WebSocket, open: TerminalOpen, receive: (handler: MessageHandler) => void): Promise<void> {
  const userOf = async (): Promise<Extract<Actor, {kind: 'user'}> | undefined> => {
    const actor = await resolveActor(context.db, context.secret, open.token)
    return actor?.kind === 'user' ? actor : undefined
  }

  const user = await userOf()
  if (!user) return closeWith(socket, CLOSE.refused, 'your session has ended, or the token is not a user\u2019s — sign in again')
  let session: DeviceSession
  try {
    session = await openDeviceSession(context, links, user, {uuid: open.device, service: open.service, pty: {term: 'xterm-256color', cols: open.cols, rows: open.rows}})
  } catch (error) {
    if (error instanceof DeviceSessionError) return closeWith(socket, CLOSE.refused, error.message)
    throw error
  }

  // The browser left while the session opened.
  if (socket.readyState !== socket.OPEN) return void session.client.end()
  relay(socket, session, receive, async () => (await userOf())?.userId === user.userId)
}

/** One browser's terminal: waits for the "open" message, then bridges until either side ends. */
function serveTerminal(context: ServerContext, links: DeviceLinks, socket: WebSocket, log: (error: unknown, message: string) => void): void {
  const timer = setTimeout(() => closeWith(socket, CLOSE.refused, `no "open" message within ${OPEN_TIMEOUT_MS / 1000} s`), OPEN_TIMEOUT_MS)
  socket.on('error', () => {})
  socket.once('close', () => clearTimeout(timer))
  // Keystrokes typed while the session opens wait here (the socket is paused too: these are the few already read).
  const waiting: Array<Parameters<MessageHandler>> = []
  const receive = (handler: MessageHandler) => {
    onMessage = handler
    for (const [data, isBinary] of waiting.splice(0)) handler(data, isBinary)
  }

  let onMessage: MessageHandler = (data, isBinary) => {
    clearTimeout(timer)
    onMessage = (...message) => waiting.push(message)
    socket.pause()
    const message = isBinary ? {error: 'the first message must be the "open" message, as text'} : parseTerminalMessage(textOf(data))
    if ('error' in message || message.type !== 'open') return closeWith(socket, CLOSE.refused, 'error' in message ? message.error : 'the first message must be "open"')
    openTerminal(context, links, socket, message, receive).catch((error: unknown) => {
      log(error, `opening a dashboard terminal on device ${message.device} failed`)
      closeWith(socket, CLOSE.failed, `the terminal could not be opened: ${(error as Error).message}`)
    })
  }

  socket.on('message', (data, isBinary) => onMessage(data, isBinary))
}

/**
 * The dashboard's terminals: the WebSocket upgrades of WEB_TERMINAL_PATH (protocol/web-terminal.ts), which the
 * server hands to `handleUpgrade`, each bridged to a device session as the SSH gateway opens it, with the same
 * authorization.
 */
export function serveWebTerminals(context: ServerContext, links: DeviceLinks, log: (error: unknown, message: string) => void): {handleUpgrade(request: IncomingMessage, socket: Duplex, head: Buffer): void; close(): void} {
  const sockets = new WebSocketServer({noServer: true, maxPayload: MAX_MESSAGE_BYTES, perMessageDeflate: false})
  return {
    handleUpgrade(request, socket, head) {
      if (!fromOwnPage(request, context.publicUrl)) return refuseUpgrade(socket, '403 Forbidden')
      sockets.handleUpgrade(request, socket, head, (websocket) => serveTerminal(context, links, websocket, log))
    },
    close() {
      for (const client of sockets.clients) client.terminate()
      sockets.close()
    },
  }
}
