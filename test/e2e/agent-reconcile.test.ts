import assert from 'node:assert/strict'
import {randomBytes, randomInt} from 'node:crypto'
import {mkdtemp, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import path from 'node:path'

import Docker from 'dockerode'

import {DockerExecutor} from '../../src/agent/docker-executor.js'
import {converge, type ConvergeOptions, LABELS} from '../../src/agent/reconciler.js'
import type {TargetDevice} from '../../src/protocol/target-state.js'
import {BASE_IMAGE, ensureBaseImage, ensureDocker} from '../helpers/docker.js'
import {deviceTarget} from '../helpers/target-state.js'

/** Prints what the previous container left in the volume, then leaves its own greeting there; exits at once on SIGTERM. */
const SCRIPT = 'trap "exit 0" TERM; echo hello; cat /data/note 2>/dev/null; echo "$GREETING" > /data/note; sleep 3600 & wait'

async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, deadlineMs = 20_000): Promise<T> {
  const deadline = Date.now() + deadlineMs
  for (;;) {
    const value = await probe()
    if (value !== undefined) return value
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}

describe('agent reconciler against the Docker engine', function () {
  this.timeout(120_000)
  const docker = new Docker()
  const deviceUuid = randomBytes(16).toString('hex')
  const appUuid = randomBytes(16).toString('hex')
  const appId = randomInt(100_000, 900_000)
  const ownerLabel = `${LABELS.deviceUuid}=${deviceUuid}`
  let dataDir: string
  let executor: DockerExecutor
  let options: ConvergeOptions

  function target(commit: string, releaseId: number, greeting: string): TargetDevice {
    return deviceTarget({uuid: appUuid, id: appId}, {
      commit,
      id: releaseId,
      services: {
        main: {
          id: 1,
          image_id: releaseId,
          image: BASE_IMAGE,
          environment: {GREETING: greeting},
          labels: {},
          composition: {command: ['sh', '-c', SCRIPT], network_mode: 'host', volumes: ['data:/data']},
        },
      },
      volumes: {data: {}},
    })
  }

  const ownContainers = () => docker.listContainers({all: true, filters: {label: [ownerLabel]}})
  const logsOf = async (id: string) => (await docker.getContainer(id).logs({stdout: true, stderr: true})).toString('utf8')
  const runningContainer = async () => waitFor('one running container', async () => {
    const containers = await ownContainers()
    return containers.length === 1 && containers[0].State === 'running' ? containers[0] : undefined
  })

  before(async () => {
    await ensureDocker()
    await ensureBaseImage()
    dataDir = await mkdtemp(path.join(tmpdir(), 'flotilla-agent-'))
    executor = new DockerExecutor({docker, deviceUuid, dataDir})
    options = {deviceUuid, deviceType: 'generic-amd64', hostNetwork: true, lockDirOf: executor.lockDirOf}
  })

  after(async () => {
    for (const container of await ownContainers()) await docker.getContainer(container.Id).remove({force: true})
    const {Volumes: volumes} = await docker.listVolumes({filters: {label: [ownerLabel]}})
    for (const volume of volumes ?? []) await docker.getVolume(volume.Name).remove()
    await rm(dataDir, {recursive: true, force: true})
  })

  // Container names hold the commit, and the engine's names are global: commits of this run only, so that a
  // container another test left (agent-actions also runs release 1 of commit a…a) cannot take the name.
  const firstCommit = randomBytes(16).toString('hex')
  const secondCommit = randomBytes(16).toString('hex')

  it('installs a service with its labels, host network and named volume', async () => {
    const result = await converge(executor, target(firstCommit, 1, 'one'), options)
    assert.deepEqual(result.failures, [])
    assert.equal(result.settled, true)
    const container = await runningContainer()
    assert.equal(container.Names[0], `/main_1_1_${firstCommit}`)
    assert.equal(container.Labels[LABELS.supervised], 'true')
    assert.equal(container.Labels[LABELS.appId], String(appId))
    assert.equal(container.Labels[LABELS.appUuid], appUuid)
    assert.equal(container.Labels[LABELS.serviceName], 'main')
    assert.equal(container.Labels[LABELS.commit], firstCommit)
    const inspected = await docker.getContainer(container.Id).inspect()
    assert.equal(inspected.HostConfig.NetworkMode, 'host')
    assert.equal(inspected.HostConfig.RestartPolicy?.Name, 'always')
    assert.ok(inspected.Config.Env.includes(`BALENA_DEVICE_UUID=${deviceUuid}`))
    assert.ok(inspected.Mounts.some((mount) => mount.Name === `${appId}_data` && mount.Destination === '/data'))
    await waitFor('the hello line', async () => ((await logsOf(container.Id)).includes('hello') ? true : undefined))
  })

  it('replaces the container when an environment variable changes and keeps the volume', async () => {
    const before = await runningContainer()
    const result = await converge(executor, target(firstCommit, 1, 'two'), options)
    assert.deepEqual(result.failures, [])
    const after = await runningContainer()
    assert.notEqual(after.Id, before.Id)
    assert.equal(after.Names[0], `/main_1_1_${firstCommit}`)
    await waitFor('the first container\'s note read from the volume', async () => ((await logsOf(after.Id)).includes('one') ? true : undefined))
  })

  it('does not replace a container while its app holds the update lock', async () => {
    const locked = await runningContainer()
    await docker.getContainer(locked.Id).exec({Cmd: ['touch', '/tmp/balena/updates.lock']}).then((exec) => exec.start({}))
    await waitFor('the lock file on the host', async () => ((await executor.readCurrentState()).lockedAppIds.includes(appId) ? true : undefined))
    const result = await converge(executor, target(secondCommit, 2, 'three'), options)
    assert.deepEqual(result.plan.waitingForLock, [{appId, serviceName: 'main'}])
    assert.equal((await runningContainer()).Id, locked.Id)

    await rm(path.join(executor.lockDirOf(appId), 'updates.lock'))
    const released = await converge(executor, target(secondCommit, 2, 'three'), options)
    assert.equal(released.settled, true)
    const replaced = await runningContainer()
    assert.equal(replaced.Labels[LABELS.commit], secondCommit)
    await waitFor('the note of the second container', async () => ((await logsOf(replaced.Id)).includes('two') ? true : undefined))
  })

  it('removes the services that leave the target', async () => {
    const empty: TargetDevice = {name: 'test-device', config: {}, apps: {[appUuid]: {id: appId, name: 'testfleet', is_host: false, class: 'fleet'}}}
    const result = await converge(executor, empty, options)
    assert.equal(result.settled, true)
    assert.deepEqual(await ownContainers(), [])
    const {Volumes: volumes} = await docker.listVolumes({filters: {label: [ownerLabel]}})
    assert.deepEqual((volumes ?? []).map((volume) => volume.Name), [`${appId}_data`], 'named volumes outlive their services')
  })
})
