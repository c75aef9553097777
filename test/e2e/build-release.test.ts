import {strict as assert} from 'node:assert'
import {randomBytes} from 'node:crypto'
import {mkdirSync, mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'

import Docker from 'dockerode'

import type {BuildEvent} from '../../src/protocol/build-events.js'
import {packProject} from '../../src/project/pack.js'
import {type BuildStore, buildRelease, newImageRepository, type ReleaseBuildRequest} from '../../src/server/builder/build-release.js'
import {UploadedProject} from '../../src/server/builder/upload.js'
import {BASE_IMAGE, ensureBaseImage, ensureDocker, ensurePlatformBaseImage, pushMultiPlatformImage, type RunningRegistry, startRegistry} from '../helpers/docker.js'
import {freeLoopbackPort} from '../helpers/net.js'

async function drain(stream: NodeJS.ReadableStream): Promise<void> {
  for await (const chunk of stream) void chunk
}

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

  /** Every build here builds: reuse across releases is the route's (push-repush.test.ts). */
  async findReusableImage(): Promise<undefined> {
    return undefined
  }

  async reuseImage(): Promise<void> {}
}

describe('buildRelease on the real Docker engine', function () {
  this.timeout(180_000)
  const docker = new Docker()
  let project: string

  let registry: RunningRegistry
  let multiPlatformBase: string

  before(async () => {
    await ensureDocker()
    await ensureBaseImage()
    registry = await startRegistry()
    multiPlatformBase = await pushMultiPlatformImage(registry.address, 'busybox-multi', [BASE_IMAGE, await ensurePlatformBaseImage('linux/arm64')])
  })

  after(async () => registry?.stop())

  beforeEach(() => {
    project = mkdtempSync(path.join(tmpdir(), 'flotilla-build-'))
  })

  afterEach(() => rmSync(project, {recursive: true, force: true}))

  async function build(store: MemoryBuildStore, overrides: Partial<Pick<ReleaseBuildRequest, 'deviceType' | 'arch' | 'registryMirror'>> = {}, signal = new AbortController().signal) {
    const events: BuildEvent[] = []
    const uploaded = await UploadedProject.receive(packProject(project))
    try {
      const result = await buildRelease({
        docker,
        project: uploaded,
        deviceType: 'intel-nuc',
        arch: 'amd64',
        ...overrides,
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

  it('builds a Dockerfile.template resolved for an aarch64 fleet as a linux/arm64 image from a multi-platform base, its RUN steps emulated, and records the image', async () => {
    writeFileSync(path.join(project, 'Dockerfile.template'), `FROM ${multiPlatformBase}\nRUN echo "arch=%%BALENA_ARCH%% machine=%%BALENA_MACHINE_NAME%% built-on=$(uname -m)" > /built-for\nCMD echo "$(cat /built-for) runs-on=$(uname -m)"\n`)
    const store = new MemoryBuildStore()
    const {result, messages} = await build(store, {deviceType: 'raspberrypi4-64', arch: 'aarch64'})
    assert.equal(result.status, 'success', messages.join('\n'))
    assert.ok(messages.includes('[Info] Building main for raspberrypi4-64 (aarch64, linux/arm64)'), messages.join('\n'))
    assert.ok(messages.includes("[Info] This server's CPU is x86_64: RUN steps for linux/arm64 run under emulation (qemu-aarch64)"), messages.join('\n'))
    const [image] = [...store.images.values()]
    assert.equal(image.status, 'success')
    assert.equal(image.architecture, 'linux/arm64')
    assert.ok(Number(image.image_size) > 0)
    assert.equal((await docker.getImage(`${image.location}:latest`).inspect()).Architecture, 'arm64')
    const container = await docker.createContainer({Image: `${image.location}:latest`, HostConfig: {NetworkMode: 'none'}})
    try {
      await container.start()
      await container.wait()
      const output = (await container.logs({stdout: true})).toString()
      assert.match(output, /arch=aarch64 machine=raspberrypi4-64 built-on=aarch64 runs-on=aarch64/)
    } finally {
      await container.remove({force: true})
      await docker.getImage(`${image.location}:latest`).remove({force: true})
      await docker.getImage(multiPlatformBase).remove().catch(() => undefined)
    }
  })

  it('builds an amd64 fleet\'s image from the amd64 variant of the same multi-platform base', async () => {
    writeFileSync(path.join(project, 'Dockerfile'), `FROM ${multiPlatformBase}\nRUN uname -m > /built-on\n`)
    const store = new MemoryBuildStore()
    const {result, messages} = await build(store)
    assert.equal(result.status, 'success', messages.join('\n'))
    const [image] = [...store.images.values()]
    assert.equal(image.architecture, 'linux/amd64')
    assert.equal((await docker.getImage(`${image.location}:latest`).inspect()).Architecture, 'amd64')
    await docker.getImage(`${image.location}:latest`).remove({force: true})
    await docker.getImage(multiPlatformBase).remove().catch(() => undefined)
  })

  it('fails an aarch64 fleet\'s build whose base image the engine has only for linux/amd64, naming both platforms', async () => {
    writeFileSync(path.join(project, 'Dockerfile'), 'FROM flotilla-test/busybox:latest\nCMD true\n')
    const store = new MemoryBuildStore()
    const {result} = await build(store, {deviceType: 'raspberrypi4-64', arch: 'aarch64'})
    assert.equal(result.status, 'failed')
    assert.match(result.error ?? '', /^\[main\] the image is for linux\/amd64, not linux\/arm64 as raspberrypi4-64 devices need: .*docker pull --platform linux\/arm64/)
    const [image] = [...store.images.values()]
    await assert.rejects(docker.getImage(`${image.location}:latest`).inspect(), /no such image/i)
  })

  it('makes an image-only service an image of the release from the engine\'s copy, beside the built one, and keeps registry secrets out of contexts', async () => {
    const upstream = `flotilla-test/upstream-${randomBytes(4).toString('hex')}:1`
    await docker.getImage(BASE_IMAGE).tag({repo: upstream.split(':')[0], tag: '1'})
    try {
      writeFileSync(path.join(project, 'docker-compose.yml'), `services:\n  app:\n    build: .\n  cache:\n    image: ${upstream}\n`)
      writeFileSync(path.join(project, 'Dockerfile'), 'FROM flotilla-test/busybox:latest\nCOPY . /app\nRUN test -e /app/docker-compose.yml && test ! -e /app/.balena/registry-secrets.json\n')
      mkdirSync(path.join(project, '.balena'))
      writeFileSync(path.join(project, '.balena', 'registry-secrets.json'), '{"": {"username": "someone", "password": "secret"}}')
      const store = new MemoryBuildStore()
      const {result, messages} = await build(store)
      assert.equal(result.status, 'success', messages.join('\n'))
      assert.deepEqual([...store.services].sort(), ['app', 'cache'])
      const cache = [...store.images.values()].find((image) => image.serviceId === store.services.indexOf('cache') + 1) as Record<string, unknown>
      assert.equal(cache.status, 'success')
      assert.equal(cache.architecture, 'linux/amd64')
      assert.equal((await docker.getImage(`${cache.location}:latest`).inspect()).Id, (await docker.getImage(upstream).inspect()).Id)
      assert.ok(messages.some((message) => message.startsWith('[cache] Image ready for linux/amd64')), messages.join('\n'))
      for (const image of store.images.values()) await docker.getImage(`${image.location}:latest`).remove({force: true})
    } finally {
      await docker.getImage(upstream).remove().catch(() => undefined)
    }
  })

  it('fails the release when an image-only service cannot be pulled, naming the image and the reason', async () => {
    const missing = `127.0.0.1:${await freeLoopbackPort()}/nowhere/thing:1`
    writeFileSync(path.join(project, 'docker-compose.yml'), `services:\n  app:\n    build: .\n  thing:\n    image: ${missing}\n`)
    writeFileSync(path.join(project, 'Dockerfile'), 'FROM flotilla-test/busybox:latest\n')
    const {result} = await build(new MemoryBuildStore())
    assert.equal(result.status, 'failed')
    assert.ok(result.error?.startsWith(`[thing] could not pull image "${missing}" for linux/amd64: `), result.error)
    assert.match(result.error ?? '', /connection refused|dial tcp/)
  })

  it('pulls a Docker Hub image-only service from the configured mirror when the engine lacks it', async () => {
    const name = `flotilla-mirror-test-${randomBytes(4).toString('hex')}`
    const onMirror = `${registry.address}/library/${name}`
    try {
      await docker.getImage(BASE_IMAGE).tag({repo: onMirror, tag: '2'})
      await drain(await docker.getImage(`${onMirror}:2`).push({authconfig: {serveraddress: registry.address}}))
      await docker.getImage(`${onMirror}:2`).remove()
      writeFileSync(path.join(project, 'docker-compose.yml'), `services:\n  thing:\n    image: ${name}:2\n`)
      const store = new MemoryBuildStore()
      const {result, messages} = await build(store, {registryMirror: registry.address})
      assert.equal(result.status, 'success', messages.join('\n'))
      assert.ok(messages.includes(`[thing] Pulling ${onMirror}:2 for linux/amd64`), messages.join('\n'))
      const [image] = [...store.images.values()]
      assert.equal((await docker.getImage(`${image.location}:latest`).inspect()).Id, (await docker.getImage(`${name}:2`).inspect()).Id)
      await docker.getImage(`${image.location}:latest`).remove({force: true})
    } finally {
      for (const reference of [`${name}:2`, `${onMirror}:2`]) await docker.getImage(reference).remove().catch(() => undefined)
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
