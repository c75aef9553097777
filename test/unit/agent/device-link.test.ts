import assert from 'node:assert/strict'

import {linkRetryDelayMs} from '../../../src/agent/device-link.js'

describe('device link retry delay', () => {
  it('doubles from the first delay up to the cap', () => {
    const most = () => 1
    assert.deepEqual(
      [0, 1, 2, 3, 6, 7, 100].map((failures) => linkRetryDelayMs(failures, 1000, 60_000, most)),
      [1000, 2000, 4000, 8000, 60_000, 60_000, 60_000],
    )
  })

  it('spreads retries over the upper half of each delay, so devices that lost one server do not return at once', () => {
    assert.equal(linkRetryDelayMs(3, 1000, 60_000, () => 0), 4000)
    assert.equal(linkRetryDelayMs(3, 1000, 60_000, () => 0.5), 6000)
  })
})
