import {strict as assert} from 'node:assert'
import {randomBytes} from 'node:crypto'
import {createServer, type Server} from 'node:http'
import net, {type AddressInfo} from 'node:net'
import {PassThrough} from 'node:stream'

import {ChannelRefusedError, DeviceNotLinkedError} from '../../../../src/server/gateway/device-links.js'
import {channelRequestHeaders, INTERNAL_CHANNEL_PATH, internalChannelKey, internalChannelServer, openInternalChannel} from '../../../../src/server/gateway/internal-channel.js'
import {freeLoopbackPort} from '../../../helpers/net.js'

const OWNER = 'a'.repeat(32)
const LINKED = 7
const REFUSING = 8
const UUID = 'f'.repeat(32)

/** Sends one upgrade request with these headers and returns all the owner answers (up to its first bytes after a 101). */
function rawRequest(port: number, headers: Record<string, string>, path = INTERNAL_CHANNEL_PATH): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1', () => {
      const lines = [`GET ${path} HTTP/1.1`, 'Host: owner', ...Object.entries(headers).map(([name, value]) => `${name}: ${value}`)]
      socket.write(`${lines.join('\r\n')}\r\n\r\n`)
    })
    let text = ''
    socket.setEncoding('utf8').on('data', (chunk: string) => {
      text += chunk
      if (text.startsWith('HTTP/1.1 101 ')) socket.destroy()
    })
    socket.on('close', () => resolve(text))
    socket.on('error', reject)
  })
}

const statusOf = (answer: string) => Number(/^HTTP\/1\.1 (\d{3}) /.exec(answer)?.[1])

describe('the internal channel between server instances', () => {
  const secret = randomBytes(32)
  const key = internalChannelKey(secret)
  let server: Server
  let port: number
  const owner = () => ({id: OWNER, internalUrl: `http://127.0.0.1:${port}`})
  const target = {instance: OWNER, deviceId: LINKED, kind: 'tcp' as const, port: 80}

  before(async () => {
    const serve = internalChannelServer({
      key,
      instanceId: OWNER,
      // Device 7's link echoes what it is sent; device 8's agent refuses every channel; no other is linked here.
      async openLocalChannel(deviceId) {
        if (deviceId === LINKED) return new PassThrough()
        if (deviceId === REFUSING) throw new ChannelRefusedError('nothing listens there')
        throw new DeviceNotLinkedError(UUID)
      },
      log: (error) => assert.fail(error as Error),
    })
    server = createServer((_request, response) => response.writeHead(404).end())
    server.on('upgrade', serve)
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    port = (server.address() as AddressInfo).port
  })

  after(() => new Promise<void>((resolve) => server.close(() => resolve())))

  it('carries bytes both ways over a signed request for a device linked to the owner', async () => {
    const channel = await openInternalChannel(key, owner(), {deviceId: LINKED, uuid: UUID, kind: 'shell', port: 0})
    const echoed = new Promise<string>((resolve) => channel.once('data', (chunk: Buffer) => resolve(chunk.toString('utf8'))))
    channel.write('over the owner\u2019s link')
    assert.equal(await echoed, 'over the owner\u2019s link')
    channel.destroy()
  })

  it('refuses a request without the signed fields, or with a malformed one (401)', async () => {
    assert.equal(statusOf(await rawRequest(port, {Connection: 'Upgrade', Upgrade: 'flotilla-link-channel/1'})), 401)
    const signed = channelRequestHeaders(key, target)
    assert.equal(statusOf(await rawRequest(port, {...signed, 'flotilla-port': '65536'})), 401)
    assert.equal(statusOf(await rawRequest(port, {...signed, 'flotilla-channel': 'exec'})), 401)
  })

  it('refuses a request signed with another key: one of another secret, or the session secret itself (401)', async () => {
    assert.equal(statusOf(await rawRequest(port, channelRequestHeaders(internalChannelKey(randomBytes(32)), target))), 401)
    assert.equal(statusOf(await rawRequest(port, channelRequestHeaders(secret, target))), 401)
    assert.notDeepEqual(key, secret)
    assert.deepEqual(internalChannelKey(secret), key, 'every instance of the same secret derives the same key')
  })

  it('refuses a request whose fields were changed after signing: another device or port (401)', async () => {
    const signed = channelRequestHeaders(key, target)
    assert.equal(statusOf(await rawRequest(port, {...signed, 'flotilla-device': String(REFUSING)})), 401)
    assert.equal(statusOf(await rawRequest(port, {...signed, 'flotilla-port': '22'})), 401)
  })

  it('refuses a replayed request: its nonce is taken (401)', async () => {
    const signed = channelRequestHeaders(key, target)
    assert.equal(statusOf(await rawRequest(port, signed)), 101)
    assert.equal(statusOf(await rawRequest(port, signed)), 401)
  })

  it('refuses an expired request, and one that would stay valid too long (401)', async () => {
    const expired = channelRequestHeaders(key, target, () => Date.now() - 31_000)
    assert.match(await rawRequest(port, expired), /^HTTP\/1\.1 401 [\s\S]*expired/)
    const farAhead = channelRequestHeaders(key, target, () => Date.now() + 120_000)
    assert.equal(statusOf(await rawRequest(port, farAhead)), 401)
  })

  it('answers 404 for another instance or a device not linked to it, which the caller reads as not connected', async () => {
    assert.equal(statusOf(await rawRequest(port, channelRequestHeaders(key, {...target, instance: 'b'.repeat(32)}))), 404)
    assert.equal(statusOf(await rawRequest(port, channelRequestHeaders(key, {...target, deviceId: 9}))), 404)
    await assert.rejects(openInternalChannel(key, owner(), {deviceId: 9, uuid: UUID, kind: 'tcp', port: 80}), DeviceNotLinkedError)
    await assert.rejects(openInternalChannel(key, {...owner(), id: 'b'.repeat(32)}, {deviceId: LINKED, uuid: UUID, kind: 'tcp', port: 80}), DeviceNotLinkedError)
  })

  it('passes on a channel the agent refused (502), as a refused channel', async () => {
    await assert.rejects(openInternalChannel(key, owner(), {deviceId: REFUSING, uuid: UUID, kind: 'tcp', port: 81}), (error: unknown) => error instanceof ChannelRefusedError && /nothing listens there/.test(error.message))
  })

  it('reads an owner that cannot be reached (dead, not yet timed out) as the device not being connected', async () => {
    const closed = await freeLoopbackPort()
    await assert.rejects(openInternalChannel(key, {id: OWNER, internalUrl: `http://127.0.0.1:${closed}`}, {deviceId: LINKED, uuid: UUID, kind: 'tcp', port: 80}), DeviceNotLinkedError)
  })
})
