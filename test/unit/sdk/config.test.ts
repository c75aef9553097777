import assert from 'node:assert/strict'
import {createServer, type IncomingMessage, type Server} from 'node:http'
import type {AddressInfo} from 'node:net'

import {UsageError} from '../../../src/errors.js'
import {isConfigurableOsVersion} from '../../../src/protocol/os-version.js'
import {FleetClient} from '../../../src/sdk/client.js'
import {CURRENT_OS_VERSION, generateDeviceConfig, type GenerateDeviceConfigOptions} from '../../../src/sdk/config.js'

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
  last_connectivity_event: null, created_at: '2026-01-01T00:00:00.000Z', is_pinned_on__release: [], is_of__device_type: [{slug: 'raspberrypi4-64'}],
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
  /** The OS versions the stand-in publishes for every device type (hostApp releases, as balena's API lists them). */
  let published: string[] = []

  before(async function () {
    server = createServer(async (request, response) => {
      requests.push({method: request.method!, url: request.url!, body: await body(request)})
      response.setHeader('content-type', 'application/json')
      if (request.url!.startsWith('/v7/application') && decodeURIComponent(request.url!).includes('is_host eq true')) {
        response.end(JSON.stringify({d: [{id: 1, owns__release: published.map((raw_version, id) => ({id, raw_version, variant: null, phase: null}))}]}))
      } else if (request.url!.startsWith('/v7/device_type')) response.end(JSON.stringify({d: [{id: 1}]}))
      else if (request.url!.startsWith('/v7/application')) response.end(JSON.stringify({d: [FLEET_ROW]}))
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
    published = ['5.1.20+rev1', '6.0.13', '6.1.0-beta1']
  })

  const downloadBody = () => requests.find((request) => request.url === '/download-config')?.body as Record<string, unknown> | undefined

  async function rejectsBeforeAsking(options: GenerateDeviceConfigOptions, message: RegExp): Promise<void> {
    await assert.rejects(generateDeviceConfig(client, options), (error: Error) => error instanceof UsageError && message.test(error.message))
    assert.deepEqual(requests, [], 'nothing is asked of the server')
  }

  it('asks /download-config for the fleet by id, and applies the local options', async function () {
    const config = await generateDeviceConfig(client, {fleet: 'acme/sensors', appUpdatePollIntervalMinutes: 5, developmentMode: true, network: 'wifi', wifiSsid: 'home', wifiKey: 'correct horse', initialDeviceName: 'kitchen'})
    const download = requests.find((request) => request.url === '/download-config')
    assert.deepEqual(download?.body, {appId: 42, version: '6.0.13', deviceType: 'raspberrypi4-64', network: 'wifi', wifiSsid: 'home', wifiKey: 'correct horse', appUpdatePollInterval: 5, developmentMode: true})
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

  it('names the newest OS version the server publishes for the device type, else a current one a balena API accepts', async function () {
    await generateDeviceConfig(client, {fleet: 'acme/sensors'})
    assert.equal(downloadBody()?.version, '6.0.13', 'the newest release, not the pre-release')
    published = []
    requests.length = 0
    await generateDeviceConfig(client, {fleet: 'acme/sensors'})
    assert.equal(downloadBody()?.version, CURRENT_OS_VERSION)
    assert.ok(isConfigurableOsVersion(CURRENT_OS_VERSION), `${CURRENT_OS_VERSION} is newer than 1.2.0`)
  })

  it('sends the version given, without a leading v, and refuses one a balena API refuses or --dev with a production image', async function () {
    await generateDeviceConfig(client, {fleet: 'acme/sensors', version: 'v2.12.7'})
    assert.equal(downloadBody()?.version, '2.12.7')
    requests.length = 0
    await rejectsBeforeAsking({fleet: 'acme/sensors', version: '1.0.0'}, /--version must be a balenaOS version newer than 1\.2\.0/)
    await rejectsBeforeAsking({fleet: 'acme/sensors', version: 'latest-ish'}, /--version must be/)
    await rejectsBeforeAsking({fleet: 'acme/sensors', version: '2.80.3+rev1.prod', developmentMode: true}, /--dev does not go with the production OS version/)
  })

  it('asks for the provisioning key by name and expiry date, and refuses them for a registered device or a bad date', async function () {
    await generateDeviceConfig(client, {fleet: 'acme/sensors', provisioningKeyName: 'line-3', provisioningKeyExpiryDate: '2030-12-31'})
    assert.equal(downloadBody()?.provisioningKeyName, 'line-3')
    assert.equal(downloadBody()?.provisioningKeyExpiryDate, '2030-12-31')
    requests.length = 0
    await rejectsBeforeAsking({fleet: 'acme/sensors', provisioningKeyExpiryDate: 'next year'}, /must be a date such as 2030-12-31/)
    await rejectsBeforeAsking({device: 'a'.repeat(32), provisioningKeyName: 'x'}, /are for new devices: leave out --device/)
    await rejectsBeforeAsking({fleet: 'acme/sensors', generateDeviceApiKey: true}, /--generate-device-api-key needs --device/)
    await rejectsBeforeAsking({}, /give --fleet .* or --device/)
  })

  it("makes a registered device's config from --device alone, in the device's fleet, with a new device key", async function () {
    const config = await generateDeviceConfig(client, {device: 'a'.repeat(32), generateDeviceApiKey: true})
    assert.equal(downloadBody()?.appId, 42)
    assert.equal(downloadBody()?.deviceType, 'raspberrypi4-64')
    assert.equal(config.deviceApiKey, 'device-key-123')
    assert.equal(config.apiKey, undefined)
  })

  it('writes each first-boot option into config.json: network, poll interval, mode and name', async function () {
    const ethernet = await generateDeviceConfig(client, {fleet: 'acme/sensors'})
    assert.equal(ethernet.wifiSsid, undefined)
    assert.equal(downloadBody()?.network, 'ethernet')
    const config = await generateDeviceConfig(client, {fleet: 'acme/sensors', network: 'wifi', wifiSsid: 'barn', wifiKey: 'hay-bales-42', appUpdatePollIntervalMinutes: 1, developmentMode: true, initialDeviceName: 'press-1'})
    assert.deepEqual(
      {wifiSsid: config.wifiSsid, wifiKey: config.wifiKey, appUpdatePollInterval: config.appUpdatePollInterval, developmentMode: config.developmentMode, initialDeviceName: config.initialDeviceName},
      {wifiSsid: 'barn', wifiKey: 'hay-bales-42', appUpdatePollInterval: 60_000, developmentMode: true, initialDeviceName: 'press-1'},
    )
  })
})
