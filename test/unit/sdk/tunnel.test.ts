import {strict as assert} from 'node:assert'
import {type AddressInfo, connect, createServer, type Server, type Socket} from 'node:net'

import {UsageError} from '../../../src/errors.js'
import {openTunnel, parsePortMapping, type Tunnel, type TunnelEvent} from '../../../src/sdk/tunnel.js'

const UUID = '7cf02a6e1b3d4c5f8a9b0c1d2e3f4a5b'

interface ConnectSeen {
  requestLine: string
  headers: Record<string, string>
}

/**
 * A tiny CONNECT responder for the tunnel's local side only: device port 1 answers 503, port 2 answers 200 with
 * "hello:" right after the head and then echoes, port 3 answers 407 with a text body. The real proxy is the server's.
 */
async function startConnectResponder(): Promise<{url: string; seen: ConnectSeen[]; close: () => Promise<void>}> {
  const seen: ConnectSeen[] = []
  const sockets = new Set<Socket>()
  const server: Server = createServer((socket) => {
    sockets.add(socket)
    socket.once('close', () => sockets.delete(socket))
    socket.on('error', () => socket.destroy())
    let buffered = Buffer.alloc(0)
    const onData = (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk])
      const end = buffered.indexOf('\r\n\r\n')
      if (end === -1) return
      socket.off('data', onData)
      const [requestLine, ...headerLines] = buffered.subarray(0, end).toString('latin1').split('\r\n')
      const headers = Object.fromEntries(headerLines.map((line) => [line.slice(0, line.indexOf(':')).toLowerCase(), line.slice(line.indexOf(':') + 1).trim()]))
      seen.push({requestLine, headers})
      const rest = buffered.subarray(end + 4)
      const port = requestLine.split(' ')[1]?.split(':')[1]
      if (port === '2') {
        socket.write('HTTP/1.1 200 Connection Established\r\n\r\nhello:')
        if (rest.length > 0) socket.write(rest)
        socket.pipe(socket)
      } else if (port === '3') {
        socket.end('HTTP/1.1 407 Proxy Authentication Required\r\nContent-Type: text/plain\r\n\r\nunknown token')
      } else {
        socket.end('HTTP/1.1 503 Service Unavailable\r\n\r\n')
      }
    }

    socket.on('data', onData)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    seen,
    async close() {
      for (const socket of sockets) socket.destroy()
      await new Promise((resolve) => server.close(resolve))
    },
  }
}

/** Connects to a local port, sends `text`, and resolves with all it receives until the other side closes. */
async function exchange(port: number, text: string): Promise<{received: string; error?: string}> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1')
    let received = ''
    socket.setEncoding('utf8').on('data', (chunk: string) => {
      received += chunk
      // The echo is complete: close our side, as a client that is done would.
      if (received === `hello:${text}`) socket.end()
    })
    socket.once('connect', () => socket.write(text))
    socket.once('error', (error: NodeJS.ErrnoException) => resolve({received, error: error.code}))
    socket.once('close', () => resolve({received}))
    socket.setTimeout(5000, () => {
      socket.destroy()
      resolve({received, error: 'timeout'})
    })
  })
}

async function waitFor(predicate: () => boolean, what: string, deadlineMs = 5000): Promise<void> {
  const started = Date.now()
  while (!predicate()) {
    if (Date.now() - started > deadlineMs) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

describe('tunnel', () => {
  describe('parsePortMapping', () => {
    it('defaults the local port to the remote one and the address to 127.0.0.1', () => {
      assert.deepEqual(parsePortMapping('22222'), {remotePort: 22222, localAddress: '127.0.0.1', localPort: 22222})
      assert.deepEqual(parsePortMapping('22222:4321'), {remotePort: 22222, localAddress: '127.0.0.1', localPort: 4321})
      assert.deepEqual(parsePortMapping('8080:0.0.0.0:9000'), {remotePort: 8080, localAddress: '0.0.0.0', localPort: 9000})
      assert.deepEqual(parsePortMapping('80:0'), {remotePort: 80, localAddress: '127.0.0.1', localPort: 0})
      assert.deepEqual(parsePortMapping('1:65535'), {remotePort: 1, localAddress: '127.0.0.1', localPort: 65535})
    })

    it('refuses anything else with a usage error that shows the form', () => {
      for (const text of ['', 'ssh', '0', '65536', '-1', '80:', ':80', '80:abc', '80:1.2.3:90', '80:1.2.3.256:90', '80:host name:90', '1:2:3:4', '80::90', '22.5']) {
        assert.throws(() => parsePortMapping(text), (error: Error) => error instanceof UsageError && error.exitCode === 2 && error.message.includes('expected <remotePort>'), text)
      }
    })
  })

  describe('openTunnel', () => {
    let responder: Awaited<ReturnType<typeof startConnectResponder>>
    let tunnel: Tunnel | undefined

    beforeEach(async () => {
      responder = await startConnectResponder()
    })

    afterEach(async () => {
      await tunnel?.close()
      tunnel = undefined
      await responder.close()
    })

    it('splices a connection through CONNECT, passing on the bytes the proxy sent after its head', async () => {
      tunnel = await openTunnel({proxy: responder.url, uuid: UUID, username: 'alice', token: 'secret', mappings: [{remotePort: 2, localAddress: '127.0.0.1', localPort: 0}]})
      const [mapping] = tunnel.mappings
      assert.ok(mapping.boundPort > 0)
      assert.deepEqual(await exchange(mapping.boundPort, 'ping'), {received: 'hello:ping'})
      assert.equal(responder.seen[0].requestLine, `CONNECT ${UUID}.balena:2 HTTP/1.1`)
      assert.equal(responder.seen[0].headers['proxy-authorization'], `Basic ${Buffer.from('alice:secret').toString('base64')}`)
    })

    it('closes only the connection whose CONNECT failed, says why, and keeps serving', async () => {
      const events: TunnelEvent[] = []
      tunnel = await openTunnel({
        proxy: responder.url,
        uuid: UUID,
        username: 'alice',
        token: 'secret',
        mappings: [
          {remotePort: 1, localAddress: '127.0.0.1', localPort: 0},
          {remotePort: 2, localAddress: '127.0.0.1', localPort: 0},
          {remotePort: 3, localAddress: '127.0.0.1', localPort: 0},
        ],
        onEvent: (event) => events.push(event),
      })
      const [unavailable, echo, denied] = tunnel.mappings
      const failures = () => events.filter((event) => event.type === 'connection-failed') as Array<Extract<TunnelEvent, {type: 'connection-failed'}>>

      assert.equal((await exchange(unavailable.boundPort, 'a')).received, '')
      assert.deepEqual(await exchange(echo.boundPort, 'b'), {received: 'hello:b'})
      assert.equal((await exchange(denied.boundPort, 'c')).received, '')
      assert.deepEqual(await exchange(echo.boundPort, 'd'), {received: 'hello:d'})
      assert.equal((await exchange(unavailable.boundPort, 'e')).received, '')
      await waitFor(() => failures().length === 3, 'three failures')
      assert.deepEqual(failures().map((event) => [event.mapping.remotePort, event.statusCode]), [[1, 503], [3, 407], [1, 503]])
      assert.match(failures()[0].message, /^device 7cf02a6 is not connected to the server \(503\)$/)
      assert.match(failures()[1].message, /^no access to device 7cf02a6 \(407: unknown token\)/)
      await waitFor(() => tunnel?.openConnections === 0, 'every connection closed')
    })

    it('keeps serving when the proxy cannot be reached, and says so', async () => {
      const unreachable = `http://127.0.0.1:${await freePort()}`
      const events: TunnelEvent[] = []
      tunnel = await openTunnel({proxy: unreachable, uuid: UUID, username: 'alice', token: 'secret', mappings: [{remotePort: 2, localAddress: '127.0.0.1', localPort: 0}], onEvent: (event) => events.push(event)})
      assert.equal((await exchange(tunnel.mappings[0].boundPort, 'x')).received, '')
      assert.equal((await exchange(tunnel.mappings[0].boundPort, 'y')).received, '')
      await waitFor(() => events.filter((event) => event.type === 'connection-failed').length === 2, 'two failures')
      const failure = events.find((event) => event.type === 'connection-failed')
      assert.match(failure && 'message' in failure ? failure.message : '', /cannot reach the tunnel proxy at 127\.0\.0\.1:\d+ \(ECONNREFUSED\)/)
    })

    it('close() stops listening and ends open connections', async () => {
      tunnel = await openTunnel({proxy: responder.url, uuid: UUID, username: 'alice', token: 'secret', mappings: [{remotePort: 2, localAddress: '127.0.0.1', localPort: 0}]})
      const port = tunnel.mappings[0].boundPort
      const socket = connect(port, '127.0.0.1')
      const closed = new Promise((resolve) => socket.once('close', resolve))
      socket.on('error', () => {})
      let received = ''
      socket.setEncoding('utf8').on('data', (chunk: string) => (received += chunk))
      socket.write('open')
      await waitFor(() => received === 'hello:open', 'the echo')
      assert.equal(tunnel.openConnections, 1)
      await tunnel.close()
      await closed
      assert.equal((await exchange(port, 'z')).error, 'ECONNREFUSED')
    })

    it('fails to start, closing what it opened, when a local port is taken', async () => {
      const taken = createServer()
      await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve))
      const port = (taken.address() as AddressInfo).port
      try {
        await assert.rejects(
          openTunnel({proxy: responder.url, uuid: UUID, username: 'alice', token: 'secret', mappings: [{remotePort: 2, localAddress: '127.0.0.1', localPort: 0}, {remotePort: 2, localAddress: '127.0.0.1', localPort: port}]}),
          new RegExp(`cannot listen on 127.0.0.1:${port}: the port is in use`),
        )
      } finally {
        await new Promise((resolve) => taken.close(resolve))
      }
    })
  })
})

async function freePort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const {port} = server.address() as AddressInfo
  await new Promise((resolve) => server.close(resolve))
  return port
}
