import {strict as assert} from 'node:assert'

import {type Answer, FleetApi} from '../../helpers/fleet-api.js'
import {startServer, type TestServer} from '../../helpers/server.js'

/**
 * Device uuids are unique across the server (the device API is addressed by uuid), so registering a uuid that is
 * taken must fail, as on balena. What the answer must not tell is where the device is: a clash with a device of an
 * organization the caller cannot see answers exactly as a clash with the caller's own device.
 */
describe('security: a uuid clash does not tell whose device it is (real server)', function () {
  this.timeout(60_000)
  let server: TestServer
  let api: FleetApi
  let alice: string
  let aliceFleet: {id: number}
  let deviceType: number
  let own: {uuid: string}
  let foreign: {uuid: string}

  before(async () => {
    server = await startServer()
    api = new FleetApi(server.url)
    await server.addUser({email: 'alice@example.com', username: 'alice', password: 'alice-password-1'})
    await server.addUser({email: 'mallory@example.com', username: 'mallory', password: 'mallory-password-1'})
    alice = await api.login('alice', 'alice-password-1')
    const mallory = await api.login('mallory', 'mallory-password-1')
    aliceFleet = await api.createFleet(alice, 'alices')
    const malloryFleet = await api.createFleet(mallory, 'mallorys')
    deviceType = (await api.call('GET', `/v7/device_type?$select=id&$filter=slug eq 'raspberrypi4-64'`)).json().d[0].id
    own = (await api.created(alice, 'device', {belongs_to__application: aliceFleet.id, is_of__device_type: deviceType, uuid: '1'.repeat(32)})) as {uuid: string}
    foreign = (await api.created(mallory, 'device', {belongs_to__application: malloryFleet.id, is_of__device_type: deviceType, uuid: '2'.repeat(32)})) as {uuid: string}
  })

  after(async () => {
    await server?.stop()
  })

  const comparable = (answer: Answer) => ({status: answer.status, body: answer.body, type: answer.headers['content-type']})

  it('POST /v7/device answers a clash with another organization\'s uuid exactly as one with the caller\'s own', async () => {
    const create = (uuid: string) => api.call('POST', '/v7/device', {token: alice, json: {belongs_to__application: aliceFleet.id, is_of__device_type: deviceType, uuid}})
    const ownClash = comparable(await create(own.uuid))
    const foreignClash = comparable(await create(foreign.uuid))
    assert.deepEqual(foreignClash, ownClash)
    assert.deepEqual(ownClash, {status: 409, body: '"\\"uuid\\" must be unique."', type: 'application/json; charset=utf-8'})
    assert.doesNotMatch(foreignClash.body, /mallory|organization|fleet/i)
  })

  it('POST /device/register answers a clash with another organization\'s uuid exactly as one with the caller\'s own', async () => {
    const key = (await api.call('POST', `/api-key/application/${aliceFleet.id}/provisioning`, {token: alice, json: {name: 'provisioning'}})).json()
    const register = (uuid: string) => api.call('POST', '/device/register', {token: key, json: {application: aliceFleet.id, device_type: 'raspberrypi4-64', uuid}})
    const ownClash = comparable(await register(own.uuid))
    const foreignClash = comparable(await register(foreign.uuid))
    assert.deepEqual(foreignClash, ownClash)
    assert.equal(ownClash.status, 409)
    assert.equal(ownClash.body, '"uuid" must be unique.')
  })

  it('reveals nothing else of the other organization\'s device: it stays invisible and unchanged', async () => {
    const seen = await api.call('GET', `/v7/device?$select=id&$filter=uuid eq '${foreign.uuid}'`, {token: alice})
    assert.deepEqual(seen.json(), {d: []})
    const mallory = await api.login('mallory', 'mallory-password-1')
    const kept = (await api.call('GET', `/v7/device?$select=belongs_to__application&$filter=uuid eq '${foreign.uuid}'`, {token: mallory})).json().d
    assert.equal(kept.length, 1)
  })
})
