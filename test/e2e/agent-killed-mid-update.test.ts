import assert from 'node:assert/strict'
import {randomBytes} from 'node:crypto'
import {mkdtempSync, rmSync} from 'node:fs'
import {readFile} from 'node:fs/promises'
import {createConnection, createServer, type Server, type Socket} from 'node:net'
import {tmpdir} from 'node:os'
import path from 'node:path'

import Docker from 'dockerode'

import {LABELS} from '../../src/agent/reconciler.js'
import {AgentProcess, generateDeviceConfig} from '../helpers/agent.js'
import {makeCliHome} from '../helpers/cli.js'
import {BASE_IMAGE, ensureBaseImage, ensureDocker, type RunningRegistry, startRegistry} from '../helpers/docker.js'
import {eventually, FleetApi} from '../helpers/fleet-api.js'
import {startServer, type TestServer} from '../helpers/server.js'

/** Says what its volume holds, then sleeps; leaves at once on SIGTERM. */
const script = (release: string) => `trap "exit 0" TERM; echo "${release} found $(cat /data/note 2>/dev/null || echo nothing)"; sleep 3600 & wait`

/**
 * A TCP relay in front of the registry that can hold new connections: while held, the engine's pull of a
 * release image hangs, so the agent is caught in the middle of its fetch step.
 */
class HoldingRelay {
  readonly held: Socket[] = []
  private holding = false
  private readonly sockets = new Set<Socket>()
  private server?: Server

  constructor(private readonly upstream: {host: string; port: number}) {}

  async listen(): Promise<string> {
    this.server = createServer((socket) => {
      this.sockets.add(socket)
      socket.once('close', () => this.sockets.delete(socket))
      socket.on('error', () => socket.destroy())
      if (this.holding) this.held.push(socket)
      else this.relay(socket)
    })
    await new Promise<void>((resolve) => this.server?.listen(0, '127.0.0.1', resolve))
    const address = this.server.address()
    return `127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`
  }

  hold(): void {
    this.holding = true
  }

  release(): void {
    this.holding = false
    for (const socket of this.held.splice(0)) if (!socket.destroyed) this.relay(socket)
  }

  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy()
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()))
  }

  private relay(socket: Socket): void {
    const upstream = createConnection(this.upstream)
    this.sockets.add(upstream)
    upstream.once('close', () => this.sockets.delete(upstream))
    upstream.on('error', () => socket.destroy())
    socket.once('close', () => upstream.destroy())
    upstream.once('close', () => socket.destroy())
    socket.pipe(upstream).pipe(socket)
  }
}

describe('the agent killed in the middle of an update', function () {
  this.timeout(240_000)
  const docker = new Docker()
  const home = makeCliHome()
  const workDir = mkdtempSync(path.join(tmpdir(), 'flotilla-agent-killed-'))
  const volume = `data-${randomBytes(4).toString('hex')}`
  // Container names hold the commit and the engine's names are global: this run's own, so no other test's leftover takes them.
  const oldCommit = randomBytes(16).toString('hex')
  const newCommit = randomBytes(16).toString('hex')
  let registry: RunningRegistry
  let relay: HoldingRelay
  let server: TestServer
  let agent: AgentProcess | undefined
  let deviceUuid: string | undefined
  const images: string[] = []
  let stopEvents: (() => void) | undefined

  before(async () => {
    await ensureDocker()
    await ensureBaseImage()
    registry = await startRegistry()
    const [host, port] = registry.address.split(':')
    relay = new HoldingRelay({host, port: Number(port)})
    // Devices pull through the relay: the server announces it as its registry.
    server = await startServer({args: ['--registry', await relay.listen()]})
  })

  after(async () => {
    stopEvents?.()
    await agent?.kill()
    if (deviceUuid) {
      for (const container of await docker.listContainers({all: true, filters: {label: [`${LABELS.deviceUuid}=${deviceUuid}`]}})) await docker.getContainer(container.Id).remove({force: true})
      const {Volumes: volumes} = await docker.listVolumes({filters: {label: [`${LABELS.deviceUuid}=${deviceUuid}`]}})
      for (const {Name: name} of volumes ?? []) await docker.getVolume(name).remove().catch(() => undefined)
    }

    for (const image of images) await docker.getImage(image).remove().catch(() => undefined)
    await server?.stop()
    await relay?.close()
    await registry?.stop()
    rmSync(workDir, {recursive: true, force: true})
    rmSync(home, {recursive: true, force: true})
  })

  it('converges when started again: the new release runs, once, on the old volume, whatever step the kill interrupted', async () => {
    const api = new FleetApi(server.url)
    const token = await api.login(server.admin.username, server.admin.password)
    const fleet = await api.createFleet(token, 'killed')
    const composition = (release: string) => ({image: 'main', command: ['sh', '-c', script(release)], volumes: [`${volume}:/data`]})
    const first = await api.createRelease(token, fleet.id, oldCommit, composition('old'))
    // The first release's image is already on the device; the second one has to come from the registry.
    await docker.getImage(BASE_IMAGE).tag({repo: first.location, tag: 'latest'})
    images.push(`${first.location}:latest`)

    const configPath = path.join(workDir, 'config.json')
    await generateDeviceConfig({serverUrl: server.url, token, home, fleetSlug: fleet.slug, file: configPath})
    const args = ['--config', configPath, '--data-dir', path.join(workDir, 'agent'), '--host-network', '--local-api-port', '0', '--poll-interval', '1']
    agent = new AgentProcess(args)
    await agent.start()
    deviceUuid = await eventually(async () => ((JSON.parse(await readFile(configPath, 'utf8')) as {uuid?: string}).uuid), 'the device registered')
    const owned = () => docker.listContainers({all: true, filters: {label: [`${LABELS.deviceUuid}=${deviceUuid}`]}})
    const logsOf = async (id: string) => (await docker.getContainer(id).logs({stdout: true, stderr: true})).toString('utf8')

    const old = await eventually(async () => (await owned()).find((container) => container.State === 'running'), `the first release running\n${agent.output}`, 60_000)
    const execution = await docker.getContainer(old.Id).exec({Cmd: ['sh', '-c', 'echo precious > /data/note'], AttachStdout: true, AttachStderr: true})
    const output = await execution.start({})
    output.resume()
    await new Promise((resolve) => output.once('end', resolve))
    assert.equal((await execution.inspect()).ExitCode, 0, 'the note written to the volume')

    // The second release, pushed to the registry but not on the device; its download will hang at the relay.
    relay.hold()
    const second = await api.createRelease(token, fleet.id, newCommit, composition('new'))
    const repository = `${registry.address}/${second.location.slice(second.location.indexOf('/') + 1)}`
    await docker.getImage(BASE_IMAGE).tag({repo: repository, tag: 'latest'})
    const pushed = await docker.getImage(`${repository}:latest`).push({authconfig: {serveraddress: registry.address}})
    pushed.resume()
    await new Promise((resolve, reject) => pushed.once('end', resolve).once('error', reject))
    await docker.getImage(`${repository}:latest`).remove()
    images.push(`${second.location}:latest`)

    // Kill 1: in the fetch step (the engine is pulling through the held relay).
    await eventually(async () => relay.held.length > 0, `the agent to start downloading the new release\n${agent.output}`, 60_000)
    await agent.kill()
    const during = await owned()
    assert.deepEqual(during.map((container) => [container.Id, container.State]), [[old.Id, 'running']], 'download-then-kill: the old release runs on while the new one downloads')

    // Kill 2: as the old container is being stopped, between the download and the new container.
    relay.release()
    const events = (await docker.getEvents({filters: {type: ['container'], event: ['kill', 'stop', 'destroy', 'create'], label: [`${LABELS.deviceUuid}=${deviceUuid}`]}})) as NodeJS.ReadableStream & {destroy(): void}
    stopEvents = () => events.destroy()
    const killedAt = new Promise<string>((resolve) => {
      events.on('data', (chunk: Buffer) => {
        const action = /"Action":"(\w+)"/.exec(chunk.toString('utf8'))?.[1]
        if (action) resolve(action)
      })
    })
    agent = new AgentProcess(args)
    await agent.start()
    const interrupted = await killedAt
    await agent.kill()
    stopEvents()

    // Started again, it converges.
    agent = new AgentProcess(args)
    await agent.start()
    const converged = await eventually(async () => {
      const containers = await owned()
      return containers.length === 1 && containers[0].State === 'running' && containers[0].Labels[LABELS.commit] === newCommit ? containers[0] : undefined
    }, `the new release running alone (the second agent was killed at the engine's "${interrupted}")\n${agent.output}`, 90_000)
    assert.equal(converged.Names[0], `/main_${second.imageId}_${second.id}_${newCommit}`)
    await eventually(async () => (await logsOf(converged.Id)).includes('new found precious'), 'the new release on the old volume')

    // It stays so: nothing duplicated or left behind by the interrupted agents, and the server hears of it.
    await new Promise((resolve) => setTimeout(resolve, 2000))
    assert.deepEqual((await owned()).map((container) => container.Id), [converged.Id])
    const {Volumes: volumes} = await docker.listVolumes({filters: {label: [`${LABELS.deviceUuid}=${deviceUuid}`]}})
    assert.deepEqual((volumes ?? []).map((entry) => entry.Name), [`${fleet.id}_${volume}`])
    await eventually(async () => {
      const row = (await api.call('GET', `/v7/device?$select=id&$filter=uuid eq '${deviceUuid}'&$expand=is_running__release($select=commit)`, {token})).json().d[0]
      return row?.is_running__release[0]?.commit === newCommit
    }, 'the device to report the new release running')
  })
})
