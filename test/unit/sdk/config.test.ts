import assert from 'node:assert/strict'
import {createServer, type IncomingMessage, type Server} from 'node:http'
import type {AddressInfo} from 'node:net'

import {FleetClient} from '../../../src/sdk/client.js'
import {generateDeviceConfig} from '../../../src/sdk/config.js'

interface Recorded {
  method: string
  url: string
  body: unknown
}

const FLEET_ROW = {
  id: 42, app_name: 'sensors', slug: 'acme/sensors', uuid: 'f'.repeat(32), created_at: '2026-01-01T00:00:00.000Z', should_track_latest_release: true,
  is_of__class: 'fleet', should_be_running__release: null, is_for__device_type: [{slug: 'raspberrypi4-64'}], organization: [{handle: 'acme'}], owns__device: [],
}

const DEVICE_ROW = {
  id: 7, uuid: 'a'.repeat(32), device_name: 'kitchen', is_online: false, status: 'Idle', os_version: null, os_variant: null, supervisor_version: null, ip_address: null,
  last_connectivity_event: null, created_at: '2026-01-01T00:00:00.000Z', is_pinned_on__release: null, is_of__device_type: [{slug: 'raspberrypi4-64'}],
  belongs_to__application: [{id: 42, slug: 'acme/sensors', app_name: 'sensors'}], is_running__release: [], should_be_running__release: null,
}

async function body(request: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = []
  for await (const chunk of request) chunks.push(chunk as Buffer)
  const text = Buffer.concat(chunks).toString('utf8')
  return text ? JSON.parse(text) : undefined
}

describe('sdk/config generateDeviceConfig', function () {
  let server: Server
  let client: FleetClient
  const requests: Recorded[] = []

  before(async function () {
    server = createServer(async (request, response) => {
      requests.push({method: request.method!, url: request.url!, body: await body(request)})
      response.setHeader('content-type', 'application/json')
      if (request.url!.startsWith('/v7/application')) response.end(JSON.stringify({d: [FLEET_ROW]}))
      else if (request.url!.startsWith('/v7/device')) response.end(JSON.stringify({d: [DEVICE_ROW]}))
      else if (request.url === '/download-config') {
        response.end(JSON.stringify({applicationId: 42, deviceType: 'raspberrypi4-64', apiEndpoint: 'http://127.0.0.1', apiKey: 'provisioning', appUpdatePollInterval: 600_000, listenPort: 48484}))
      } else if (request.url === '/api-key/device/7/device-key') response.end(JSON.stringify('device-key-123'))
      else {
        response.statusCode = 404
        response.end('"not found"')
      }
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    client = new FleetClient({remote: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, token: 'user-token', retries: 0})
  })

  after(function () {
    server.close()
  })

  beforeEach(function () {
    requests.length = 0
  })

  it('asks /download-config for the fleet by id, and applies the local options', async function () {
    const config = await generateDeviceConfig(client, {fleet: 'acme/sensors', appUpdatePollIntervalMinutes: 5, developmentMode: true, network: 'wifi', wifiSsid: 'home', wifiKey: 'correct horse', initialDeviceName: 'kitchen'})
    const download = requests.find((request) => request.url === '/download-config')
    assert.deepEqual(download?.body, {appId: 42, version: 'v1.0.0', deviceType: 'raspberrypi4-64', network: 'wifi', wifiSsid: 'home', wifiKey: 'correct horse', appUpdatePollInterval: 5, developmentMode: true})
    assert.match(decodeURIComponent(requests[0].url), /slug eq 'acme\/sensors'/)
    assert.equal(config.apiKey, 'provisioning')
    assert.equal(config.appUpdatePollInterval, 300_000)
    assert.equal(config.initialDeviceName, 'kitchen')
    assert.equal(config.developmentMode, true)
    assert.equal(config.wifiSsid, 'home')
  })

  it('gives a pre-registered device its uuid and a new device key instead of the provisioning key', async function () {
    const config = await generateDeviceConfig(client, {fleet: 'acme/sensors', device: 'a'.repeat(32)})
    assert.equal(config.uuid, 'a'.repeat(32))
    assert.equal(config.deviceId, 7)
    assert.equal(config.deviceApiKey, 'device-key-123')
    assert.equal(config.apiKey, undefined)
    assert.equal(typeof config.registered_at, 'number')
  })
})
