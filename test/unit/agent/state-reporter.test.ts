import assert from 'node:assert/strict'
import {spawn} from 'node:child_process'
import {once} from 'node:events'

import {type CurrentContainer, desiredAppsOf, type PlanOptions} from '../../../src/agent/reconciler.js'
import {buildStateReport, DeviceFactsCache, StateReporter} from '../../../src/agent/state-reporter.js'
import type {StateReport} from '../../../src/protocol/state-report.js'
import type {TargetDevice} from '../../../src/protocol/target-state.js'

const DEVICE = 'd'.repeat(32)
const APP = 'a'.repeat(32)
const COMMIT = 'c'.repeat(32)
const OLD = 'o'.repeat(32)
const IMAGE = 'registry/v2/x@sha256:' + '1'.repeat(64)
const options: PlanOptions = {deviceUuid: DEVICE, lockDirOf: () => '/locks'}
const target: TargetDevice = {
  name: 'pi',
  config: {},
  apps: {[APP]: {id: 1, name: 'fleet', is_host: false, class: 'fleet', releases: {[COMMIT]: {id: 2, services: {main: {id: 3, image_id: 4, image: IMAGE, environment: {}, labels: {}, composition: {}}}, volumes: {}, networks: {}}}}},
}

function installed(status: CurrentContainer['status'], commit = COMMIT): CurrentContainer {
  const [service] = desiredAppsOf(target, options)[0].services
  return {id: 'c1', name: commit === COMMIT ? service.spec.name : `main_1_1_${commit}`, appId: 1, appUuid: APP, serviceName: 'main', serviceId: 3, imageId: 4, releaseId: 2, commit, image: IMAGE, configHash: commit === COMMIT ? service.configHash : 'old', status}
}

describe('buildStateReport', () => {
  it('reports the running release as done', () => {
    const report = buildStateReport({deviceUuid: DEVICE, target, planOptions: options, facts: {supervisor_version: '1.0.0'}, current: {containers: [installed('running')], images: [IMAGE], fetchedImages: [IMAGE], volumes: [], lockedAppIds: []}})
    assert.deepEqual(report, {
      [DEVICE]: {
        supervisor_version: '1.0.0',
        status: 'Idle',
        apps: {[APP]: {release_uuid: COMMIT, releases: {[COMMIT]: {update_status: 'done', services: {main: {image: IMAGE, status: 'Running', download_progress: null}}}}}},
      },
    })
  })

  it('reports a release whose image the engine cannot run as rejected, its service dead and the device idle, the old release running', () => {
    const report = buildStateReport({
      deviceUuid: DEVICE,
      target,
      planOptions: options,
      facts: {},
      plan: {steps: [], waitingForLock: [], refused: [{appId: 1, serviceName: 'main', serviceId: 3, image: IMAGE, reason: 'is for linux/arm64'}]},
      current: {containers: [installed('running', OLD)], images: [IMAGE], fetchedImages: [IMAGE], volumes: [], lockedAppIds: [], unrunnableImages: {[IMAGE]: 'is for linux/arm64'}},
    })
    const app = report[DEVICE].apps?.[APP]
    assert.equal(report[DEVICE].status, 'Idle')
    assert.equal(app?.release_uuid, OLD)
    assert.deepEqual(app?.releases[COMMIT], {update_status: 'rejected', services: {main: {image: IMAGE, status: 'Dead', download_progress: null}}})
  })

  it('reports a download under way with the old release still running', () => {
    const report = buildStateReport({
      deviceUuid: DEVICE,
      target,
      planOptions: options,
      facts: {},
      downloadProgress: new Map([[IMAGE, 40]]),
      current: {containers: [installed('running', OLD)], images: [], fetchedImages: [], volumes: [], lockedAppIds: []},
    })
    const app = report[DEVICE].apps?.[APP]
    assert.equal(report[DEVICE].status, 'Updating')
    assert.equal(app?.release_uuid, OLD)
    assert.deepEqual(app?.releases[COMMIT], {update_status: 'downloading', services: {main: {image: IMAGE, status: 'Downloading', download_progress: 40}}})
    assert.equal(app?.releases[OLD].services.main.status, 'Running')
  })

  it('reports an update held by the lock as downloaded', () => {
    const report = buildStateReport({
      deviceUuid: DEVICE,
      target,
      planOptions: options,
      facts: {},
      plan: {steps: [], waitingForLock: [{appId: 1, serviceName: 'main'}], refused: []},
      current: {containers: [installed('running', OLD)], images: [IMAGE], fetchedImages: [IMAGE], volumes: [], lockedAppIds: [1]},
    })
    assert.equal(report[DEVICE].apps?.[APP].releases[COMMIT].update_status, 'downloaded')
  })

  it('reports an update whose image cannot be pulled as failed (aborted), the device idle on its old release', () => {
    const report = buildStateReport({
      deviceUuid: DEVICE,
      target,
      planOptions: options,
      facts: {},
      pullFailures: new Map([[IMAGE, {reason: 'manifest unknown'}]]),
      current: {containers: [installed('running', OLD)], images: [], fetchedImages: [], volumes: [], lockedAppIds: []},
    })
    assert.equal(report[DEVICE].status, 'Idle')
    assert.equal(report[DEVICE].apps?.[APP].release_uuid, OLD)
    assert.deepEqual(report[DEVICE].apps?.[APP].releases[COMMIT], {update_status: 'aborted', services: {main: {image: IMAGE, status: 'Downloading', download_progress: null}}})
  })
})

describe('StateReporter', () => {
  it('sends a changed report once, and not the same one twice', async () => {
    const sent: StateReport[] = []
    const reporter = new StateReporter({send: async (report) => void sent.push(report), minIntervalMs: 0})
    try {
      reporter.update({[DEVICE]: {status: 'Idle'}})
      await reporter.flush()
      reporter.update({[DEVICE]: {status: 'Idle'}})
      await reporter.flush()
      reporter.update({[DEVICE]: {status: 'Updating'}})
      await reporter.flush()
    } finally {
      reporter.stop()
    }

    assert.deepEqual(sent.map((report) => report[DEVICE].status), ['Idle', 'Updating'])
  })

  it('tries the last report once when stopped, and keeps no retry alive when it fails (the server is gone): the process can exit', async () => {
    const module = new URL('../../../src/agent/state-reporter.ts', import.meta.url).href
    const script = `
      import {StateReporter} from ${JSON.stringify(module)}
      let attempts = 0
      const reporter = new StateReporter({send: async () => { attempts++; throw new Error('cannot reach the fleet server') }, minIntervalMs: 0})
      reporter.update({device: {status: 'Idle'}})
      reporter.stop()
      await reporter.flush()
      process.on('exit', () => console.log('attempts', attempts))
    `
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {stdio: ['ignore', 'pipe', 'inherit']})
    let output = ''
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (output += chunk))
    const killer = setTimeout(() => child.kill('SIGKILL'), 15_000)
    const [code, signal] = (await once(child, 'exit')) as [number | null, string | null]
    clearTimeout(killer)
    assert.equal(signal, null, 'the process was still alive after 15 s: a retry kept it running')
    assert.equal(code, 0)
    assert.equal(output.trim(), 'attempts 1')
  })
})

describe('DeviceFactsCache', () => {
  it('gathers the facts at first, then again only once they are older than the refresh period', async () => {
    let now = 0
    let gathered = 0
    const cache = new DeviceFactsCache(async () => ({ip_address: `10.0.0.${++gathered}`}), 1000, () => now)
    assert.deepEqual(cache.current, {})
    await cache.refresh()
    now = 1000
    await cache.refresh()
    assert.deepEqual([gathered, cache.current.ip_address], [1, '10.0.0.1'])
    now = 1001
    await cache.refresh()
    assert.deepEqual([gathered, cache.current.ip_address], [2, '10.0.0.2'])
  })
})
