import {strict as assert} from 'node:assert'
import {rmSync} from 'node:fs'

import ssh2 from 'ssh2'

import {LINK_FORWARD, linkUsername} from '../../../src/protocol/device-link.js'
import {makeCliHome, runCli} from '../../helpers/cli.js'
import {eventually, FleetApi} from '../../helpers/fleet-api.js'
import {startServer, type TestServer} from '../../helpers/server.js'

/* eslint-disable @typescript-eslint/no-explicit-any -- rows are JSON */

/**
 * The key model under attack (issue 11, item 2): a provisioning key registers new devices into its fleet and does
 * nothing else; a device key is made only by the device itself or its fleet's members; members list and revoke
 * their fleets' and devices' keys, and a revoked device key loses its open link at once. Two users in two
 * organizations: the admin owns the fleet, mallory is the outsider, bob is a member of the admin's organization.
 */
describe('security: provisioning and device keys', function () {
  this.timeout(120_000)
  let server: TestServer
  let api: FleetApi
  let admin: string
  let mallory: string
  let fleet: {id: number; slug: string}
  let provisioning: string
  let uuidCounter = 0

  const nextUuid = () => (++uuidCounter).toString(16).padStart(32, 'a')
  /** A key an attacker would choose, different in each test so none leaks into another. */
  const chosenKey = () => `attackerChosenKey${uuidCounter}`.padEnd(32, '0')
  const whoami = (token: string) => api.call('GET', '/actor/v1/whoami', {token})
  const keysOf = async (token: string, actorId: number) => (await api.call('GET', `/v7/api_key?$select=id,name&$filter=is_of__actor eq ${actorId}`, {token})).json().d as Array<{id: number; name: string}>
  const actorOf = async (resource: 'application' | 'device', id: number) => (await api.call('GET', `/v7/${resource}(${id})?$select=actor`, {token: admin})).json().d[0].actor.__id as number

  /** The device is still its own: its real key speaks for it and the attacker's does not. */
  async function assertDeviceUntouched(device: {uuid: string; api_key: string}, attackerKey: string) {
    const real = await whoami(device.api_key)
    assert.equal(real.status, 200, real.body)
    assert.equal(real.json().uuid, device.uuid)
    assert.equal((await whoami(attackerKey)).status, 401)
  }

  before(async () => {
    server = await startServer()
    api = new FleetApi(server.url)
    await server.addUser({email: 'mallory@example.com', username: 'mallory', password: 'mallory-password-1'})
    await server.addUser({email: 'bob@example.com', username: 'bob', password: 'bob-password-1', organization: 'admin'})
    admin = await api.login(server.admin.username, server.admin.password)
    mallory = await api.login('mallory', 'mallory-password-1')
    fleet = await api.createFleet(admin, 'keyed')
    provisioning = (await api.call('POST', `/api-key/application/${fleet.id}/provisioning`, {token: admin, json: {name: 'field'}})).json()
  })

  after(async () => {
    await server?.stop()
  })

  it("lets a provisioning key register new devices but never give a registered device a key, by any route, and leaves the device's key alone", async () => {
    const device = await api.registerDevice(admin, fleet.id, nextUuid())
    const attackerKey = chosenKey()
    const attempts = [
      api.call('POST', `/api-key/device/${device.id}/device-key`, {token: provisioning, json: {apiKey: attackerKey}}),
      api.call('POST', `/api-key/device/${device.id}/device-key`, {token: provisioning, json: {}}),
      api.call('POST', `/api-key/device/${device.id}/device-key?apikey=${provisioning}`, {json: {apiKey: attackerKey}}),
      api.call('POST', '/api-key/v2/', {token: provisioning, json: {actorType: 'device', actorTypeId: device.id, roles: ['device-api-key'], name: 'x', apiKey: attackerKey}}),
    ]
    for (const answer of await Promise.all(attempts)) {
      assert.equal(answer.status, 401, answer.body)
      assert.doesNotMatch(answer.body, /[A-Za-z0-9]{32}/)
    }

    const registeredAgain = await api.call('POST', '/device/register', {token: provisioning, json: {application: fleet.id, device_type: 'raspberrypi4-64', uuid: device.uuid, api_key: attackerKey}})
    assert.equal(registeredAgain.status, 409)
    await assertDeviceUntouched(device, attackerKey)
    assert.deepEqual((await keysOf(admin, await actorOf('device', device.id))).map((key) => key.name), ['device key'])
    const fresh = await api.call('POST', '/device/register', {token: provisioning, json: {application: fleet.id, device_type: 'raspberrypi4-64', uuid: nextUuid(), api_key: chosenKey()}})
    assert.equal(fresh.status, 201, fresh.body)
    assert.equal((await whoami(fresh.json().api_key)).json().uuid, fresh.json().uuid)
  })

  it('lets a provisioning key read, change and revoke no key through pine', async () => {
    const device = await api.registerDevice(admin, fleet.id, nextUuid())
    const attackerKey = chosenKey()
    const deviceActor = await actorOf('device', device.id)
    assert.deepEqual((await api.call('GET', '/v7/api_key', {token: provisioning})).json().d, [])
    const keyId = (await keysOf(admin, deviceActor))[0].id
    assert.equal((await api.call('PATCH', `/v7/api_key(${keyId})`, {token: provisioning, json: {name: 'mine'}})).status, 401)
    assert.equal((await api.call('DELETE', `/v7/api_key(${keyId})`, {token: provisioning})).status, 401)
    assert.equal((await api.call('POST', '/v7/api_key', {token: provisioning, json: {is_of__actor: deviceActor, name: 'x'}})).status, 401)
    assert.deepEqual(await keysOf(admin, deviceActor), [{id: keyId, name: 'device key'}])
    await assertDeviceUntouched(device, attackerKey)
  })

  it("refuses another organization's user and another device any key of the device, and shows them none", async () => {
    const device = await api.registerDevice(admin, fleet.id, nextUuid())
    const attackerKey = chosenKey()
    const other = await api.registerDevice(admin, fleet.id, nextUuid())
    const deviceActor = await actorOf('device', device.id)
    const fleetActor = await actorOf('application', fleet.id)
    for (const token of [mallory, other.api_key]) {
      assert.equal((await api.call('POST', `/api-key/device/${device.id}/device-key`, {token, json: {apiKey: attackerKey}})).status, 401)
      assert.equal((await api.call('POST', `/api-key/application/${fleet.id}/provisioning`, {token, json: {}})).status, 401)
      assert.deepEqual(await keysOf(token, deviceActor), [])
      assert.deepEqual(await keysOf(token, fleetActor), [])
    }

    const keyId = (await keysOf(admin, deviceActor))[0].id
    await api.call('DELETE', `/v7/api_key(${keyId})`, {token: mallory})
    await api.call('DELETE', `/v7/api_key?$filter=is_of__actor eq ${deviceActor}`, {token: mallory})
    await api.call('PATCH', `/v7/api_key(${keyId})`, {token: mallory, json: {name: 'taken'}})
    assert.deepEqual(await keysOf(admin, deviceActor), [{id: keyId, name: 'device key'}])
    await assertDeviceUntouched(device, attackerKey)
  })

  it('lets a device rotate its own key and a fleet member make it one, and never shows a key value', async () => {
    const device = await api.registerDevice(admin, fleet.id, nextUuid())
    const rotated = await api.call('POST', `/api-key/device/${device.id}/device-key`, {token: device.api_key, json: {name: 'rotated'}})
    assert.equal(rotated.status, 200, rotated.body)
    assert.equal((await whoami(rotated.json())).json().uuid, device.uuid)
    const bob = await api.login('bob', 'bob-password-1')
    const byMember = await api.call('POST', `/api-key/device/${device.id}/device-key`, {token: bob, json: {name: 'by bob'}})
    assert.equal(byMember.status, 200, byMember.body)
    assert.equal((await whoami(byMember.json())).json().uuid, device.uuid)
    const rows = (await api.call('GET', `/v7/api_key?$filter=is_of__actor eq ${await actorOf('device', device.id)}`, {token: bob})).json().d
    assert.deepEqual(rows.map((row: any) => row.name), ['device key', 'rotated', 'by bob'])
    for (const row of rows) assert.deepEqual(Object.keys(row).sort(), ['created_at', 'description', 'expiry_date', 'id', 'is_of__actor', 'name'])
    assert.equal((await api.call('GET', '/v7/api_key?$select=key', {token: bob})).status, 400)
    assert.equal((await api.call('GET', '/v7/api_key?$select=key_hash', {token: bob})).status, 400)
  })

  it("lets a fleet member list the fleet's and a device's keys and revoke one with the CLI, which closes the device's link at once", async () => {
    const home = makeCliHome()
    const bob = (args: string[], input?: string) => runCli(args, {input, env: {HOME: home, FLOTILLA_URL: server.url}})
    const device = await api.registerDevice(admin, fleet.id, nextUuid())
    const link = await openDeviceLink(server.sshPort, device.uuid, device.api_key)
    try {
      assert.equal((await bob(['login', '--credentials', '--email', 'bob', '--password', '-'], 'bob-password-1')).exitCode, 0)
      const fleetKeys = await bob(['api-key', 'list', '--fleet', fleet.slug, '--json'])
      assert.equal(fleetKeys.exitCode, 0, fleetKeys.stderr)
      assert.ok(JSON.parse(fleetKeys.stdout).some((key: any) => key.name === 'field'), fleetKeys.stdout)
      const deviceKeys = await bob(['api-key', 'list', '--device', device.uuid, '--json'])
      assert.equal(deviceKeys.exitCode, 0, deviceKeys.stderr)
      const [deviceKey] = JSON.parse(deviceKeys.stdout)
      assert.equal(deviceKey.name, 'device key')
      assert.ok(!deviceKeys.stdout.includes(device.api_key))

      const outsider = await runCli(['api-key', 'list', '--device', device.uuid], {env: {HOME: makeCliHome(), FLOTILLA_URL: server.url, FLOTILLA_TOKEN: mallory}})
      assert.equal(outsider.exitCode, 1)
      assert.match(outsider.stderr, /device .* not found/)
      const refused = await runCli(['api-key', 'revoke', String(deviceKey.id)], {env: {HOME: makeCliHome(), FLOTILLA_URL: server.url, FLOTILLA_TOKEN: mallory}})
      assert.equal(refused.exitCode, 1)
      assert.match(refused.stderr, /not found/)
      assert.equal((await whoami(device.api_key)).status, 200)

      const revoked = await bob(['api-key', 'revoke', String(deviceKey.id)])
      assert.equal(revoked.exitCode, 0, revoked.stderr)
      assert.equal((await whoami(device.api_key)).status, 401)
      await eventually(async () => link.closed, 'the revoked key\u2019s device link to close', 5000)
      await assert.rejects(openDeviceLink(server.sshPort, device.uuid, device.api_key), /authentication/i)
    } finally {
      link.client.end()
      rmSync(home, {recursive: true, force: true})
    }
  })
})

/** A device link as the agent opens it: `d_<uuid>` with the device key, then the one remote forwarding. */
async function openDeviceLink(port: number, uuid: string, key: string): Promise<{client: ssh2.Client; closed: boolean}> {
  const client = new ssh2.Client()
  await new Promise<void>((resolve, reject) => {
    client.once('ready', () => resolve()).once('error', reject)
    client.connect({host: '127.0.0.1', port, username: linkUsername(uuid), password: key, hostVerifier: () => true})
  })
  await new Promise<void>((resolve, reject) => client.forwardIn(LINK_FORWARD.address, LINK_FORWARD.port, (error) => (error ? reject(error) : resolve())))
  const link = {client, closed: false}
  client.on('close', () => (link.closed = true))
  client.on('error', () => {})
  return link
}
