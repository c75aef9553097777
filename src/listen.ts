import {type AddressInfo, createServer} from 'node:net'

/** A server that listens as node's net.Server does: node's own servers, and ssh2's, which wraps one. */
export interface ListeningServer {
  listen(port: number, host: string, onListening: () => void): unknown
  address(): AddressInfo | string | null
  once(event: 'error', listener: (error: Error) => void): unknown
  off(event: 'error', listener: (error: Error) => void): unknown
}

/** Listens on `host:port` (port 0: any free one) and resolves with the port, or rejects with what listening met. */
export function listen(server: ListeningServer, port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, host, () => {
      server.off('error', reject)
      resolve((server.address() as AddressInfo).port)
    })
  })
}

/** A TCP port free on 127.0.0.1 right now, for a program that must be told its port before it listens. */
export async function freeLoopbackPort(): Promise<number> {
  const server = createServer()
  const port = await listen(server, 0, '127.0.0.1')
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return port
}
