import assert from 'node:assert/strict'
import {mkdtemp, readFile, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import path from 'node:path'
import {PassThrough} from 'node:stream'

import Docker from 'dockerode'

import {DockerExecutor} from '../../../src/agent/docker-executor.js'
import type {Step} from '../../../src/agent/reconciler.js'

const IMAGE = 'registry.local/v2/new@sha256:' + '2'.repeat(64)

describe('a fetch the agent may be killed in', () => {
  let dataDir: string
  let progress: PassThrough
  let executor: DockerExecutor
  const fetch: Step = {action: 'fetch', image: IMAGE, appId: 1, serviceName: 'main'}
  const recorded = async () => JSON.parse(await readFile(path.join(dataDir, 'fetched-images.json'), 'utf8').catch(() => '[]')) as string[]

  beforeEach(async () => {
    dataDir = await mkdtemp(path.join(tmpdir(), 'flotilla-fetch-'))
    const docker = new Docker({socketPath: path.join(dataDir, 'no-engine.sock')})
    progress = new PassThrough()
    docker.pull = (async () => progress) as unknown as Docker['pull']
    executor = new DockerExecutor({docker, deviceUuid: 'd'.repeat(32), dataDir})
  })
  afterEach(() => rm(dataDir, {recursive: true, force: true}))

  it('records the image as its own before the engine has it, so a kill after the pull does not leave it behind for good', async () => {
    const applying = executor.apply(fetch)
    // The pull is under way (the engine may finish it after the agent is killed): the record is already there.
    for (let tries = 0; (await recorded()).length === 0 && tries < 100; tries++) await new Promise((resolve) => setTimeout(resolve, 10))
    assert.deepEqual(await recorded(), [IMAGE])
    progress.end(`${JSON.stringify({status: 'Status: Downloaded newer image'})}\n`)
    await applying
    assert.deepEqual(await recorded(), [IMAGE])
  })

  it('drops the record when the pull fails', async () => {
    const applying = executor.apply(fetch)
    for (let tries = 0; (await recorded()).length === 0 && tries < 100; tries++) await new Promise((resolve) => setTimeout(resolve, 10))
    progress.end(`${JSON.stringify({error: 'manifest unknown', errorDetail: {message: 'manifest unknown'}})}\n`)
    await assert.rejects(applying, /manifest unknown/)
    assert.deepEqual(await recorded(), [])
  })
})
