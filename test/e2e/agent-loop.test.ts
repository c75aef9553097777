import {strict as assert} from 'node:assert'
import {type ChildProcess, spawn} from 'node:child_process'
import {mkdtempSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'

import Docker from 'dockerode'

import {type RunningAgent, startAgent} from '../../src/agent/agent.js'
import {LABELS} from '../../src/agent/reconciler.js'
import {generateDeviceConfig, releaseOfBaseImage} from '../helpers/agent.js'
import {CLI_BIN, makeCliHome, PROJECT_ROOT, runCli} from '../helpers/cli.js'
import {ensureBaseImage, ensureDocker} from '../helpers/docker.js'
import {eventually, FleetApi} from '../helpers/fleet-api.js'
import {startServer, type TestServer} from '../helpers/server.js'

describe('the agent loop against the real server', function () {
  this.timeout(120_000)
  const docker = new Docker()
  const home = makeCliHome()
  const workDir = mkdtempSync(path.join(tmpdir(), 'flotilla-agent-loop-'))
  let server: TestServer
  let agent: RunningAgent | undefined
  let logs: ChildProcess | undefined
  let imageTag: string | undefined
  let deviceUuid: string | undefined

  before(async () => {
    await ensureDocker()
    await ensureBaseImage()
    server = await startServer()
  })

  after(async () => {
    logs?.kill('SIGKILL')
    await agent?.stop()
    if (deviceUuid) {
      const containers = await docker.listContainers({all: true, filters: {label: [`${LABELS.deviceUuid}=${deviceUuid}`]}})
      for (const container of containers) await docker.getContainer(container.Id).remove({force: true})
    }

    if (imageTag) await docker.getImage(imageTag).remove().catch(() => undefined)
    await server?.stop()
    rmSync(workDir, {recursive: true, force: true})
    rmSync(home, {recursive: true, force: true})
  })

  it('runs the fleet release on a device provisioned with "config generate", and its output reaches "flotilla logs --tail"; restart and identify reach it', async () => {
    const api = new FleetApi(server.url)
    const token = await api.login(server.admin.username, server.admin.password)
    const fleet = await api.createFleet(token, 'looped')
    const release = await releaseOfBaseImage(api, token, fleet.id, {image: 'main', command: ['sh', '-c', 'while true; do echo hello-from-flotilla; sleep 1; done']}, 'f'.repeat(32))
    imageTag = release.imageTag

    const env = {HOME: home, FLOTILLA_URL: server.url, FLOTILLA_TOKEN: token}
    const configPath = path.join(workDir, 'config.json')
    await generateDeviceConfig({serverUrl: server.url, token, home, fleetSlug: fleet.slug, file: configPath})
    const diagnostics: string[] = []
    agent = await startAgent({
      configPath,
      dataDir: path.join(workDir, 'agent'),
      hostNetwork: true,
      pollIntervalMs: 1000,
      reconcileIntervalMs: 1000,
      reportIntervalMs: 200,
      localApiPort: 0,
      logger: (message) => diagnostics.push(message),
    })
    deviceUuid = await agent.registered

    logs = spawn(process.execPath, [CLI_BIN, 'logs', deviceUuid, '--tail', '--max-retry', '3'], {cwd: PROJECT_ROOT, env: {PATH: process.env.PATH, NO_COLOR: '1', ...env}, stdio: ['ignore', 'pipe', 'pipe']})
    let stdout = ''
    let stderr = ''
    logs.stdout?.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk))
    logs.stderr?.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk))
    const printed = (pattern: RegExp, what: string) =>
      eventually(async () => pattern.test(stdout), `${what}\nstdout: ${stdout}\nstderr: ${stderr}\nagent: ${diagnostics.join('\n')}`, 60_000)
    await printed(/^\[\S+Z\] \[main\] hello-from-flotilla$/m, 'the service output in flotilla logs')

    const device = await eventually(async () => {
      const row = (await api.call('GET', `/v7/device?$select=is_online&$filter=uuid eq '${deviceUuid}'&$expand=is_running__release($select=commit)`, {token})).json().d[0]
      return row?.is_online && row.is_running__release[0]?.commit === 'f'.repeat(32) ? row : undefined
    }, 'the device to report the release running')
    assert.equal(device.is_online, true)

    const restart = await runCli(['device', 'restart', deviceUuid], {env})
    assert.equal(restart.exitCode, 0, restart.stderr)
    await printed(/^\[\S+Z\] Restarting service 'main /m, 'the restart system line')

    const identify = await runCli(['device', 'identify', deviceUuid], {env})
    assert.equal(identify.exitCode, 0, identify.stderr)
    await printed(/^\[\S+Z\] Identify requested: this is the device$/m, 'the identify system line')
  })
})
