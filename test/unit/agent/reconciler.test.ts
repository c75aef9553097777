import assert from 'node:assert/strict'

import {
  converge,
  type CurrentState,
  desiredAppsOf,
  LABELS,
  type PlanOptions,
  planSteps,
  refusalLine,
  splitCommand,
  type Step,
} from '../../../src/agent/reconciler.js'
import {installedFrom} from '../../helpers/target-state.js'
import type {TargetDevice, TargetService} from '../../../src/protocol/target-state.js'

const APP_UUID = 'a'.repeat(32)
const OLD_COMMIT = '1'.repeat(32)
const NEW_COMMIT = '2'.repeat(32)
const OLD_IMAGE = 'registry.local/v2/old@sha256:' + '1'.repeat(64)
const NEW_IMAGE = 'registry.local/v2/new@sha256:' + '2'.repeat(64)
const options: PlanOptions = {deviceUuid: 'd'.repeat(32), deviceType: 'generic-amd64', lockDirOf: (appId) => `/data/locks/${appId}`}

function service(overrides: Partial<TargetService> = {}): TargetService {
  return {id: 7, image_id: 100, image: OLD_IMAGE, environment: {GREETING: 'hello'}, labels: {}, composition: {volumes: ['data:/data']}, ...overrides}
}

function target(commit: string | undefined, services: Record<string, TargetService> = {main: service()}, releaseId = 10): TargetDevice {
  return {
    name: 'pi',
    config: {},
    apps: {[APP_UUID]: {id: 1, name: 'fleet', is_host: false, class: 'fleet', ...(commit ? {releases: {[commit]: {id: releaseId, services, volumes: {data: {}}, networks: {}}}} : {})}},
  }
}

function state(overrides: Partial<CurrentState> = {}): CurrentState {
  return {containers: [], images: [], fetchedImages: [], volumes: [], lockedAppIds: [], ...overrides}
}

/** The engine's images, all fetched by the agent. */
const fetched = (...references: string[]): Partial<CurrentState> => ({images: references, fetchedImages: references})
const actions = (steps: Step[]) => steps.map((step) => step.action)

describe('planSteps', () => {
  const oldTarget = target(OLD_COMMIT)
  const newTarget = target(NEW_COMMIT, {main: service({image: NEW_IMAGE, image_id: 101})}, 11)
  const oldRunning = state({containers: installedFrom(oldTarget, options), ...fetched(OLD_IMAGE), volumes: ['1_data']})

  it('installs from nothing: volume and fetch first, then create and start', () => {
    assert.deepEqual(actions(planSteps(state(), oldTarget, options).steps), ['createVolume', 'fetch'])
    const ready = planSteps(state({...fetched(OLD_IMAGE), volumes: ['1_data']}), oldTarget, options)
    assert.deepEqual(actions(ready.steps), ['createAndStart'])
    const [step] = ready.steps
    assert.equal(step.action === 'createAndStart' && step.service.spec.name, `main_100_10_${OLD_COMMIT}`)
  })

  it('refuses a service whose image the engine cannot run, leaving the running release alone, with a line saying what to do', () => {
    const reason = "is for linux/arm64, which this device's engine (linux, x86_64) cannot run: no emulator for arm64 is registered with binfmt_misc"
    const plan = planSteps({...oldRunning, ...fetched(OLD_IMAGE, NEW_IMAGE), unrunnableImages: {[NEW_IMAGE]: reason}}, newTarget, options)
    assert.deepEqual(plan.steps, [])
    assert.deepEqual(plan.refused, [{appId: 1, serviceName: 'main', serviceId: 7, image: NEW_IMAGE, reason}])
    assert.equal(
      refusalLine(plan.refused[0]),
      `Refusing to start service 'main': image '${NEW_IMAGE}' ${reason} — push a release built for this device's architecture, or install qemu-user-static and binfmt-support on the device to emulate it`,
    )
    assert.deepEqual(actions(planSteps({...oldRunning, ...fetched(OLD_IMAGE, NEW_IMAGE)}, newTarget, options).steps), ['kill', 'remove', 'createAndStart'])
  })

  it('labels, environment, restart policy and volumes of a new container follow the target', () => {
    const [app] = desiredAppsOf(target(OLD_COMMIT, {main: service({composition: {command: ['sh', '-c', 'echo hi'], volumes: ['data:/data'], restart: 'on-failure', network_mode: 'bridge', labels: {custom: 'x'}}})}), {...options, hostNetwork: true})
    const {spec} = app.services[0]
    assert.equal(spec.labels[LABELS.supervised], 'true')
    assert.equal(spec.labels[LABELS.appId], '1')
    assert.equal(spec.labels[LABELS.appUuid], APP_UUID)
    assert.equal(spec.labels[LABELS.serviceName], 'main')
    assert.equal(spec.labels[LABELS.serviceId], '7')
    assert.equal(spec.labels[LABELS.imageId], '100')
    assert.equal(spec.labels[LABELS.releaseId], '10')
    assert.equal(spec.labels[LABELS.commit], OLD_COMMIT)
    assert.equal(spec.labels.custom, 'x')
    assert.equal(spec.environment.GREETING, 'hello')
    assert.equal(spec.environment.BALENA_DEVICE_UUID, options.deviceUuid)
    assert.equal(spec.environment.RESIN_DEVICE_UUID, options.deviceUuid)
    assert.equal(spec.environment.BALENA_APP_ID, '1')
    assert.equal(spec.environment.BALENA_APP_NAME, 'fleet')
    assert.equal(spec.environment.BALENA_SERVICE_NAME, 'main')
    assert.equal(spec.environment.BALENA_DEVICE_TYPE, 'generic-amd64')
    assert.equal(spec.environment.BALENA_SUPERVISOR_ADDRESS, 'http://127.0.0.1:48484')
    assert.equal(spec.environment.BALENA, '1')
    assert.deepEqual(spec.command, ['sh', '-c', 'echo hi'])
    assert.equal(spec.restart, 'on-failure')
    assert.equal(spec.networkMode, 'host', 'hostNetwork overrides the composition')
    assert.deepEqual(spec.binds, ['1_data:/data', '/data/locks/1:/tmp/balena', '/data/locks/1:/tmp/resin'])
  })

  it('defaults to restart always and the composition network mode', () => {
    const [app] = desiredAppsOf(target(OLD_COMMIT, {main: service({composition: {network_mode: 'host'}})}), options)
    assert.equal(app.services[0].spec.restart, 'always')
    assert.equal(app.services[0].spec.networkMode, 'host')
  })

  it('leaves the host app (the operating system) alone', () => {
    const withHost = {...oldTarget, apps: {...oldTarget.apps, ['h'.repeat(32)]: {id: 99, name: 'hostos', is_host: true, class: 'fleet' as const, releases: {['9'.repeat(32)]: {id: 1, services: {os: service({image: 'hostos'})}, volumes: {}, networks: {}}}}}}
    assert.deepEqual(planSteps(oldRunning, withHost, options).steps, [])
  })

  it('does nothing when the target runs', () => {
    assert.deepEqual(planSteps(oldRunning, oldTarget, options), {steps: [], waitingForLock: [], refused: []})
  })

  it('download-then-kill: fetches the new image while the old container runs, then replaces it', () => {
    assert.deepEqual(actions(planSteps(oldRunning, newTarget, options).steps), ['fetch'])
    const downloaded = {...oldRunning, ...fetched(OLD_IMAGE, NEW_IMAGE)}
    const steps = planSteps(downloaded, newTarget, options).steps
    assert.deepEqual(actions(steps), ['kill', 'remove', 'createAndStart'])
    assert.equal(steps[0].action === 'kill' && steps[0].container.commit, OLD_COMMIT)
    const replaced = {...downloaded, containers: installedFrom(newTarget, options)}
    assert.deepEqual(planSteps(replaced, newTarget, options).steps, [{action: 'removeImage', image: OLD_IMAGE}])
  })

  it('kill-then-download: stops the old container before fetching', () => {
    const labelled = target(NEW_COMMIT, {main: service({image: NEW_IMAGE, image_id: 101, labels: {[LABELS.updateStrategy]: 'kill-then-download'}})}, 11)
    assert.deepEqual(actions(planSteps(oldRunning, labelled, options).steps), ['kill', 'remove', 'fetch'])
  })

  it('a changed environment variable means a new container, and the named volume is kept', () => {
    const changed = target(OLD_COMMIT, {main: service({environment: {GREETING: 'bye'}})})
    const steps = planSteps(oldRunning, changed, options).steps
    assert.deepEqual(actions(steps), ['kill', 'remove', 'createAndStart'])
    assert.ok(steps[2].action === 'createAndStart' && steps[2].service.spec.binds.includes('1_data:/data'))
    assert.ok(!steps.some((step) => step.action === 'createVolume'))
  })

  it('keeps named volumes across releases', () => {
    const downloaded = {...oldRunning, ...fetched(OLD_IMAGE, NEW_IMAGE)}
    const steps = planSteps(downloaded, newTarget, options).steps
    assert.ok(steps.every((step) => step.action !== 'createVolume'))
    assert.ok(steps[2].action === 'createAndStart' && steps[2].service.spec.binds.includes('1_data:/data'))
  })

  it('removes a service that left the target', () => {
    const withoutServices = target(undefined)
    assert.deepEqual(actions(planSteps(oldRunning, withoutServices, options).steps), ['kill', 'remove'])
    const exited = state({containers: installedFrom(oldTarget, options, 'exited'), ...fetched(OLD_IMAGE)})
    assert.deepEqual(actions(planSteps(exited, withoutServices, options).steps), ['remove'])
  })

  it('does not kill while the app holds its update lock, and says it waits', () => {
    const locked = {...oldRunning, ...fetched(OLD_IMAGE, NEW_IMAGE), lockedAppIds: [1]}
    const plan = planSteps(locked, newTarget, options)
    assert.deepEqual(plan.steps, [])
    assert.deepEqual(plan.waitingForLock, [{appId: 1, serviceName: 'main'}])
    assert.deepEqual(actions(planSteps(locked, newTarget, {...options, overrideLock: true}).steps), ['kill', 'remove', 'createAndStart'])
    assert.deepEqual(actions(planSteps({...oldRunning, lockedAppIds: [1]}, newTarget, options).steps), ['fetch'], 'downloads go on under the lock')
  })

  it('starts an installed container that was stopped', () => {
    const stopped = {...oldRunning, containers: installedFrom(oldTarget, options, 'exited')}
    assert.deepEqual(actions(planSteps(stopped, oldTarget, options).steps), ['start'])
  })

  it('leaves a restarting (crash-looping) container to the engine', () => {
    const looping = {...oldRunning, containers: installedFrom(oldTarget, options, 'restarting')}
    assert.deepEqual(planSteps(looping, oldTarget, options).steps, [])
  })

  it('never removes an image it did not fetch', () => {
    const foreign = {...oldRunning, images: [...oldRunning.images, 'busybox:latest']}
    assert.deepEqual(planSteps(foreign, oldTarget, options).steps, [])
  })

  it('removes a fetched reference no longer used even when the image has another name in use', () => {
    const onBase = target(NEW_COMMIT, {main: service({image: 'busybox'})}, 11)
    const current = state({containers: installedFrom(onBase, options), images: ['busybox:latest', OLD_IMAGE], fetchedImages: [OLD_IMAGE], volumes: ['1_data']})
    assert.deepEqual(planSteps(current, onBase, options).steps, [{action: 'removeImage', image: OLD_IMAGE}])
  })
})

describe('splitCommand', () => {
  it('splits words as a shell does', () => {
    assert.deepEqual(splitCommand(`sh -c 'echo "a b"; sleep 1'  x\\ y "q\\"z"`), ['sh', '-c', 'echo "a b"; sleep 1', 'x y', 'q"z'])
  })
})

describe('converge', () => {
  const target: TargetDevice = {
    name: 'pi',
    config: {},
    apps: {[APP_UUID]: {id: 1, name: 'fleet', is_host: false, class: 'fleet', releases: {[OLD_COMMIT]: {id: 10, services: {main: service({composition: {}})}, volumes: {}, networks: {}}}}},
  }

  /** An engine in memory: fetch adds the image, createAndStart adds a running container. */
  function fakeEngine(failing: Step['action'][] = []) {
    const current = state()
    const applied: string[] = []
    return {
      applied,
      readCurrentState: async () => structuredClone(current),
      apply: async (step: Step) => {
        applied.push(step.action)
        if (failing.includes(step.action)) throw new Error(`${step.action} failed`)
        if (step.action === 'fetch') current.images.push(step.image)
        if (step.action === 'createAndStart') current.containers.push(...installedFrom(target, options))
      },
    }
  }

  it('applies rounds of steps until nothing remains', async () => {
    const engine = fakeEngine()
    const result = await converge(engine, target, options)
    assert.equal(result.settled, true)
    assert.deepEqual(engine.applied, ['fetch', 'createAndStart'])
    assert.deepEqual(result.failures, [])
  })

  it('stops before the next step once its signal is aborted (a purge or reboot takes the engine)', async () => {
    const engine = fakeEngine()
    const controller = new AbortController()
    const apply = engine.apply
    engine.apply = async (step: Step) => {
      await apply(step)
      controller.abort()
    }

    const result = await converge(engine, target, {...options, signal: controller.signal})
    assert.equal(result.settled, false)
    assert.deepEqual(engine.applied, ['fetch'])
  })

  it('stops when a round only fails, and says which step failed', async () => {
    const engine = fakeEngine(['fetch'])
    const result = await converge(engine, target, options)
    assert.equal(result.settled, false)
    assert.deepEqual(engine.applied, ['fetch'])
    assert.deepEqual(result.failures.map((failure) => [failure.step.action, (failure.error as Error).message]), [['fetch', 'fetch failed']])
  })
})
