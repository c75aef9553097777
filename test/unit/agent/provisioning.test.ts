import assert from 'node:assert/strict'
import {mkdtemp, readFile, rm} from 'node:fs/promises'
import {createServer, type IncomingMessage, type Server, type ServerResponse} from 'node:http'
import type {AddressInfo} from 'node:net'
import {tmpdir} from 'node:os'
import path from 'node:path'

import {saveConfig} from '../../../src/agent/config.js'
import {ensureRegistered, generateDeviceKey, generateDeviceUuid, registerWithRetry, registrationRetryDelayMs} from '../../../src/agent/provisioning.js'
import {ExpectedError} from '../../../src/errors.js'
import type {ConfigJson} from '../../../src/protocol/config-json.js'

type Handler = (request: IncomingMessage, body: string, response: ServerResponse) => void

async function serve(handler: Handler): Promise<{server: Server; url: string}> {
  const server = createServer(async (request, response) => {
    let body = ''
    for await (const chunk of request) body += (chunk as Buffer).toString('utf8')
    handler(request, body, response)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`}
}

describe('provisioning', () => {
  let directory: string
  let server: Server | undefined
  beforeEach(async () => {
    directory = await mkdtemp(path.join(tmpdir(), 'flotilla-provisioning-'))
  })
  afterEach(async () => {
    server?.closeAllConnections()
    await new Promise((resolve) => (server ? server.close(resolve) : resolve(undefined)))
    server = undefined
    await rm(directory, {recursive: true, force: true})
  })

  it('makes uuids of 32 hex digits and keys of 32 alphanumerics', () => {
    assert.match(generateDeviceUuid(), /^[0-9a-f]{32}$/)
    assert.match(generateDeviceKey(), /^[A-Za-z0-9]{32}$/)
    assert.notEqual(generateDeviceKey(), generateDeviceKey())
  })

  it('registers with the provisioning key and stores the identity', async () => {
    const requests: Array<{authorization?: string; body: Record<string, unknown>}> = []
    ;({server} = await serve((request, body, response) => {
      assert.equal(request.url, '/device/register')
      requests.push({authorization: request.headers.authorization, body: JSON.parse(body) as Record<string, unknown>})
      response.writeHead(201, {'content-type': 'application/json'}).end(JSON.stringify({id: 12, uuid: JSON.parse(body).uuid, api_key: 'x'}))
    }))
    const file = path.join(directory, 'config.json')
    const config: ConfigJson = {apiEndpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, apiKey: 'prov', applicationId: 3, deviceType: 'generic-amd64', userId: 8}
    await saveConfig(file, config)
    const registered = await ensureRegistered(file, config, {supervisorVersion: '1.2.3', now: () => new Date(5000)})
    assert.equal(requests.length, 1)
    assert.equal(requests[0].authorization, 'Bearer prov')
    assert.deepEqual(requests[0].body, {application: 3, device_type: 'generic-amd64', uuid: registered.uuid, api_key: registered.deviceApiKey, user: 8, supervisor_version: '1.2.3'})
    const stored = JSON.parse(await readFile(file, 'utf8')) as ConfigJson
    assert.deepEqual(stored, {apiEndpoint: config.apiEndpoint, applicationId: 3, deviceType: 'generic-amd64', userId: 8, uuid: registered.uuid, deviceApiKey: registered.deviceApiKey, deviceId: 12, registered_at: 5})
    assert.equal(await ensureRegistered(file, stored), stored, 'a registered device does not register again')
  })

  it('after a crash between the answer and the save, finds its earlier registration', async () => {
    ;({server} = await serve((request, _body, response) => {
      if (request.url === '/device/register') return void response.writeHead(409, {'content-type': 'application/json'}).end(JSON.stringify('"uuid" must be unique.'))
      assert.equal(request.headers.authorization, 'Bearer savedkey')
      response.writeHead(200, {'content-type': 'application/json'}).end(JSON.stringify({id: 99, actorType: 'device', actorTypeId: 21, uuid: 'b'.repeat(32)}))
    }))
    const file = path.join(directory, 'config.json')
    const config: ConfigJson = {apiEndpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, apiKey: 'prov', applicationId: 3, deviceType: 'x', uuid: 'b'.repeat(32), deviceApiKey: 'savedkey'}
    const registered = await ensureRegistered(file, config)
    assert.equal(registered.deviceId, 21)
    assert.equal(registered.uuid, 'b'.repeat(32))
  })

  it('says so when the uuid belongs to another device', async () => {
    ;({server} = await serve((request, _body, response) => {
      if (request.url === '/device/register') return void response.writeHead(409, {'content-type': 'application/json'}).end(JSON.stringify('"uuid" must be unique.'))
      response.writeHead(401).end()
    }))
    const config: ConfigJson = {apiEndpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, apiKey: 'prov', applicationId: 3, deviceType: 'x', uuid: 'c'.repeat(32), deviceApiKey: 'k'}
    await assert.rejects(ensureRegistered(path.join(directory, 'config.json'), config), (error: unknown) => error instanceof ExpectedError && /already has a device with uuid c{32}/.test(error.message))
  })
})

describe('registerWithRetry', () => {
  const registered = {apiEndpoint: 'http://127.0.0.1:1', uuid: 'c'.repeat(32), deviceApiKey: 'k'} as never

  it('tries again after 1 s, 2 s, 4 s… (up to 5 min) until the server takes the device, saying each failure', async () => {
    const waits: number[] = []
    const logged: string[] = []
    let attempts = 0
    const result = await registerWithRetry(async () => {
      if (++attempts < 4) throw new Error(`refused ${attempts}`)
      return registered
    }, {wait: async (ms) => void waits.push(ms), stopped: () => false, log: (message) => logged.push(message)})
    assert.equal(result, registered)
    assert.deepEqual(waits, [1000, 2000, 4000])
    assert.deepEqual(logged, ['registration failed: refused 1', 'registration failed: refused 2', 'registration failed: refused 3'])
    assert.equal(registrationRetryDelayMs(20), 5 * 60_000)
  })

  it('gives up once the agent stops', async () => {
    let stopped = false
    const result = await registerWithRetry(async () => {
      throw new Error('server down')
    }, {wait: async () => {
      stopped = true
    }, stopped: () => stopped, log: () => {}})
    assert.equal(result, undefined)
  })
})
