import assert from 'node:assert/strict'

import {type CurrentContainer, type CurrentState, type DesiredService, desiredAppsOf, type Step} from '../../../src/agent/reconciler.js'
import {deleteThenDownload, downloadThenKill, handOver, killThenDownload, type ServiceUpdate, UPDATE_STRATEGIES} from '../../../src/agent/update-strategies.js'
import type {TargetDevice} from '../../../src/protocol/target-state.js'

const NEW_IMAGE = 'registry.local/v2/new@sha256:' + '2'.repeat(64)
const OLD_IMAGE = 'registry.local/v2/old@sha256:' + '1'.repeat(64)

function desiredService(handoverTimeout = '30000'): DesiredService {
  const target: TargetDevice = {
    name: 'pi',
    config: {},
    apps: {['a'.repeat(32)]: {id: 1, name: 'fleet', is_host: false, class: 'fleet', releases: {['2'.repeat(32)]: {id: 11, services: {main: {id: 7, image_id: 101, image: NEW_IMAGE, environment: {}, labels: {'io.balena.update.handover-timeout': handoverTimeout}, composition: {network_mode: 'host'}}}, volumes: {}, networks: {}}}}},
  }
  return desiredAppsOf(target, {deviceUuid: 'd'.repeat(32), lockDirOf: () => '/locks'})[0].services[0]
}

function old(name = 'main_100_10_' + '1'.repeat(32), overrides: Partial<CurrentContainer> = {}): CurrentContainer {
  return {id: 'old', name, appId: 1, appUuid: 'a'.repeat(32), serviceName: 'main', serviceId: 7, imageId: 100, releaseId: 10, commit: '1'.repeat(32), image: OLD_IMAGE, configHash: 'h', status: 'running', ...overrides}
}

/** An update whose `stopAndRemove` records what it was asked, and allows it unless the app is `locked`. */
function update(imageReady: boolean, locked = false): {update: ServiceUpdate; stopped: string[]} {
  const stopped: string[] = []
  return {
    stopped,
    update: {
      service: desiredService(),
      outdated: [old()],
      imageReady,
      stopAndRemove: (container) => {
        stopped.push(container.id)
        return !locked
      },
      imagesFreedBy: (containers) => containers.map((container): Step => ({action: 'removeImage', image: container.image})),
    },
  }
}

const fetchStep = {action: 'fetch', image: NEW_IMAGE, appId: 1, serviceName: 'main'}

describe('update strategies', () => {
  it('names each strategy of io.balena.update.strategy', () => {
    assert.deepEqual(Object.keys(UPDATE_STRATEGIES).sort(), ['delete-then-download', 'download-then-kill', 'hand-over', 'kill-then-download'])
  })

  it('download-then-kill: downloads while the old container runs, then replaces it', () => {
    const downloading = update(false)
    assert.deepEqual(downloadThenKill.plan(downloading.update), {steps: [fetchStep], create: false})
    assert.deepEqual(downloading.stopped, [], 'the old container runs during the download')
    const downloaded = update(true)
    assert.deepEqual(downloadThenKill.plan(downloaded.update), {steps: [], create: true})
    assert.deepEqual(downloaded.stopped, ['old'])
    assert.equal(downloadThenKill.plan(update(true, true).update).create, false, 'a held update lock makes the new container wait')
  })

  it('kill-then-download: stops the old container first and downloads only once it is gone', () => {
    const first = update(false)
    assert.deepEqual(killThenDownload.plan(first.update), {steps: [fetchStep], create: false})
    assert.deepEqual(first.stopped, ['old'])
    assert.deepEqual(killThenDownload.plan(update(false, true).update), {steps: [], create: false}, 'no download while the old one waits for its lock')
    assert.deepEqual(killThenDownload.plan(update(true).update), {steps: [], create: true})
  })

  it('delete-then-download: removes the old images before the download, for small disks', () => {
    assert.deepEqual(deleteThenDownload.plan(update(false).update), {steps: [{action: 'removeImage', image: OLD_IMAGE}, fetchStep], create: false})
    assert.deepEqual(deleteThenDownload.plan(update(false, true).update), {steps: [], create: false})
    assert.deepEqual(deleteThenDownload.plan(update(true).update), {steps: [], create: true})
  })

  it('hand-over: starts the new container beside the old one, unless they would share a name', () => {
    const beside = update(true)
    assert.deepEqual(handOver.plan(beside.update), {steps: [], create: true})
    assert.deepEqual(beside.stopped, [], 'the old one keeps running')
    assert.deepEqual(handOver.plan(update(false).update), {steps: [fetchStep], create: false})
    const sameName = update(true)
    sameName.update.outdated = [old(sameName.update.service.spec.name)]
    assert.deepEqual(handOver.plan(sameName.update), {steps: [], create: true})
    assert.deepEqual(sameName.stopped, ['old'])
  })

  it('hand-over: the old container stays until the new one says it took over or the timeout passes', () => {
    const service = desiredService('30000')
    const createdAt = Date.parse('2026-01-01T00:00:00Z')
    const installed = old(service.spec.name, {id: 'new', createdAt})
    const state = (handoverCompletedAt?: number): CurrentState => ({containers: [], images: [], fetchedImages: [], volumes: [], lockedAppIds: [], handoverCompletedAt: handoverCompletedAt === undefined ? undefined : {1: handoverCompletedAt}})
    assert.equal(handOver.keepsOldRunning?.(service, installed, state(), createdAt + 29_000), true)
    assert.equal(handOver.keepsOldRunning?.(service, installed, state(), createdAt + 30_000), false, 'the timeout passed')
    assert.equal(handOver.keepsOldRunning?.(service, installed, state(createdAt + 1000), createdAt + 2000), false, 'the new one took over')
    assert.equal(handOver.keepsOldRunning?.(service, installed, state(createdAt - 1000), createdAt + 2000), true, 'a file from an earlier hand-over does not count')
    assert.equal(downloadThenKill.keepsOldRunning, undefined, 'other strategies stop the old container at once')
  })
})
