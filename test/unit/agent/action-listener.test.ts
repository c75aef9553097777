import {strict as assert} from 'node:assert'

import {ActionListener} from '../../../src/agent/action-listener.js'
import {ApiError} from '../../../src/errors.js'
import type {DeviceAction} from '../../../src/protocol/device-action.js'

describe('ActionListener', () => {
  it('hands every collected action to onAction in order, and keeps collecting after a failure', async () => {
    const answers: Array<DeviceAction[] | Error> = [[{action: 'restart', appId: 1}], new Error('server away'), [{action: 'restart-service', appId: 1, serviceName: 'main'}]]
    const performed: DeviceAction[] = []
    const errors: unknown[] = []
    let done: () => void = () => {}
    const finished = new Promise<void>((resolve) => (done = resolve))
    const listener = new ActionListener({
      collect: async (_wait, signal) => {
        const answer = answers.shift()
        if (answer === undefined) {
          done()
          await new Promise((resolve) => signal.addEventListener('abort', resolve))
          throw new Error('aborted')
        }

        if (answer instanceof Error) throw answer
        return answer
      },
      onAction: async (action) => {
        performed.push(action)
      },
      onError: (error) => errors.push(error),
      retryDelayMs: 1,
    })
    listener.start()
    await finished
    await listener.stop()
    assert.deepEqual(performed, [{action: 'restart', appId: 1}, {action: 'restart-service', appId: 1, serviceName: 'main'}])
    assert.deepEqual(errors.map((error) => (error as Error).message), ['server away'])
  })

  it('stops asking a server that has no actions endpoint', async () => {
    let calls = 0
    const listener = new ActionListener({
      collect: async () => {
        calls++
        throw new ApiError('no such endpoint', 404)
      },
      onAction: async () => {},
    })
    listener.start()
    // A listener that kept asking would have collected again within these turns of the event loop.
    for (let turn = 0; turn < 5; turn++) await new Promise((resolve) => setImmediate(resolve))
    assert.equal(calls, 1)
    await listener.stop()
  })
})
