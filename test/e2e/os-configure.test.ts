import assert from 'node:assert/strict'
import {execFileSync} from 'node:child_process'
import {copyFileSync, mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'

import {makeCliHome, runCli} from '../helpers/cli.js'
import {startServer} from '../helpers/server.js'
import {makeDiskFixture, sha256Of, type DiskFixture} from './os-fixtures.js'

/** mtools addresses the boot partition of an image by its byte offset: the fixture's starts at sector 8192. */
const BOOT_OFFSET = 8192 * 512

function mtype(image: string, file: string): string {
  return execFileSync('mtype', ['-i', `${image}@@${BOOT_OFFSET}`, `::${file}`], {encoding: 'utf8'})
}

function fsckBootPartition(image: string, scratch: string): void {
  const partition = path.join(scratch, 'boot.part')
  execFileSync('dd', [`if=${image}`, `of=${partition}`, 'bs=512', 'skip=8192', 'count=81920', 'status=none'])
  execFileSync('fsck.vfat', ['-n', partition], {stdio: 'pipe'})
}

const CONFIG = {
  applicationId: 12,
  deviceType: 'raspberrypi4-64',
  userId: 3,
  apiEndpoint: 'http://127.0.0.1:7171',
  apiKey: 'provisioning-key-0123456789',
  appUpdatePollInterval: 900_000,
  listenPort: 48484,
}

describe('os configure and config read|write|inject (image files)', function () {
  this.timeout(60_000)
  let fixture: DiskFixture
  let scratch: string
  let image: string
  let configFile: string

  before(function () {
    fixture = makeDiskFixture(128, '')
    scratch = mkdtempSync(path.join(tmpdir(), 'flotilla-configure-'))
    configFile = path.join(scratch, 'config.json')
    writeFileSync(configFile, JSON.stringify(CONFIG))
  })

  beforeEach(function () {
    image = path.join(scratch, 'os.img')
    copyFileSync(fixture.image, image)
  })

  after(function () {
    fixture?.cleanup()
    if (scratch) rmSync(scratch, {recursive: true, force: true})
  })

  it('writes config.json and the WiFi connection into the resin-boot partition, readable by mtools and fsck.vfat', async function () {
    const connection = path.join(scratch, 'office-ethernet')
    writeFileSync(connection, '[connection]\nid=office-ethernet\ntype=ethernet\n')
    const result = await runCli([
      'os', 'configure', image, '--config', configFile,
      '--config-network', 'wifi', '--config-wifi-ssid', 'home net', '--config-wifi-key', 'correct horse',
      '--initial-device-name', 'kitchen', '--config-app-update-poll-interval', '5', '--dev',
      '--system-connection', connection,
    ])
    assert.equal(result.exitCode, 0, result.stderr)
    assert.match(result.stderr, /partition 1 \(resin-boot\)/)
    const config = JSON.parse(mtype(image, 'config.json')) as Record<string, unknown>
    assert.deepEqual(config, {...CONFIG, wifiSsid: 'home net', wifiKey: 'correct horse', initialDeviceName: 'kitchen', appUpdatePollInterval: 300_000, developmentMode: true})
    const wifi = mtype(image, 'system-connections/resin-wifi')
    assert.match(wifi, /^\[connection\]\nid=resin-wifi\ntype=wifi\n/)
    assert.match(wifi, /\nssid=home net\n/)
    assert.match(wifi, /\npsk=correct horse\n/)
    assert.equal(mtype(image, 'system-connections/office-ethernet'), '[connection]\nid=office-ethernet\ntype=ethernet\n')
    assert.equal(JSON.parse(mtype(image, 'device-type.json')).slug, 'raspberrypi4-64')
    fsckBootPartition(image, scratch)
  })

  it('reads, writes one key of, and replaces config.json with config read|write|inject', async function () {
    assert.equal((await runCli(['config', 'inject', configFile, '--drive', image])).exitCode, 0)
    const read = await runCli(['config', 'read', '--drive', image])
    assert.equal(read.exitCode, 0, read.stderr)
    assert.deepEqual(JSON.parse(read.stdout), CONFIG)

    const write = await runCli(['config', 'write', '--drive', image, 'appUpdatePollInterval', '60000'])
    assert.equal(write.exitCode, 0, write.stderr)
    const nested = await runCli(['config', 'write', '--drive', image, 'os.network.hostname', 'kitchen-pi'])
    assert.equal(nested.exitCode, 0, nested.stderr)
    const config = JSON.parse(mtype(image, 'config.json')) as Record<string, unknown>
    assert.deepEqual(config, {...CONFIG, appUpdatePollInterval: 60_000, os: {network: {hostname: 'kitchen-pi'}}})
    fsckBootPartition(image, scratch)
  })

  it('changes nothing when the input is bad', async function () {
    const before = sha256Of(image)
    const broken = path.join(scratch, 'broken.json')
    writeFileSync(broken, '{"apiEndpoint": ')
    const badJson = await runCli(['os', 'configure', image, '--config', broken])
    assert.equal(badJson.exitCode, 1)
    assert.match(badJson.stderr, /broken\.json is not valid JSON/)
    const badWifi = await runCli(['os', 'configure', image, '--config', configFile, '--config-network', 'wifi'])
    assert.equal(badWifi.exitCode, 2)
    assert.match(badWifi.stderr, /needs --wifiSsid/)
    const noSource = await runCli(['os', 'configure', image])
    assert.equal(noSource.exitCode, 2)
    const generationFlag = await runCli(['os', 'configure', image, '--config', configFile, '--provisioning-key-name', 'x'])
    assert.equal(generationFlag.exitCode, 2)
    assert.match(generationFlag.stderr, /--config takes a finished config\.json: leave out --provisioning-key-name/)
    const badType = await runCli(['config', 'write', '--drive', image, 'appUpdatePollInterval', 'often'])
    assert.equal(badType.exitCode, 1, badType.stderr)
    assert.equal(sha256Of(image), before)
  })

  it('says so when the image has no config.json or is no disk image', async function () {
    const missing = await runCli(['config', 'read', '--drive', image])
    assert.equal(missing.exitCode, 1)
    assert.match(missing.stderr, /file "config.json" not found/)
    const notAnImage = path.join(scratch, 'not-an-image')
    writeFileSync(notAnImage, Buffer.alloc(4096))
    const result = await runCli(['config', 'read', '--drive', notAnImage])
    assert.equal(result.exitCode, 1)
    assert.match(result.stderr, /error: /)
  })

  it('generates config.json through the fleet server with --fleet: a provisioning key for that fleet, the options applied', async function () {
    const server = await startServer()
    try {
      const env = {HOME: makeCliHome(), FLOTILLA_URL: server.url}
      await runCli(['login', '--credentials', '--email', server.admin.email, '--password', '-'], {env, input: server.admin.password})
      assert.equal((await runCli(['fleet', 'create', 'field', '--type', 'raspberrypi4-64'], {env})).exitCode, 0)
      const result = await runCli(['os', 'configure', image, '--fleet', 'field', '--config-network', 'wifi', '--config-wifi-ssid', 'barn', '--config-wifi-key', 'hay-bales-42', '--config-app-update-poll-interval', '5'], {env})
      assert.equal(result.exitCode, 0, result.stderr)
      const config = JSON.parse(mtype(image, 'config.json'))
      assert.equal(config.apiEndpoint, server.url)
      assert.equal(config.deviceType, 'raspberrypi4-64')
      assert.equal(config.appUpdatePollInterval, 300_000)
      assert.equal(config.wifiSsid, 'barn')
      assert.match(config.apiKey, /^\w{32}$/)
      assert.match(mtype(image, 'system-connections/resin-wifi'), /ssid=barn[\s\S]*psk=hay-bales-42/)
      fsckBootPartition(image, scratch)
    } finally {
      await server.stop()
    }
  })

  it("takes config generate's flags too: --device alone, --network/--wifiSsid/--wifiKey, --appUpdatePollInterval, --initial-device-name", async function () {
    const server = await startServer()
    try {
      const env = {HOME: makeCliHome(), FLOTILLA_URL: server.url}
      await runCli(['login', '--credentials', '--email', server.admin.email, '--password', '-'], {env, input: server.admin.password})
      assert.equal((await runCli(['fleet', 'create', 'field', '--type', 'raspberrypi4-64'], {env})).exitCode, 0)
      const device = JSON.parse((await runCli(['device', 'register', 'field', '--json'], {env})).stdout) as {uuid: string}
      const args = ['os', 'configure', image, '--device', device.uuid, '--network', 'wifi', '--wifiSsid', 'silo', '--wifiKey', 'grain-bins-7', '--appUpdatePollInterval', '3', '--initial-device-name', 'silo-1']
      const result = await runCli(args, {env})
      assert.equal(result.exitCode, 0, result.stderr)
      const config = JSON.parse(mtype(image, 'config.json'))
      assert.deepEqual([config.uuid, config.appUpdatePollInterval, config.initialDeviceName, config.apiKey], [device.uuid, 180_000, 'silo-1', undefined])
      assert.match(config.deviceApiKey, /^\w{32}$/)
      assert.match(mtype(image, 'system-connections/resin-wifi'), /ssid=silo[\s\S]*psk=grain-bins-7/)
    } finally {
      await server.stop()
    }
  })
})
