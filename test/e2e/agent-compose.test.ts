import assert from 'node:assert/strict'
import {execFile} from 'node:child_process'
import {randomBytes, randomInt} from 'node:crypto'
import {existsSync} from 'node:fs'
import {mkdtemp, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import path from 'node:path'
import {promisify} from 'node:util'

import Docker from 'dockerode'

import {DockerExecutor} from '../../src/agent/docker-executor.js'
import {converge, type ConvergeOptions, LABELS} from '../../src/agent/reconciler.js'
import type {ServiceComposition, TargetDevice, TargetService} from '../../src/protocol/target-state.js'
import {BASE_IMAGE, ensureBaseImage, ensureDocker} from '../helpers/docker.js'
import {eventually} from '../helpers/fleet-api.js'
import {freeLoopbackPort} from '../helpers/net.js'
import {deviceTarget} from '../helpers/target-state.js'

const run = promisify(execFile)

/** Runs until stopped, and stops at once on SIGTERM. */
const IDLE = 'trap "exit 0" TERM; sleep 3600 & wait'

describe('agent runs a compose app as the composition says, on the Docker engine', function () {
  this.timeout(180_000)
  const docker = new Docker()
  const deviceUuid = randomBytes(16).toString('hex')
  const appUuid = randomBytes(16).toString('hex')
  const appId = randomInt(100_000, 900_000)
  const ownerLabel = `${LABELS.deviceUuid}=${deviceUuid}`
  let dataDir: string
  let executor: DockerExecutor
  let options: ConvergeOptions
  let port: number

  const service = (id: number, composition: ServiceComposition, labels: Record<string, string> = {}): TargetService => ({
    id,
    image_id: 500 + id,
    image: BASE_IMAGE,
    environment: {},
    labels,
    // Containers cannot be privileged on this machine; balena's single-Dockerfile default would be.
    composition: {privileged: false, ...composition},
  })

  /** db becomes healthy after a while; api waits for that, serves a page on its published port; web waits for api. */
  function threeServices(webLimit = '64m'): TargetDevice {
    return deviceTarget({uuid: appUuid, id: appId}, {
      commit: 'c'.repeat(32),
      id: 7,
      networks: {backend: {internal: true}, front: {}},
      services: {
        db: service(1, {
          command: ['sh', '-c', `sleep 2; touch /tmp/ready; ${IDLE}`],
          healthcheck: {test: 'test -e /tmp/ready', interval: '1s', timeout: '1s', retries: 30},
          networks: ['backend'],
        }),
        api: service(2, {
          command: ['sh', '-c', 'mkdir -p /www && echo "api here" > /www/index.html && exec httpd -f -p 8080 -h /www'],
          depends_on: {db: {condition: 'service_healthy'}},
          networks: {backend: {aliases: ['api-alias']}, front: {}},
          ports: [`127.0.0.1:${port}:8080`],
          stop_signal: 'SIGKILL',
        }),
        web: service(3, {
          command: ['sh', '-c', IDLE],
          depends_on: ['api'],
          networks: ['backend'],
          devices: ['/dev/zero:/dev/fakezero:rwm'],
          cap_add: ['NET_ADMIN'],
          mem_limit: webLimit,
          cpus: 0.5,
          pids_limit: 64,
          tmpfs: ['/scratch:size=1m'],
          ulimits: {nofile: {soft: 1000, hard: 2000}},
          hostname: 'webhost',
          extra_hosts: ['flotilla.test:10.1.2.3'],
          init: true,
        }),
      },
    })
  }

  const ownContainers = () => docker.listContainers({all: true, filters: {label: [ownerLabel]}})
  const containerOf = async (serviceName: string) => {
    const found = (await ownContainers()).find((container) => container.Labels[LABELS.serviceName] === serviceName)
    assert.ok(found, `no container for ${serviceName}`)
    return docker.getContainer(found.Id).inspect()
  }

  const shellIn = async (id: string, script: string) => (await run('docker', ['exec', id, 'sh', '-c', script], {timeout: 20_000})).stdout

  /** Converges until every service of the target runs: a dependant waiting for a healthcheck needs more than one pass. */
  async function convergeUntilRunning(target: TargetDevice, count: number): Promise<void> {
    await eventually(async () => {
      const result = await converge(executor, target, options)
      assert.deepEqual(result.failures.map(({step, error}) => `${step.action}: ${(error as Error).message}`), [])
      const running = result.current.containers.filter((container) => container.status === 'running')
      return result.settled && running.length === count
    }, `${count} services running`, 60_000)
  }

  before(async () => {
    await ensureDocker()
    await ensureBaseImage()
    dataDir = await mkdtemp(path.join(tmpdir(), 'flotilla-agent-compose-'))
    executor = new DockerExecutor({docker, deviceUuid, dataDir})
    options = {deviceUuid, deviceType: 'generic-amd64', lockDirOf: executor.lockDirOf, apiEndpoint: 'http://127.0.0.1:1', deviceApiKey: 'device-key-for-test'}
    port = await freeLoopbackPort()
  })

  after(async () => {
    for (const container of await ownContainers()) await docker.getContainer(container.Id).remove({force: true})
    for (const network of await docker.listNetworks({filters: {label: [ownerLabel]}})) await docker.getNetwork(network.Id).remove()
    const {Volumes: volumes} = await docker.listVolumes({filters: {label: [ownerLabel]}})
    for (const volume of volumes ?? []) await docker.getVolume(volume.Name).remove()
    await rm(dataDir, {recursive: true, force: true})
  })

  it('three services on their own networks: names resolve, a published port answers, starts follow depends_on and the healthcheck', async () => {
    await convergeUntilRunning(threeServices(), 3)
    const networks = await docker.listNetworks({filters: {label: [ownerLabel]}})
    assert.deepEqual(networks.map((network) => network.Name).sort(), [`${appId}_backend`, `${appId}_front`])
    assert.equal(networks.find((network) => network.Name === `${appId}_backend`)?.Internal, true)

    const [db, api, web] = await Promise.all(['db', 'api', 'web'].map(containerOf))
    const firstHealthy = db.State.Health?.Log?.find((probe) => probe.ExitCode === 0)
    assert.ok(firstHealthy, 'db passed its healthcheck')
    assert.ok(new Date(api.State.StartedAt) >= new Date(firstHealthy.Start), 'api started once db was healthy')
    assert.ok(new Date(web.State.StartedAt) >= new Date(api.State.StartedAt), 'web started after api')

    assert.match(await shellIn(web.Id, 'nslookup db'), /Address:? .*\d+\.\d+\.\d+\.\d+/)
    await shellIn(web.Id, 'ping -c1 -W2 db')
    assert.equal(await shellIn(web.Id, 'wget -qO- http://api-alias:8080/'), 'api here\n')
    assert.equal(await (await fetch(`http://127.0.0.1:${port}/`)).text(), 'api here\n')
  })

  it('a device, capabilities, limits, a tmpfs and the other settings show in docker inspect and inside the container', async () => {
    await convergeUntilRunning(threeServices(), 3)
    const web = await containerOf('web')
    const host = web.HostConfig as typeof web.HostConfig & {Init?: boolean}
    assert.deepEqual(host.Devices, [{PathOnHost: '/dev/zero', PathInContainer: '/dev/fakezero', CgroupPermissions: 'rwm'}])
    assert.deepEqual(host.CapAdd, ['NET_ADMIN'])
    assert.equal(host.Memory, 64 * 1024 * 1024)
    assert.equal(host.NanoCpus, 500_000_000)
    assert.equal(host.PidsLimit, 64)
    assert.deepEqual(host.Tmpfs, {'/scratch': 'size=1m'})
    assert.deepEqual(host.Ulimits, [{Name: 'nofile', Soft: 1000, Hard: 2000}])
    assert.deepEqual(host.ExtraHosts, ['flotilla.test:10.1.2.3'])
    assert.equal(host.Init, true)
    assert.equal(web.Config.Hostname, 'webhost')

    const inside = await shellIn(web.Id, [
      'test -c /dev/fakezero && echo device',
      'ip link set lo mtu 1400 && echo net-admin',
      'cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes',
      'grep " /scratch " /proc/mounts | cut -d" " -f3',
      // The service's own process: this engine gives `docker exec` processes the hard limit as their soft one.
      'grep "open files" /proc/1/limits | tr -s " " | cut -d" " -f4,5',
      'hostname',
      'grep flotilla.test /etc/hosts | cut -f1',
    ].join('; '))
    assert.deepEqual(inside.trim().split('\n'), ['device', 'net-admin', String(64 * 1024 * 1024), 'tmpfs', '1000 2000', 'webhost', '10.1.2.3'])
  })

  it('a changed field recreates its service only; converging again leaves every container alone', async () => {
    await convergeUntilRunning(threeServices(), 3)
    const before = Object.fromEntries(await Promise.all(['db', 'api', 'web'].map(async (name) => [name, (await containerOf(name)).Id])))
    await convergeUntilRunning(threeServices(), 3)
    const unchanged = Object.fromEntries(await Promise.all(['db', 'api', 'web'].map(async (name) => [name, (await containerOf(name)).Id])))
    assert.deepEqual(unchanged, before)

    await convergeUntilRunning(threeServices('96m'), 3)
    const web = await containerOf('web')
    assert.notEqual(web.Id, before.web)
    assert.equal(web.HostConfig.Memory, 96 * 1024 * 1024)
    assert.equal((await containerOf('db')).Id, before.db)
    assert.equal((await containerOf('api')).Id, before.api)
  })

  it("removes the app's networks with its services", async () => {
    await convergeUntilRunning(threeServices(), 3)
    const empty = deviceTarget({uuid: appUuid, id: appId}, {commit: 'd'.repeat(32), id: 8, services: {}})
    await eventually(async () => (await converge(executor, empty, options)).settled, 'the app removed')
    assert.deepEqual(await ownContainers(), [])
    assert.deepEqual(await docker.listNetworks({filters: {label: [ownerLabel]}}), [])
  })

  it("balena's feature labels bind the host paths that exist and set their variables", async () => {
    const features = ['kernel-modules', 'firmware', 'dbus', 'balena-socket', 'sysfs', 'procfs', 'journal-logs', 'balena-api']
    const labels = Object.fromEntries(features.map((feature) => [`io.balena.features.${feature}`, '1']))
    const target = deviceTarget({uuid: appUuid, id: appId}, {
      commit: 'e'.repeat(32),
      id: 9,
      services: {main: service(4, {command: ['sh', '-c', IDLE], network_mode: 'host'}, labels)},
    })
    await convergeUntilRunning(target, 1)
    const main = await containerOf('main')
    const mounts = new Map(main.Mounts.map((mount) => [mount.Destination, mount.Source]))
    const expected: Array<[string, string]> = [
      ['/lib/modules', '/lib/modules'],
      ['/lib/firmware', '/lib/firmware'],
      ['/run/dbus', '/host/run/dbus'],
      ['/var/run/docker.sock', '/host/run/balena-engine.sock'],
      ['/var/run/docker.sock', '/var/run/balena.sock'],
      ['/sys', '/sys'],
      ['/proc', '/proc'],
      ['/var/log/journal', '/var/log/journal'],
      ['/run/log/journal', '/run/log/journal'],
      ['/etc/machine-id', '/etc/machine-id'],
    ]
    for (const [source, destination] of expected) {
      // This machine may lack some host paths (no /lib/firmware, no journal): those are left out, never created.
      if (existsSync(source)) assert.equal(mounts.get(destination), source, `${destination} is bound from ${source}`)
      else assert.equal(mounts.has(destination), false, `${destination} is left out: the host has no ${source}`)
    }

    const environment = main.Config.Env
    assert.ok(environment.includes('BALENA_API_KEY=device-key-for-test'))
    assert.ok(environment.includes('BALENA_API_URL=http://127.0.0.1:1'))
    assert.ok(environment.includes('RESIN_API_KEY=device-key-for-test'))
    assert.ok(environment.includes('DBUS_SYSTEM_BUS_ADDRESS=unix:path=/host/run/dbus/system_bus_socket'))
    assert.ok(environment.includes('DOCKER_HOST=unix:///host/run/balena-engine.sock'))
    assert.match(await shellIn(main.Id, 'test -S /host/run/balena-engine.sock && echo socket'), /socket/)
  })
})
