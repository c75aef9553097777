import {strict as assert} from 'node:assert'
import {randomBytes} from 'node:crypto'
import {readFile} from 'node:fs/promises'
import {Readable} from 'node:stream'
import {buffer} from 'node:stream/consumers'
import {createGzip} from 'node:zlib'

import {TRUNCATED_MARK} from '../../../src/protocol/log-line.js'
import {FleetApi} from '../../helpers/fleet-api.js'
import {startServer, type TestServer} from '../../helpers/server.js'

/** A gzip body of `{"message":"` and then `bytes` of one letter, with no newline anywhere. */
async function lineWithoutNewline(bytes: number): Promise<Buffer> {
  const chunk = Buffer.alloc(1024 * 1024, 'a')
  async function* text(): AsyncGenerator<Buffer> {
    yield Buffer.from('{"message":"')
    for (let sent = 0; sent < bytes; sent += chunk.length) yield chunk
  }

  return buffer(Readable.from(text()).pipe(createGzip()))
}

/** A figure of the server process's memory, in bytes, from /proc/<pid>/status (VmRSS now, VmHWM its peak). */
async function memoryOf(pid: number, field: 'VmRSS' | 'VmHWM'): Promise<number> {
  const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(await readFile(`/proc/${pid}/status`, 'utf8'))
  assert.ok(match, `${field} of process ${pid}`)
  return Number(match[1]) * 1024
}

describe('attack: a device key floods the log stream', function () {
  this.timeout(120_000)
  let server: TestServer
  let api: FleetApi
  let token: string
  let device: {uuid: string; api_key: string}

  before(async () => {
    server = await startServer()
    api = new FleetApi(server.url)
    token = await api.login(server.admin.username, server.admin.password)
    const fleet = await api.createFleet(token, 'flood')
    device = await api.registerDevice(token, fleet.id, randomBytes(16).toString('hex'))
  })

  after(async () => {
    await server?.stop()
  })

  const post = (path: string, body: Buffer, headers: Record<string, string>) => api.call('POST', `/device/v2/${device.uuid}/${path}`, {token: device.api_key, body, headers})

  it('refuses a gzip bomb of one line without a newline, with its memory bounded, and keeps answering', async () => {
    const bomb = await lineWithoutNewline(160 * 1024 * 1024)
    assert.ok(bomb.length < 1024 * 1024, `the bomb is small on the wire (${bomb.length} bytes)`)
    const peakBefore = await memoryOf(server.pid, 'VmHWM')
    const answer = await post('log-stream', bomb, {'content-type': 'application/x-ndjson', 'content-encoding': 'gzip'})
    assert.equal(answer.status, 413, answer.body)
    assert.match(answer.json() as string, /at most \d+ bytes once decompressed/)
    const grown = (await memoryOf(server.pid, 'VmHWM')) - peakBefore
    assert.ok(grown < 96 * 1024 * 1024, `the server's peak memory grew by ${Math.round(grown / 1024 / 1024)} MiB`)
    assert.equal((await api.call('GET', '/ping')).status, 200)
  })

  it('stores a long line without a newline cut to 10,000 characters and marked', async () => {
    const answer = await post('log-stream', await lineWithoutNewline(4 * 1024 * 1024), {'content-type': 'application/x-ndjson', 'content-encoding': 'gzip'})
    assert.equal(answer.status, 201, answer.body)
    const lines = (await api.call('GET', `/device/v2/${device.uuid}/logs?count=all`, {token})).json() as Array<{message: string}>
    const long = lines.find((line) => line.message.startsWith('aaaa'))
    assert.ok(long, JSON.stringify(lines).slice(0, 200))
    assert.equal(long.message.length, 10_000)
    assert.ok(long.message.endsWith(TRUNCATED_MARK))
  })

  it('refuses an oversized batch of lines and a corrupt gzip body with a 4xx', async () => {
    const many = Buffer.from(JSON.stringify(Array.from({length: 11}, () => ({message: 'x', timestamp: 1}))))
    assert.equal((await post('logs', many, {'content-type': 'application/json'})).status, 400)
    const huge = Buffer.from(JSON.stringify([{message: 'x'.repeat(2 * 1024 * 1024), timestamp: 1}]))
    assert.equal((await post('logs', huge, {'content-type': 'application/json'})).status, 413)
    const corrupt = await post('log-stream', Buffer.from('not gzip at all'), {'content-type': 'application/x-ndjson', 'content-encoding': 'gzip'})
    assert.equal(corrupt.status, 400, corrupt.body)
  })
})
