import {strict as assert} from 'node:assert'
import {mkdtempSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'

import {type RunningAgent, startAgent} from '../../src/agent/agent.js'
import type {StoredLogLine} from '../../src/protocol/log-line.js'
import {generateDeviceConfig} from '../helpers/agent.js'
import {makeCliHome} from '../helpers/cli.js'
import {ensureDocker} from '../helpers/docker.js'
import {eventually, FleetApi} from '../helpers/fleet-api.js'
import {startServer, type TestServer} from '../helpers/server.js'

describe('an agent whose target image cannot be pulled', function () {
  this.timeout(120_000)
  const home = makeCliHome()
  const workDir = mkdtempSync(path.join(tmpdir(), 'flotilla-pull-failure-'))
  let server: TestServer
  let agent: RunningAgent | undefined

  before(async () => {
    await ensureDocker()
    server = await startServer()
  })

  after(async () => {
    await agent?.stop()
    await server?.stop()
    rmSync(workDir, {recursive: true, force: true})
    rmSync(home, {recursive: true, force: true})
  })

  it('tries again after a growing delay, and reports the update failed with the reason in its logs', async () => {
    const api = new FleetApi(server.url)
    const token = await api.login(server.admin.username, server.admin.password)
    const fleet = await api.createFleet(token, 'unpullable')
    // The server's registry is on loopback and holds no such image: every pull is refused at once.
    await api.createRelease(token, fleet.id, 'e'.repeat(32), {image: 'main', command: ['sleep', '60']})
    const configPath = path.join(workDir, 'config.json')
    await generateDeviceConfig({serverUrl: server.url, token, home, fleetSlug: fleet.slug, file: configPath})
    const diagnostics: string[] = []
    agent = await startAgent({
      configPath,
      dataDir: path.join(workDir, 'agent'),
      hostNetwork: true,
      pollIntervalMs: 1000,
      reconcileIntervalMs: 100,
      reportIntervalMs: 100,
      pullRetryDelayMs: 500,
      localApiPort: 0,
      logger: (message) => diagnostics.push(message),
    })
    const uuid = await agent.registered

    const failures = await eventually(async () => {
      const lines = (await api.call('GET', `/device/v2/${uuid}/logs`, {token})).json() as StoredLogLine[]
      const failed = lines.filter((line) => /^Failed to download image '.+' due to '.+'; update failed, retrying in \d+ s$/.test(line.message))
      return failed.length >= 4 ? failed : undefined
    }, `four failed downloads in the device logs\n${diagnostics.join('\n')}`, 60_000)
    // 0.5 s, 1 s, 2 s between the first four tries; every 0.1 s (the reconcile interval) without the backoff.
    assert.ok(failures[3].timestamp - failures[0].timestamp >= 3000, `tries at ${failures.map((line) => line.timestamp - failures[0].timestamp).join(', ')} ms`)
    assert.deepEqual(failures.slice(0, 4).map((line) => /retrying in (\d+) s/.exec(line.message)?.[1]), ['1', '1', '2', '4'])

    const device = await eventually(async () => {
      const row = (await api.call('GET', `/v7/device?$select=status,update_status,overall_status&$filter=uuid eq '${uuid}'`, {token})).json().d[0]
      return row?.update_status === 'aborted' ? row : undefined
    }, 'the device to report its update failed')
    assert.equal(device.status, 'Idle')
    assert.equal(device.overall_status, 'operational')
    const local = (await (await fetch(`http://127.0.0.1:${agent.localApiPort}/v1/device?apikey=${agent.localApiKey}`)).json()) as {update_failed: boolean}
    assert.equal(local.update_failed, true)
  })
})
