import assert from 'node:assert/strict'

import type {ProjectFiles} from '../../../../src/project/files.js'
import {buildRegistryConfig, mirroredReference, pullCredentials, readRegistrySecrets, registryOf} from '../../../../src/server/builder/image-sources.js'

function uploadWith(secrets: string | undefined): ProjectFiles {
  return {label: 'the upload', kind: async () => undefined, readText: async (relativePath) => (relativePath === '.balena/registry-secrets.json' ? secrets : undefined), describe: (relativePath) => relativePath}
}

describe('where image-only services are pulled from', () => {
  it('reads the registry of a reference as Docker does', () => {
    assert.equal(registryOf('redis:7'), 'docker.io')
    assert.equal(registryOf('eclipse-mosquitto/mosquitto:2'), 'docker.io')
    assert.equal(registryOf('ghcr.io/acme/app:1'), 'ghcr.io')
    assert.equal(registryOf('127.0.0.1:5000/app'), '127.0.0.1:5000')
    assert.equal(registryOf('localhost/app'), 'localhost')
  })

  it('takes credentials from .balena/registry-secrets.json, the empty name standing for Docker Hub', async () => {
    const secrets = await readRegistrySecrets(uploadWith('{"": {"username": "hub", "password": "h"}, "ghcr.io": {"username": "gh", "password": "g"}}'))
    assert.deepEqual(pullCredentials(secrets, 'redis:7'), {username: 'hub', password: 'h', serveraddress: 'docker.io'})
    assert.deepEqual(pullCredentials(secrets, 'ghcr.io/acme/app:1'), {username: 'gh', password: 'g', serveraddress: 'ghcr.io'})
    assert.equal(pullCredentials(secrets, 'quay.io/x/y'), undefined)
    assert.deepEqual(await readRegistrySecrets(uploadWith(undefined)), {})
  })

  it("gives a build the same credentials for its FROM pulls, Docker Hub's under the name the engine looks it up by", async () => {
    const secrets = await readRegistrySecrets(uploadWith('{"": {"username": "hub", "password": "h"}, "ghcr.io": {"username": "gh", "password": "g"}}'))
    assert.deepEqual(buildRegistryConfig(secrets), {
      'https://index.docker.io/v1/': {username: 'hub', password: 'h', serveraddress: 'https://index.docker.io/v1/'},
      'ghcr.io': {username: 'gh', password: 'g', serveraddress: 'ghcr.io'},
    })
    assert.deepEqual(buildRegistryConfig({}), {})
  })

  it('refuses a malformed secrets file in one line naming it', async () => {
    await assert.rejects(readRegistrySecrets(uploadWith('{oops')), /\.balena\/registry-secrets\.json is not valid JSON/)
    await assert.rejects(readRegistrySecrets(uploadWith('{"ghcr.io": {"username": 1}}')), /the entry of "ghcr.io" needs a string "username" and "password"/)
  })

  it('names Docker Hub images on a mirror as the registry stores them, and leaves other registries\' alone', () => {
    assert.equal(mirroredReference('redis:7', 'mirror:5000'), 'mirror:5000/library/redis:7')
    assert.equal(mirroredReference('docker.io/acme/app@sha256:abc', 'mirror:5000'), 'mirror:5000/acme/app@sha256:abc')
    assert.equal(mirroredReference('ghcr.io/acme/app:1', 'mirror:5000'), undefined)
  })
})
