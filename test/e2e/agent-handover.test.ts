import assert from 'node:assert/strict'
import {execFile} from 'node:child_process'
import {randomBytes, randomInt} from 'node:crypto'
import {mkdtemp, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import path from 'node:path'
import {promisify} from 'node:util'

import Docker from 'dockerode'

import {DockerExecutor} from '../../src/agent/docker-executor.js'
import {converge, type ConvergeOptions, LABELS} from '../../src/agent/reconciler.js'
import type {TargetDevice} from '../../src/protocol/target-state.js'
import {BASE_IMAGE, ensureBaseImage, ensureDocker} from '../helpers/docker.js'
import {deviceTarget} from '../helpers/target-state.js'

const run = promisify(execFile)

describe('the hand-over update strategy on the Docker engine', function () {
  this.timeout(120_000)
  const docker = new Docker()
  const deviceUuid = randomBytes(16).toString('hex')
  const app = {uuid: randomBytes(16).toString('hex'), id: randomInt(100_000, 900_000)}
  const ownerLabel = `${LABELS.deviceUuid}=${deviceUuid}`
  let dataDir: string
  let executor: DockerExecutor
  let options: ConvergeOptions

  /** A release whose service runs until stopped, on the host's network (this test is about the update, not networks). */
  const release = (commit: string, id: number): TargetDevice =>
    deviceTarget(app, {
      commit,
      id,
      services: {
        main: {
          id: 1,
          image_id: 500 + id,
          image: BASE_IMAGE,
          environment: {},
          labels: {[LABELS.updateStrategy]: 'hand-over', [LABELS.handoverTimeout]: '600000'},
          composition: {command: ['sh', '-c', 'trap "exit 0" TERM; sleep 3600 & wait'], network_mode: 'host'},
        },
      },
    })

  const running = async () =>
    (await docker.listContainers({filters: {label: [ownerLabel], status: ['running']}})).map((container) => container.Labels[LABELS.commit]).sort()

  before(async () => {
    await ensureDocker()
    await ensureBaseImage()
    dataDir = await mkdtemp(path.join(tmpdir(), 'flotilla-handover-'))
    executor = new DockerExecutor({docker, deviceUuid, dataDir})
    options = {deviceUuid, lockDirOf: executor.lockDirOf}
  })

  after(async () => {
    for (const container of await docker.listContainers({all: true, filters: {label: [ownerLabel]}})) await docker.getContainer(container.Id).remove({force: true})
    await rm(dataDir, {recursive: true, force: true})
  })

  it('runs the new release beside the old one until the new one writes handover-complete, then stops the old one', async () => {
    const [oldCommit, newCommit] = ['a'.repeat(32), 'b'.repeat(32)]
    assert.ok((await converge(executor, release(oldCommit, 1), options)).settled)
    assert.deepEqual(await running(), [oldCommit])

    const update = release(newCommit, 2)
    const during = await converge(executor, update, options)
    assert.deepEqual(during.failures, [])
    assert.deepEqual(await running(), [oldCommit, newCommit], 'both run')
    assert.ok((await converge(executor, update, options)).settled, 'nothing to do while the new one has not taken over')
    assert.deepEqual(await running(), [oldCommit, newCommit])

    const [fresh] = await docker.listContainers({filters: {label: [ownerLabel, `${LABELS.commit}=${newCommit}`]}})
    await run('docker', ['exec', fresh.Id, 'sh', '-c', 'touch "$BALENA_SERVICE_HANDOVER_COMPLETE_PATH"'], {timeout: 20_000})
    const after = await converge(executor, update, options)
    assert.deepEqual(after.failures, [])
    assert.ok(after.settled)
    assert.deepEqual(await running(), [newCommit], 'the old one stopped once told')
  })
})
