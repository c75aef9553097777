import {strict as assert} from 'node:assert'
import {execFile} from 'node:child_process'
import {randomBytes} from 'node:crypto'
import {existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'
import {promisify} from 'node:util'

import Docker from 'dockerode'

import {ownContainerImage} from '../../src/agent/host-container.js'
import {LABELS} from '../../src/agent/reconciler.js'
import type {StoredLogLine} from '../../src/protocol/log-line.js'
import {generateDeviceConfig, releaseOfBaseImage} from '../helpers/agent.js'
import {makeCliHome, PROJECT_ROOT, runCli} from '../helpers/cli.js'
import {BASE_IMAGE, ensureBaseImage, ensureDocker} from '../helpers/docker.js'
import {eventually, FleetApi} from '../helpers/fleet-api.js'
import {freeLoopbackPort} from '../helpers/net.js'
import {startServer, type TestServer} from '../helpers/server.js'
import {TerminalSession} from '../helpers/terminal.js'

const run = promisify(execFile)

/** The stand-in for node:20 that agent.Dockerfile builds on here, where no image can be pulled; kept as a cache. */
const NODE_BASE_IMAGE = 'flotilla-test/node:20'
const DOCKER_SOCKET = '/var/run/docker.sock'
/** The label of agent.Dockerfile's build stage, which the legacy builder leaves behind as an untagged image. */
const DEPS_STAGE_LABEL = 'io.flotilla.agent-image-stage=deps'
const BUILD_DEADLINE_MS = 150_000

async function runScript(name: string, args: string[]): Promise<string> {
  try {
    const {stdout} = await run('bash', [path.join(PROJECT_ROOT, 'scripts', name), ...args], {cwd: PROJECT_ROOT, timeout: BUILD_DEADLINE_MS, maxBuffer: 64 * 1024 * 1024})
    return stdout.trim()
  } catch (error) {
    const {stderr} = error as {stderr?: string}
    throw new Error(`scripts/${name} failed: ${stderr?.trim().split('\n').slice(-30).join('\n') || (error as Error).message}`)
  }
}

/** The text of a container's output, from the engine's multiplexed stream (8-byte frame headers) of a container without a TTY. */
function demuxed(raw: Buffer): string {
  const parts: Buffer[] = []
  for (let offset = 0; offset + 8 <= raw.length; ) {
    const size = raw.readUInt32BE(offset + 4)
    parts.push(raw.subarray(offset + 8, offset + 8 + size))
    offset += 8 + size
  }

  return Buffer.concat(parts).toString('utf8')
}

/** Prints a line naming each start, then a line a second; leaves at once on SIGTERM. */
const SERVICE_SCRIPT = 'trap "exit 0" TERM; echo "seed-started $(cat /proc/sys/kernel/random/uuid)"; while true; do echo seed-alive; sleep 1; done'

describe('the agent in its own container (agent.Dockerfile)', function () {
  this.timeout(360_000)
  const docker = new Docker({socketPath: DOCKER_SOCKET})
  const suffix = randomBytes(4).toString('hex')
  const agentImage = `flotilla-test/agent-e2e:${suffix}`
  const home = makeCliHome()
  const workDir = mkdtempSync(path.join(tmpdir(), 'flotilla-agent-container-'))
  const configDir = path.join(workDir, 'config')
  // Mounted at the image's own data dir; --host-data-dir tells the agent where the host has it, since the services'
  // update-lock folders are bind-mounted from it by the host's engine.
  const dataDir = path.join(workDir, 'data')
  /** What the agent's --reboot-command touches: a path of the host's that the agent's container does not have. */
  const rebootedMarker = path.join(workDir, 'rebooted')
  const agentContainers: string[] = []
  let server: TestServer | undefined
  let imageTag: string | undefined
  let deviceUuid: string | undefined

  before(async function () {
    this.timeout(BUILD_DEADLINE_MS * 2)
    await ensureDocker()
    await ensureBaseImage()
    await runScript('make-node-base-image.sh', [NODE_BASE_IMAGE])
    const built = await runScript('build-agent-image.sh', ['--tag', agentImage, '--base', NODE_BASE_IMAGE, '--prebuilt-node-modules'])
    assert.equal(built.split('\n').at(-1), agentImage)
    server = await startServer()
  })

  after(async () => {
    for (const name of agentContainers) await docker.getContainer(name).remove({force: true, v: true}).catch(() => undefined)
    // The agent writes the uuid it registered under into config.json, also when the test failed before reading it.
    deviceUuid ??= (() => {
      try {
        return JSON.parse(readFileSync(path.join(configDir, 'config.json'), 'utf8')).uuid as string | undefined
      } catch {
        return undefined
      }
    })()
    if (deviceUuid) {
      const containers = await docker.listContainers({all: true, filters: {label: [`${LABELS.deviceUuid}=${deviceUuid}`]}})
      for (const container of containers) await docker.getContainer(container.Id).remove({force: true}).catch(() => undefined)
    }

    if (imageTag) await docker.getImage(imageTag).remove().catch(() => undefined)
    await docker.getImage(agentImage).remove().catch(() => undefined)
    const stages = await docker.listImages({filters: {label: [DEPS_STAGE_LABEL], dangling: ['true']}}).catch(() => [])
    for (const stage of stages) await docker.getImage(stage.Id).remove().catch(() => undefined)
    await server?.stop()
    rmSync(workDir, {recursive: true, force: true})
    rmSync(home, {recursive: true, force: true})
  })

  it('registers, runs the release and ships its output; the service outlives the agent container, and the agent outlives the service; host sessions and reboots run on the engine\'s host', async () => {
    assert.ok(server)
    const api = new FleetApi(server.url)
    const token = await api.login(server.admin.username, server.admin.password)
    const fleet = await api.createFleet(token, 'contained')
    const release = await releaseOfBaseImage(api, token, fleet.id, {image: 'main', command: ['sh', '-c', SERVICE_SCRIPT]}, 'c'.repeat(32))
    imageTag = release.imageTag

    mkdirSync(configDir)
    mkdirSync(dataDir)
    const configPath = path.join(configDir, 'config.json')
    await generateDeviceConfig({serverUrl: server.url, token, home, fleetSlug: fleet.slug, file: configPath})
    assert.equal(JSON.parse(readFileSync(configPath, 'utf8')).uuid, undefined, 'a provisioning config: the agent registers itself')

    // One port for every agent container, as a restarted agent on a real device keeps it: the services' environment
    // holds the local API's address, and a new address would recreate them.
    const localApiPort = await freeLoopbackPort()
    const startAgentContainer = async (name: string) => {
      const container = await docker.createContainer({
        name,
        Image: agentImage,
        Cmd: [
          ...['agent', 'start', '--config', '/config/config.json', '--data-dir', '/var/lib/flotilla', '--host-data-dir', dataDir, '--host-network'],
          ...['--local-api-port', String(localApiPort), '--poll-interval', '2', '--reboot-command', `touch ${rebootedMarker}`],
        ],
        Env: ['NO_COLOR=1'],
        HostConfig: {NetworkMode: 'host', Binds: [`${DOCKER_SOCKET}:${DOCKER_SOCKET}`, `${configDir}:/config`, `${dataDir}:/var/lib/flotilla`]},
      })
      agentContainers.push(name)
      await container.start()
      return container
    }

    const agentOutput = async (container: Docker.Container) => demuxed((await container.logs({stdout: true, stderr: true, follow: false})) as unknown as Buffer)
    const deviceRow = async () =>
      (await api.call('GET', `/v7/device?$select=uuid,is_online&$filter=belongs_to__application eq ${fleet.id}&$expand=is_running__release($select=commit)`, {token})).json().d[0]
    const serverLogs = async (): Promise<StoredLogLine[]> => (await api.call('GET', `/device/v2/${deviceUuid}/logs`, {token})).json()
    const volumeNames = async () => ((await docker.listVolumes()).Volumes ?? []).map((volume) => volume.Name)
    const serviceContainer = async () => {
      const [found] = await docker.listContainers({all: true, filters: {label: [`${LABELS.deviceUuid}=${deviceUuid}`, `${LABELS.serviceName}=main`]}})
      return found ? docker.getContainer(found.Id).inspect() : undefined
    }

    let agent = await startAgentContainer(`flotilla-agent-e2e-${suffix}`)
    /** {@link eventually}, with what the agent container printed when the deadline passes. */
    const waitFor = async <T>(check: () => Promise<T | undefined | false>, what: string, deadlineMs: number): Promise<T> => {
      try {
        return await eventually(check, what, deadlineMs)
      } catch (error) {
        throw new Error(`${(error as Error).message}\nagent container output:\n${await agentOutput(agent).catch((failure: Error) => failure.message)}`)
      }
    }

    // Registered by the agent in its container, which rewrote the mounted config.json with the device's identity.
    const device = await waitFor(
      async () => {
        const row = await deviceRow()
        return row?.is_online && row.is_running__release[0]?.commit === 'c'.repeat(32) ? row : undefined
      },
      'the device to register, come online and run the release',
      90_000,
    )
    deviceUuid = device.uuid as string
    const rewritten = JSON.parse(readFileSync(configPath, 'utf8'))
    assert.equal(rewritten.uuid, deviceUuid)
    assert.ok(rewritten.deviceApiKey, 'config.json holds the device key')

    // The service is a container of the host's engine, with its update lock folder on the host.
    const service = await serviceContainer()
    assert.ok(service, 'the service container exists')
    assert.equal(service.State.Running, true)
    assert.equal(service.Config.Labels[LABELS.supervised], 'true')
    const lockMount = service.Mounts.find((mount) => mount.Destination === '/tmp/balena')
    assert.ok(lockMount && lockMount.Source.startsWith(`${dataDir}/update-locks/`), `the update lock folder comes from the data dir: ${JSON.stringify(service.Mounts)}`)
    assert.ok(existsSync(lockMount.Source), 'the agent made the lock folder where the engine mounts it from')

    // Its output reaches the server through the agent's log shipper.
    const linesOf = async (message: RegExp) => (await serverLogs()).filter((line) => !line.isSystem && message.test(line.message))
    await waitFor(async () => (await linesOf(/^seed-alive$/)).length >= 2, 'the service output in the server logs', 60_000)
    assert.equal((await linesOf(/^seed-started /)).length, 1)

    // The app dies: the agent keeps running, the service runs again and its new output still arrives.
    await docker.getContainer(service.Id).kill()
    await waitFor(async () => (await linesOf(/^seed-started /)).length >= 2, 'the restarted service output in the server logs', 60_000)
    assert.equal((await agent.inspect()).State.Running, true, 'the agent container outlives the service')

    // The agent dies (SIGKILL, then removed): the service keeps running, untouched.
    const before = await serviceContainer()
    assert.ok(before?.State.Running)
    await agent.kill()
    await agent.remove({force: true, v: true})
    const printedBefore = (await docker.getContainer(before.Id).logs({stdout: true, follow: false}))
      .toString('latin1')
      .split('seed-alive').length
    await eventually(
      async () => (await docker.getContainer(before.Id).logs({stdout: true, follow: false})).toString('latin1').split('seed-alive').length >= printedBefore + 3,
      'the service to keep printing with no agent',
      30_000,
    )
    const after = await docker.getContainer(before.Id).inspect()
    assert.equal(after.State.Running, true, 'the service outlives the agent container')
    assert.equal(after.State.StartedAt, before.State.StartedAt, 'the service was not restarted')

    // A new agent container on the same config and data dir takes over without replacing the running service.
    agent = await startAgentContainer(`flotilla-agent-e2e-${suffix}-2`)
    await waitFor(async () => /device \S+ registered/.test(await agentOutput(agent)), 'the second agent to start', 60_000)
    const shipped = (await linesOf(/^seed-alive$/)).length
    await waitFor(async () => (await linesOf(/^seed-alive$/)).length >= shipped + 2, 'the second agent to ship the service output', 60_000)
    const kept = await serviceContainer()
    assert.equal(kept?.Id, before.Id, 'the running service was kept')
    assert.equal(kept?.State.StartedAt, before.State.StartedAt)
    assert.equal((await deviceRow())?.is_online, true)

    // A host session runs on the engine's host, not in the agent's container: it reads a file only the host has,
    // finds none of the agent's, and its exit status comes back. Its container is gone once it ended, and so is
    // one an earlier agent of the device left behind.
    const volumesBefore = await volumeNames()
    const leftover = await docker.createContainer({Image: BASE_IMAGE, Cmd: ['true'], Labels: {[LABELS.hostContainer]: 'true', [LABELS.deviceUuid]: deviceUuid}})
    await leftover.start()
    await leftover.wait()
    const identity = path.join(workDir, 'id_ed25519')
    await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', identity])
    const env = {HOME: home, FLOTILLA_URL: server.url, FLOTILLA_TOKEN: token}
    const added = await runCli(['ssh-key', 'add', 'e2e', `${identity}.pub`], {env})
    assert.equal(added.exitCode, 0, added.stderr)
    const marker = path.join(workDir, 'only-on-the-host')
    writeFileSync(marker, `host ${suffix}\n`)
    const session = await runCli(['ssh', deviceUuid, '--identity', identity, '--', `cat ${marker}; test -e /app/bin/run.js && echo in-the-agent-container; exit 7`], {env})
    assert.equal(session.stdout, `host ${suffix}\n`, `${session.stderr}\nagent container output:\n${await agentOutput(agent)}`)
    assert.equal(session.exitCode, 7)
    const terminal = new TerminalSession(['ssh', deviceUuid, '--identity', identity], env)
    try {
      await terminal.waitFor(/[#$] $/m, 30_000)
      terminal.type(`test -t 0 && cat ${marker}; exit 5\r`)
      assert.equal(await terminal.exited, 5, terminal.output)
      assert.match(terminal.output, new RegExp(`^host ${suffix}\\r?$`, 'm'))
    } finally {
      terminal.kill()
    }

    const hostContainersGone = async (what: string) => {
      await eventually(async () => (await docker.listContainers({all: true, filters: {label: [`${LABELS.hostContainer}=true`]}})).length === 0, `the containers of ${what} to be removed`, 10_000)
      assert.deepEqual((await volumeNames()).filter((name) => !volumesBefore.includes(name)), [], `no volume left behind by ${what}`)
    }

    await hostContainersGone('the host sessions')

    // A reboot runs its command on the host too (here a stand-in that leaves a file where only the host has it).
    const rebooted = await runCli(['device', 'reboot', deviceUuid, '--yes'], {env})
    assert.equal(rebooted.exitCode, 0, rebooted.stderr)
    await waitFor(async () => existsSync(rebootedMarker), 'the reboot command to run on the host', 30_000)
    assert.equal((await serviceContainer())?.State.Running, false, 'the services were stopped first')
    await hostContainersGone('the reboot command')
  })

  it("knows the image of its own container from the engine, and that another engine's container is not one of this engine's", async () => {
    const container = await docker.createContainer({Image: BASE_IMAGE, Cmd: ['true']})
    try {
      const mountinfoOf = (id: string) => {
        const file = path.join(workDir, `mountinfo-${id.slice(0, 12)}`)
        writeFileSync(file, `1231 1220 254:0 /var/lib/docker/containers/${id}/hostname /etc/hostname rw,relatime - ext4 /dev/vda rw\n`)
        return file
      }

      assert.equal(await ownContainerImage(docker, mountinfoOf(container.id)), (await container.inspect()).Image)
      assert.equal(await ownContainerImage(docker, mountinfoOf('f'.repeat(64))), undefined)
      assert.equal(await ownContainerImage(docker, path.join(workDir, 'no-such-mountinfo')), undefined)
    } finally {
      await container.remove({force: true})
    }
  })
})
