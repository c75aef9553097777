import {strict as assert} from 'node:assert'
import {mkdirSync, mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'

import Database from 'libsql'

import {makeCliHome, runCli} from '../helpers/cli.js'
import {FleetApi} from '../helpers/fleet-api.js'
import {startServer, type TestServer} from '../helpers/server.js'

const TYPE = 'raspberrypi4-64'

describe('config generate against the real server', function () {
  this.timeout(60_000)
  let server: TestServer
  let api: FleetApi
  let token: string
  let imagesDir: string
  let env: NodeJS.ProcessEnv
  let fleetId: number

  before(async () => {
    imagesDir = mkdtempSync(path.join(tmpdir(), 'flotilla-images-'))
    mkdirSync(path.join(imagesDir, TYPE, '6.0.13'), {recursive: true})
    writeFileSync(path.join(imagesDir, TYPE, '6.0.13', 'balena.img'), 'image\n')
    server = await startServer({args: ['--images-dir', imagesDir]})
    api = new FleetApi(server.url)
    token = await api.login(server.admin.email, server.admin.password)
    fleetId = (await api.createFleet(token, 'field')).id
    env = {HOME: makeCliHome(), FLOTILLA_URL: server.url, FLOTILLA_TOKEN: token}
  })

  after(async () => {
    await server?.stop()
    if (imagesDir) rmSync(imagesDir, {recursive: true, force: true})
  })

  it("writes balena-cli's first-boot flags into config.json, and names and dates the provisioning key", async () => {
    const result = await runCli(
      [
        'config', 'generate', '--fleet', 'field', '--network', 'wifi', '--wifiSsid', 'barn', '--wifiKey', 'hay-bales-42', '--appUpdatePollInterval', '2', '--dev',
        '--initial-device-name', 'press-1', '--provisioning-key-name', 'line-3', '--provisioning-key-expiry-date', '2030-12-31',
      ],
      {env},
    )
    assert.equal(result.exitCode, 0, result.stderr)
    const config = JSON.parse(result.stdout)
    assert.deepEqual(
      [config.wifiSsid, config.wifiKey, config.appUpdatePollInterval, config.developmentMode, config.initialDeviceName, config.deviceType],
      ['barn', 'hay-bales-42', 120_000, true, 'press-1', TYPE],
    )
    // A user reads only the keys of their own actor, not the fleet's: ask the server's database what it stored.
    const db = new Database(path.join(server.dataDir, 'flotilla.db'))
    const keys = db.prepare("select kind, expiry_date from api_key where name = 'line-3'").all() as Array<{kind: string; expiry_date: string}>
    db.close()
    assert.deepEqual(keys.map((key) => key.kind), ['provisioning-api-key'])
    assert.equal(keys[0].expiry_date.slice(0, 10), '2030-12-31')
    assert.equal(config.applicationId, fleetId)
    assert.match(config.apiKey, /^\w{32}$/)
  })

  it('refuses, in one line, an OS version a balena API refuses, as the server does', async () => {
    const result = await runCli(['config', 'generate', '--fleet', 'field', '--version', '1.0.0'], {env})
    assert.equal(result.exitCode, 2)
    assert.match(result.stderr, /^error: --version must be a balenaOS version newer than 1\.2\.0/)
    const refused = await api.call('POST', '/download-config', {token, json: {appId: fleetId, version: 'v1.0.0'}})
    assert.equal(refused.status, 400)
    assert.match(refused.body, /balenaOS versions <= 1\.2\.0 are no longer supported/)
    const accepted = await api.call('POST', '/download-config', {token, json: {appId: fleetId, version: '6.0.13'}})
    assert.equal(accepted.status, 200, accepted.body)
  })

  it("makes a registered device's config from --device alone, with a new device key", async () => {
    await api.registerDevice(token, fleetId, 'fade'.repeat(8))
    const result = await runCli(['config', 'generate', '--device', 'fade'.repeat(8), '--generate-device-api-key'], {env})
    assert.equal(result.exitCode, 0, result.stderr)
    const config = JSON.parse(result.stdout)
    assert.equal(config.uuid, 'fade'.repeat(8))
    assert.match(config.deviceApiKey, /^\w{32}$/)
    assert.equal(config.apiKey, undefined)
  })
})
