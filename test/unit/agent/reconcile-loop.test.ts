import assert from 'node:assert/strict'
import {mkdtemp, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import path from 'node:path'

import type {ContainerEvent} from '../../../src/agent/docker-executor.js'
import {type ReconcileEngine, ReconcileLoop, type ReconcileProgress} from '../../../src/agent/reconcile-loop.js'
import type {CurrentState, PlanOptions, Step} from '../../../src/agent/reconciler.js'
import {TargetStore} from '../../../src/agent/target-store.js'
import type {TargetDevice, TargetService} from '../../../src/protocol/target-state.js'
import {eventually} from '../../helpers/fleet-api.js'
import {deviceTarget, installedFrom} from '../../helpers/target-state.js'

const APP = {uuid: 'a'.repeat(32), id: 1}
const COMMIT = '1'.repeat(32)
const planOptions: PlanOptions = {deviceUuid: 'd'.repeat(32), lockDirOf: (appId) => `/locks/${appId}`}

function service(id: number, image: string): TargetService {
  return {id, image_id: 100 + id, image, environment: {}, labels: {}, composition: {network_mode: 'host'}}
}

const oneService = deviceTarget(APP, {commit: COMMIT, id: 10, services: {main: service(1, 'registry.local/main:1')}})
const twoServices = deviceTarget(APP, {commit: COMMIT, id: 10, services: {main: service(1, 'registry.local/main:1'), side: service(2, 'registry.local/side:1')}})

/** The engine, in memory (the real one runs in the e2e tests): fetch adds the image, createAndStart runs the container; `gate` holds a step until released. */
class MemoryEngine implements ReconcileEngine {
  readonly applied: string[] = []
  reads = 0
  gate?: {action: Step['action']; opened: Promise<void>; reached: () => void}
  onEvent?: (event: ContainerEvent) => void
  unwatched = false

  constructor(readonly state: CurrentState, private readonly target: TargetDevice) {}

  async readCurrentState(): Promise<CurrentState> {
    this.reads++
    return structuredClone(this.state)
  }

  async apply(step: Step): Promise<void> {
    if (this.gate?.action === step.action) {
      this.gate.reached()
      await this.gate.opened
    }

    this.applied.push(step.action === 'fetch' || step.action === 'removeImage' ? `${step.action} ${step.image}` : step.action)
    if (step.action === 'fetch') this.state.images.push(step.image)
    if (step.action === 'createAndStart') this.state.containers.push(...installedFrom(this.target, planOptions).filter((container) => container.name === step.service.spec.name))
    if (step.action === 'kill') this.state.containers = this.state.containers.filter((container) => container.id !== step.container.id)
  }

  async watchContainerEvents(onEvent: (event: ContainerEvent) => void): Promise<() => void> {
    this.onEvent = onEvent
    return () => {
      this.unwatched = true
    }
  }
}

const emptyState = (): CurrentState => ({containers: [], images: [], fetchedImages: [], volumes: [], lockedAppIds: []})

describe('reconcile loop', () => {
  let dataDir: string
  let store: TargetStore
  beforeEach(async () => {
    dataDir = await mkdtemp(path.join(tmpdir(), 'flotilla-loop-'))
    store = new TargetStore(dataDir)
  })
  afterEach(() => rm(dataDir, {recursive: true, force: true}))

  function loopOn(options: {intervalMs?: number} = {}) {
    const lines: string[] = []
    const followed: string[] = []
    const progress: ReconcileProgress[] = []
    const loop = new ReconcileLoop({
      store,
      logs: {systemLine: (message) => lines.push(message), followContainer: (container) => followed.push(container.id)},
      planOptions: () => planOptions,
      onProgress: (state) => progress.push(state),
      intervalMs: options.intervalMs ?? 60_000,
    })
    return {loop, lines, followed, progress}
  }

  it('does nothing until a target is stored, then converges on it, keeps what it saw and follows each container', async () => {
    const engine = new MemoryEngine(emptyState(), oneService)
    const {loop, followed, progress} = loopOn()
    await loop.reconcileOnce(engine)
    assert.equal(engine.reads, 0, 'no target, no round')
    assert.equal(loop.snapshot.target, undefined)

    await store.save({target: oneService, fetchedAt: new Date().toISOString()})
    await loop.reconcileOnce(engine)
    assert.deepEqual(engine.applied, ['fetch registry.local/main:1', 'createAndStart'])
    assert.deepEqual(loop.snapshot.plan?.steps, [])
    assert.deepEqual([...loop.snapshot.commitOf], [[1, COMMIT]])
    assert.equal(loop.snapshot.target, oneService)
    assert.deepEqual(followed, engine.state.containers.map((container) => container.id))
    assert.ok(progress.length >= 2, 'a report before the steps and one after the round')
    assert.deepEqual(progress.at(-1)?.plan.steps, [])
  })

  it('hold() aborts the round under way before its next step, waits for it, and no round runs until released', async () => {
    await store.save({target: twoServices, fetchedAt: new Date().toISOString()})
    const engine = new MemoryEngine(emptyState(), twoServices)
    let open: () => void = () => {}
    let reached: () => void = () => {}
    const fetching = new Promise<void>((resolve) => {
      reached = resolve
    })
    engine.gate = {action: 'fetch', opened: new Promise((resolve) => {
      open = resolve
    }), reached}
    const {loop} = loopOn()
    const round = loop.reconcileOnce(engine)
    await fetching
    let held = false
    const holding = loop.hold().then((release) => {
      held = true
      return release
    })
    await new Promise((resolve) => setImmediate(resolve))
    assert.equal(held, false, 'the hold waits for the step under way')
    engine.gate = undefined
    open()
    const release = await holding
    await round
    assert.deepEqual(engine.applied, ['fetch registry.local/main:1'], 'the second download was not started')

    const reads = engine.reads
    await loop.reconcileOnce(engine)
    assert.equal(engine.reads, reads, 'no round while held')
    release()
    release()
    await loop.reconcileOnce(engine)
    assert.ok(engine.applied.includes('createAndStart'), 'released (once, however often it is called), the rounds go on')
  })

  it('says each refusal once in the device logs, and again only when it comes back', async () => {
    await store.save({target: oneService, fetchedAt: new Date().toISOString()})
    const refused = {'registry.local/main:1': 'is for linux/arm64'}
    const engine = new MemoryEngine({...emptyState(), images: ['registry.local/main:1'], unrunnableImages: refused}, oneService)
    const {loop, lines} = loopOn()
    const refusals = () => lines.filter((line) => line.startsWith("Refusing to start service 'main'")).length
    await loop.reconcileOnce(engine)
    await loop.reconcileOnce(engine)
    assert.equal(refusals(), 1)
    assert.equal(loop.snapshot.plan?.refused.length, 1)
    engine.state.unrunnableImages = {}
    await loop.reconcileOnce(engine)
    assert.ok(engine.applied.includes('createAndStart'))
    engine.state.containers = []
    engine.state.unrunnableImages = refused
    await loop.reconcileOnce(engine)
    assert.equal(refusals(), 2, 'said again once it came back')
  })

  it('a forced update overrides the update locks for one round only', async () => {
    const updated = deviceTarget(APP, {commit: '2'.repeat(32), id: 11, services: {main: service(1, 'registry.local/main:2')}})
    await store.save({target: updated, fetchedAt: new Date().toISOString()})
    const engine = new MemoryEngine({...emptyState(), containers: installedFrom(oneService, planOptions), images: ['registry.local/main:1', 'registry.local/main:2'], lockedAppIds: [1]}, updated)
    const {loop} = loopOn()
    await loop.reconcileOnce(engine)
    assert.deepEqual(engine.applied, [], 'the lock is held')
    assert.deepEqual(loop.snapshot.plan?.waitingForLock, [{appId: 1, serviceName: 'main'}])
    loop.requestUpdate(true)
    await loop.reconcileOnce(engine)
    assert.deepEqual(engine.applied.slice(0, 2), ['kill', 'remove'])
    engine.state.containers = installedFrom(oneService, planOptions)
    engine.applied.length = 0
    await loop.reconcileOnce(engine)
    assert.deepEqual(engine.applied, [], 'the next round honours the lock again')
  })

  it('runs rounds when a container dies (said in the logs) or a target comes, and stop() ends them', async () => {
    await store.save({target: oneService, fetchedAt: new Date().toISOString()})
    const engine = new MemoryEngine(emptyState(), oneService)
    const {loop, lines} = loopOn({intervalMs: 60_000})
    loop.start(engine)
    await eventually(async () => engine.applied.includes('createAndStart'), 'the first round')
    const reads = engine.reads
    engine.onEvent?.({action: 'die', containerId: 'x', serviceName: 'main', serviceId: 1, exitCode: 3})
    assert.ok(lines.includes("Service exited 'main' with code 3"))
    await eventually(async () => engine.reads > reads, 'a round after the death, long before the interval')
    const afterDeath = engine.reads
    loop.targetChanged()
    await eventually(async () => engine.reads > afterDeath, 'a round for the new target')
    await loop.stop()
    assert.equal(engine.unwatched, true, 'the events are no longer watched')
    const stoppedAt = engine.reads
    loop.wake()
    await new Promise((resolve) => setImmediate(resolve))
    assert.equal(engine.reads, stoppedAt, 'no round after stop()')
  })
})
