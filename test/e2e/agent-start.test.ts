import assert from 'node:assert/strict'
import {randomBytes, randomInt} from 'node:crypto'
import {mkdtemp, readFile, rm, writeFile} from 'node:fs/promises'
import {createServer, type IncomingMessage, type Server} from 'node:http'
import type {AddressInfo} from 'node:net'
import {tmpdir} from 'node:os'
import path from 'node:path'

import Docker from 'dockerode'

import {type RunningAgent, startAgent} from '../../src/agent/agent.js'
import {LABELS} from '../../src/agent/reconciler.js'
import type {LogLine} from '../../src/protocol/log-line.js'
import type {StateReport} from '../../src/protocol/state-report.js'
import type {TargetState} from '../../src/protocol/target-state.js'
import {BASE_IMAGE, ensureBaseImage, ensureDocker} from '../helpers/docker.js'
import {deviceTarget} from '../helpers/target-state.js'

const PROVISIONING_KEY = 'provisioningkeyprovisioningkey12'

async function waitFor<T>(what: string, probe: () => Promise<T | undefined> | T | undefined, deadlineMs = 30_000): Promise<T> {
  const deadline = Date.now() + deadlineMs
  for (;;) {
    const value = await probe()
    if (value !== undefined) return value
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}

async function bodyOf(request: IncomingMessage): Promise<string> {
  let text = ''
  for await (const chunk of request) text += (chunk as Buffer).toString('utf8')
  return text
}

/** The few fleet server endpoints the agent speaks, replaying PROTOCOL.md's shapes, recording what arrives. */
class FakeFleetServer {
  registrations: Array<Record<string, unknown>> = []
  reports: StateReport[] = []
  lines: LogLine[] = []
  target: TargetState = {}
  deviceKey?: string
  private server?: Server

  async listen(port = 0): Promise<number> {
    this.server = createServer(async (request, response) => {
      const url = new URL(request.url ?? '/', 'http://localhost')
      const body = await bodyOf(request)
      const bearer = request.headers.authorization?.replace(/^Bearer /, '')
      if (request.method === 'POST' && url.pathname === '/device/register') {
        if (bearer !== PROVISIONING_KEY) return void response.writeHead(401).end()
        const registration = JSON.parse(body) as Record<string, unknown>
        this.registrations.push(registration)
        this.deviceKey = String(registration.api_key)
        response.writeHead(201, {'content-type': 'application/json'}).end(JSON.stringify({id: 42, uuid: registration.uuid, api_key: registration.api_key}))
        return
      }

      if (bearer === undefined || bearer !== this.deviceKey) return void response.writeHead(401).end()
      if (request.method === 'GET' && /^\/device\/v3\/[0-9a-f]+\/state$/.test(url.pathname)) {
        const etag = `"${JSON.stringify(this.target).length}-${Object.keys(this.target).length}"`
        if (request.headers['if-none-match'] === etag) return void response.writeHead(304).end()
        response.writeHead(200, {'content-type': 'application/json', etag}).end(JSON.stringify(this.target))
        return
      }

      if (request.method === 'PATCH' && url.pathname === '/device/v3/state') {
        this.reports.push(JSON.parse(body) as StateReport)
        return void response.writeHead(200).end()
      }

      if (request.method === 'POST' && /^\/device\/v2\/[0-9a-f]+\/log-stream$/.test(url.pathname)) {
        assert.equal(request.headers['content-type'], 'application/x-ndjson')
        for (const line of body.split('\n').filter(Boolean)) this.lines.push(JSON.parse(line) as LogLine)
        return void response.writeHead(201).end()
      }

      response.writeHead(404).end()
    })
    await new Promise<void>((resolve) => this.server?.listen(port, '127.0.0.1', resolve))
    return (this.server.address() as AddressInfo).port
  }

  async close(): Promise<void> {
    this.server?.closeAllConnections()
    await new Promise((resolve) => this.server?.close(resolve))
  }
}

describe('agent against a fake fleet server and the Docker engine', function () {
  this.timeout(120_000)
  const docker = new Docker()
  const appUuid = randomBytes(16).toString('hex')
  const appId = randomInt(100_000, 900_000)
  const commit = randomBytes(16).toString('hex')
  const server = new FakeFleetServer()
  const diagnostics: string[] = []
  let dataDir: string
  let configPath: string
  let agent: RunningAgent | undefined
  let uuid: string
  let serverPort: number

  const ownContainers = () => docker.listContainers({all: true, filters: {label: [`${LABELS.deviceUuid}=${uuid}`]}})
  const mainContainer = async () => (await ownContainers()).find((container) => container.Labels[LABELS.serviceName] === 'main')
  const start = () => startAgent({configPath, dataDir, hostNetwork: true, localApiPort: 0, reconcileIntervalMs: 300, reportIntervalMs: 200, logger: (line) => diagnostics.push(line)})
  const local = async (agentApi: RunningAgent, route: string) => (await fetch(`http://127.0.0.1:${agentApi.localApiPort}${route}`, {headers: {authorization: `Bearer ${agentApi.localApiKey}`}})).text()

  before(async () => {
    await ensureDocker()
    await ensureBaseImage()
    dataDir = await mkdtemp(path.join(tmpdir(), 'flotilla-agent-'))
    configPath = path.join(dataDir, 'config.json')
    serverPort = await server.listen()
    await writeFile(configPath, JSON.stringify({apiEndpoint: `http://127.0.0.1:${serverPort}`, apiKey: PROVISIONING_KEY, applicationId: appId, deviceType: 'generic-amd64', appUpdatePollInterval: 60_000}))
  })

  after(async () => {
    await agent?.stop()
    await server.close()
    if (uuid) {
      for (const container of await ownContainers()) await docker.getContainer(container.Id).remove({force: true})
      const {Volumes: volumes} = await docker.listVolumes({filters: {label: [`${LABELS.deviceUuid}=${uuid}`]}})
      for (const volume of volumes ?? []) await docker.getVolume(volume.Name).remove()
    }

    await rm(dataDir, {recursive: true, force: true})
  })

  it('registers with the provisioning key and stores its identity in config.json', async () => {
    agent = await start()
    uuid = await agent.registered
    assert.match(uuid, /^[0-9a-f]{32}$/)
    const [registration] = server.registrations
    assert.equal(registration.uuid, uuid)
    assert.equal(registration.application, appId)
    assert.equal(registration.device_type, 'generic-amd64')
    const config = JSON.parse(await readFile(configPath, 'utf8')) as Record<string, unknown>
    assert.equal(config.uuid, uuid)
    assert.equal(config.deviceId, 42)
    assert.equal(config.deviceApiKey, registration.api_key)
    assert.equal(typeof config.registered_at, 'number')
    assert.equal(config.apiKey, undefined)
  })

  it('runs the target, ships its output and reports the running release, whatever a crashing service does', async () => {
    server.target = {
      [uuid]: deviceTarget({uuid: appUuid, id: appId}, {
        commit,
        id: 5,
        services: {
          main: {id: 9, image_id: 7, image: BASE_IMAGE, environment: {}, labels: {}, composition: {command: ['sh', '-c', 'trap "exit 0" TERM; echo hello; sleep 3600 & wait']}},
          crasher: {id: 10, image_id: 8, image: BASE_IMAGE, environment: {}, labels: {}, composition: {command: ['sh', '-c', 'echo boom >&2; exit 3']}},
        },
      }),
    }
    await agent?.pollNow()
    const hello = await waitFor('the hello line at the log stream', () => server.lines.find((line) => line.message === 'hello'))
    assert.equal(hello.isSystem, false)
    assert.equal(hello.isStdErr, false)
    assert.equal(hello.serviceId, 9)
    assert.ok(server.lines.some((line) => line.isSystem && line.message.startsWith('Starting service')), 'the agent says it starts the service')
    const boom = await waitFor('the crashing service\'s stderr', () => server.lines.find((line) => line.message === 'boom'))
    assert.equal(boom.isStdErr, true)
    await waitFor('the crash noticed', () => server.lines.find((line) => line.isSystem && line.message === "Service exited 'crasher' with code 3"))
    const report = await waitFor('a report of the running release', () =>
      server.reports.map((candidate) => candidate[uuid]?.apps?.[appUuid]).find((app) => app?.release_uuid === commit && app.releases[commit]?.services.main?.status === 'Running'),
    )
    assert.equal(report.releases[commit].update_status, 'done')
    assert.equal(server.reports.at(-1)?.[uuid].supervisor_version !== undefined, true)
  })

  it('serves the local API', async () => {
    assert.ok(agent)
    assert.equal(await local(agent, '/ping'), 'OK')
    assert.equal(JSON.parse(await local(agent, '/v2/version')).status, 'success')
    const state = JSON.parse(await local(agent, '/v2/applications/state')) as Record<string, {appId: number; commit: string; services: Record<string, {status: string}>}>
    assert.equal(state.testfleet.appId, appId)
    assert.equal(state.testfleet.commit, commit)
    assert.equal(state.testfleet.services.main.status, 'running')
  })

  it('keeps the services running while the server is down, across a restart of the agent', async () => {
    const running = await mainContainer()
    assert.ok(running)
    await server.close()
    await agent?.stop()
    agent = await start()
    await agent.pollNow()
    await waitFor('a failed poll', () => (diagnostics.some((line) => line.startsWith('target state poll failed')) ? true : undefined))
    const status = await waitFor('the agent to settle on the stored target', async () => {
      const answer = JSON.parse(await local(agent as RunningAgent, '/v2/state/status')) as {appState: string; containers: Array<{containerId: string; serviceName: string; status: string}>}
      return answer.appState === 'applied' ? answer : undefined
    })
    const main = status.containers.filter((container) => container.serviceName === 'main')
    assert.deepEqual(main.map((container) => [container.containerId, container.status]), [[running.Id, 'running']])
    assert.equal(status.containers.length, 2)
  })

  it('sends the lines it kept while the server was down once it is back', async () => {
    server.lines = []
    await docker.getContainer((await mainContainer())?.Id ?? '').restart({t: 1})
    await server.listen(serverPort)
    await waitFor('the hello line of the restarted container', () => server.lines.find((line) => line.message === 'hello'))
    assert.ok(server.lines.some((line) => line.isSystem && line.message.startsWith("Service exited 'main'")))
  })
})
