/**
 * [flotilla] The dashboard's terminal: a WebSocket at {@link WEB_TERMINAL_PATH} on the server's HTTP port, bridged to
 * the session `flotilla ssh <device> [service]` opens through the SSH gateway.
 *
 * - The browser's first message is text, {@link TerminalOpen}: the session token rides in it, never in the URL
 *   (URLs end up in logs and histories). Nothing is bridged before it, and a socket that sends none in
 *   {@link OPEN_TIMEOUT_MS} is closed.
 * - Then binary messages are keystrokes (bytes for the pty), and text messages are {@link TerminalResize}.
 * - The server sends the terminal's output as binary messages, and its news as text {@link TerminalNews}: `opened`
 *   once the shell runs, `exit` when it ends, `error` (one line for the user) before it closes the socket.
 */
export const WEB_TERMINAL_PATH = '/dashboard/terminal'

/** How long the server waits for the first message. */
export const OPEN_TIMEOUT_MS = 10_000

/** The largest message either side takes: keystrokes and pastes come in far smaller ones. */
export const MAX_MESSAGE_BYTES = 64 * 1024

export interface TerminalOpen {
  type: 'open'
  token: string
  /** The device's uuid, or a unique prefix of 7+ characters of it. */
  device: string
  /** A service of the device to enter; absent for the device's host. */
  service?: string
  cols: number
  rows: number
}

export interface TerminalResize {
  type: 'resize'
  cols: number
  rows: number
}

export type TerminalNews = {type: 'opened'} | {type: 'exit'; code: number | null; signal?: string} | {type: 'error'; message: string}

const isSize = (value: unknown): value is number => Number.isInteger(value) && (value as number) >= 1 && (value as number) <= 1000

/** A client message, or an error naming what is wrong with it. */
export function parseTerminalMessage(text: string): TerminalOpen | TerminalResize | {error: string} {
  let message: Record<string, unknown>
  try {
    message = JSON.parse(text) as Record<string, unknown>
  } catch {
    return {error: 'a terminal message must be JSON'}
  }

  if (typeof message !== 'object' || message === null) return {error: 'a terminal message must be a JSON object'}
  if (!isSize(message.cols) || !isSize(message.rows)) return {error: 'cols and rows must be whole numbers from 1 to 1000'}
  const size = {cols: message.cols, rows: message.rows}
  if (message.type === 'resize') return {type: 'resize', ...size}
  if (message.type !== 'open') return {error: 'a terminal message is "open" or "resize"'}
  if (typeof message.token !== 'string' || message.token === '') return {error: 'the "open" message needs the session token'}
  if (typeof message.device !== 'string' || !/^[a-f\d]{7,62}$/i.test(message.device)) return {error: 'the "open" message needs a device uuid (7 to 62 hex digits)'}
  if (message.service !== undefined && (typeof message.service !== 'string' || !/^[\w.-]{1,128}$/.test(message.service))) return {error: 'a service name is letters, digits, "_", "." and "-"'}
  return {type: 'open', token: message.token, device: message.device.toLowerCase(), service: message.service as string | undefined, ...size}
}
