import assert from 'node:assert/strict'

import {
  converge,
  type CurrentContainer,
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

/** A service on the host's network, as most of these tests are about updates rather than networks. */
function service(overrides: Partial<TargetService> = {}): TargetService {
  return {id: 7, image_id: 100, image: OLD_IMAGE, environment: {GREETING: 'hello'}, labels: {}, composition: {volumes: ['data:/data'], network_mode: 'host'}, ...overrides}
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

  it('delete-then-download: stops the old container and removes its image before fetching, for small disks', () => {
    const labelled = target(NEW_COMMIT, {main: service({image: NEW_IMAGE, image_id: 101, labels: {[LABELS.updateStrategy]: 'delete-then-download'}})}, 11)
    const steps = planSteps(oldRunning, labelled, options).steps
    assert.deepEqual(actions(steps), ['kill', 'remove', 'removeImage', 'fetch'])
    assert.deepEqual(steps[2], {action: 'removeImage', image: OLD_IMAGE})
    // An image another service still runs stays.
    const shared = target(NEW_COMMIT, {main: service({image: NEW_IMAGE, image_id: 101, labels: {[LABELS.updateStrategy]: 'delete-then-download'}}), other: service({id: 8, image_id: 102, image: OLD_IMAGE})}, 11)
    assert.deepEqual(actions(planSteps(oldRunning, shared, options).steps).slice(0, 3), ['kill', 'remove', 'fetch'])
  })

  it('hand-over: the new container starts beside the old one, which stops once the new one says it took over or the timeout passes', () => {
    const labels = {[LABELS.updateStrategy]: 'hand-over', [LABELS.handoverTimeout]: '30000'}
    const handover = target(NEW_COMMIT, {main: service({image: NEW_IMAGE, image_id: 101, labels})}, 11)
    const downloaded = {...oldRunning, ...fetched(OLD_IMAGE, NEW_IMAGE)}
    assert.deepEqual(actions(planSteps(oldRunning, handover, options).steps), ['fetch'])
    const [start] = planSteps(downloaded, handover, options).steps
    assert.ok(start.action === 'createAndStart', 'the old container is not killed first')
    assert.equal(start.service.spec.environment.BALENA_SERVICE_HANDOVER_COMPLETE_PATH, '/tmp/balena/handover-complete')

    const startedAt = Date.parse('2026-01-01T00:00:00Z')
    const both = {...downloaded, containers: [...oldRunning.containers, ...installedFrom(handover, options).map((container) => ({...container, createdAt: startedAt}))]}
    assert.deepEqual(planSteps(both, handover, {...options, now: startedAt + 29_000}).steps, [], 'both run while the new one has not taken over')
    const timedOut = planSteps(both, handover, {...options, now: startedAt + 30_000}).steps
    assert.deepEqual(actions(timedOut), ['kill', 'remove'])
    assert.equal(timedOut[0].action === 'kill' && timedOut[0].container.commit, OLD_COMMIT)
    assert.deepEqual(actions(planSteps({...both, handoverCompletedAt: {1: startedAt + 1000}}, handover, {...options, now: startedAt + 2000}).steps), ['kill', 'remove'])
    assert.deepEqual(planSteps({...both, handoverCompletedAt: {1: startedAt - 1000}}, handover, {...options, now: startedAt + 2000}).steps, [], 'a file from an earlier hand-over does not count')
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

  it('leaves a container the user stopped (stop-service) stopped until it is started again or replaced', () => {
    const stopped = {...oldRunning, containers: installedFrom(oldTarget, options, 'exited')}
    const stoppedByUser = {...options, stoppedContainerIds: [stopped.containers[0].id]}
    assert.deepEqual(planSteps(stopped, oldTarget, stoppedByUser).steps, [])
    const updating = {...stopped, ...fetched(OLD_IMAGE, NEW_IMAGE)}
    assert.deepEqual(actions(planSteps(updating, newTarget, stoppedByUser).steps), ['remove', 'createAndStart'], 'a new release starts its service')
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
    apps: {[APP_UUID]: {id: 1, name: 'fleet', is_host: false, class: 'fleet', releases: {[OLD_COMMIT]: {id: 10, services: {main: service({composition: {network_mode: 'host'}})}, volumes: {}, networks: {}}}}},
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

describe('planSteps for compose apps', () => {
  const compose = (composition: TargetService['composition'], labels: Record<string, string> = {}, id = 7) => service({id, composition, labels})
  const app = (services: Record<string, TargetService>, networks: Record<string, unknown> = {}): TargetDevice => ({
    name: 'pi',
    config: {},
    apps: {[APP_UUID]: {id: 1, name: 'fleet', is_host: false, class: 'fleet', releases: {[OLD_COMMIT]: {id: 10, services, volumes: {data: {}}, networks}}}},
  })
  /** The engine once the target's networks exist and its containers run, with their health. */
  const runningWith = (device: TargetDevice, health: CurrentContainer['health'] = undefined): CurrentState => {
    const [desired] = desiredAppsOf(device, options)
    return state({
      containers: installedFrom(device, options).map((container) => ({...container, health})),
      ...fetched(OLD_IMAGE),
      volumes: ['1_data'],
      networks: desired.networks.map((network) => ({name: network.name, appId: 1, configHash: network.configHash})),
    })
  }

  it("creates the app's default network first, then the service in it with its name as an alias", () => {
    const device = app({main: compose({volumes: ['data:/data']})})
    const first = planSteps(state({...fetched(OLD_IMAGE), volumes: ['1_data']}), device, options).steps
    assert.deepEqual(actions(first), ['createNetwork'])
    assert.ok(first[0].action === 'createNetwork' && first[0].network.name === '1_default')
    const withNetwork = {...runningWith(device), containers: []}
    const [step] = planSteps(withNetwork, device, options).steps
    assert.ok(step.action === 'createAndStart')
    assert.equal(step.service.spec.networkMode, '1_default')
    assert.deepEqual(step.service.spec.networks, {'1_default': {Aliases: ['main']}})
  })

  it('joins declared networks as <appId>_<name>, with aliases and addresses, and removes networks nothing uses', () => {
    const device = app({main: compose({networks: {backend: {aliases: ['db'], ipv4_address: '172.28.0.5'}, front: null}})}, {backend: {internal: true}, front: {}, unused: {}})
    const [desired] = desiredAppsOf(device, options)
    assert.deepEqual(desired.networks.map((network) => [network.name, network.settings.Internal]), [['1_backend', true], ['1_front', false], ['1_unused', false]])
    assert.deepEqual(desired.services[0].spec.networks, {'1_backend': {Aliases: ['db', 'main'], IPAMConfig: {IPv4Address: '172.28.0.5', IPv6Address: undefined, LinkLocalIPs: undefined}}, '1_front': {Aliases: ['main']}})
    const leftover = runningWith(device)
    leftover.networks!.push({name: '1_old', appId: 1, configHash: 'x'})
    assert.deepEqual(planSteps(leftover, device, options).steps, [{action: 'removeNetwork', name: '1_old'}])
  })

  it('a network whose settings changed is made anew once its containers are gone, and they are recreated', () => {
    const before = app({main: compose({networks: ['backend']})}, {backend: {internal: false}})
    const after = app({main: compose({networks: ['backend']})}, {backend: {internal: true}})
    const current = runningWith(before)
    current.containers = current.containers.map((container) => ({...container, networks: ['1_backend']}))
    assert.deepEqual(actions(planSteps(current, after, options).steps), ['kill', 'remove'])
    const emptied = {...current, containers: []}
    assert.deepEqual(planSteps(emptied, after, options).steps, [{action: 'removeNetwork', name: '1_backend'}])
  })

  it('starts a service only once the services it depends on run, or are healthy when it asks', () => {
    const device = app({db: compose({healthcheck: {test: 'true'}}, {}, 1), api: compose({depends_on: {db: {condition: 'service_healthy'}}}, {}, 2), web: compose({depends_on: ['api']}, {}, 3)})
    const withoutContainers = {...runningWith(device), containers: []}
    assert.deepEqual(planSteps(withoutContainers, device, options).steps.map((step) => step.action === 'createAndStart' && step.service.serviceName), ['db'])
    const dbOnly = (health: CurrentContainer['health']) => ({...withoutContainers, containers: runningWith(device, health).containers.filter((container) => container.serviceName === 'db')})
    assert.deepEqual(planSteps(dbOnly('starting'), device, options).steps, [], 'api waits for the healthcheck')
    assert.deepEqual(planSteps(dbOnly('healthy'), device, options).steps.map((step) => step.action === 'createAndStart' && step.service.serviceName), ['api'])
  })

  it('network_mode service:<name> waits for that service and is recreated when its container is replaced', () => {
    const device = app({vpn: compose({}, {}, 1), app: compose({network_mode: 'service:vpn'}, {}, 2)})
    const current = runningWith(device)
    const vpn = current.containers.find((container) => container.serviceName === 'vpn')!
    current.containers = current.containers.map((container) => (container.serviceName === 'app' ? {...container, networkMode: `container:${vpn.id}`} : container))
    assert.deepEqual(planSteps(current, device, options).steps, [])
    const vpnReplaced = {...current, containers: current.containers.map((container) => (container === vpn ? {...container, id: 'new-vpn'} : container))}
    assert.deepEqual(actions(planSteps(vpnReplaced, device, options).steps), ['kill', 'remove', 'createAndStart'])
  })

  const changes: Array<[string, TargetService['composition']]> = [
    ['ports', {ports: ['8080:80']}], ['devices', {devices: ['/dev/zero']}], ['cap_add', {cap_add: ['NET_ADMIN']}], ['healthcheck', {healthcheck: {test: 'true'}}],
    ['mem_limit', {mem_limit: '64m'}], ['cpus', {cpus: 0.5}], ['tmpfs', {tmpfs: '/run'}], ['sysctls', {sysctls: {'net.core.somaxconn': 1024}}],
    ['dns', {dns: '10.0.0.1'}], ['hostname', {hostname: 'box'}], ['read_only', {read_only: true}], ['networks', {networks: ['backend']}],
  ]
  for (const [key, extra] of changes) {
    it(`a change of ${key} recreates the container; the same composition leaves it alone`, () => {
      const base = app({main: compose({volumes: ['data:/data']})}, {backend: {}})
      const changed = app({main: compose({volumes: ['data:/data'], ...extra})}, {backend: {}})
      assert.deepEqual(planSteps(runningWith(changed), changed, options).steps, [])
      assert.deepEqual(actions(planSteps({...runningWith(base), networks: runningWith(changed).networks}, changed, options).steps), ['kill', 'remove', 'createAndStart'])
    })
  }

  it("balena's feature labels (also as io.resin.*) bind their host paths and set their variables", () => {
    const labels = {'io.resin.features.kernel-modules': '1', 'io.balena.features.dbus': 'true', 'io.balena.features.balena-socket': '1', 'io.resin.features.resin-api': '1', 'io.balena.features.sysfs': '0'}
    const [desired] = desiredAppsOf(app({main: compose({}, labels)}), {...options, apiEndpoint: 'https://api.example', deviceApiKey: 'key'})
    const {spec} = desired.services[0]
    assert.deepEqual(spec.featureBinds, [
      '/lib/modules:/lib/modules',
      '/run/dbus:/host/run/dbus',
      '/var/run/docker.sock:/host/run/balena-engine.sock',
      '/var/run/docker.sock:/var/run/balena-engine.sock',
      '/var/run/docker.sock:/var/run/balena.sock',
    ])
    assert.equal(spec.environment.DBUS_SYSTEM_BUS_ADDRESS, 'unix:path=/host/run/dbus/system_bus_socket')
    assert.equal(spec.environment.DOCKER_HOST, 'unix:///host/run/balena-engine.sock')
    assert.equal(spec.environment.BALENA_API_KEY, 'key')
    assert.equal(spec.environment.RESIN_API_URL, 'https://api.example')
  })

  it('io.balena.features.supervisor-api gives the API address and key, and joins the supervisor network from an app network', () => {
    const supervisorApi = {port: 48484, apiKey: 'secret-key', network: {name: 'supervisor0', gateway: '10.114.104.1'}}
    const device = app({main: compose({}, {'io.balena.features.supervisor-api': '1'}), plain: compose({}, {}, 2), hosted: compose({network_mode: 'host'}, {'io.balena.features.supervisor-api': '1'}, 3)})
    const [desired] = desiredAppsOf(device, {...options, supervisorApi})
    const spec = (name: string) => desired.services.find((candidate) => candidate.serviceName === name)!.spec
    assert.deepEqual(Object.keys(spec('main').networks), ['1_default', 'supervisor0'])
    assert.equal(spec('main').networkMode, '1_default')
    assert.deepEqual(
      ['HOST', 'PORT', 'ADDRESS', 'API_KEY'].map((name) => spec('main').environment[`BALENA_SUPERVISOR_${name}`]),
      ['10.114.104.1', '48484', 'http://10.114.104.1:48484', 'secret-key'],
    )
    assert.equal(spec('main').environment.RESIN_SUPERVISOR_API_KEY, 'secret-key')
    assert.equal(spec('hosted').environment.BALENA_SUPERVISOR_ADDRESS, 'http://127.0.0.1:48484')
    assert.deepEqual(spec('hosted').networks, {})
    assert.equal(spec('plain').environment.BALENA_SUPERVISOR_API_KEY, undefined, 'no key without the label')
    assert.deepEqual(Object.keys(spec('plain').networks), ['1_default'])
    // The supervisor network is the agent's, not the app's: the service starts once the app's networks exist.
    const steps = planSteps({...runningWith(device, undefined), containers: []}, device, {...options, supervisorApi}).steps
    assert.deepEqual(steps.filter((step) => step.action === 'createAndStart').length, 3)
  })

  it('io.balena.update.requires-reboot: the container is created, and starts only after the next boot', () => {
    const device = app({main: compose({}, {'io.balena.update.requires-reboot': '1'})})
    const bootTime = Date.parse('2025-01-01T00:00:00Z')
    const ready = {...runningWith(device), containers: []}
    assert.deepEqual(actions(planSteps(ready, device, {...options, bootTime}).steps), ['create'])
    const created = {...ready, containers: installedFrom(device, options, 'created').map((container) => ({...container, createdAt: bootTime + 60_000}))}
    assert.deepEqual(planSteps(created, device, {...options, bootTime}).steps, [], 'waits for the reboot')
    assert.deepEqual(actions(planSteps(created, device, {...options, bootTime: bootTime + 120_000}).steps), ['start'], 'starts after it')
  })
})
