import {strict as assert} from 'node:assert'
import {type ChildProcess, spawn} from 'node:child_process'
import {randomBytes} from 'node:crypto'
import {mkdtempSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'

import {DeviceLink} from '../../src/agent/device-link.js'
import {CLI_BIN, makeCliHome, PROJECT_ROOT} from '../helpers/cli.js'
import {eventually, FleetApi} from '../helpers/fleet-api.js'
import {TEST_DATABASE} from '../helpers/postgres.js'
import {startServer, type TestServer} from '../helpers/server.js'

/**
 * Two `flotilla server start` processes on one PostgreSQL database, each with its own data dir, as two instances
 * behind a balancer would run: what one learns, the other acts on (the cluster bus, LISTEN/NOTIFY). The user works
 * with an API key (stored in the database, so both instances know it): session tokens are signed with a secret of
 * each data dir until the server's secrets live in the database.
 */
describe('two server instances on one PostgreSQL database (real servers)', function () {
  this.timeout(120_000)
  let a: TestServer
  let b: TestServer
  let apiA: FleetApi
  let apiB: FleetApi
  let key: string
  let fleet: {id: number; slug: string; uuid: string}
  const cleanups: Array<() => unknown> = []

  before(async function () {
    if (TEST_DATABASE !== 'postgres') return this.skip()
    a = await startServer()
    b = await startServer({databaseUrl: a.databaseUrl})
    apiA = new FleetApi(a.url)
    apiB = new FleetApi(b.url)
    const session = await apiA.login(a.admin.username, a.admin.password)
    key = (await apiA.call('POST', '/api-key/user/full', {token: session, json: {name: 'both instances'}})).json()
    fleet = await apiA.createFleet(key, 'shared')
  })

  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup()
  })

  after(async () => {
    // B first: A's stop drops the database they share.
    await b?.stop()
    await a?.stop()
  })

  const newDevice = () => apiA.registerDevice(key, fleet.id, randomBytes(16).toString('hex'))
  const line = (message: string) => JSON.stringify({message, timestamp: Date.parse('2026-01-02T03:04:05.000Z'), isSystem: false, isStdErr: false})
  const shipBatch = (api: FleetApi, device: {uuid: string; api_key: string}, batch: string, messages: string[]) =>
    api.call('POST', `/device/v2/${device.uuid}/log-stream`, {token: device.api_key, body: messages.map(line).join('\n'), headers: {'content-type': 'application/x-ndjson', 'x-flotilla-log-batch': batch}})

  it('updates a device linked to and polling one instance within seconds of a release made through the other', async () => {
    const device = await newDevice()
    const dataDir = mkdtempSync(path.join(tmpdir(), 'flotilla-link-'))
    let updates = 0
    const link = new DeviceLink({
      uuid: device.uuid,
      deviceApiKey: device.api_key,
      dataDir,
      endpoint: async () => ({host: '127.0.0.1', port: b.sshPort}),
      shell: {injectDirectConnection: (stream) => stream.destroy(), injectLinkConnection: (stream) => stream.destroy()},
      onUpdate: () => updates++,
      onAction: () => {},
    })
    cleanups.push(() => rmSync(dataDir, {recursive: true, force: true}), () => link.stop())
    link.start()
    await link.linked()
    const first = await apiB.call('GET', `/device/v3/${device.uuid}/state`, {token: device.api_key})
    assert.equal(first.status, 200, first.body)
    const commit = randomBytes(16).toString('hex')
    await apiA.createRelease(key, fleet.id, commit)
    await eventually(async () => updates > 0, 'instance B telling its linked device of the release made through A', 10_000)
    const target = await apiB.call('GET', `/device/v3/${device.uuid}/state`, {token: device.api_key, headers: {'if-none-match': first.headers.etag as string}})
    assert.equal(target.status, 200, 'B serves the new target, not the one it kept')
    assert.deepEqual(Object.keys(target.json()[device.uuid].apps[fleet.uuid].releases), [commit])
  })

  it('shows to "flotilla logs --tail" through one instance the lines a device ships to the other', async () => {
    const device = await newDevice()
    assert.equal((await shipBatch(apiB, device, 'aaaa0000/1', ['before the tail'])).status, 201)
    const home = makeCliHome()
    const child: ChildProcess = spawn(process.execPath, [CLI_BIN, 'logs', device.uuid, '--tail'], {
      cwd: PROJECT_ROOT,
      env: {PATH: process.env.PATH, NO_COLOR: '1', HOME: home, FLOTILLA_URL: a.url, FLOTILLA_TOKEN: key},
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    cleanups.push(() => rmSync(home, {recursive: true, force: true}), () => child.kill('SIGKILL'))
    let output = ''
    child.stdout?.setEncoding('utf8').on('data', (chunk: string) => (output += chunk))
    child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (output += chunk))
    await eventually(async () => output.includes('before the tail'), `the history through A\n${output}`)
    assert.equal((await shipBatch(apiB, device, 'aaaa0000/2', ['live one', 'live two'])).status, 201)
    assert.equal((await shipBatch(apiB, device, 'aaaa0000/3', ['live three'])).status, 201)
    await eventually(async () => output.includes('live three'), `the live lines shipped to B, through A\n${output}`, 10_000)
    const messages = output.split('\n').filter((text) => text.startsWith('[')).map((text) => text.replace(/^\[[^\]]+\] /, ''))
    assert.deepEqual(messages, ['before the tail', 'live one', 'live two', 'live three'], 'each line once, in order')
  })

  it('refuses on one instance, at once, a key revoked through the other', async () => {
    const name = `revoked-${randomBytes(4).toString('hex')}`
    const doomed = (await apiA.call('POST', '/api-key/user/full', {token: await apiA.login(a.admin.username, a.admin.password), json: {name}})).json()
    assert.equal((await apiB.call('GET', '/user/v1/whoami', {token: doomed})).status, 200, 'B knows (and keeps) the key')
    const {id} = (await apiA.call('GET', `/v7/api_key?$select=id&$filter=name eq '${name}'`, {token: key})).json().d[0]
    assert.equal((await apiA.call('DELETE', `/v7/api_key(${id})`, {token: key})).status, 200)
    assert.equal((await apiB.call('GET', '/user/v1/whoami', {token: doomed})).status, 401, 'B refuses the key at once')
  })

  it('stores once a log batch retried to the other instance', async () => {
    const device = await newDevice()
    assert.equal((await shipBatch(apiB, device, 'bbbb0000/1', ['one', 'two'])).status, 201)
    assert.equal((await shipBatch(apiA, device, 'bbbb0000/1', ['one', 'two'])).status, 201, 'the retry is answered as stored')
    assert.equal((await shipBatch(apiA, device, 'bbbb0000/2', ['three'])).status, 201)
    assert.equal((await shipBatch(apiB, device, 'bbbb0000/2', ['three'])).status, 201)
    const stored = (await apiA.call('GET', `/device/v2/${device.uuid}/logs?count=all`, {token: key})).json() as Array<{message: string}>
    assert.deepEqual(stored.map((entry) => entry.message), ['one', 'two', 'three'])
  })
})
