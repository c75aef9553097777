import {strict as assert} from 'node:assert'

import {FleetApi} from '../../helpers/fleet-api.js'
import {startServer, type TestServer} from '../../helpers/server.js'

/** Request bodies and the values in them have limits; each is refused with a clear answer and changes nothing. */
const BODY_LIMIT = 1024 * 1024

describe('security: request bodies and values have size limits (real server)', function () {
  this.timeout(120_000)
  let server: TestServer
  let api: FleetApi
  let token: string
  const parents: Record<string, number> = {}

  before(async () => {
    server = await startServer()
    api = new FleetApi(server.url)
    token = await api.login(server.admin.username, server.admin.password)
    const fleet = await api.createFleet(token, 'bodies')
    const release = await api.createRelease(token, fleet.id, 'a'.repeat(32))
    const deviceType = (await api.call('GET', `/v7/device_type?$select=id&$filter=slug eq 'raspberrypi4-64'`)).json().d[0].id
    const device = await api.created(token, 'device', {belongs_to__application: fleet.id, is_of__device_type: deviceType})
    parents.application = fleet.id
    parents.release = release.id
    parents.device = device.id
    parents.service = (await api.call('GET', `/v7/service?$select=id&$filter=application eq ${fleet.id}`, {token})).json().d[0].id
    parents.service_install = (await api.call('GET', `/v7/service_install?$select=id&$filter=device eq ${device.id}`, {token})).json().d[0].id
  })

  after(async () => {
    await server?.stop()
  })

  const routes: Array<[string, string]> = [
    ['POST', '/login_'],
    ['POST', '/v7/device_tag'],
    ['PATCH', '/v7/device(1)'],
    ['POST', '/device/register'],
    ['PATCH', '/device/v3/state'],
    ['POST', '/api-key/user/full'],
    ['POST', '/download-config'],
    ['POST', '/supervisor/v1/blink'],
  ]
  for (const [method, path] of routes) {
    it(`refuses a JSON body over 1 MiB on ${method} ${path} with a 413 naming the limit, and keeps answering`, async () => {
      const body = JSON.stringify({filler: 'x'.repeat(BODY_LIMIT)})
      const answer = await api.call(method as 'POST', path, {token, body, headers: {'content-type': 'application/json'}, timeoutMs: 10_000})
      assert.equal(answer.status, 413, answer.body)
      assert.match(answer.json(), /request body is larger than 1 MiB/)
      await api.assertResponsive()
    })
  }

  /** resource, field, balena's limit, a valid value of that length. */
  const fields: Array<[string, string, number, (length: number) => string]> = [
    ['application_tag', 'tag_key', 100, (length) => 'k'.repeat(length)],
    ['application_tag', 'value', 1000, (length) => 'v'.repeat(length)],
    ['device_tag', 'tag_key', 100, (length) => 'k'.repeat(length)],
    ['device_tag', 'value', 60_158, (length) => 'v'.repeat(length)],
    ['release_tag', 'tag_key', 164, (length) => 'k'.repeat(length)],
    ['release_tag', 'value', 1000, (length) => 'v'.repeat(length)],
    ['application_environment_variable', 'name', 255, (length) => 'N'.repeat(length)],
    ['application_environment_variable', 'value', 106_104, (length) => 'v'.repeat(length)],
    ['device_environment_variable', 'value', 515_798, (length) => 'v'.repeat(length)],
    ['application_config_variable', 'name', 255, (length) => `BALENA_${'N'.repeat(length - 7)}`],
    ['application_config_variable', 'value', 492_001, (length) => 'v'.repeat(length)],
    ['device_config_variable', 'value', 372_340, (length) => 'v'.repeat(length)],
    ['service_environment_variable', 'value', 100_000, (length) => 'v'.repeat(length)],
    ['device_service_environment_variable', 'value', 285_082, (length) => 'v'.repeat(length)],
  ]
  for (const [resource, field, limit, text] of fields) {
    it(`refuses ${resource}.${field} over ${limit} characters with a 400 naming it, creating and changing nothing`, async () => {
      const parent = Object.keys(parents).find((name) => resource.startsWith(`${name}_`) && !(name === 'device' && resource.startsWith('device_service')))
      const parentField = resource === 'device_service_environment_variable' ? 'service_install' : (parent as string)
      const keyField = resource.endsWith('_tag') ? 'tag_key' : 'name'
      const otherKey = keyField === 'tag_key' ? 'key' : resource.includes('config') ? 'BALENA_KEY' : 'KEY'
      const values = (length: number) => ({[parentField]: parents[parentField], [keyField]: otherKey, value: 'v', [field]: text(length)})
      const before = (await api.call('GET', `/v7/${resource}/$count`, {token})).json().d

      const tooLong = await api.call('POST', `/v7/${resource}`, {token, json: values(limit + 1)})
      assert.equal(tooLong.status, 400, tooLong.body.slice(0, 300))
      assert.equal(tooLong.json(), `${resource}.${field} is ${limit + 1} characters long: at most ${limit} are allowed`)
      assert.equal((await api.call('GET', `/v7/${resource}/$count`, {token})).json().d, before)

      const created = await api.created(token, resource, values(limit))
      const patched = await api.call('PATCH', `/v7/${resource}(${created.id})`, {token, json: {[field]: text(limit + 1)}})
      assert.equal(patched.status, 400, patched.body.slice(0, 300))
      const kept = (await api.call('GET', `/v7/${resource}(${created.id})?$select=${field}`, {token})).json().d[0]
      assert.equal(kept[field].length, limit)
      await api.call('DELETE', `/v7/${resource}(${created.id})`, {token})
    })
  }
})
