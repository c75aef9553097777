import {strict as assert} from 'node:assert'
import {mkdtempSync, readdirSync, readFileSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'

import odataParser from '@balena/odata-parser'
import ssh2 from 'ssh2'

import {NotFoundError} from '../../../src/errors.js'
import {createServer, type FlotillaServer} from '../../../src/server/app.js'
import * as apiKeys from '../../../src/sdk/api-keys.js'
import {loginWithCredentials} from '../../../src/sdk/auth.js'
import {FleetClient} from '../../../src/sdk/client.js'
import * as config from '../../../src/sdk/config.js'
import * as deviceTypes from '../../../src/sdk/device-types.js'
import * as devices from '../../../src/sdk/devices.js'
import * as fleets from '../../../src/sdk/fleets.js'
import * as logs from '../../../src/sdk/logs.js'
import * as organizations from '../../../src/sdk/organizations.js'
import * as osImages from '../../../src/sdk/os-images.js'
import * as releases from '../../../src/sdk/releases.js'
import * as sshKeys from '../../../src/sdk/ssh-keys.js'
import * as tags from '../../../src/sdk/tags.js'
import * as variables from '../../../src/sdk/variables.js'
import {PROJECT_ROOT} from '../../helpers/cli.js'

/** The modules that build pine requests, and config, which reads fleets and devices through them. */
const SDK_MODULES: Record<string, Record<string, unknown>> = {
  'api-keys': apiKeys, config, 'device-types': deviceTypes, devices, fleets, logs, organizations, 'os-images': osImages, releases, 'ssh-keys': sshKeys, tags, variables,
}
/** Exported functions of those modules that send no request at all. */
const OFFLINE = new Set([
  'devices.generateDeviceUuid', 'os-images.selectOsVersion', 'os-images.sha256FromHeaders', 'os-images.totalFromContentRange', 'os-images.fileTypeFor',
  'os-images.blockMapPathFor', 'config.normalizeOsVersion', 'config.validateGenerateOptions', 'ssh-keys.parsePublicKey', 'variables.isConfigVariableName', 'variables.variableResource', 'variables.validateVariableName',
])
/** Text users type that ends up inside OData literals: every character a URL treats specially, quotes, non-Latin letters. */
const AWKWARD = `o'brien's&co#1+2%20=;:,$/?(x) é中😀`
const CLIENT_NAME = 'pine-conformance'
const TYPE = 'raspberrypi4-64'

/**
 * What pinejs does with a request's URL (sbvr-api/uri-parser.ts, parseOData): the API root split off and the rest,
 * raw as it arrived and not decoded, handed to @balena/odata-parser; a syntax error there is pinejs's
 * `400 Malformed url`. Pinejs reads URLs with parameter aliases (`@name=`) through another path; the SDK sends none.
 */
function pinejsRefusal(rawUrl: string): string | undefined {
  const [, , ...rest] = rawUrl.split('/')
  const url = `/${rest.join('/')}`
  if (/[?&(]@/.test(url)) return `parameter aliases, which this test does not read as pinejs does: ${rawUrl}`
  try {
    odataParser.parse(url)
  } catch (error) {
    return `400 Malformed url: '${rawUrl}' (${(error as Error).message})`
  }

  return undefined
}

/** The SDK modules that build pine requests, found in their source rather than listed by hand. */
function modulesTalkingPine(): string[] {
  const sdk = path.join(PROJECT_ROOT, 'src/sdk')
  return readdirSync(sdk)
    .filter((file) => file.endsWith('.ts') && file !== 'client.ts' && file !== 'pine.ts')
    .filter((file) => /\.pine\.|pineUrl|\/v7\//.test(readFileSync(path.join(sdk, file), 'utf8')))
    .map((file) => file.replace(/\.ts$/, ''))
}

/**
 * Every SDK function that issues a pine request, run against a real flotilla server (in this process, on a loopback
 * port) that records each request's raw URL; then each URL is read as pinejs reads it.
 */
describe('pine conformance: the URLs the SDK sends, read by pinejs’s own parser', function () {
  this.timeout(60_000)
  const pineUrls: Array<{method: string; url: string; step: string}> = []
  const called = new Set<string>()
  let server: FlotillaServer
  let step = 'setup'

  async function run<T>(name: string, call: () => Promise<T>): Promise<T> {
    called.add(name)
    step = name
    return call()
  }

  async function scenario(client: FleetClient, anonymous: FleetClient, remote: string): Promise<void> {
    const {handle} = (await run('organizations.myOrganizations', () => organizations.myOrganizations(client)))[0]
    await run('device-types.listDeviceTypes', () => deviceTypes.listDeviceTypes(client))
    await assert.rejects(run('device-types.resolveDeviceType', () => deviceTypes.resolveDeviceType(client, AWKWARD)))
    let fleet = await run('fleets.createFleet', () => fleets.createFleet(client, {name: 'conformance', deviceType: TYPE}))
    await run('fleets.listFleets', () => fleets.listFleets(client, {organization: handle}))
    await assert.rejects(run('fleets.getFleet', () => fleets.getFleet(client, `${handle}/${AWKWARD}`)), NotFoundError)
    fleet = await run('fleets.renameFleet', () => fleets.renameFleet(client, fleet.slug, 'conformance2'))
    await assert.rejects(run('fleets.restartFleet', () => fleets.restartFleet(client, fleet)), /no online device/)

    let device = await run('devices.registerDevice', () => devices.registerDevice(client, {fleet: fleet.slug, deviceType: TYPE, name: AWKWARD}))
    await run('devices.listDevices', () => devices.listDevices(client, {fleet: fleet.slug}))
    device = await run('devices.getDevice', () => devices.getDevice(client, device.uuid.slice(0, 7)))
    device = await run('devices.renameDevice', () => devices.renameDevice(client, device, `${AWKWARD} 2`))
    device = await run('devices.moveDevice', () => devices.moveDevice(client, device, fleet.slug))
    await assert.rejects(run('devices.sendDeviceAction', () => devices.sendDeviceAction(client, device, 'restart')), /not online/)

    const service = await client.pine.post<{id: number}>('service', {application: fleet.id, service_name: 'main'})
    const commit = 'c0ffee'.padEnd(32, '0')
    const created = await client.pine.post<{id: number}>('release', {belongs_to__application: fleet.id, commit, status: 'running', composition: {services: {main: {}}}})
    const image = await client.pine.post<{id: number}>('image', {is_a_build_of__service: service.id})
    await client.pine.post('image__is_part_of__release', {image: image.id, is_part_of__release: created.id})
    // An ended release stays as it ended: the one cancelled is another.
    const cancelled = await client.pine.post<{id: number}>('release', {belongs_to__application: fleet.id, status: 'running'})
    await run('releases.cancelRelease', () => releases.cancelRelease(client, cancelled.id))
    await client.pine.patch('release', created.id, {status: 'success', end_timestamp: new Date().toISOString()})
    await run('releases.listReleases', () => releases.listReleases(client, fleet.slug))
    let release = await run('releases.getRelease', () => releases.getRelease(client, commit.slice(0, 7), {composition: true}))
    await run('releases.tagRelease', () => releases.tagRelease(client, release.id, [[AWKWARD.replaceAll(' ', '_'), AWKWARD]]))
    await run('releases.setReleaseNote', () => releases.setReleaseNote(client, release.id, AWKWARD))
    await run('releases.finalizeRelease', () => releases.finalizeRelease(client, release))
    await run('releases.setReleaseInvalidated', () => releases.setReleaseInvalidated(client, release, false))
    await run('releases.getReleaseImages', () => releases.getReleaseImages(client, release.id))
    release = await releases.getRelease(client, String(release.id))
    await run('fleets.pinFleet', () => fleets.pinFleet(client, fleet, {id: release.id, fleet: release.fleet, commit: release.commit}))
    fleet = await run('fleets.trackLatestRelease', () => fleets.trackLatestRelease(client, fleet))
    device = await run('devices.pinDevice', () => devices.pinDevice(client, device, {id: release.id, fleet: release.fleet, commit: release.commit}))

    const tagKey = AWKWARD.replaceAll(' ', '_')
    for (const owner of [{fleet}, {device}]) {
      await run('tags.setTag', () => tags.setTag(client, owner, tagKey, AWKWARD))
      await run('tags.setTag', () => tags.setTag(client, owner, tagKey, 'again'))
      await run('tags.listTags', () => tags.listTags(client, owner))
      assert.equal(await run('tags.removeTag', () => tags.removeTag(client, owner, tagKey)), true)
    }

    await assert.rejects(run('variables.getFleetService', () => variables.getFleetService(client, fleet, AWKWARD)))
    await run('variables.getFleetService', () => variables.getFleetService(client, fleet, 'main'))
    for (const owner of [{fleet}, {device}]) {
      for (const service of [undefined, 'main']) {
        await run('variables.setVariable', () => variables.setVariable(client, owner, 'GREETING', AWKWARD, {service}))
        await run('variables.listVariables', () => variables.listVariables(client, owner, {config: false, service}))
        assert.equal(await run('variables.removeVariable', () => variables.removeVariable(client, owner, 'GREETING', {service})), true)
      }

      await run('variables.setVariable', () => variables.setVariable(client, owner, 'BALENA_SUPERVISOR_POLL_INTERVAL', '900000'))
      const [variable] = await variables.listVariables(client, owner, {config: true})
      await run('variables.removeVariableById', () => variables.removeVariableById(client, variable.id, {owner, config: true}))
      await assert.rejects(variables.listVariables(client, owner, {config: false, service: AWKWARD}))
    }

    const deviceKey = await client.request<string>('POST', `/api-key/device/${device.id}/device-key`, {json: {name: 'logs'}})
    await new FleetClient({remote, token: deviceKey, clientName: 'device'}).request('POST', `/device/v2/${device.uuid}/logs`, {
      json: [{message: 'hello', timestamp: Date.now(), isSystem: false, isStdErr: false, serviceId: service.id}],
    })
    const lines = []
    for await (const line of await run('logs.streamLogs', async () => logs.streamLogs(client, device.uuid, {count: 'all'}))) lines.push(line)
    assert.deepEqual(lines.map((line) => line.serviceName), ['main'])
    await run('config.generateDeviceConfig', () => config.generateDeviceConfig(client, {fleet: fleet.slug, device: device.uuid}))
    await run('config.defaultOsVersion', () => config.defaultOsVersion(client, TYPE))

    const sshKey = await run('ssh-keys.addSshKey', () => sshKeys.addSshKey(client, AWKWARD, ssh2.utils.generateKeyPairSync('ed25519').public))
    await run('ssh-keys.listSshKeys', () => sshKeys.listSshKeys(client))
    assert.equal(await run('ssh-keys.removeSshKey', () => sshKeys.removeSshKey(client, sshKey.id)), true)
    await run('api-keys.generateApiKey', () => apiKeys.generateApiKey(client, {name: AWKWARD}))
    const keys = await run('api-keys.listApiKeys', () => apiKeys.listApiKeys(client))
    await run('api-keys.revokeApiKeys', () => apiKeys.revokeApiKeys(client, keys.map((key) => key.id)))

    for (const asker of [client, anonymous]) {
      await assert.rejects(run('os-images.listOsVersions', () => osImages.listOsVersions(asker, TYPE)), /no OS versions/)
      await assert.rejects(osImages.listOsVersions(asker, AWKWARD), /invalid device type/)
    }

    const output = path.join(mkdtempSync(path.join(tmpdir(), 'flotilla-conformance-')), 'os.img')
    try {
      await assert.rejects(run('os-images.downloadOsImage', () => osImages.downloadOsImage(client, {deviceType: TYPE, output})), /no OS versions/)
      assert.equal(await run('os-images.fetchBlockMap', () => osImages.fetchBlockMap(client, {deviceType: TYPE, version: '6.0.13'})), undefined)
    } finally {
      rmSync(path.dirname(output), {recursive: true, force: true})
    }

    await run('devices.removeDevice', () => devices.removeDevice(client, device))
    await run('fleets.removeFleet', () => fleets.removeFleet(client, fleet))
  }

  before(async () => {
    const admin = {email: 'admin@flotilla.test', username: 'admin', password: 'conformance-password'}
    server = await createServer({sshPort: 0, port: 0, logger: {level: 'silent'}, admin})
    server.app.addHook('onRequest', async (request) => {
      const url = request.raw.url ?? ''
      if (request.headers['x-balena-client'] === CLIENT_NAME && url.startsWith('/v7/')) pineUrls.push({method: request.method, url, step})
    })
    const remote = await server.listen()
    const client = new FleetClient({remote, clientName: CLIENT_NAME, retries: 0})
    client.setToken(await loginWithCredentials(client, admin.email, admin.password))
    await scenario(client, new FleetClient({remote, clientName: CLIENT_NAME, retries: 0}), remote)
  })

  after(async () => {
    await server?.close()
  })

  it('sends only URLs that pinejs parses, for every method', () => {
    const refused = pineUrls.map(({method, url, step}) => [`${step}: ${method}`, pinejsRefusal(url)]).filter(([, refusal]) => refusal)
    assert.deepEqual(refused, [])
    assert.deepEqual(new Set(pineUrls.map(({method}) => method)), new Set(['GET', 'POST', 'PATCH', 'DELETE']))
    assert.ok(pineUrls.some(({url}) => url.includes(encodeURIComponent('é中😀'))), 'the awkward text reached a literal')
  })

  it('runs every exported function of the SDK modules that talk pine', () => {
    assert.deepEqual(modulesTalkingPine().filter((name) => !(name in SDK_MODULES)), [], 'a module talking pine is missing from this test')
    const exported = Object.entries(SDK_MODULES).flatMap(([name, module]) =>
      Object.entries(module)
        .filter(([, value]) => typeof value === 'function')
        .map(([fn]) => `${name}.${fn}`),
    )
    assert.deepEqual(exported.filter((name) => !called.has(name) && !OFFLINE.has(name)), [])
  })
})
