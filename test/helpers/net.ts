import net from 'node:net'

export interface CuttableProxy {
  port: number
  url: string
  /** Destroys every connection through the proxy at once, as a network failure would; new ones still pass. */
  cut(): void
  close(): Promise<void>
}

/** One way to find a free port, the product's own: tests import it from here. */
export {freeLoopbackPort} from '../../src/listen.js'

/** A loopback TCP proxy to `port` whose connections the test can cut, as a flaky network would. */
export async function startCuttableProxy(port: number): Promise<CuttableProxy> {
  const sockets = new Set<net.Socket>()
  const proxy = net.createServer((client) => {
    const upstream = net.connect(port, '127.0.0.1')
    for (const socket of [client, upstream]) {
      sockets.add(socket)
      socket.on('close', () => sockets.delete(socket))
      socket.on('error', () => socket.destroy())
    }

    client.pipe(upstream).pipe(client)
  })
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve))
  const {port: proxyPort} = proxy.address() as net.AddressInfo
  return {
    port: proxyPort,
    url: `http://127.0.0.1:${proxyPort}`,
    cut: () => {
      for (const socket of sockets) socket.destroy()
    },
    close: () =>
      new Promise((resolve) => {
        for (const socket of sockets) socket.destroy()
        proxy.close(() => resolve())
      }),
  }
}
