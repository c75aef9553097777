import {strict as assert} from 'node:assert'

import {ExpectedError} from '../../../src/errors.js'
import {fileTypeFor, selectOsVersion, sha256FromHeaders, totalFromContentRange} from '../../../src/sdk/os-images.js'

const release = (raw_version: string, id: number) => ({id, raw_version, variant: '', phase: null})
const VERSIONS = [release('6.0.0-beta.1', 5), release('5.1.20+rev2', 4), release('5.1.20+rev1', 3), release('2.9.3', 1)]

describe('OS image downloads (client)', () => {
  it('picks the version to download', () => {
    assert.equal(selectOsVersion(VERSIONS, undefined, 'rpi').id, 4)
    assert.equal(selectOsVersion(VERSIONS, 'latest', 'rpi').id, 4)
    assert.equal(selectOsVersion(VERSIONS, '6.0.0-beta.1', 'rpi').id, 5)
    assert.equal(selectOsVersion(VERSIONS, 'v2.9.3', 'rpi').id, 1)
    assert.equal(selectOsVersion(VERSIONS, '5.1.20', 'rpi').id, 4, 'the newest revision of a version given without one')
    assert.throws(() => selectOsVersion(VERSIONS, '9.9.9', 'rpi'), (error: Error) => error instanceof ExpectedError && /OS version "9.9.9" not found — run "flotilla os versions rpi"/.test(error.message))
  })

  it('reads the sha-256 of Digest and Repr-Digest headers', () => {
    assert.equal(sha256FromHeaders({digest: 'sha-256=q1w2e3+/=='}), 'q1w2e3+/==')
    assert.equal(sha256FromHeaders({digest: 'md5=abc, SHA-256=xyz='}), 'xyz=')
    assert.equal(sha256FromHeaders({'repr-digest': 'sha-256=:xyz=:'}), 'xyz=')
    assert.equal(sha256FromHeaders({digest: 'md5=abc'}), undefined)
    assert.equal(sha256FromHeaders({}), undefined)
  })

  it('reads Content-Range and the file type of the output name', () => {
    assert.deepEqual(totalFromContentRange('bytes 100-999/1000'), {start: 100, total: 1000})
    assert.deepEqual(totalFromContentRange('bytes */1000'), {start: undefined, total: 1000})
    assert.deepEqual(totalFromContentRange('bytes 0-9/*'), {start: 0, total: undefined})
    assert.deepEqual(totalFromContentRange(undefined), {})
    assert.equal(fileTypeFor('balena.img'), '.img')
    assert.equal(fileTypeFor('balena.IMG.GZ'), '.gz')
    assert.equal(fileTypeFor('os.zip'), '.zip')
  })
})
