import net from 'node:net'

export interface CuttableProxy {
  port: number
  url: string
  /** Destroys every connection through the proxy at once, as a network failure would; new ones still pass. */
  cut(): void
  close(): Promise<void>
}

/** A TCP port free on 127.0.0.1 right now, for a program that must be told its port before it listens. */
export async function freeLoopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))))
    })
  })
}

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
