import assert from 'node:assert/strict'

import {ExpectedError} from '../../../src/errors.js'
import {isRegistered, parseConfigJson} from '../../../src/protocol/config-json.js'

describe('parseConfigJson', () => {
  const provisioning = {apiEndpoint: 'http://127.0.0.1:7171', apiKey: 'key', applicationId: 3, deviceType: 'generic-amd64'}
  const registered = {apiEndpoint: 'https://api.balena-cloud.com', uuid: 'a'.repeat(32), deviceId: 4, deviceApiKey: 'devkey', registered_at: 1}

  it('accepts a config with a provisioning key and one of a registered device', () => {
    assert.deepEqual(parseConfigJson(JSON.stringify(provisioning)), provisioning)
    assert.equal(isRegistered(parseConfigJson(JSON.stringify(provisioning))), false)
    assert.equal(isRegistered(parseConfigJson(JSON.stringify(registered))), true)
  })

  const rejects = (text: string, message: RegExp) => assert.throws(() => parseConfigJson(text, '/boot/config.json'), (error: unknown) => error instanceof ExpectedError && message.test(error.message) && !error.message.includes('\n'))

  it('says when the file is not JSON', () => rejects('{"apiEndpoint": ', /^\/boot\/config.json is not valid JSON/))
  it('says when the file is not an object', () => rejects('[1]', /is not a JSON object$/))
  it('says when apiEndpoint is missing', () => rejects(JSON.stringify({apiKey: 'k'}), /lacks "apiEndpoint"$/))
  it('says when there are no credentials', () => rejects(JSON.stringify({apiEndpoint: 'http://x', uuid: 'a'.repeat(32)}), /lacks credentials: it needs "apiKey" \(a provisioning key\) or "uuid" and "deviceApiKey"$/))
  it('says when a provisioning config cannot say where to register', () => rejects(JSON.stringify({apiEndpoint: 'http://x', apiKey: 'k'}), /lacks "applicationId" or "deviceType"/))
})
