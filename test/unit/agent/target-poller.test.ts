import assert from 'node:assert/strict'
import {mkdtemp, rm} from 'node:fs/promises'
import {createServer, type Server} from 'node:http'
import type {AddressInfo} from 'node:net'
import {tmpdir} from 'node:os'
import path from 'node:path'

import {fetchTargetState, nextPollDelay, type TargetFetch, TargetPoller} from '../../../src/agent/target-poller.js'
import {TargetStore} from '../../../src/agent/target-store.js'
import {ApiError} from '../../../src/errors.js'
import type {TargetDevice} from '../../../src/protocol/target-state.js'
import {FleetClient} from '../../../src/sdk/client.js'

const UUID = 'f'.repeat(32)
const TARGET: TargetDevice = {name: 'pi', config: {BALENA_X: '1'}, apps: {}}

describe('target state', () => {
  let server: Server
  let client: FleetClient
  let status = 200
  const seen: Array<{url?: string; ifNoneMatch?: string; authorization?: string}> = []

  before(async () => {
    server = createServer((request, response) => {
      seen.push({url: request.url, ifNoneMatch: request.headers['if-none-match'], authorization: request.headers.authorization})
      if (status !== 200) return void response.writeHead(status).end()
      if (request.headers['if-none-match'] === '"v1"') return void response.writeHead(304).end()
      response.writeHead(200, {'content-type': 'application/json', etag: '"v1"'}).end(JSON.stringify({[UUID]: TARGET}))
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    client = new FleetClient({remote: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, token: 'devicekey'})
  })
  after(() => new Promise((resolve) => server.close(resolve)))
  beforeEach(() => {
    status = 200
    seen.length = 0
  })

  it('fetches with the device key and answers unchanged for the same ETag', async () => {
    assert.deepEqual(await fetchTargetState(client, UUID), {changed: true, target: TARGET, etag: '"v1"'})
    assert.deepEqual(await fetchTargetState(client, UUID, '"v1"'), {changed: false})
    assert.deepEqual(seen, [
      {url: `/device/v3/${UUID}/state`, ifNoneMatch: undefined, authorization: 'Bearer devicekey'},
      {url: `/device/v3/${UUID}/state`, ifNoneMatch: '"v1"', authorization: 'Bearer devicekey'},
    ])
  })

  it('fails with the status the server answered', async () => {
    status = 401
    await assert.rejects(fetchTargetState(client, UUID), (error: unknown) => error instanceof ApiError && error.statusCode === 401)
  })

  it('polls at once on pollNow, shares concurrent polls and hands over changes only', async () => {
    const received: Array<string | undefined> = []
    const poller = new TargetPoller({fetch: (etag) => fetchTargetState(client, UUID, etag), onTarget: (_target, etag) => void received.push(etag), intervalMs: 60_000})
    try {
      await Promise.all([poller.pollNow(), poller.pollNow()])
      await poller.pollNow()
      assert.equal(seen.length, 2)
      assert.deepEqual(received, ['"v1"'])
    } finally {
      poller.stop()
    }
  })

  it('backs off exponentially on errors and jitters the interval', () => {
    const middle = () => 0.5
    assert.equal(nextPollDelay(60_000, 0, {random: middle}), 60_000)
    assert.equal(nextPollDelay(60_000, 0, {random: () => 0, jitter: 0.1}), 54_000)
    assert.equal(nextPollDelay(60_000, 0, {random: () => 1, jitter: 0.1}), 66_000)
    assert.deepEqual([1, 2, 3, 4].map((failures) => nextPollDelay(60_000, failures, {random: () => 1})), [1000, 2000, 4000, 8000])
    assert.equal(nextPollDelay(60_000, 30, {random: () => 1, maxBackoffMs: 300_000}), 300_000)
  })

  it('reports errors and keeps polling', async () => {
    const errors: unknown[] = []
    let calls = 0
    const poller = new TargetPoller({
      fetch: async (): Promise<TargetFetch> => {
        calls++
        throw new Error('down')
      },
      onTarget: () => {},
      onError: (error) => errors.push(error),
      intervalMs: 60_000,
    })
    try {
      await poller.pollNow()
      await poller.pollNow()
    } finally {
      poller.stop()
    }

    assert.equal(calls, 2)
    assert.equal(errors.length, 2)
  })
})

describe('TargetStore', () => {
  let directory: string
  beforeEach(async () => {
    directory = await mkdtemp(path.join(tmpdir(), 'flotilla-store-'))
  })
  afterEach(() => rm(directory, {recursive: true, force: true}))

  it('keeps the last target across instances (restarts)', async () => {
    assert.equal(await new TargetStore(directory).load(), undefined)
    await new TargetStore(directory).save({target: TARGET, etag: '"v1"', fetchedAt: '2026-01-01T00:00:00.000Z'})
    assert.deepEqual(await new TargetStore(directory).load(), {target: TARGET, etag: '"v1"', fetchedAt: '2026-01-01T00:00:00.000Z'})
  })
})
