import {strict as assert} from 'node:assert'
import {randomBytes} from 'node:crypto'
import {mkdtempSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'

import {DeviceLink} from '../../src/agent/device-link.js'

import {eventually, FleetApi} from '../helpers/fleet-api.js'
import {startServer, type TestServer} from '../helpers/server.js'

/**
 * The server keeps devices' targets, API keys' actors and heartbeats in memory: each test makes a poll (or a
 * key) cached first, then changes what it is made of, and the very next request must see the change.
 */
describe('device state kept in memory stays true (real server)', function () {
  this.timeout(60_000)
  let server: TestServer
  let api: FleetApi
  let token: string
  let fleet: {id: number; slug: string; uuid: string}

  before(async () => {
    server = await startServer({args: ['--device-heartbeat-timeout', '3']})
    api = new FleetApi(server.url)
    token = await api.login(server.admin.username, server.admin.password)
    fleet = await api.createFleet(token, 'kept')
  })

  after(async () => {
    await server?.stop()
  })

  const newDevice = () => api.registerDevice(token, fleet.id, randomBytes(16).toString('hex'))
  const poll = (device: {uuid: string; api_key: string}, etag?: string) => api.call('GET', `/device/v3/${device.uuid}/state`, {token: device.api_key, headers: etag ? {'if-none-match': etag} : {}})

  /** Polls until the answer is cached (a 304 for its own ETag), then applies `change`: the next poll must be a 200 with a new ETag. */
  async function assertNextPollSees(device: {uuid: string; api_key: string}, change: () => Promise<void>): Promise<Record<string, any>> { // eslint-disable-line @typescript-eslint/no-explicit-any
    const first = await poll(device)
    assert.equal(first.status, 200, first.body)
    const etag = first.headers.etag as string
    assert.equal((await poll(device, etag)).status, 304)
    await change()
    const next = await poll(device, etag)
    assert.equal(next.status, 200, `the poll after the change answered ${next.status}: a stale target was kept`)
    assert.notEqual(next.headers.etag, etag)
    return next.json()[device.uuid]
  }

  it('gives the next poll the new target after an environment or config variable of the fleet or of the device changes', async () => {
    const device = await newDevice()
    await api.createRelease(token, fleet.id, randomBytes(16).toString('hex'))
    await assertNextPollSees(device, () => api.created(token, 'application_environment_variable', {application: fleet.id, name: 'FLEET_WIDE', value: '1'}).then(() => {}))
    let target = await assertNextPollSees(device, () => api.created(token, 'device_environment_variable', {device: device.id, name: 'MINE', value: '2'}).then(() => {}))
    const [release] = Object.values(target.apps[fleet.uuid].releases) as Array<{services: {main: {environment: Record<string, string>}}}>
    assert.deepEqual(release.services.main.environment, {FLEET_WIDE: '1', MINE: '2'})
    target = await assertNextPollSees(device, () => api.created(token, 'device_config_variable', {device: device.id, name: 'BALENA_SUPERVISOR_POLL_INTERVAL', value: '900000'}).then(() => {}))
    assert.deepEqual(target.config, {BALENA_SUPERVISOR_POLL_INTERVAL: '900000'})
  })

  it('gives the next poll the new target after a new release, a pin, a rename or a move to another fleet', async () => {
    const device = await newDevice()
    const older = {commit: randomBytes(16).toString('hex'), id: 0}
    older.id = (await api.createRelease(token, fleet.id, older.commit)).id
    const commit = randomBytes(16).toString('hex')
    let target = await assertNextPollSees(device, async () => {
      await api.createRelease(token, fleet.id, commit)
    })
    assert.deepEqual(Object.keys(target.apps[fleet.uuid].releases), [commit])
    target = await assertNextPollSees(device, () => api.patch(token, `device(${device.id})`, {is_pinned_on__release: older.id}))
    assert.deepEqual(Object.keys(target.apps[fleet.uuid].releases), [older.commit])

    target = await assertNextPollSees(device, () => api.patch(token, `device(${device.id})`, {device_name: 'renamed'}))
    assert.equal(target.name, 'renamed')
    const elsewhere = await api.createFleet(token, `elsewhere${randomBytes(3).toString('hex')}`)
    target = await assertNextPollSees(device, () => api.patch(token, `device(${device.id})`, {belongs_to__application: elsewhere.id}))
    assert.deepEqual(Object.keys(target.apps), [elsewhere.uuid])
  })

  it('refuses a revoked device key on the very next request, though the key was just used', async () => {
    const device = await newDevice()
    assert.equal((await poll(device)).status, 200)
    const keys = (await api.call('GET', `/v7/api_key?$select=id&$filter=is_of__actor eq ${(await api.call('GET', `/v7/device(${device.id})?$select=actor`, {token})).json().d[0].actor.__id}`, {token})).json().d
    assert.equal(keys.length, 1)
    assert.equal((await api.call('DELETE', `/v7/api_key(${keys[0].id})`, {token})).status, 200)
    assert.equal((await poll(device)).status, 401)
    assert.equal((await api.call('PATCH', '/device/v3/state', {token: device.api_key, json: {[device.uuid]: {status: 'Idle'}}})).status, 401)
  })

  it('reads a polling device online at once, offline after the heartbeat timeout, and online again on its next poll', async () => {
    const device = await newDevice()
    const online = async () => (await api.call('GET', `/v7/device(${device.id})?$select=is_online`, {token})).json().d[0].is_online as boolean
    assert.equal(await online(), false)
    assert.equal((await poll(device)).status, 200)
    assert.equal(await online(), true)
    await eventually(async () => !(await online()), 'the silent device to read as offline')
    assert.equal((await poll(device)).status, 200)
    assert.equal(await online(), true)
  })

  it('keeps a device holding its link online past the heartbeat timeout, while a silent one goes offline', async () => {
    const [linked, silent] = [await newDevice(), await newDevice()]
    const online = async (device: {id: number}) => (await api.call('GET', `/v7/device(${device.id})?$select=is_online`, {token})).json().d[0].is_online as boolean
    const {ssh} = (await api.call('GET', '/.well-known/flotilla.json')).json()
    const dataDir = mkdtempSync(path.join(tmpdir(), 'flotilla-link-'))
    const link = new DeviceLink({
      uuid: linked.uuid,
      deviceApiKey: linked.api_key,
      dataDir,
      endpoint: async () => ssh,
      shell: {injectDirectConnection: (stream) => stream.destroy(), injectLinkConnection: (stream) => stream.destroy()},
      onUpdate: () => {},
      onAction: () => {},
    })
    try {
      link.start()
      await link.linked()
      assert.equal((await poll(silent)).status, 200)
      await eventually(async () => online(linked), 'the linked device to read as online')
      await eventually(async () => !(await online(silent)), 'the silent device to read as offline')
      // The sweep that took the silent device offline came after the timeout: the linked one is online still.
      assert.equal(await online(linked), true)
    } finally {
      await link.stop()
      rmSync(dataDir, {recursive: true, force: true})
    }
  })

  it('writes a state report that changes, and takes the same report again as a heartbeat', async () => {
    const device = await newDevice()
    const report = (status: string) => api.call('PATCH', '/device/v3/state', {token: device.api_key, json: {[device.uuid]: {status, os_version: 'balenaOS 6.0.0'}}})
    const row = async () => (await api.call('GET', `/v7/device(${device.id})?$select=status,is_online`, {token})).json().d[0]
    assert.equal((await report('Idle')).status, 200)
    assert.deepEqual(await row(), {status: 'Idle', is_online: true})
    await eventually(async () => !(await row()).is_online, 'the silent device to read as offline')
    assert.equal((await report('Idle')).status, 200)
    assert.deepEqual(await row(), {status: 'Idle', is_online: true})
    assert.equal((await report('Updating')).status, 200)
    assert.deepEqual(await row(), {status: 'Updating', is_online: true})
    // A user's write to the device (here its status, as balena lets one) is not hidden by a report repeated after it.
    await api.patch(token, `device(${device.id})`, {status: 'Edited'})
    assert.equal((await report('Updating')).status, 200)
    assert.deepEqual(await row(), {status: 'Updating', is_online: true})
  })

  it('refuses a state report it cannot take every time it comes, however often repeated, and never as a heartbeat', async () => {
    const device = await newDevice()
    const other = await newDevice()
    const send = (body: string, contentType = 'application/json') => api.call('PATCH', '/device/v3/state', {token: device.api_key, body, headers: {'content-type': contentType}})
    const refusals: Array<[string, string, number, RegExp]> = [
      ['another device', JSON.stringify({[other.uuid]: {status: 'Idle'}}), 401, /^$/], // balena's bare 401
      ['broken JSON', `{"${device.uuid}": {"status": "Idle"`, 400, /JSON/],
      ['a poisoned prototype', `{"${device.uuid}": {"status": "Idle"}, "__proto__": {"admin": true}}`, 400, /JSON/],
      ['not an object', '[1, 2]', 400, /object keyed by the device uuid/],
      ['a device state that is no object', JSON.stringify({[device.uuid]: 7}), 400, /must be an object/],
    ]
    for (const [what, body, status, message] of refusals) {
      for (const attempt of [1, 2]) {
        const answer = await send(body)
        assert.equal(answer.status, status, `${what}, attempt ${attempt}: ${answer.body}`)
        assert.match(answer.body, message, `${what}: ${answer.body}`)
      }
    }

    assert.equal((await send(JSON.stringify({[device.uuid]: {status: 'Idle'}}), 'text/plain')).status, 400, 'a report that is not JSON')
    const {status} = (await api.call('GET', `/v7/device(${device.id})?$select=status`, {token})).json().d[0]
    assert.notEqual(status, 'Idle', 'nothing refused was written')
  })
})
