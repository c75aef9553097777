import {strict as assert} from 'node:assert'

import {compareOsVersions, coreOf, latestOf, parseOsVersion, revisionOf, sortOsVersionsNewestFirst} from '../../../src/protocol/os-version.js'

describe('OS versions', () => {
  it('parses balenaOS versions with revisions, pre-releases and a leading v', () => {
    const version = parseOsVersion('v5.1.20+rev3')!
    assert.equal(coreOf(version), '5.1.20')
    assert.equal(revisionOf(version), 3)
    assert.deepEqual(parseOsVersion('6.0.0-beta.1')?.prerelease, ['beta', '1'])
    assert.equal(parseOsVersion('5.1'), undefined)
    assert.equal(parseOsVersion('latest'), undefined)
  })

  it('orders by semver, then by revision number (rev10 after rev2), numbers not text', () => {
    const sorted = sortOsVersionsNewestFirst(['2.9.3', '5.1.20+rev2', '2.10.0', '5.1.20', '5.1.20+rev10', '6.0.0-beta.1', '6.0.0-beta.10', '6.0.0-beta.2', 'custom', '10.0.0'], (version) => version)
    assert.deepEqual(sorted, ['10.0.0', '6.0.0-beta.10', '6.0.0-beta.2', '6.0.0-beta.1', '5.1.20+rev10', '5.1.20+rev2', '5.1.20', '2.10.0', '2.9.3', 'custom'])
    assert.equal(compareOsVersions('v1.0.0', '1.0.0'), 0)
    assert.equal(compareOsVersions('1.0.0-rc.1', '1.0.0'), -1)
    assert.equal(compareOsVersions('1.0.0-alpha', '1.0.0-1'), 1)
  })

  it('takes the newest release that is not a pre-release as latest', () => {
    assert.equal(latestOf(['6.0.0-beta.1', '5.1.20+rev1', '5.1.20'], (version) => version), '5.1.20+rev1')
    assert.equal(latestOf(['6.0.0-beta.2', '6.0.0-beta.1'], (version) => version), '6.0.0-beta.2')
    assert.equal(latestOf([], (version: string) => version), undefined)
  })
})
