import {strict as assert} from 'node:assert'
import {mkdirSync, mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'

import Docker from 'dockerode'

import {type RunningAgent, startAgent} from '../../src/agent/agent.js'
import {LABELS} from '../../src/agent/reconciler.js'
import {type CliResult, makeCliHome, runCli} from '../helpers/cli.js'
import {BASE_IMAGE, ensureBaseImage, ensureDocker, ensurePlatformBaseImage, type RunningRegistry, startRegistry} from '../helpers/docker.js'
import {eventually, FleetApi} from '../helpers/fleet-api.js'
import {startServer, type TestServer} from '../helpers/server.js'

interface DeviceLogLine {
  message: string
  isSystem: boolean
}

describe('releases for the fleet\'s architecture, image-only services, and devices that cannot run an image', function () {
  this.timeout(240_000)
  const docker = new Docker()
  const workDir = mkdtempSync(path.join(tmpdir(), 'flotilla-push-platform-'))
  const home = makeCliHome()
  const agents: RunningAgent[] = []
  const deviceUuids: string[] = []
  const localImages: string[] = []
  let registry: RunningRegistry
  let server: TestServer
  let api: FleetApi
  let token: string

  const cli = (args: string[]): Promise<CliResult> => runCli(args, {env: {HOME: home, FLOTILLA_URL: server.url, FLOTILLA_TOKEN: token}, timeoutMs: 180_000})

  async function ok(args: string[]): Promise<string> {
    const result = await cli(args)
    assert.equal(result.exitCode, 0, `flotilla ${args.join(' ')}: ${result.stderr}`)
    return result.stdout
  }

  function project(name: string, files: Record<string, string>): string {
    const folder = path.join(workDir, name)
    for (const [file, content] of Object.entries(files)) {
      mkdirSync(path.dirname(path.join(folder, file)), {recursive: true})
      writeFileSync(path.join(folder, file), content)
    }

    return folder
  }

  /** A device of the fleet, provisioned with "config generate" and run by an agent in this process. */
  async function startDevice(fleet: string): Promise<string> {
    const configPath = path.join(workDir, `${fleet}-config.json`)
    await ok(['config', 'generate', '--fleet', fleet, '-o', configPath])
    const agent = await startAgent({configPath, dataDir: path.join(workDir, `${fleet}-agent`), hostNetwork: true, pollIntervalMs: 1000, reconcileIntervalMs: 1000, reportIntervalMs: 200, localApiPort: 0})
    agents.push(agent)
    const uuid = await agent.registered
    deviceUuids.push(uuid)
    return uuid
  }

  async function deviceLogs(uuid: string): Promise<DeviceLogLine[]> {
    return (await api.call('GET', `/device/v2/${uuid}/logs?count=all`, {token})).json()
  }

  async function logged(uuid: string, pattern: RegExp, what: string): Promise<DeviceLogLine> {
    try {
      return await eventually(async () => (await deviceLogs(uuid)).find((line) => pattern.test(line.message)), what, 90_000)
    } catch (error) {
      throw new Error(`${(error as Error).message}; the device logged:\n${(await deviceLogs(uuid)).map((line) => line.message).join('\n')}`)
    }
  }

  async function latestRelease(fleet: string): Promise<{id: number; status: string}> {
    const [release] = JSON.parse(await ok(['release', 'list', fleet, '--json'])) as Array<{id: number; status: string}>
    return release
  }

  before(async () => {
    await ensureDocker()
    await ensureBaseImage()
    registry = await startRegistry()
    server = await startServer({args: ['--registry', registry.address]})
    api = new FleetApi(server.url)
    token = await api.login(server.admin.username, server.admin.password)
  })

  after(async () => {
    for (const agent of agents) await agent.stop()
    for (const uuid of deviceUuids) {
      for (const container of await docker.listContainers({all: true, filters: {label: [`${LABELS.deviceUuid}=${uuid}`]}})) await docker.getContainer(container.Id).remove({force: true})
    }

    for (const image of localImages) await docker.getImage(image).remove({force: true}).catch(() => undefined)
    await server?.stop()
    await registry?.stop()
    rmSync(workDir, {recursive: true, force: true})
    rmSync(home, {recursive: true, force: true})
  })

  it('builds an aarch64 fleet\'s release as linux/arm64, and a device with emulation runs it: uname -m says aarch64', async () => {
    const arm64Base = await ensurePlatformBaseImage('linux/arm64')
    await ok(['fleet', 'create', 'pi', '--type', 'raspberrypi4-64'])
    // A compose file rather than a lone Dockerfile, whose service balena runs privileged, which this engine cannot.
    const folder = project('arm', {
      'docker-compose.yml': 'services:\n  main:\n    build: .\n',
      Dockerfile: `FROM ${arm64Base}\nRUN uname -m > /built-on\nCMD while true; do echo "machine=$(uname -m) built-on=$(cat /built-on)"; sleep 1; done\n`,
    })
    const pushed = await cli(['push', 'pi', '--source', folder])
    assert.equal(pushed.exitCode, 0, pushed.stderr)
    assert.match(pushed.stderr, /\[main\] Image built for linux\/arm64/)
    assert.equal((await latestRelease('pi')).status, 'success')

    const uuid = await startDevice('pi')
    await logged(uuid, /^machine=aarch64 built-on=aarch64$/, 'the service to print its machine')
    const [container] = await docker.listContainers({filters: {label: [`${LABELS.deviceUuid}=${uuid}`]}})
    localImages.push(container.Image)
    assert.equal((await docker.getImage(container.Image).inspect()).Architecture, 'arm64')
  })

  it('delivers a compose project\'s image-only service: the release has its image, and it runs on the device beside the built one', async () => {
    const upstream = 'flotilla-test/upstream-standin:7'
    await docker.getImage(BASE_IMAGE).tag({repo: 'flotilla-test/upstream-standin', tag: '7'})
    localImages.push(upstream)
    await ok(['fleet', 'create', 'mixed', '--type', 'intel-nuc'])
    const folder = project('mixed', {
      'docker-compose.yml': [
        'services:',
        '  web:',
        '    build: ./web',
        '  cache:',
        `    image: ${upstream}`,
        '    command: ["sh", "-c", "while true; do echo upstream-cache-ready; sleep 1; done"]',
        '',
      ].join('\n'),
      'web/Dockerfile': 'FROM flotilla-test/busybox:latest\nCMD while true; do echo built-web-ready; sleep 1; done\n',
    })
    const pushed = await cli(['push', 'mixed', '--source', folder])
    assert.equal(pushed.exitCode, 0, pushed.stderr)
    const release = await latestRelease('mixed')
    assert.equal(release.status, 'success')
    const images = (await api.call('GET', `/v7/image?$select=id,status&$filter=release_image/any(ri:ri/is_part_of__release eq ${release.id})&$expand=is_a_build_of__service($select=service_name)`, {token})).json().d
    assert.deepEqual(images.map((image: {status: string; is_a_build_of__service: Array<{service_name: string}>}) => `${image.is_a_build_of__service[0].service_name}:${image.status}`).sort(), ['cache:success', 'web:success'])

    const uuid = await startDevice('mixed')
    await logged(uuid, /^upstream-cache-ready$/, 'the image-only service to run')
    await logged(uuid, /^built-web-ready$/, 'the built service to run')
  })

  it('refuses an image its engine cannot run with one clear line in the device\'s logs and a rejected update, instead of a crash loop', async () => {
    const foreign = await ensurePlatformBaseImage('linux/test-cpu', 'amd64')
    await ok(['fleet', 'create', 'odd', '--type', 'intel-nuc'])
    const fleet = JSON.parse(await ok(['fleet', 'odd', '--json'])) as {id: number}
    const release = await api.createRelease(token, fleet.id, 'c'.repeat(32), {image: 'main', command: ['sh', '-c', 'echo ran-anyway; sleep 3600']})
    await docker.getImage(foreign).tag({repo: release.location, tag: 'latest'})
    localImages.push(`${release.location}:latest`)

    const uuid = await startDevice('odd')
    const line = await logged(uuid, /^Refusing to start service 'main'/, 'the refusal')
    assert.equal(
      line.message,
      `Refusing to start service 'main': image '${release.location}:latest' is for linux/test-cpu, which this device's engine (linux, x86_64) cannot run: no emulator for test-cpu is registered with binfmt_misc — push a release built for this device's architecture, or install qemu-user-static and binfmt-support on the device to emulate it`,
    )
    assert.equal(line.isSystem, true)
    await eventually(async () => (await api.call('GET', `/v7/device?$select=update_status&$filter=uuid eq '${uuid}'`, {token})).json().d[0]?.update_status === 'rejected', 'the device to report the update rejected')
    assert.deepEqual(await docker.listContainers({all: true, filters: {label: [`${LABELS.deviceUuid}=${uuid}`]}}), [])
    assert.ok(!(await deviceLogs(uuid)).some((entry) => entry.message.includes('ran-anyway')))
  })
})
