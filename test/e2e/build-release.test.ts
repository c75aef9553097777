import {strict as assert} from 'node:assert'
import {mkdirSync, mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'

import Docker from 'dockerode'

import type {BuildEvent} from '../../src/protocol/build-events.js'
import {packProject} from '../../src/project/pack.js'
import {type BuildStore, buildRelease, newImageRepository} from '../../src/server/builder/build-release.js'
import {UploadedProject} from '../../src/server/builder/upload.js'
import {ensureBaseImage, ensureDocker} from '../helpers/docker.js'

/** The database side of a build, kept in memory: this test is about the engine, not SQL. */
class MemoryBuildStore implements BuildStore {
  readonly images = new Map<number, Record<string, unknown>>()
  readonly services: string[] = []
  cancelled = false

  async ensureService(serviceName: string): Promise<number> {
    if (!this.services.includes(serviceName)) this.services.push(serviceName)
    return this.services.indexOf(serviceName) + 1
  }

  async createImage(serviceId: number): Promise<{imageId: number; location: string}> {
    const imageId = this.images.size + 1
    const location = newImageRepository(null)
    this.images.set(imageId, {serviceId, location})
    return {imageId, location}
  }

  async updateImage(imageId: number, patch: Record<string, unknown>): Promise<void> {
    this.images.set(imageId, {...this.images.get(imageId), ...patch})
  }

  async isCancelled(): Promise<boolean> {
    return this.cancelled
  }
}

describe('buildRelease on the real Docker engine', function () {
  this.timeout(180_000)
  const docker = new Docker()
  let project: string

  before(async () => {
    await ensureDocker()
    await ensureBaseImage()
  })

  beforeEach(() => {
    project = mkdtempSync(path.join(tmpdir(), 'flotilla-build-'))
  })

  afterEach(() => rmSync(project, {recursive: true, force: true}))

  async function build(store: MemoryBuildStore, signal = new AbortController().signal) {
    const events: BuildEvent[] = []
    const uploaded = await UploadedProject.receive(packProject(project))
    try {
      const result = await buildRelease({
        docker,
        project: uploaded,
        deviceType: 'raspberrypi4-64',
        arch: 'aarch64',
        nocache: false,
        registry: null,
        store,
        network: 'none',
        timeoutMs: 600_000,
        signal,
        emit: (event) => events.push(event),
      })
      return {result, events, messages: events.map((event) => ('message' in event ? event.message : ''))}
    } finally {
      await uploaded.dispose()
    }
  }

  it('builds a Dockerfile.template resolved for the fleet, and records the image', async () => {
    writeFileSync(path.join(project, 'Dockerfile.template'), 'FROM flotilla-test/busybox:latest\nRUN echo "arch=%%BALENA_ARCH%% machine=%%BALENA_MACHINE_NAME%%" > /built-for\nCMD cat /built-for\n')
    const store = new MemoryBuildStore()
    const {result, messages} = await build(store)
    assert.equal(result.status, 'success', messages.join('\n'))
    const [image] = [...store.images.values()]
    assert.equal(image.status, 'success')
    assert.ok(Number(image.image_size) > 0)
    const container = await docker.createContainer({Image: `${image.location}:latest`, HostConfig: {NetworkMode: 'host'}})
    try {
      await container.start()
      await container.wait()
      const output = (await container.logs({stdout: true})).toString()
      assert.match(output, /arch=aarch64 machine=raspberrypi4-64/)
    } finally {
      await container.remove({force: true})
      await docker.getImage(`${image.location}:latest`).remove({force: true})
    }
  })

  it('builds the services of a compose project in parallel, each from its own context', async () => {
    mkdirSync(path.join(project, 'front'))
    mkdirSync(path.join(project, 'back'))
    writeFileSync(path.join(project, 'docker-compose.yml'), 'version: "2.1"\nservices:\n  front:\n    build: ./front\n  back:\n    build:\n      context: back\n')
    writeFileSync(path.join(project, 'front', 'Dockerfile'), 'FROM flotilla-test/busybox:latest\nRUN echo front > /name\n')
    writeFileSync(path.join(project, 'back', 'Dockerfile'), 'FROM flotilla-test/busybox:latest\nRUN echo back > /name\n')
    const store = new MemoryBuildStore()
    const {result, messages} = await build(store)
    assert.equal(result.status, 'success', messages.join('\n'))
    assert.deepEqual([...store.services].sort(), ['back', 'front'])
    assert.ok(messages.some((message) => message.startsWith('[front]')))
    assert.ok(messages.some((message) => message.startsWith('[back]')))
    for (const image of store.images.values()) await docker.getImage(`${image.location}:latest`).remove({force: true})
  })

  it('fails a release whose Dockerfile fails, naming the service, and leaves no tagged image behind', async () => {
    mkdirSync(path.join(project, 'good'))
    mkdirSync(path.join(project, 'bad'))
    writeFileSync(path.join(project, 'docker-compose.yml'), 'services:\n  good:\n    build: good\n  bad:\n    build: bad\n')
    writeFileSync(path.join(project, 'good', 'Dockerfile'), 'FROM flotilla-test/busybox:latest\nRUN echo fine\n')
    writeFileSync(path.join(project, 'bad', 'Dockerfile'), 'FROM flotilla-test/busybox:latest\nRUN echo about to fail && exit 3\n')
    const store = new MemoryBuildStore()
    const {result, events} = await build(store)
    assert.equal(result.status, 'failed')
    assert.match(result.error ?? '', /^\[bad\].*(exit code: 3|returned a non-zero code: 3)/)
    assert.ok(events.some((event) => 'isError' in event && event.isError))
    for (const image of store.images.values()) {
      await assert.rejects(docker.getImage(`${image.location}:latest`).inspect(), /no such image/i)
    }
  })

  it('fails before building a folder with nothing to build', async () => {
    writeFileSync(path.join(project, 'README'), 'no Dockerfile here\n')
    const {result} = await build(new MemoryBuildStore())
    assert.equal(result.status, 'failed')
    assert.match(result.error ?? '', /Dockerfile|docker-compose/)
  })
})
