import assert from 'node:assert/strict'

import {setConfigValue} from '../../../src/image/config-json-file.js'

describe('image/config-json-file setConfigValue', function () {
  const config = {appUpdatePollInterval: 900_000, developmentMode: false, hostname: 'a', os: {sshKeys: []}}

  it('keeps numbers and booleans as such, and sets strings and nested keys', function () {
    assert.deepEqual(setConfigValue(config, 'appUpdatePollInterval', '60000').appUpdatePollInterval, 60_000)
    assert.equal(setConfigValue(config, 'developmentMode', 'true').developmentMode, true)
    assert.equal(setConfigValue(config, 'hostname', 'kitchen').hostname, 'kitchen')
    assert.deepEqual(setConfigValue(config, 'os.network.hostname', 'pi').os, {sshKeys: [], network: {hostname: 'pi'}})
    assert.equal(config.hostname, 'a')
  })

  it('rejects values of the wrong type and keys that cannot be set', function () {
    assert.throws(() => setConfigValue(config, 'appUpdatePollInterval', 'often'), /is a number in config.json/)
    assert.throws(() => setConfigValue(config, 'developmentMode', 'yes'), /true or false/)
    assert.throws(() => setConfigValue(config, 'hostname.x', 'y'), /"hostname" in config.json is not an object/)
    assert.throws(() => setConfigValue(config, '__proto__.polluted', 'y'), /invalid key/)
  })
})
