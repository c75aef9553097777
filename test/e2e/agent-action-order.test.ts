import assert from 'node:assert/strict'
import {mkdtempSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'

import Docker from 'dockerode'

import {type RunningAgent, startAgent} from '../../src/agent/agent.js'
import {LABELS} from '../../src/agent/reconciler.js'
import {generateDeviceConfig, releaseOfBaseImage} from '../helpers/agent.js'
import {makeCliHome} from '../helpers/cli.js'
import {ensureBaseImage, ensureDocker} from '../helpers/docker.js'
import {eventually, FleetApi} from '../helpers/fleet-api.js'
import {startServer, type TestServer} from '../helpers/server.js'

/** Ignores SIGTERM, so stopping the service takes its whole grace period: long enough for a second action to come. */
const SLOW_TO_STOP = 'trap "" TERM; while true; do sleep 1; done'

describe('agent device actions, in the order they came', function () {
  this.timeout(120_000)
  const docker = new Docker()
  const home = makeCliHome()
  const workDir = mkdtempSync(path.join(tmpdir(), 'flotilla-action-order-'))
  let server: TestServer
  let api: FleetApi
  let token: string
  let fleetId: number
  let agent: RunningAgent | undefined
  let deviceUuid: string | undefined
  let imageTag: string | undefined

  const ownContainers = () => docker.listContainers({all: true, filters: {label: [`${LABELS.deviceUuid}=${deviceUuid}`]}})

  before(async () => {
    await ensureDocker()
    await ensureBaseImage()
    server = await startServer()
    api = new FleetApi(server.url)
    token = await api.login(server.admin.username, server.admin.password)
    const fleet = await api.createFleet(token, 'order')
    fleetId = fleet.id
    const release = await releaseOfBaseImage(api, token, fleet.id, {image: 'main', command: ['sh', '-c', SLOW_TO_STOP], stop_grace_period: '3s'})
    imageTag = release.imageTag
    const configPath = path.join(workDir, 'config.json')
    await generateDeviceConfig({serverUrl: server.url, token, home, fleetSlug: fleet.slug, file: configPath})
    agent = await startAgent({configPath, dataDir: path.join(workDir, 'agent'), hostNetwork: true, pollIntervalMs: 1000, reconcileIntervalMs: 500, reportIntervalMs: 200, localApiPort: 0, logger: () => {}})
    deviceUuid = await agent.registered
  })

  after(async () => {
    await agent?.stop()
    if (deviceUuid) for (const container of await ownContainers()) await docker.getContainer(container.Id).remove({force: true})
    if (imageTag) await docker.getImage(imageTag).remove().catch(() => undefined)
    await server?.stop()
    rmSync(workDir, {recursive: true, force: true})
    rmSync(home, {recursive: true, force: true})
  })

  it('leaves a service stopped when stop-service comes while a fleet restart is still stopping it (fleet restart, then device stop-service)', async () => {
    const running = await eventually(async () => {
      const [container, ...others] = await ownContainers()
      return others.length === 0 && container?.State === 'running' ? container : undefined
    }, 'the service running', 60_000)
    const startedAt = (await docker.getContainer(running.Id).inspect()).State.StartedAt
    await eventually(async () => (await api.call('GET', `/v7/device?$select=is_online&$filter=uuid eq '${deviceUuid}'`, {token})).json().d[0]?.is_online === true, 'the device online', 30_000)
    const [{id: deviceId}] = (await api.call('GET', `/v7/device?$select=id&$filter=uuid eq '${deviceUuid}'`, {token})).json().d

    // As balena-cli sends them: balena fleet restart, then balena device stop-service <uuid> main at once.
    assert.equal((await api.call('POST', `/application/${fleetId}/restart`, {token})).status, 200)
    const imageId = Number(running.Labels[LABELS.imageId])
    const stop = await api.call('POST', `/supervisor/v2/applications/${fleetId}/stop-service`, {token, json: {deviceId, appId: fleetId, data: {appId: fleetId, imageId}}})
    assert.equal(stop.status, 200, stop.body)

    // Restarted first (started again), then stopped; and the agent settles with it stopped.
    await eventually(async () => {
      const {State: state} = await docker.getContainer(running.Id).inspect()
      return state.Status === 'exited' && state.StartedAt !== startedAt
    }, 'the service restarted, then stopped', 60_000)
    await eventually(async () => {
      const status = (await (await fetch(`http://127.0.0.1:${agent?.localApiPort}/v2/state/status`, {headers: {authorization: `Bearer ${agent?.localApiKey}`}})).json()) as {appState: string; containers: Array<{containerId: string; status: string}>}
      return status.appState === 'applied' && status.containers.some((container) => container.containerId === running.Id && container.status === 'exited')
    }, 'the agent settled with the service stopped', 30_000)
    assert.equal((await docker.getContainer(running.Id).inspect()).State.Running, false)
  })
})
