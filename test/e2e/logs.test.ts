import {strict as assert} from 'node:assert'
import {type ChildProcess, spawn} from 'node:child_process'
import {rmSync} from 'node:fs'
import {gzipSync} from 'node:zlib'

import got from 'got'

import type {LogLine} from '../../src/protocol/log-line.js'
import {FleetClient} from '../../src/sdk/client.js'
import {type DeviceLogLine, streamLogs} from '../../src/sdk/logs.js'
import {CLI_BIN, makeCliHome, PROJECT_ROOT} from '../helpers/cli.js'
import {FleetApi} from '../helpers/fleet-api.js'
import {startCuttableProxy} from '../helpers/net.js'
import {startServer, type TestServer} from '../helpers/server.js'

const DEVICE_UUID = 'c3'.repeat(16)
const OTHER_UUID = 'd4'.repeat(16)

/** Waits until `text()` matches, or fails with what it holds after the deadline. */
function waitForText(text: () => string, pattern: RegExp, onChange: (listener: () => void) => () => void, deadlineMs = 15_000): Promise<RegExpExecArray> {
  return new Promise((resolve, reject) => {
    const check = () => {
      const match = pattern.exec(text())
      if (!match) return
      clearTimeout(timer)
      stop()
      resolve(match)
    }

    const timer = setTimeout(() => {
      stop()
      reject(new Error(`timed out waiting for ${pattern} in:\n${text()}`))
    }, deadlineMs)
    const stop = onChange(check)
    check()
  })
}

describe('device logs (real server and CLI)', function () {
  this.timeout(60_000)
  let server: TestServer
  let api: FleetApi
  let token: string
  let device: {id: number; uuid: string; api_key: string}
  let other: {id: number; uuid: string; api_key: string}
  let serviceId: number
  const home = makeCliHome()
  const children: ChildProcess[] = []

  const sendLines = async (key: string, uuid: string, lines: LogLine[], gzip = false) => {
    const ndjson = lines.map((line) => `${JSON.stringify(line)}\n`).join('')
    const answer = await api.call('POST', `/device/v2/${uuid}/log-stream`, {
      token: key,
      body: gzip ? gzipSync(ndjson) : ndjson,
      headers: {'content-type': 'application/x-ndjson', ...(gzip ? {'content-encoding': 'gzip'} : {})},
    })
    assert.equal(answer.status, 201, answer.body)
  }

  const line = (message: string, extra: Partial<LogLine> = {}): LogLine => ({message, timestamp: Date.parse('2026-01-02T03:04:05.000Z'), isSystem: false, isStdErr: false, ...extra})

  before(async () => {
    server = await startServer({args: ['--log-heartbeat', '1']})
    api = new FleetApi(server.url)
    token = await api.login(server.admin.username, server.admin.password)
    const fleet = await api.createFleet(token, 'loggers')
    device = await api.registerDevice(token, fleet.id, DEVICE_UUID)
    other = await api.registerDevice(token, fleet.id, OTHER_UUID)
    serviceId = (await api.created(token, 'service', {application: fleet.id, service_name: 'main'})).id
  })

  after(async () => {
    for (const child of children) child.kill('SIGKILL')
    await server?.stop()
    rmSync(home, {recursive: true, force: true})
  })

  it('stores lines a device streams (gzip too) and gives users the last ones, cut to 10,000 characters', async () => {
    await sendLines(device.api_key, DEVICE_UUID, [line('first', {serviceId}), line('x'.repeat(12_000), {serviceId, isStdErr: true})], true)
    const batch = await api.call('POST', `/device/v2/${DEVICE_UUID}/logs`, {token: device.api_key, json: [line('agent started', {isSystem: true})]})
    assert.equal(batch.status, 201, batch.body)
    const answer = await api.call('GET', `/device/v2/${DEVICE_UUID}/logs?count=2`, {token})
    assert.equal(answer.status, 200, answer.body)
    const lines = answer.json()
    assert.equal(lines.length, 2)
    assert.equal(lines[0].message.length, 10_000)
    assert.equal(lines[0].serviceId, serviceId)
    assert.equal(lines[0].isStdErr, true)
    assert.deepEqual({...lines[1], id: 0, createdAt: 0}, {id: 0, createdAt: 0, message: 'agent started', timestamp: Date.parse('2026-01-02T03:04:05.000Z'), isSystem: true, isStdErr: false})
    assert.ok(lines[1].id > lines[0].id)
  })

  it("keeps device keys away from other devices' logs and from reading logs at all", async () => {
    assert.equal((await api.call('GET', `/device/v2/${DEVICE_UUID}/logs`, {token: other.api_key})).status, 401)
    assert.equal((await api.call('GET', `/device/v2/${DEVICE_UUID}/logs`, {token: device.api_key})).status, 401)
    assert.equal((await api.call('POST', `/device/v2/${DEVICE_UUID}/logs`, {token: other.api_key, json: [line('forged')]})).status, 401)
    assert.ok(!(await api.call('GET', `/device/v2/${DEVICE_UUID}/logs?count=all`, {token})).body.includes('forged'))
  })

  it('prints history then live lines to "flotilla logs --tail", named by service', async () => {
    const child = spawn(process.execPath, [CLI_BIN, 'logs', DEVICE_UUID.slice(0, 7), '--tail'], {
      cwd: PROJECT_ROOT,
      env: {PATH: process.env.PATH, NO_COLOR: '1', HOME: home, FLOTILLA_URL: server.url, FLOTILLA_TOKEN: token},
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    children.push(child)
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk))
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk))
    const onChange = (listener: () => void) => {
      child.stdout.on('data', listener)
      child.on('exit', listener)
      return () => {
        child.stdout.off('data', listener)
        child.off('exit', listener)
      }
    }

    const output = () => `${stdout}\nstderr: ${stderr}`
    await waitForText(output, /^\[2026-01-02T03:04:05\.000Z\] agent started$/m, onChange)
    assert.match(stdout, /^\[2026-01-02T03:04:05\.000Z\] \[main\] first$/m)
    await sendLines(device.api_key, DEVICE_UUID, [line('live line', {serviceId})])
    await waitForText(output, /^\[2026-01-02T03:04:05\.000Z\] \[main\] live line$/m, onChange)
    child.kill('SIGINT')
  })

  it('keeps the last 1000 lines of a device', async () => {
    const lines = Array.from({length: 1005}, (_, index) => line(`line ${index}`))
    await sendLines(other.api_key, OTHER_UUID, lines)
    const kept = (await api.call('GET', `/device/v2/${OTHER_UUID}/logs?count=all`, {token})).json()
    assert.equal(kept.length, 1000)
    assert.equal(kept[0].message, 'line 5')
    assert.equal(kept.at(-1).message, 'line 1004')
  })

  it('sends a bare newline to an idle stream', async () => {
    const stream = got.stream(`${server.url}/device/v2/${DEVICE_UUID}/logs?stream=1`, {headers: {authorization: `Bearer ${token}`}})
    try {
      const first = await new Promise<string>((resolve, reject) => {
        stream.once('data', (chunk: Buffer) => resolve(chunk.toString('utf8')))
        stream.once('error', reject)
      })
      assert.equal(first, '\n')
    } finally {
      stream.destroy()
    }
  })

  it('resumes a dropped stream after the last line seen, without repeats or gaps', async () => {
    const proxy = await startCuttableProxy(server.port)
    const stop = new AbortController()
    try {
      const client = new FleetClient({remote: proxy.url, token})
      const received: DeviceLogLine[] = []
      let notify = () => {}
      const reached = (count: number) =>
        new Promise<void>((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error(`only ${received.length} of ${count} lines arrived`)), 15_000)
          notify = () => {
            if (received.length < count) return
            clearTimeout(timer)
            resolve()
          }

          notify()
        })
      const reader = (async () => {
        // History too (the default), so lines sent before the stream is open still arrive; earlier tests' lines are left out.
        for await (const entry of streamLogs(client, DEVICE_UUID, {tail: true, maxRetry: 5, retryDelayMs: 50, signal: stop.signal})) {
          if (!/^r\d$/.test(entry.message)) continue
          received.push(entry)
          notify()
        }
      })()
      const firstThree = reached(3)
      await sendLines(device.api_key, DEVICE_UUID, [line('r1'), line('r2'), line('r3')])
      await firstThree
      proxy.cut()
      const allSix = reached(6)
      await sendLines(device.api_key, DEVICE_UUID, [line('r4'), line('r5'), line('r6')])
      await allSix
      stop.abort()
      await reader.catch(() => undefined)
      assert.deepEqual(received.map((entry) => entry.message), ['r1', 'r2', 'r3', 'r4', 'r5', 'r6'])
    } finally {
      stop.abort()
      await proxy.close()
    }
  })
})
