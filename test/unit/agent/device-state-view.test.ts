import assert from 'node:assert/strict'

import {DeviceStateView} from '../../../src/agent/device-state-view.js'
import type {ReconcileSnapshot} from '../../../src/agent/reconcile-loop.js'
import type {CurrentState, Plan, PlanOptions} from '../../../src/agent/reconciler.js'
import type {TargetService} from '../../../src/protocol/target-state.js'
import {deviceTarget, installedFrom} from '../../helpers/target-state.js'

const COMMIT = '1'.repeat(32)
const planOptions: PlanOptions = {deviceUuid: 'd'.repeat(32), lockDirOf: () => '/locks'}
const service = (id: number): TargetService => ({id, image_id: 100 + id, image: `img-${id}`, environment: {GREETING: 'hi'}, labels: {}, composition: {network_mode: 'host'}})
const single = deviceTarget({uuid: 'a'.repeat(32), id: 1}, {commit: COMMIT, id: 10, services: {main: service(1)}})
const double = deviceTarget({uuid: 'a'.repeat(32), id: 1}, {commit: COMMIT, id: 10, services: {main: service(1), side: service(2)}})
const applied: Plan = {steps: [], waitingForLock: [], refused: []}

function view(snapshot: ReconcileSnapshot, overrides: {uuid?: string; pullFailures?: number} = {}) {
  return new DeviceStateView({
    snapshot: () => snapshot,
    planOptions: () => planOptions,
    deviceUuid: () => ('uuid' in overrides ? overrides.uuid : planOptions.deviceUuid),
    agentVersion: '1.2.3',
    apiPort: () => 48_484,
    pullFailureCount: () => overrides.pullFailures ?? 0,
  })
}

function running(target = single): ReconcileSnapshot {
  const current: CurrentState = {containers: installedFrom(target, planOptions), images: [], fetchedImages: [], volumes: [], lockedAppIds: []}
  return {current, plan: applied, target, commitOf: new Map([[1, COMMIT]])}
}

describe('device state view (the local API)', () => {
  it('/v1/device: Updating until a round settles, then Idle with the running commit', () => {
    const before = view({commitOf: new Map()}).device()
    assert.equal(before.status, 'Updating')
    assert.equal(before.update_pending, true)
    assert.equal(before.update_downloaded, false)
    assert.deepEqual(view(running()).device(), {
      api_port: 48_484,
      supervisor_version: '1.2.3',
      uuid: planOptions.deviceUuid,
      commit: COMMIT,
      status: 'Idle',
      update_pending: false,
      update_downloaded: true,
      update_failed: false,
      download_progress: null,
    })
  })

  it('/v1/device: a download under way, an update waiting for its lock, a refusal or a failed download', () => {
    const downloading = {...running(), plan: {...applied, steps: [{action: 'fetch' as const, image: 'img-1', appId: 1, serviceName: 'main'}]}}
    assert.deepEqual([view(downloading).device().status, view(downloading).device().update_downloaded], ['Updating', false])
    assert.equal(view({...running(), plan: {...applied, waitingForLock: [{appId: 1, serviceName: 'main'}]}}).device().status, 'Updating')
    assert.equal(view({...running(), plan: {...applied, refused: [{appId: 1, serviceName: 'main', serviceId: 1, image: 'img-1', reason: 'arm64'}]}}).device().update_failed, true)
    assert.equal(view(running(), {pullFailures: 1}).device().update_failed, true)
  })

  it('/v2/applications/state: each app by name with its services, nothing before registration', () => {
    const snapshot = running(double)
    snapshot.current = {...snapshot.current!, containers: snapshot.current!.containers.filter((container) => container.serviceName === 'main')}
    assert.deepEqual(view(snapshot).applicationsState(), {
      testfleet: {appId: 1, commit: COMMIT, services: {main: {status: 'running', releaseId: 10, downloadProgress: null}, side: {status: 'Downloading', releaseId: 10, downloadProgress: null}}},
    })
    assert.deepEqual(view(snapshot, {uuid: undefined}).applicationsState(), {})
  })

  it('/v2/state/status: applied or applying, with each container', () => {
    const status = view(running()).stateStatus()
    assert.equal(status.appState, 'applied')
    assert.equal(status.release, COMMIT)
    assert.deepEqual(status.containers, [{status: 'running', serviceName: 'main', appId: 1, imageId: 101, serviceId: 1, containerId: installedFrom(single, planOptions)[0].id, commit: COMMIT}])
    assert.equal(view({commitOf: new Map()}).stateStatus().appState, 'applying')
  })

  it('/v1/apps/:appId: the single service with its environment; 404 for another app, 400 for several services', () => {
    const app = view(running()).app(1)
    assert.equal(app.serviceName, 'main')
    assert.equal(app.env.GREETING, 'hi')
    assert.equal(app.containerId, installedFrom(single, planOptions)[0].id)
    assert.throws(() => view(running()).app(2), (error: Error & {statusCode?: number}) => error.statusCode === 404)
    assert.throws(() => view(running(double)).app(1), (error: Error & {statusCode?: number}) => error.statusCode === 400)
  })

  it('the device name and the apps whose volumes are kept come from the target', () => {
    assert.equal(view(running()).deviceName(), 'test-device')
    assert.equal(view({commitOf: new Map()}).deviceName(), '')
    assert.deepEqual([...view(running()).wantedAppIds()], [1])
  })
})
