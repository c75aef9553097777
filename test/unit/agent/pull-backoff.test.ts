import assert from 'node:assert/strict'

import {PullBackoff, PullDeferredError} from '../../../src/agent/pull-backoff.js'
import type {CurrentState, Step} from '../../../src/agent/reconciler.js'

const EMPTY: CurrentState = {containers: [], images: [], fetchedImages: [], volumes: [], lockedAppIds: []}
const fetchOf = (image: string): Step => ({action: 'fetch', image, appId: 1, serviceName: 'main'})

describe('PullBackoff', () => {
  let clock: number
  let pulls: string[]
  let pullable: Set<string>
  let backoff: PullBackoff
  let asked: Array<string[] | undefined>

  beforeEach(() => {
    asked = []
    clock = 0
    pulls = []
    pullable = new Set()
    backoff = new PullBackoff(
      {
        async readCurrentState(wantedImages) {
          asked.push(wantedImages)
          return EMPTY
        },
        async apply(step) {
          if (step.action !== 'fetch') return
          pulls.push(step.image)
          if (!pullable.has(step.image)) throw new Error(`pull access denied for ${step.image}`)
        },
      },
      {baseDelayMs: 10_000, maxDelayMs: 60_000, now: () => clock},
    )
  })

  /** Tries the download once a second for `seconds`, as a busy reconcile loop would; counts the real pulls. */
  async function tryEverySecond(image: string, seconds: number): Promise<void> {
    for (let second = 0; second < seconds; second++, clock += 1000) await backoff.apply(fetchOf(image)).catch(() => {})
  }

  it('asks the engine about the images the target wants, so that one it cannot run is still refused', async () => {
    await backoff.readCurrentState(['registry/v2/abc:latest'])
    assert.deepEqual(asked, [['registry/v2/abc:latest']])
  })

  it('waits 10 s, 20 s, 40 s, then at most the cap between downloads of an image that fails', async () => {
    await tryEverySecond('broken', 10 + 20 + 40 + 60 + 60 + 1)
    assert.equal(pulls.length, 6)
    assert.equal(backoff.failures.get('broken')?.failures, 6)
    assert.match(backoff.failures.get('broken')?.reason ?? '', /pull access denied for broken/)
  })

  it('says why a download waits without trying it', async () => {
    await backoff.apply(fetchOf('broken')).catch(() => {})
    clock += 5000
    await assert.rejects(backoff.apply(fetchOf('broken')), (error: Error) => error instanceof PullDeferredError && /pull access denied/.test(error.message))
    assert.equal(pulls.length, 1)
  })

  it('forgets a failure once the image is pulled, and every failure on a new target', async () => {
    await backoff.apply(fetchOf('broken')).catch(() => {})
    await backoff.apply(fetchOf('other')).catch(() => {})
    pullable.add('broken')
    clock += 10_000
    await backoff.apply(fetchOf('broken'))
    assert.deepEqual([...backoff.failures.keys()], ['other'])
    backoff.reset()
    await backoff.apply(fetchOf('other')).catch(() => {})
    assert.equal(pulls.filter((image) => image === 'other').length, 2)
  })

  it('passes other steps straight to the engine', async () => {
    await backoff.apply({action: 'removeImage', image: 'x'})
    assert.deepEqual(pulls, [])
  })
})
