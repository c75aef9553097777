import assert from 'node:assert/strict'
import {randomBytes, randomInt} from 'node:crypto'
import {mkdtemp, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import path from 'node:path'

import Docker from 'dockerode'

import {DockerExecutor} from '../../src/agent/docker-executor.js'
import {converge, type ConvergeOptions, LABELS, type Step} from '../../src/agent/reconciler.js'
import type {TargetDevice} from '../../src/protocol/target-state.js'
import {BASE_IMAGE, ensureBaseImage, ensureDocker, type RunningRegistry, startRegistry} from '../helpers/docker.js'
import {deviceTarget} from '../helpers/target-state.js'

async function drain(stream: NodeJS.ReadableStream): Promise<string> {
  let text = ''
  for await (const chunk of stream) text += (chunk as Buffer).toString('utf8')
  return text
}

describe('agent fetching release images from a registry', function () {
  this.timeout(120_000)
  const docker = new Docker()
  const deviceUuid = randomBytes(16).toString('hex')
  const appUuid = randomBytes(16).toString('hex')
  const appId = randomInt(100_000, 900_000)
  const ownerLabel = `${LABELS.deviceUuid}=${deviceUuid}`
  let registry: RunningRegistry
  let dataDir: string
  let executor: DockerExecutor
  let options: ConvergeOptions
  let releaseImage: string | undefined
  let repository: string | undefined
  const systemLines: string[] = []
  const applied: Step['action'][] = []

  function target(commit: string, releaseId: number, image: string): TargetDevice {
    const service = {id: 1, image_id: releaseId, image, environment: {}, labels: {}, composition: {command: ['sh', '-c', 'trap "exit 0" TERM; sleep 3600 & wait']}}
    return deviceTarget({uuid: appUuid, id: appId}, {commit, id: releaseId, services: {main: service}})
  }

  const hasReference = async (reference: string) => (await docker.listImages()).some((image) => [...(image.RepoTags ?? []), ...(image.RepoDigests ?? [])].includes(reference))

  before(async () => {
    await ensureDocker()
    await ensureBaseImage()
    registry = await startRegistry()
    repository = `${registry.address}/v2/${randomBytes(16).toString('hex')}`
    await docker.getImage(BASE_IMAGE).tag({repo: repository, tag: 'latest'})
    // The engine wants an auth header even for a registry that needs none.
    const pushed = await drain(await docker.getImage(`${repository}:latest`).push({authconfig: {serveraddress: registry.address}}))
    const digest = /"Digest":"(sha256:[0-9a-f]{64})"/.exec(pushed)?.[1] ?? /digest: (sha256:[0-9a-f]{64})/.exec(pushed)?.[1]
    assert.ok(digest, `no digest in the push answer: ${pushed}`)
    await docker.getImage(`${repository}:latest`).remove()
    releaseImage = `${repository}@${digest}`
    dataDir = await mkdtemp(path.join(tmpdir(), 'flotilla-agent-'))
    executor = new DockerExecutor({docker, deviceUuid, dataDir, onSystemLog: (message) => systemLines.push(message)})
    options = {deviceUuid, hostNetwork: true, lockDirOf: executor.lockDirOf}
  })

  after(async () => {
    for (const container of await docker.listContainers({all: true, filters: {label: [ownerLabel]}})) await docker.getContainer(container.Id).remove({force: true})
    for (const reference of [releaseImage, repository && `${repository}:latest`]) {
      if (reference && (await hasReference(reference))) await docker.getImage(reference).remove()
    }

    await registry?.stop()
    if (dataDir) await rm(dataDir, {recursive: true, force: true})
  })

  it('pulls the release image by digest before running it', async () => {
    assert.equal(await hasReference(releaseImage as string), false)
    const tracking = {...options, onPlan: (_current: unknown, plan: {steps: Step[]}) => applied.push(...plan.steps.map((step) => step.action))}
    const result = await converge(executor, target(randomBytes(16).toString('hex'), 1, releaseImage as string), tracking)
    assert.deepEqual(result.failures, [])
    assert.deepEqual(applied, ['fetch', 'createAndStart'])
    assert.equal(await hasReference(releaseImage as string), true)
    assert.ok(systemLines.includes(`Downloading image '${releaseImage}'`))
    const [container] = await docker.listContainers({filters: {label: [ownerLabel]}})
    assert.equal(container.State, 'running')
  })

  it('removes the image it fetched once no release uses it', async () => {
    const result = await converge(executor, target(randomBytes(16).toString('hex'), 2, BASE_IMAGE), options)
    assert.deepEqual(result.failures, [])
    assert.equal(result.settled, true)
    assert.equal(await hasReference(releaseImage as string), false)
    assert.equal(await hasReference(BASE_IMAGE), true, 'an image the agent did not fetch stays')
  })
})
