import assert from 'node:assert/strict'
import {mkdtemp, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import path from 'node:path'
import {PassThrough} from 'node:stream'

import Docker from 'dockerode'

import {DockerExecutor} from '../../../src/agent/docker-executor.js'
import {
  converge,
  type CurrentState,
  isDiskFull,
  type PlanOptions,
  type Step,
  stepFailureLine,
} from '../../../src/agent/reconciler.js'
import {installedFrom} from '../../helpers/target-state.js'
import type {TargetDevice} from '../../../src/protocol/target-state.js'

const APP_UUID = 'a'.repeat(32)
const OLD_IMAGE = 'registry.local/v2/old@sha256:' + '1'.repeat(64)
const NEW_IMAGE = 'registry.local/v2/new@sha256:' + '2'.repeat(64)
const options: PlanOptions = {deviceUuid: 'd'.repeat(32), lockDirOf: (appId) => `/data/locks/${appId}`}
/** What the engine says when a layer does not fit on its disk. */
const ENGINE_ENOSPC = 'failed to register layer: write /var/lib/docker/overlay2/3f1c/diff/usr/lib/libfoo.so: no space left on device'

function target(commit: string, image: string, strategy?: string): TargetDevice {
  const labels: Record<string, string> = strategy ? {'io.balena.update.strategy': strategy} : {}
  return {
    name: 'pi',
    config: {},
    apps: {
      [APP_UUID]: {
        id: 1,
        name: 'fleet',
        is_host: false,
        class: 'fleet',
        releases: {[commit]: {id: commit === '1'.repeat(32) ? 10 : 11, services: {main: {id: 7, image_id: commit === '1'.repeat(32) ? 100 : 101, image, environment: {}, labels, composition: {network_mode: 'host'}}}, volumes: {}, networks: {}}},
      },
    },
  }
}

describe('disk full while pulling', () => {
  const oldRelease = target('1'.repeat(32), OLD_IMAGE)

  /** An engine in memory whose downloads fail for want of space. */
  function fullDisk() {
    const current: CurrentState = {containers: installedFrom(oldRelease, options), images: [OLD_IMAGE], fetchedImages: [OLD_IMAGE], volumes: [], lockedAppIds: []}
    const applied: Step['action'][] = []
    return {
      current,
      applied,
      readCurrentState: async () => structuredClone(current),
      apply: async (step: Step) => {
        applied.push(step.action)
        if (step.action === 'fetch') throw new Error(ENGINE_ENOSPC)
        throw new Error(`${step.action} must not run while the new image is missing`)
      },
    }
  }

  it('keeps the old release running (download-then-kill) and says the disk is full', async () => {
    const engine = fullDisk()
    const lines: string[] = []
    const result = await converge(engine, target('2'.repeat(32), NEW_IMAGE), {...options, onStepFailed: (step, error) => lines.push(stepFailureLine(step, error))})
    assert.deepEqual(engine.applied, ['fetch'], 'nothing but the download was tried')
    assert.equal(result.settled, false)
    assert.deepEqual(result.current.containers.map((container) => [container.commit, container.status]), [['1'.repeat(32), 'running']])
    assert.deepEqual(lines, [`Failed to download image '${NEW_IMAGE}': no space left on device; free some disk space, the download is retried and the services keep their current release meanwhile`])
  })

  it('tells a full disk from other failures, whether the engine or Node says it', () => {
    assert.equal(isDiskFull(new Error(ENGINE_ENOSPC)), true)
    assert.equal(isDiskFull(Object.assign(new Error('write failed'), {code: 'ENOSPC'})), true)
    assert.equal(isDiskFull(new Error('manifest unknown')), false)
    const fetch: Step = {action: 'fetch', image: NEW_IMAGE, appId: 1, serviceName: 'main'}
    assert.equal(stepFailureLine(fetch, new Error('manifest unknown')), `Failed to download image '${NEW_IMAGE}' due to 'manifest unknown'`)
  })

  it('the executor fails the fetch with the engine\'s words when the pull stream reports ENOSPC', async () => {
    const dataDir = await mkdtemp(path.join(tmpdir(), 'flotilla-enospc-'))
    try {
      const docker = new Docker({socketPath: path.join(dataDir, 'no-engine.sock')})
      const progress = new PassThrough()
      docker.pull = (async () => {
        setImmediate(() => {
          progress.write(`${JSON.stringify({status: 'Pulling fs layer', id: 'abc', progressDetail: {}})}\n`)
          progress.write(`${JSON.stringify({status: 'Downloading', id: 'abc', progressDetail: {current: 10, total: 100}})}\n`)
          progress.end(`${JSON.stringify({errorDetail: {message: ENGINE_ENOSPC}, error: ENGINE_ENOSPC})}\n`)
        })
        return progress
      }) as unknown as Docker['pull']
      const lines: string[] = []
      const executor = new DockerExecutor({docker, deviceUuid: 'd'.repeat(32), dataDir, onSystemLog: (message) => lines.push(message)})
      const step: Step = {action: 'fetch', image: NEW_IMAGE, appId: 1, serviceName: 'main'}
      const error = await executor.apply(step).then(() => undefined, (error_: unknown) => error_)
      assert.ok(error instanceof Error, 'the fetch failed')
      assert.equal(isDiskFull(error), true)
      assert.match(stepFailureLine(step, error), /no space left on device; free some disk space/)
      assert.deepEqual(lines, [`Downloading image '${NEW_IMAGE}'`], 'no "Downloaded" line for an image that did not arrive')
    } finally {
      await rm(dataDir, {recursive: true, force: true})
    }
  })
})
