import assert from 'node:assert/strict'

import {Wakeup} from '../../../src/agent/wakeup.js'

describe('Wakeup', () => {
  it('wake() ends a sleep at once', async () => {
    const wakeup = new Wakeup()
    const started = Date.now()
    const sleeping = wakeup.wait(60_000)
    wakeup.wake()
    await sleeping
    assert.ok(Date.now() - started < 10_000)
  })

  it('a wake while nobody sleeps cuts the next sleep short, once', async () => {
    const wakeup = new Wakeup()
    wakeup.wake()
    await wakeup.wait(60_000)
    let ended = false
    const second = wakeup.wait(60_000).then(() => {
      ended = true
    })
    await new Promise((resolve) => setImmediate(resolve))
    assert.equal(ended, false, 'the trigger was used up')
    wakeup.wake()
    await second
  })

  it('a sleep ends by itself after its time', async () => {
    await new Wakeup().wait(1)
  })
})
