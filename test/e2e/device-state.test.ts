import {strict as assert} from 'node:assert'
import {mkdtempSync, readFileSync, rmSync, statSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'

import {parseConfigJson} from '../../src/protocol/config-json.js'
import {makeCliHome, runCli} from '../helpers/cli.js'
import {eventually, FleetApi} from '../helpers/fleet-api.js'
import {startServer, type TestServer} from '../helpers/server.js'

const DEVICE_UUID = 'a1'.repeat(16)
const OTHER_UUID = 'b2'.repeat(16)

describe('device state, actions and config (real server)', function () {
  this.timeout(60_000)
  let server: TestServer
  let api: FleetApi
  let token: string
  let fleet: {id: number; slug: string; uuid: string}
  let device: {id: number; uuid: string; api_key: string}
  let other: {id: number; uuid: string; api_key: string}
  const home = makeCliHome()
  const cli = (args: string[]) => runCli(args, {env: {HOME: home, FLOTILLA_URL: server.url, FLOTILLA_TOKEN: token}})

  before(async () => {
    server = await startServer({args: ['--device-heartbeat-timeout', '4']})
    api = new FleetApi(server.url)
    token = await api.login(server.admin.username, server.admin.password)
    fleet = await api.createFleet(token, 'sensors')
    device = await api.registerDevice(token, fleet.id, DEVICE_UUID)
    other = await api.registerDevice(token, fleet.id, OTHER_UUID)
  })

  after(async () => {
    await server?.stop()
    rmSync(home, {recursive: true, force: true})
  })

  const readState = (key: string, uuid = DEVICE_UUID, etag?: string) => api.call('GET', `/device/v3/${uuid}/state`, {token: key, headers: etag ? {'if-none-match': etag} : {}})

  it('gives a device key its own target, without releases while the fleet has none, and 304 for an unchanged ETag', async () => {
    const answer = await readState(device.api_key)
    assert.equal(answer.status, 200, answer.body)
    assert.deepEqual(answer.json(), {[DEVICE_UUID]: {name: DEVICE_UUID.slice(0, 7), config: {}, apps: {[fleet.uuid]: {id: fleet.id, name: 'sensors', is_host: false, class: 'fleet'}}}})
    const etag = answer.headers.etag as string
    assert.match(etag, /^"[\w-]+"$/)
    const again = await readState(device.api_key, DEVICE_UUID, etag)
    assert.equal(again.status, 304)
    assert.equal(again.body, '')
    const asUser = await readState(token)
    assert.equal(asUser.status, 200)
    assert.equal(asUser.headers.etag, etag)
  })

  it("refuses a device key another device's target", async () => {
    assert.equal((await readState(other.api_key)).status, 401)
    assert.equal((await readState(device.api_key, 'f'.repeat(32))).status, 401)
    assert.equal((await readState('')).status, 401)
  })

  it('changes the body when variables change, a release succeeds, or the device is pinned', async () => {
    const first = await readState(device.api_key)
    await api.created(token, 'application_environment_variable', {application: fleet.id, name: 'LEVEL', value: 'fleet'})
    await api.created(token, 'device_config_variable', {device: device.id, name: 'BALENA_SUPERVISOR_POLL_INTERVAL', value: '60000'})
    const withVariables = await readState(device.api_key, DEVICE_UUID, first.headers.etag as string)
    assert.equal(withVariables.status, 200)
    assert.notEqual(withVariables.headers.etag, first.headers.etag)
    assert.deepEqual(withVariables.json()[DEVICE_UUID].config, {BALENA_SUPERVISOR_POLL_INTERVAL: '60000'})

    const release = await api.createRelease(token, fleet.id, 'c'.repeat(32))
    await api.created(token, 'device_environment_variable', {device: device.id, name: 'LEVEL', value: 'device'})
    const target = (await readState(device.api_key)).json()[DEVICE_UUID].apps[fleet.uuid].releases
    assert.deepEqual(Object.keys(target), ['c'.repeat(32)])
    assert.deepEqual(target['c'.repeat(32)].services.main, {
      id: target['c'.repeat(32)].services.main.id,
      image_id: release.imageId,
      image: `${release.location}:latest`,
      environment: {LEVEL: 'device'},
      labels: {'io.flotilla.test': '1'},
      composition: {image: 'main', labels: {'io.flotilla.test': '1'}},
    })
    assert.equal((await readState(other.api_key, OTHER_UUID)).json()[OTHER_UUID].apps[fleet.uuid].releases['c'.repeat(32)].services.main.environment.LEVEL, 'fleet')

    const newer = await api.createRelease(token, fleet.id, 'd'.repeat(32))
    assert.deepEqual(Object.keys((await readState(device.api_key)).json()[DEVICE_UUID].apps[fleet.uuid].releases), ['d'.repeat(32)])
    const pin = await cli(['device', 'pin', DEVICE_UUID, 'c'.repeat(7)])
    assert.equal(pin.exitCode, 0, pin.stderr)
    assert.deepEqual(Object.keys((await readState(device.api_key)).json()[DEVICE_UUID].apps[fleet.uuid].releases), ['c'.repeat(32)])
    const unpin = await cli(['device', 'pin', DEVICE_UUID, '--unpin'])
    assert.equal(unpin.exitCode, 0, unpin.stderr)
    const fleetPin = await cli(['fleet', 'pin', fleet.slug, String(release.id)])
    assert.equal(fleetPin.exitCode, 0, fleetPin.stderr)
    assert.deepEqual(Object.keys((await readState(device.api_key)).json()[DEVICE_UUID].apps[fleet.uuid].releases), ['c'.repeat(32)])
    const track = await cli(['fleet', 'track-latest', fleet.slug, '--json'])
    assert.equal(track.exitCode, 0, track.stderr)
    assert.equal(JSON.parse(track.stdout).should_be_running__release, newer.id)
    assert.deepEqual(Object.keys((await readState(device.api_key)).json()[DEVICE_UUID].apps[fleet.uuid].releases), ['d'.repeat(32)])
  })

  it('records a state report: device fields, the running release, image installs, online; offline after the timeout', async () => {
    const report = {
      [DEVICE_UUID]: {
        status: 'Idle',
        os_version: 'Debian 12',
        supervisor_version: '0.1.0',
        ip_address: '10.0.0.2 10.0.0.3',
        memory_usage: 100,
        memory_total: 1000,
        api_port: 48_484,
        apps: {[fleet.uuid]: {release_uuid: 'd'.repeat(32), releases: {['d'.repeat(32)]: {update_status: 'done', services: {main: {image: 'x', status: 'Running', download_progress: null}}}}}},
      },
    }
    assert.equal((await api.call('PATCH', '/device/v3/state', {token: other.api_key, json: report})).status, 401)
    const answer = await api.call('PATCH', '/device/v3/state', {token: device.api_key, json: report})
    assert.equal(answer.status, 200, answer.body)
    const row = (
      await api.call('GET', `/v7/device(${device.id})?$select=status,os_version,ip_address,memory_total,is_online,api_heartbeat_state,update_status&$expand=is_running__release($select=commit),image_install($select=status)`, {token})
    ).json().d[0]
    assert.deepEqual(row, {
      status: 'Idle',
      os_version: 'Debian 12',
      ip_address: '10.0.0.2 10.0.0.3',
      memory_total: 1000,
      is_online: true,
      api_heartbeat_state: 'online',
      update_status: 'done',
      is_running__release: [{commit: 'd'.repeat(32)}],
      image_install: [{status: 'Running'}],
    })
    await eventually(async () => !(await api.call('GET', `/v7/device(${device.id})?$select=is_online`, {token})).json().d[0].is_online, 'the silent device to read as offline')
  })

  it('queues supervisor actions for online devices and hands them to the device that collects them', async () => {
    const offline = await api.call('POST', '/supervisor/v1/restart', {token, json: {uuid: OTHER_UUID, data: {appId: fleet.id}}})
    assert.equal(offline.status, 404)
    assert.equal(offline.json(), 'No online device(s) found')
    // Polling its target is a heartbeat too; the device keeps polling, as an agent does, so that slow CLI runs on a
    // busy machine do not outlast the 4 s heartbeat timeout.
    assert.equal((await readState(device.api_key)).status, 200)
    const polling = setInterval(() => void readState(device.api_key).catch(() => {}), 1000)
    try {
      const restart = await cli(['device', 'restart', DEVICE_UUID])
      assert.equal(restart.exitCode, 0, restart.stderr)
      const refused = await cli(['device', 'reboot', DEVICE_UUID])
      assert.equal(refused.exitCode, 2, refused.stderr)
      assert.match(refused.stderr, /--yes/)
      assert.equal((await api.call('GET', `/device/v3/${DEVICE_UUID}/actions`, {token: other.api_key})).status, 401)
      const collected = await api.call('GET', `/device/v3/${DEVICE_UUID}/actions?wait=5`, {token: device.api_key})
      assert.deepEqual(collected.json(), [{action: 'restart', appId: fleet.id}])
      const waiting = api.call('GET', `/device/v3/${DEVICE_UUID}/actions?wait=20`, {token: device.api_key})
      const service = await api.call('POST', `/supervisor/v2/applications/${fleet.id}/restart-service`, {token, json: {uuid: DEVICE_UUID, data: {appId: fleet.id, serviceName: 'main'}}})
      assert.equal(service.status, 200, service.body)
      assert.deepEqual((await waiting).json(), [{action: 'restart-service', appId: fleet.id, serviceName: 'main'}])
    } finally {
      clearInterval(polling)
    }
  })

  it('generates a config.json an agent accepts, with a provisioning key or a device key', async () => {
    const folder = mkdtempSync(path.join(tmpdir(), 'flotilla-config-'))
    try {
      const file = path.join(folder, 'config.json')
      const generated = await cli(['config', 'generate', '--fleet', fleet.slug, '--appUpdatePollInterval', '2', '-o', file])
      assert.equal(generated.exitCode, 0, generated.stderr)
      assert.equal(statSync(file).mode & 0o777, 0o600)
      const config = parseConfigJson(readFileSync(file, 'utf8'))
      assert.equal(config.applicationId, fleet.id)
      assert.equal(config.deviceType, 'raspberrypi4-64')
      assert.equal(config.apiEndpoint, server.url)
      assert.equal(config.appUpdatePollInterval, 120_000)
      assert.equal(config.listenPort, 48_484)
      assert.equal(config.flotillaEndpoints?.api, server.url)
      const registered = await api.call('POST', '/device/register', {token: config.apiKey, json: {application: fleet.id, device_type: config.deviceType, uuid: 'e'.repeat(32)}})
      assert.equal(registered.status, 201, registered.body)

      const forDevice = await cli(['config', 'generate', '--fleet', fleet.slug, '--device', OTHER_UUID, '--json'])
      assert.equal(forDevice.exitCode, 0, forDevice.stderr)
      const deviceConfig = parseConfigJson(forDevice.stdout)
      assert.equal(deviceConfig.uuid, OTHER_UUID)
      assert.equal(deviceConfig.apiKey, undefined)
      assert.equal((await readState(deviceConfig.deviceApiKey!, OTHER_UUID)).status, 200)
    } finally {
      rmSync(folder, {recursive: true, force: true})
    }
  })
})
