import {strict as assert} from 'node:assert'
import {execFile} from 'node:child_process'
import {randomBytes} from 'node:crypto'
import {mkdtempSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'
import {promisify} from 'node:util'

import Docker from 'dockerode'

import {type RunningAgent, startAgent} from '../../src/agent/agent.js'
import {LABELS} from '../../src/agent/reconciler.js'
import {generateDeviceConfig} from '../helpers/agent.js'
import {makeCliHome} from '../helpers/cli.js'
import {BASE_IMAGE, ensureBaseImage, ensureDocker} from '../helpers/docker.js'
import {eventually, FleetApi} from '../helpers/fleet-api.js'
import {startServer, type TestServer} from '../helpers/server.js'

const run = promisify(execFile)

describe('a service using the local supervisor API from its own network', function () {
  this.timeout(120_000)
  const docker = new Docker()
  const home = makeCliHome()
  const workDir = mkdtempSync(path.join(tmpdir(), 'flotilla-supervisor-api-'))
  // The test's own supervisor network (balena's is supervisor0), made by the agent and removed here.
  const supervisorNetwork = `flotilla-test-supervisor-${randomBytes(4).toString('hex')}`
  let server: TestServer
  let agent: RunningAgent | undefined
  let deviceUuid: string | undefined
  let imageTag: string | undefined

  before(async () => {
    await ensureDocker()
    await ensureBaseImage()
    server = await startServer()
  })

  after(async () => {
    await agent?.stop()
    if (deviceUuid) {
      const owner = `${LABELS.deviceUuid}=${deviceUuid}`
      for (const container of await docker.listContainers({all: true, filters: {label: [owner]}})) await docker.getContainer(container.Id).remove({force: true})
      for (const network of await docker.listNetworks({filters: {label: [owner]}})) await docker.getNetwork(network.Id).remove()
    }

    await docker.getNetwork(supervisorNetwork).remove().catch(() => undefined)
    if (imageTag) await docker.getImage(imageTag).remove().catch(() => undefined)
    await server?.stop()
    rmSync(workDir, {recursive: true, force: true})
    rmSync(home, {recursive: true, force: true})
  })

  /**
   * A raw HTTP/1.0 request from inside the service with busybox nc (busybox's static wget crashes on this machine).
   * The request side stays open until the answer comes (at most 10 s): nc half-closes the connection at the end of
   * its input, and node's server drops an answer not yet written when the client half-closes.
   */
  async function requestFromService(containerId: string, requestLine: string, header = ''): Promise<string> {
    const script = [
      'out=$(mktemp)',
      `{ printf '${requestLine} HTTP/1.0\\r\\n${header}\\r\\n'; for i in $(seq 100); do [ -s "$out" ] && break; sleep 0.1; done; } | nc -w 5 "$BALENA_SUPERVISOR_HOST" "$BALENA_SUPERVISOR_PORT" > "$out"`,
      'cat "$out"',
    ].join('\n')
    return (await run('docker', ['exec', containerId, 'sh', '-c', script], {timeout: 20_000})).stdout
  }

  it('gives the service the address and key; its call with the key is served, without it refused', async () => {
    const api = new FleetApi(server.url)
    const token = await api.login(server.admin.username, server.admin.password)
    const fleet = await api.createFleet(token, 'callers')
    const service = await api.created(token, 'service', {application: fleet.id, service_name: 'main'})
    const composition = {
      version: '2.4',
      services: {main: {image: 'main', command: ['sleep', '3600'], labels: {'io.balena.features.supervisor-api': '1'}, networks: ['backend']}},
      // The app's only network leads nowhere: the API is reached through the supervisor network.
      networks: {backend: {internal: true}},
    }
    const release = await api.created(token, 'release', {belongs_to__application: fleet.id, commit: 'a'.repeat(32), status: 'running', composition})
    const image = await api.created(token, 'image', {is_a_build_of__service: service.id})
    await api.created(token, 'image__is_part_of__release', {image: image.id, is_part_of__release: release.id})
    await api.patch(token, `release(${release.id})`, {status: 'success', end_timestamp: new Date().toISOString()})
    imageTag = `${image.is_stored_at__image_location}:latest`
    await docker.getImage(BASE_IMAGE).tag({repo: image.is_stored_at__image_location, tag: 'latest'})

    const configPath = path.join(workDir, 'config.json')
    await generateDeviceConfig({serverUrl: server.url, token, home, fleetSlug: fleet.slug, file: configPath})
    const diagnostics: string[] = []
    agent = await startAgent({
      configPath,
      dataDir: path.join(workDir, 'agent'),
      supervisorNetwork,
      pollIntervalMs: 1000,
      reconcileIntervalMs: 300,
      localApiPort: 0,
      logger: (message) => diagnostics.push(message),
    })
    deviceUuid = await agent.registered
    const running = await eventually(async () => {
      const [container] = await docker.listContainers({filters: {label: [`${LABELS.deviceUuid}=${deviceUuid}`], status: ['running']}})
      return container
    }, `the service running\n${diagnostics.join('\n')}`, 60_000)

    const inspected = await docker.getContainer(running.Id).inspect()
    const env = Object.fromEntries(inspected.Config.Env.map((entry) => entry.split(/=(.*)/s).slice(0, 2)))
    const {IPAM} = await docker.getNetwork(supervisorNetwork).inspect() as {IPAM: {Config: Array<{Gateway: string}>}; Internal: boolean}
    const gateway = IPAM.Config[0].Gateway
    assert.equal(env.BALENA_SUPERVISOR_HOST, gateway)
    assert.equal(env.BALENA_SUPERVISOR_PORT, String(agent.localApiPort))
    assert.equal(env.BALENA_SUPERVISOR_ADDRESS, `http://${gateway}:${agent.localApiPort}`)
    assert.equal(env.BALENA_SUPERVISOR_API_KEY, agent.localApiKey)
    assert.deepEqual(Object.keys(inspected.NetworkSettings.Networks).sort(), [`${fleet.id}_backend`, supervisorNetwork].sort())
    assert.equal(((await docker.getNetwork(supervisorNetwork).inspect()) as {Internal: boolean}).Internal, true)

    const served = await requestFromService(running.Id, 'GET /v2/version', 'Authorization: Bearer \'"$BALENA_SUPERVISOR_API_KEY"\'\\r\\n')
    assert.match(served, /^HTTP\/1\.1 200 /)
    assert.match(served, /"status":"success","version":/)
    const byQuery = await requestFromService(running.Id, 'GET /v2/applications/state?apikey=\'"$BALENA_SUPERVISOR_API_KEY"\'')
    assert.match(byQuery, /^HTTP\/1\.1 200 /)
    assert.match(byQuery, /"callers":\{"appId":/)
    const [device] = (await api.call('GET', `/v7/device?$select=id,device_name&$filter=uuid eq '${deviceUuid}'`, {token})).json().d
    await api.created(token, 'device_tag', {device: device.id, tag_key: 'room', value: 'lab'})
    const withKey = 'Authorization: Bearer \'"$BALENA_SUPERVISOR_API_KEY"\'\\r\\n'
    assert.match(await requestFromService(running.Id, 'GET /v2/device/tags', withKey), /\{"status":"success","tags":\[\{"id":\d+,"name":"room","value":"lab"\}\]\}$/)
    assert.match(await requestFromService(running.Id, 'GET /v2/device/name', withKey), new RegExp(`\\{"status":"success","deviceName":"${device.device_name}"\\}$`))
    const refused = await requestFromService(running.Id, 'POST /v1/reboot')
    assert.match(refused, /^HTTP\/1\.1 401 /)
    assert.match(await requestFromService(running.Id, 'GET /v1/device?apikey=wrong'), /^HTTP\/1\.1 401 /)
    assert.match(await requestFromService(running.Id, 'GET /ping'), /^HTTP\/1\.1 200 [^]*OK$/)
  })
})
