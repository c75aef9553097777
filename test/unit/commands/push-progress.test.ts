import {strict as assert} from 'node:assert'

import {formatUploadProgress} from '../../../src/commands/push.js'

describe('push: the upload progress line', () => {
  it('shows the share of the project read, its total, what was sent and the rate, in os download\'s units', () => {
    assert.equal(formatUploadProgress({bytes: 3_000_000, elapsedMs: 2000, read: 45_000_000, total: 100_000_000}), 'uploading 45% of 100 MB, 3.0 MB sent (1.5 MB/s)')
    assert.equal(formatUploadProgress({bytes: 512, elapsedMs: 0, read: 0, total: 0}), 'uploading 512 B sent (0 B/s)')
  })
})
