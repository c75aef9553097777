import assert from 'node:assert/strict'

import {applyDeviceConfigOptions, bootFilesFor, wifiConnectionFile} from '../../../src/image/device-config.js'
import type {ConfigJson} from '../../../src/protocol/config-json.js'

const BASE: ConfigJson = {apiEndpoint: 'http://127.0.0.1:7171', apiKey: 'key', applicationId: 1, deviceType: 'raspberrypi4-64', appUpdatePollInterval: 900_000}

describe('image/device-config', function () {
  it('writes the WiFi keyfile balenaOS reads, with and without a passphrase', function () {
    assert.equal(
      wifiConnectionFile('home', 'correct horse'),
      '[connection]\nid=resin-wifi\ntype=wifi\n\n[wifi]\nhidden=true\nmode=infrastructure\nssid=home\n\n' +
        '[wifi-security]\nauth-alg=open\nkey-mgmt=wpa-psk\npsk=correct horse\n\n[ipv4]\nmethod=auto\n\n[ipv6]\naddr-gen-mode=stable-privacy\nmethod=auto\n',
    )
    assert.doesNotMatch(wifiConnectionFile('open-cafe'), /wifi-security|psk/)
  })

  it('applies minutes as milliseconds, the device name, development mode and WiFi, leaving the input alone', function () {
    const config = applyDeviceConfigOptions(BASE, {appUpdatePollIntervalMinutes: 10, initialDeviceName: 'kitchen', developmentMode: true, network: 'wifi', wifiSsid: 'home', wifiKey: 'correct horse'})
    assert.deepEqual(config, {...BASE, appUpdatePollInterval: 600_000, initialDeviceName: 'kitchen', developmentMode: true, wifiSsid: 'home', wifiKey: 'correct horse'})
    assert.equal(BASE.appUpdatePollInterval, 900_000)
    assert.deepEqual(applyDeviceConfigOptions(BASE, {}), BASE)
  })

  it('rejects inconsistent network options and intervals', function () {
    assert.throws(() => applyDeviceConfigOptions(BASE, {network: 'wifi'}), /needs --wifiSsid/)
    assert.throws(() => applyDeviceConfigOptions(BASE, {wifiSsid: 'x'}), /need --network wifi/)
    assert.throws(() => applyDeviceConfigOptions(BASE, {network: 'wifi', wifiSsid: 'x', wifiKey: 'short'}), /8 to 63 characters/)
    assert.throws(() => applyDeviceConfigOptions(BASE, {appUpdatePollIntervalMinutes: 0}), /at least 1/)
  })

  it('lists config.json, the WiFi connection and extra connection files for the boot partition', function () {
    const files = bootFilesFor({...BASE, wifiSsid: 'home', wifiKey: 'correct horse'}, [{name: 'office', content: Buffer.from('[connection]\n')}])
    assert.deepEqual(files.map((file) => file.path), ['config.json', 'system-connections/resin-wifi', 'system-connections/office'])
    assert.equal(JSON.parse(String(files[0].content)).wifiSsid, 'home')
    assert.throws(() => bootFilesFor(BASE, [{name: 'my office:1', content: Buffer.alloc(0)}]), /FAT file name/)
  })
})
