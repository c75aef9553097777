import assert from 'node:assert/strict'
import {randomBytes} from 'node:crypto'
import {mkdtempSync, rmSync} from 'node:fs'
import {readFile, rm, stat} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import path from 'node:path'

import Docker from 'dockerode'

import {type AgentOptions, type RunningAgent, startAgent} from '../../src/agent/agent.js'
import {LABELS} from '../../src/agent/reconciler.js'
import type {LocalLogLine} from '../../src/protocol/log-line.js'
import {generateDeviceConfig, releaseOfBaseImage} from '../helpers/agent.js'
import {makeCliHome, runCli} from '../helpers/cli.js'
import {ensureBaseImage, ensureDocker} from '../helpers/docker.js'
import {eventually, FleetApi} from '../helpers/fleet-api.js'
import {startServer, type TestServer} from '../helpers/server.js'

/** Says whether its volume came with a note, then sleeps; leaves at once on SIGTERM. */
const SCRIPT = 'trap "exit 0" TERM; if [ -f /data/note ]; then echo "found $(cat /data/note)"; else echo "empty volume"; fi; sleep 3600 & wait'

describe('agent supervisor actions: purge, reboot, shutdown', function () {
  this.timeout(180_000)
  const docker = new Docker()
  const home = makeCliHome()
  const workDir = mkdtempSync(path.join(tmpdir(), 'flotilla-agent-actions-'))
  const rebootedFile = path.join(workDir, 'rebooted')
  // Volume names are `<appId>_<name>` on one engine, which other test servers' fleets share: a name of its own.
  const volume = `data-${randomBytes(4).toString('hex')}`
  const diagnostics: string[] = []
  const lines: string[] = []
  let server: TestServer
  let api: FleetApi
  let token: string
  let fleetId: number
  let agent: RunningAgent | undefined
  let agentOptions: AgentOptions
  let deviceUuid: string
  let imageTag: string | undefined
  let stopFollowing: AbortController | undefined
  let env: NodeJS.ProcessEnv

  const ownContainers = () => docker.listContainers({all: true, filters: {label: [`${LABELS.deviceUuid}=${deviceUuid}`]}})
  const runningContainer = (what: string, unlike?: string) =>
    eventually(async () => {
      const containers = await ownContainers()
      return containers.length === 1 && containers[0].State === 'running' && containers[0].Id !== unlike ? containers[0] : undefined
    }, what, 60_000)
  const logsOf = async (id: string) => (await docker.getContainer(id).logs({stdout: true, stderr: true})).toString('utf8')
  const exec = async (id: string, command: string) => {
    const execution = await docker.getContainer(id).exec({Cmd: ['sh', '-c', command], AttachStdout: true, AttachStderr: true})
    let raw = Buffer.alloc(0)
    for await (const chunk of await execution.start({})) raw = Buffer.concat([raw, chunk as Buffer])
    // Without a TTY the engine frames stdout and stderr: an 8-byte header (stream, 0, 0, 0, length) before each part.
    let output = ''
    for (let offset = 0; offset + 8 <= raw.length; offset += 8 + raw.readUInt32BE(offset + 4)) output += raw.subarray(offset + 8, offset + 8 + raw.readUInt32BE(offset + 4)).toString('utf8')
    return output
  }

  /** The server delivers actions to online devices only. */
  const online = () =>
    eventually(async () => (await api.call('GET', `/v7/device?$select=is_online&$filter=uuid eq '${deviceUuid}'`, {token})).json().d[0]?.is_online === true, 'the device online', 30_000)
  const sawLine = (pattern: RegExp, what: string) => eventually(async () => lines.find((line) => pattern.test(line)), `${what}\ndevice logs:\n${lines.join('\n')}\nagent:\n${diagnostics.join('\n')}`, 60_000)
  const post = (route: string, body: unknown) =>
    fetch(`http://127.0.0.1:${agent?.localApiPort}${route}`, {method: 'POST', body: JSON.stringify(body), headers: {'content-type': 'application/json', authorization: `Bearer ${agent?.localApiKey}`}})

  /** Collects the device's log lines as the local API streams them, as local tooling would read them. */
  async function followLocalLogs(port: number, key: string): Promise<void> {
    stopFollowing?.abort()
    const controller = new AbortController()
    stopFollowing = controller
    const response = await fetch(`http://127.0.0.1:${port}/v2/local/logs?apikey=${key}`, {signal: controller.signal})
    void (async () => {
      let pending = ''
      try {
        for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
          pending += Buffer.from(chunk).toString('utf8')
          let newline: number
          while ((newline = pending.indexOf('\n')) !== -1) {
            const line = JSON.parse(pending.slice(0, newline)) as LocalLogLine
            pending = pending.slice(newline + 1)
            lines.push(line.message)
          }
        }
      } catch {
        // Aborted at the end of the test, or the agent stopped.
      }
    })()
  }

  async function startTheAgent(): Promise<void> {
    agent = await startAgent(agentOptions)
    deviceUuid = await agent.registered
    await followLocalLogs(agent.localApiPort, agent.localApiKey)
  }

  before(async () => {
    await ensureDocker()
    await ensureBaseImage()
    server = await startServer()
    api = new FleetApi(server.url)
    token = await api.login(server.admin.username, server.admin.password)
    const fleet = await api.createFleet(token, 'actions')
    fleetId = fleet.id
    const release = await releaseOfBaseImage(api, token, fleet.id, {image: 'main', command: ['sh', '-c', SCRIPT], volumes: [`${volume}:/data`]})
    imageTag = release.imageTag
    env = {HOME: home, FLOTILLA_URL: server.url, FLOTILLA_TOKEN: token}
    const configPath = path.join(workDir, 'config.json')
    await generateDeviceConfig({serverUrl: server.url, token, home, fleetSlug: fleet.slug, file: configPath})
    agentOptions = {
      configPath,
      dataDir: path.join(workDir, 'agent'),
      hostNetwork: true,
      pollIntervalMs: 1000,
      reconcileIntervalMs: 500,
      reportIntervalMs: 200,
      localApiPort: 0,
      rebootCommand: `sh -c 'echo rebooted > ${rebootedFile}'`,
      shutdownCommand: `sh -c 'echo powered off > ${rebootedFile}'`,
      logger: (message) => diagnostics.push(message),
    }
    await startTheAgent()
  })

  after(async () => {
    stopFollowing?.abort()
    await agent?.stop()
    if (deviceUuid) {
      for (const container of await ownContainers()) await docker.getContainer(container.Id).remove({force: true})
      const {Volumes: volumes} = await docker.listVolumes({filters: {label: [`${LABELS.deviceUuid}=${deviceUuid}`]}})
      for (const {Name: name} of volumes ?? []) await docker.getVolume(name).remove().catch(() => undefined)
    }

    if (imageTag) await docker.getImage(imageTag).remove().catch(() => undefined)
    await server?.stop()
    rmSync(workDir, {recursive: true, force: true})
    rmSync(home, {recursive: true, force: true})
  })

  it('"device purge" empties the app\'s named volume and the service comes back on a fresh one', async () => {
    const first = await runningContainer('the service running')
    await eventually(async () => (await logsOf(first.Id)).includes('empty volume'), 'the first start on an empty volume')
    await exec(first.Id, 'echo precious > /data/note')
    assert.equal((await exec(first.Id, 'cat /data/note')).trim(), 'precious')
    const volumeName = `${fleetId}_${volume}`

    await online()
    const purge = await runCli(['device', 'purge', deviceUuid, '--yes'], {env})
    assert.equal(purge.exitCode, 0, purge.stderr)
    await sawLine(new RegExp(`^Purging data for app ${fleetId}$`), 'the purge announced in the device logs')
    await sawLine(/^Purged data$/, 'the purge done')
    const second = await runningContainer('the service back after the purge', first.Id)
    await eventually(async () => (await logsOf(second.Id)).includes('empty volume'), 'the new container on an empty volume')
    assert.equal(await exec(second.Id, 'cat /data/note 2>/dev/null || echo none'), 'none\n')
    const recreated = await docker.getVolume(volumeName).inspect()
    assert.equal(recreated.Labels?.[LABELS.deviceUuid], deviceUuid)
    const removed = lines.indexOf(`Removing volume '${volumeName}'`)
    assert.ok(removed >= 0 && removed < lines.indexOf('Purged data') && lines.indexOf(`Creating volume '${volumeName}'`, removed) > removed, `the volume removed, then made afresh:\n${lines.join('\n')}`)
  })

  it('"device stop-service" stops a service, which stays stopped across reconciles until "start-service"', async () => {
    const running = await runningContainer('the service running')
    const imageId = Number(running.Labels[LABELS.imageId])
    await online()
    const [{id: deviceId}] = (await api.call('GET', `/v7/device?$select=id&$filter=uuid eq '${deviceUuid}'`, {token})).json().d
    // As balena-sdk sends it (balena device stop-service <uuid> <service>).
    const sendToService = (verb: 'stop' | 'start') =>
      api.call('POST', `/supervisor/v2/applications/${fleetId}/${verb}-service`, {token, json: {deviceId, appId: fleetId, data: {appId: fleetId, imageId}}})
    assert.equal((await sendToService('stop')).status, 200)
    // The agent settles on a plan with the container stopped: a round that would start it again never ends so.
    await eventually(async () => {
      const status = (await (await fetch(`http://127.0.0.1:${agent?.localApiPort}/v2/state/status`, {headers: {authorization: `Bearer ${agent?.localApiKey}`}})).json()) as {appState: string; containers: Array<{containerId: string; status: string}>}
      return status.appState === 'applied' && status.containers.some((container) => container.containerId === running.Id && container.status === 'exited')
    }, `the service stopped and left stopped\ndevice logs:\n${lines.join('\n')}`, 60_000)
    assert.equal((await docker.getContainer(running.Id).inspect()).State.Running, false)
    await sawLine(/^Killed service 'main /, 'the stop in the device logs')

    assert.equal((await sendToService('start')).status, 200)
    const started = await runningContainer('the service started again')
    assert.equal(started.Id, running.Id, 'the same container, started again')
  })

  it('an update lock blocks reboot, shutdown and purge unless forced', async () => {
    const locked = await runningContainer('the service running')
    await exec(locked.Id, 'echo kept > /data/note; touch /tmp/balena/updates.lock')
    try {
      const reboot = await post('/v1/reboot', {})
      assert.equal(reboot.status, 423, await reboot.clone().text())
      assert.match(((await reboot.json()) as {message: string}).message, /update lock is held/)
      await sawLine(new RegExp(`^Not rebooting: the update lock is held \\(app ${fleetId}\\); force to override$`), 'the refused reboot in the device logs')
      assert.equal((await post('/v1/shutdown', {force: false})).status, 423)
      assert.equal((await post('/v1/purge', {appId: fleetId})).status, 423)
      await sawLine(new RegExp(`^Not purging data for app ${fleetId}: its update lock is held; force to override$`), 'the refused purge in the device logs')

      // The same refusal when the action comes through the server: a line in the device logs, nothing stopped.
      await online()
      const viaServer = await runCli(['device', 'reboot', deviceUuid, '--yes'], {env})
      assert.equal(viaServer.exitCode, 0, viaServer.stderr)
      await eventually(async () => lines.filter((line) => line.startsWith('Not rebooting')).length >= 2, 'the reboot from the server refused too')

      await assert.rejects(stat(rebootedFile), 'the reboot command did not run')
      const after = await runningContainer('the service still running')
      assert.equal(after.Id, locked.Id)
      assert.equal((await exec(after.Id, 'cat /data/note')).trim(), 'kept')
    } finally {
      await rm(path.join(agentOptions.dataDir, 'update-locks', String(fleetId), 'updates.lock'), {force: true})
    }
  })

  it('"device reboot" stops the services, then runs the configured reboot command, and leaves them stopped', async () => {
    const before = await runningContainer('the service running')
    await online()
    const reboot = await runCli(['device', 'reboot', deviceUuid, '--yes'], {env})
    assert.equal(reboot.exitCode, 0, reboot.stderr)
    await eventually(async () => (await readFile(rebootedFile, 'utf8').catch(() => '')) === 'rebooted\n', `the reboot command to run\ndevice logs:\n${lines.join('\n')}`, 60_000)
    const ranAt = (await stat(rebootedFile)).mtimeMs
    const stopped = await docker.getContainer(before.Id).inspect()
    assert.equal(stopped.State.Running, false, 'the service was stopped')
    assert.ok(Date.parse(stopped.State.FinishedAt) <= ranAt, `stopped at ${stopped.State.FinishedAt}, the command ran at ${new Date(ranAt).toISOString()}`)
    await sawLine(/^Rebooting$/, 'the reboot in the device logs')
    const stopping = lines.indexOf('Stopping services before rebooting')
    const killed = lines.findIndex((line, index) => index > stopping && line.startsWith("Killed service 'main "))
    assert.ok(stopping >= 0 && killed > stopping && lines.indexOf('Rebooting', killed) > killed, `the service killed, then the reboot:\n${lines.join('\n')}`)

    // The host is going down: the agent does not start the services again meanwhile.
    await new Promise((resolve) => setTimeout(resolve, 2000))
    assert.equal((await docker.getContainer(before.Id).inspect()).State.Running, false)

    // "After the reboot": a new agent process starts the services again, with the volume's data.
    await agent?.stop()
    await startTheAgent()
    const back = await runningContainer('the service back after the reboot')
    assert.equal(back.Id, before.Id, 'the same container, started again')
    await eventually(async () => (await logsOf(back.Id)).includes('found kept'), 'the volume kept across the reboot')
  })

  it('"device shutdown" with --force runs the power-off command even while the update lock is held', async () => {
    const running = await runningContainer('the service running')
    await exec(running.Id, 'touch /tmp/balena/updates.lock')
    try {
      await online()
      const shutdown = await runCli(['device', 'shutdown', deviceUuid, '--yes', '--force'], {env})
      assert.equal(shutdown.exitCode, 0, shutdown.stderr)
      await eventually(async () => (await readFile(rebootedFile, 'utf8').catch(() => '')) === 'powered off\n', `the power-off command to run\ndevice logs:\n${lines.join('\n')}`, 60_000)
      assert.equal((await docker.getContainer(running.Id).inspect()).State.Running, false)
      await sawLine(/^Shutting down$/, 'the shutdown in the device logs')
    } finally {
      await rm(path.join(agentOptions.dataDir, 'update-locks', String(fleetId), 'updates.lock'), {force: true})
    }
  })
})
