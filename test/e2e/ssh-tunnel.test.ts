import {strict as assert} from 'node:assert'
import {type ChildProcess, execFile, spawn} from 'node:child_process'
import {createHash, randomBytes} from 'node:crypto'
import {mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {createServer as createHttpServer, get as httpGet, type Server} from 'node:http'
import net from 'node:net'
import {tmpdir} from 'node:os'
import path from 'node:path'
import {promisify} from 'node:util'

import Docker from 'dockerode'
import ssh2 from 'ssh2'

import {type RunningAgent, startAgent} from '../../src/agent/agent.js'
import {LABELS} from '../../src/agent/reconciler.js'
import {linkUsername} from '../../src/protocol/device-link.js'
import {releaseOfBaseImage} from '../helpers/agent.js'
import {CLI_BIN, type CliResult, makeCliHome, PROJECT_ROOT, runCli} from '../helpers/cli.js'
import {ensureBaseImage, ensureDocker} from '../helpers/docker.js'
import {eventually, FleetApi} from '../helpers/fleet-api.js'
import {type CuttableProxy, startCuttableProxy} from '../helpers/net.js'
import {startServer, type TestServer} from '../helpers/server.js'
import {TerminalSession} from '../helpers/terminal.js'

const run = promisify(execFile)
const SSH_OPTIONS = ['-o', 'BatchMode=yes', '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'LogLevel=ERROR']
const TRANSFER_BYTES = 50 * 1024 * 1024

async function makeKey(directory: string, name: string): Promise<string> {
  const file = path.join(directory, name)
  await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', name, '-f', file])
  return file
}

/** A GET through a local port, hashing the body as it arrives. */
function fetchThrough(port: number, urlPath: string): Promise<{status: number; bytes: number; sha256: string}> {
  return new Promise((resolve, reject) => {
    httpGet({host: '127.0.0.1', port, path: urlPath, agent: false}, (response) => {
      const hash = createHash('sha256')
      let bytes = 0
      response.on('data', (chunk: Buffer) => {
        bytes += chunk.length
        hash.update(chunk)
      })
      response.on('end', () => resolve({status: response.statusCode ?? 0, bytes, sha256: hash.digest('hex')}))
      response.on('error', reject)
    }).on('error', reject)
  })
}

describe('ssh and tunnel through the device link (real server, agent, engine and OpenSSH)', function () {
  this.timeout(180_000)
  const docker = new Docker()
  const home = makeCliHome()
  const otherHome = makeCliHome()
  const workDir = mkdtempSync(path.join(tmpdir(), 'flotilla-ssh-'))
  const payload = randomBytes(TRANSFER_BYTES)
  const payloadSha256 = createHash('sha256').update(payload).digest('hex')
  const children: ChildProcess[] = []
  let server: TestServer
  let linkProxy: CuttableProxy
  let agent: RunningAgent | undefined
  let api: FleetApi
  let token: string
  let otherToken: string
  let fleet: {id: number; slug: string}
  let uuid: string
  let imageTag: string | undefined
  let identity: string
  let otherIdentity: string
  let deviceHttp: Server
  let deviceHttpPort: number
  const diagnostics: string[] = []

  const cli = (args: string[], options: {input?: string | Buffer; other?: boolean} = {}): Promise<CliResult> =>
    runCli(args, {input: options.input, env: {HOME: options.other ? otherHome : home, FLOTILLA_URL: server.url, FLOTILLA_TOKEN: options.other ? otherToken : token}})
  const ssh = (args: string[], input?: string | Buffer) => cli(['ssh', uuid, '--identity', identity, ...args], {input})
  const agentLog = () => `\nagent: ${diagnostics.slice(-20).join('\n')}`

  /** The CLI left running (a tunnel, a session), its output gathered as it comes. */
  const spawnCli = (args: string[]) => {
    const child = spawn(process.execPath, [CLI_BIN, ...args], {
      cwd: PROJECT_ROOT,
      env: {PATH: process.env.PATH, NO_COLOR: '1', HOME: home, FLOTILLA_URL: server.url, FLOTILLA_TOKEN: token},
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    children.push(child)
    const output = {stdout: '', stderr: ''}
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (output.stdout += chunk))
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (output.stderr += chunk))
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
    return {child, output, exited}
  }

  /** `flotilla tunnel <uuid> -p … --json`, once it prints every mapping it listens on. */
  const openTunnel = async (mappings: string[]) => {
    const tunnel = spawnCli(['tunnel', uuid, ...mappings.flatMap((mapping) => ['-p', mapping]), '--json'])
    const bound = await eventually(async () => {
      const lines = tunnel.output.stdout.split('\n').filter((line) => line.startsWith('{'))
      return lines.length === mappings.length ? lines.map((line) => JSON.parse(line) as {localPort: number; remotePort: number}) : undefined
    }, `the tunnel's mappings\nstdout: ${tunnel.output.stdout}\nstderr: ${tunnel.output.stderr}`)
    return {...tunnel, localPortOf: (remotePort: number) => bound.find((mapping) => mapping.remotePort === remotePort)?.localPort ?? 0}
  }

  before(async () => {
    await ensureDocker()
    await ensureBaseImage()
    server = await startServer()
    api = new FleetApi(server.url)
    token = await api.login(server.admin.username, server.admin.password)
    await server.addUser({email: 'mallory@other.test', username: 'mallory', password: 'mallory-password-1'})
    otherToken = await api.login('mallory', 'mallory-password-1')
    identity = await makeKey(workDir, 'admin_key')
    otherIdentity = await makeKey(workDir, 'mallory_key')
    assert.equal((await cli(['ssh-key', 'add', 'laptop', `${identity}.pub`])).exitCode, 0)
    assert.equal((await cli(['ssh-key', 'add', 'laptop', `${otherIdentity}.pub`], {other: true})).exitCode, 0)

    fleet = await api.createFleet(token, 'reachable')
    await api.created(token, 'application_environment_variable', {application: fleet.id, name: 'GREETING', value: 'first'})
    // Stops at once when asked, so a restart for new variables takes no stop timeout.
    const service = 'trap "exit 0" TERM; echo "greeting=$GREETING"; echo in-the-service > /tmp/flotilla-marker; while true; do sleep 1; done'
    const release = await releaseOfBaseImage(api, token, fleet.id, {image: 'main', command: ['sh', '-c', service]}, 'e'.repeat(32))
    imageTag = release.imageTag

    const configPath = path.join(workDir, 'config.json')
    const generated = await cli(['config', 'generate', '--fleet', fleet.slug, '-o', configPath])
    assert.equal(generated.exitCode, 0, generated.stderr)
    // The link goes through a proxy the test can cut, as a network failure would.
    linkProxy = await startCuttableProxy(server.sshPort)
    const config = JSON.parse(readFileSync(configPath, 'utf8'))
    config.flotillaEndpoints.ssh.port = linkProxy.port
    // The device's own SSH port (development mode, and tunnels to 22222) lets in the keys config.json lists.
    config.os = {sshKeys: [readFileSync(`${identity}.pub`, 'utf8').trim()]}
    writeFileSync(configPath, JSON.stringify(config))
    agent = await startAgent({
      configPath,
      dataDir: path.join(workDir, 'agent'),
      hostNetwork: true,
      // Long enough that only the link can bring a change within seconds.
      pollIntervalMs: 600_000,
      reconcileIntervalMs: 1000,
      reportIntervalMs: 500,
      localApiPort: 0,
      sshListen: {host: '127.0.0.1', port: 0},
      logger: (message) => diagnostics.push(message),
    })
    uuid = await agent.registered
    await eventually(async () => (await ssh(['--', 'true'])).exitCode === 0, `a first shell on the device${agentLog()}`, 60_000)
    await eventually(async () => {
      const lines = (await api.call('GET', `/device/v2/${uuid}/logs?count=all`, {token})).json() as Array<{message: string}>
      return lines.some((line) => line.message === 'greeting=first')
    }, `the service to run${agentLog()}`, 60_000)

    deviceHttp = createHttpServer((request, response) => {
      if (request.url === '/payload') return void response.writeHead(200, {'content-length': String(TRANSFER_BYTES)}).end(payload)
      response.writeHead(200, {'content-type': 'text/plain'}).end(`hello from the device side ${request.url}`)
    })
    await new Promise<void>((resolve) => deviceHttp.listen(0, '127.0.0.1', resolve))
    deviceHttpPort = (deviceHttp.address() as net.AddressInfo).port
  })

  after(async () => {
    for (const child of children) child.kill('SIGKILL')
    await agent?.stop()
    if (uuid) {
      const containers = await docker.listContainers({all: true, filters: {label: [`${LABELS.deviceUuid}=${uuid}`]}})
      for (const container of containers) await docker.getContainer(container.Id).remove({force: true})
    }

    if (imageTag) await docker.getImage(imageTag).remove().catch(() => undefined)
    deviceHttp?.close()
    await linkProxy?.close()
    await server?.stop()
    for (const directory of [workDir, home, otherHome]) rmSync(directory, {recursive: true, force: true})
  })

  it('runs a command on the device host: "flotilla ssh <uuid> -- uname -s" prints Linux, and exit codes pass through', async () => {
    const uname = await ssh(['--', 'uname', '-s'])
    assert.equal(uname.exitCode, 0, uname.stderr)
    assert.equal(uname.stdout.trim(), 'Linux')
    const failing = await ssh(['--', 'exit 7'])
    assert.equal(failing.exitCode, 7, failing.stderr)
  })

  it('runs commands piped to its stdin without a terminal, as in CI', async () => {
    const piped = await ssh([], 'echo piped-$((40 + 2)); uname -s; exit 3\n')
    assert.equal(piped.exitCode, 3, piped.stderr)
    assert.match(piped.stdout, /^piped-42\nLinux\n$/)
  })

  it('on a terminal, offers the online devices of a fleet and opens an interactive shell on a pseudo-terminal', async () => {
    const session = new TerminalSession(['ssh', fleet.slug, '--identity', identity], {HOME: home, FLOTILLA_URL: server.url, FLOTILLA_TOKEN: token, COLUMNS: '91', LINES: '17'})
    try {
      await session.waitFor(new RegExp(`Which device of ${fleet.slug}\\?[\\s\\S]*${uuid.slice(0, 7)}`))
      session.type('\r')
      await session.waitFor(/[#$] $/m, 30_000)
      session.type('tty; exit 5\r')
      assert.equal(await session.exited, 5, session.output)
      assert.match(session.output, /^\/dev\/pts\/\d+\r?$/m)
    } finally {
      session.kill()
    }
  })

  it('carries binary data piped in byte for byte, as scripts copying files do', async () => {
    const data = randomBytes(3 * 1024 * 1024)
    const file = `/tmp/flotilla-upload-${data.subarray(0, 6).toString('hex')}`
    const copied = await ssh(['--', `cat > ${file} && sha256sum ${file} && rm ${file}`], data)
    assert.equal(copied.exitCode, 0, copied.stderr)
    assert.equal(copied.stdout.split(' ')[0], createHash('sha256').update(data).digest('hex'))
  })

  it('says which device is unknown or offline, at the CLI and at the tunnel proxy', async () => {
    const unknown = await cli(['ssh', 'f'.repeat(32), '--', 'true'])
    assert.equal(unknown.exitCode, 1)
    assert.match(unknown.stderr, /^error: .*ffffff.* not found/m)
    const offline = await api.registerDevice(token, fleet.id, '0'.repeat(32))
    const refused = await cli(['ssh', offline.uuid, '--identity', identity, '--', 'true'])
    assert.equal(refused.exitCode, 1)
    assert.match(refused.stderr, /^error: device 0000000 .*offline/m)
    const answer = await new Promise<string>((resolve) => {
      const socket = net.connect(server.port, '127.0.0.1', () => {
        socket.write(`CONNECT ${offline.uuid}.balena:80 HTTP/1.0\r\nProxy-Authorization: Basic ${Buffer.from(`admin:${token}`).toString('base64')}\r\n\r\n`)
      })
      let text = ''
      socket.setEncoding('utf8').on('data', (chunk: string) => (text += chunk))
      socket.on('close', () => resolve(text))
    })
    assert.match(answer, /^HTTP\/1\.0 503 /)
  })

  it("reaches the device's own SSH port directly, and through a tunnel to 22222 as balena users do", async () => {
    const direct = await cli(['ssh', '127.0.0.1', '--port', String(agent?.sshPort), '--identity', identity, '--', 'uname -s'])
    assert.equal(direct.exitCode, 0, direct.stderr)
    assert.equal(direct.stdout.trim(), 'Linux')

    const tunnel = await openTunnel(['22222:0'])
    const {stdout: uname} = await run('ssh', [...SSH_OPTIONS, '-i', identity, '-p', String(tunnel.localPortOf(22222)), 'root@127.0.0.1', 'uname -s'])
    assert.equal(uname.trim(), 'Linux')
    tunnel.child.kill('SIGINT')
  })

  it("opens a service's shell inside its container, which sees the container's filesystem", async () => {
    const inside = await ssh(['main', '--', 'cat /tmp/flotilla-marker'])
    assert.equal(inside.exitCode, 0, inside.stderr)
    assert.equal(inside.stdout.trim(), 'in-the-service')
    const unknown = await ssh(['nosuch', '--', 'true'])
    assert.equal(unknown.exitCode, 1)
    assert.match(unknown.stderr, /no running service "nosuch"/)
  })

  it("tells balena-sdk the link is up (is_connected_to_vpn) and the device operational (overall_status)", async () => {
    const [device] = (await api.call('GET', `/v7/device(uuid='${uuid}')?$select=is_connected_to_vpn,overall_status`, {token})).json().d
    assert.deepEqual(device, {is_connected_to_vpn: true, overall_status: 'operational'})
  })

  it('serves balena ssh <uuid> <service>: the host lists the containers with balena-cli\'s command, then enter opens the one it names', async () => {
    const gatewaySsh = (command: string, input = '') =>
      new Promise<{code: number | null; stdout: string; stderr: string}>((resolve) => {
        const child = spawn('ssh', [...SSH_OPTIONS, '-i', identity, '-p', String(server.sshPort), `${server.admin.username}@127.0.0.1`, command])
        const output = {stdout: '', stderr: ''}
        child.stdout.setEncoding('utf8').on('data', (chunk: string) => (output.stdout += chunk))
        child.stderr.setEncoding('utf8').on('data', (chunk: string) => (output.stderr += chunk))
        child.once('close', (code) => resolve({code, ...output}))
        child.stdin.end(input)
      })
    // balena-cli's own words (src/utils/device/ssh.ts): the engine's binary, then ps with ids and names.
    const listing = await gatewaySsh(`host ${uuid} "$(if [ -f /usr/bin/balena ]; then echo "balena"; else echo "docker"; fi)" ps --format "{{.ID}} {{.Names}}"`)
    assert.equal(listing.code, 0, listing.stderr)
    const [main] = await docker.listContainers({filters: {label: [`${LABELS.deviceUuid}=${uuid}`, `${LABELS.serviceName}=main`]}})
    const line = listing.stdout.split('\n').find((entry) => entry.startsWith(`${main.Id.slice(0, 12)} `))
    // balena-cli finds the service's container by this name pattern.
    assert.match(line ?? listing.stdout, /^[\da-f]{12} main_\d+_\d+_[\da-f]{32}$/)
    // The agent answers from its engine with this device's containers alone, whatever else the host runs.
    const own = await docker.listContainers({filters: {label: [`${LABELS.supervised}=true`, `${LABELS.deviceUuid}=${uuid}`]}})
    assert.deepEqual(listing.stdout.split('\n').filter(Boolean).sort(), own.map((container) => `${container.Id.slice(0, 12)} ${container.Names[0].slice(1)}`).sort())

    // Without a terminal, balena-cli pipes the commands into the container's shell.
    const entered = await gatewaySsh(`enter ${uuid} ${main.Id.slice(0, 12)}`, 'cat /tmp/flotilla-marker; exit 4\n')
    assert.equal(entered.stdout.trim(), 'in-the-service', entered.stderr)
    assert.equal(entered.code, 4)
  })

  it("refuses another organization's user at the gateway and at the tunnel proxy", async () => {
    const gateway = await run('ssh', [...SSH_OPTIONS, '-i', otherIdentity, '-p', String(server.sshPort), 'mallory@127.0.0.1', `host ${uuid} -- uname -s`]).then(
      () => ({code: 0, stderr: ''}),
      (error: {code: number; stderr: string}) => error,
    )
    assert.equal(gateway.code, 1)
    assert.match(gateway.stderr, /no device [\da-f]{7} that you can access/)

    const unknownKey = await run('ssh', [...SSH_OPTIONS, '-i', otherIdentity, '-p', String(server.sshPort), `${server.admin.username}@127.0.0.1`, `host ${uuid}`]).then(
      () => ({code: 0, stderr: ''}),
      (error: {code: number; stderr: string}) => error,
    )
    assert.equal(unknownKey.code, 255)
    assert.match(unknownKey.stderr, /Permission denied/)

    const answer = await new Promise<string>((resolve) => {
      const socket = net.connect(server.port, '127.0.0.1', () => {
        socket.write(`CONNECT ${uuid}.balena:${deviceHttpPort} HTTP/1.0\r\nProxy-Authorization: Basic ${Buffer.from(`mallory:${otherToken}`).toString('base64')}\r\n\r\n`)
      })
      let text = ''
      socket.setEncoding('utf8').on('data', (chunk: string) => (text += chunk))
      socket.on('close', () => resolve(text))
    })
    assert.match(answer, /^HTTP\/1\.0 407 /)

    const cliRefused = await cli(['tunnel', uuid, '-p', `${deviceHttpPort}:0`], {other: true})
    assert.notEqual(cliRefused.exitCode, 0)
  })

  it("lets a device's link open nothing toward the server or other devices, and a device key link only its own device", async () => {
    const device = await api.registerDevice(token, fleet.id, '1'.repeat(32))
    const connect = (username: string, password: string) =>
      new Promise<ssh2.Client>((resolve, reject) => {
        const client = new ssh2.Client()
        client.once('ready', () => resolve(client)).once('error', reject)
        client.connect({host: '127.0.0.1', port: server.sshPort, username, password, hostVerifier: () => true})
      })
    await assert.rejects(connect(linkUsername(uuid), device.api_key), /authentication/i)
    await assert.rejects(connect(server.admin.username, device.api_key), /authentication/i)
    const link = await connect(linkUsername(device.uuid), device.api_key)
    try {
      await assert.rejects(new Promise((resolve, reject) => link.exec(`host ${uuid} -- uname`, (error, channel) => (error ? reject(error) : resolve(channel)))))
      await assert.rejects(new Promise((resolve, reject) => link.forwardOut('127.0.0.1', 0, '127.0.0.1', server.port, (error, channel) => (error ? reject(error) : resolve(channel)))))
      await assert.rejects(new Promise((resolve, reject) => link.forwardIn('0.0.0.0', 8080, (error) => (error ? reject(error) : resolve(undefined)))))
    } finally {
      link.end()
    }
  })

  it('tunnels connections to a loopback port of the device: an HTTP request, 50 MB intact, and a closed port fails alone', async () => {
    const tunnel = await openTunnel([`${deviceHttpPort}:0`, '1:0'])
    const httpPort = tunnel.localPortOf(deviceHttpPort)
    const closedPort = tunnel.localPortOf(1)
    assert.ok(httpPort && closedPort, tunnel.output.stdout)

    const refused = await new Promise<string>((resolve) => {
      const socket = net.connect(closedPort, '127.0.0.1')
      let text = ''
      socket.on('data', (chunk) => (text += chunk))
      socket.on('error', () => {})
      socket.on('close', () => resolve(text))
    })
    assert.equal(refused, '')

    const throughTunnel = (urlPath: string) =>
      fetchThrough(httpPort, urlPath).catch((error: unknown) => {
        throw new Error(`GET ${urlPath} through the tunnel failed: ${(error as Error).message}\ntunnel stderr: ${tunnel.output.stderr}`)
      })
    const small = await throughTunnel('/hello')
    assert.equal(small.status, 200)
    const big = await throughTunnel('/payload')
    assert.equal(big.bytes, TRANSFER_BYTES)
    assert.equal(big.sha256, payloadSha256)
    assert.equal(tunnel.child.exitCode, null, `the tunnel exited: ${tunnel.output.stderr}`)
    tunnel.child.kill('SIGINT')
    assert.equal(await tunnel.exited, 130, tunnel.output.stderr)
  })

  it("brings a fleet variable change to the service's output within seconds, through the link", async () => {
    const changedAt = Date.now()
    const set = await cli(['env', 'set', 'GREETING', 'second', '--fleet', fleet.slug])
    assert.equal(set.exitCode, 0, set.stderr)
    await eventually(async () => {
      const lines = (await api.call('GET', `/device/v2/${uuid}/logs?count=all`, {token})).json() as Array<{message: string}>
      return lines.some((line) => line.message === 'greeting=second')
    }, `the new greeting${agentLog()}`, 20_000)
    // The agent polls every 10 minutes here: only the link's notice brings the change this soon.
    assert.ok(Date.now() - changedAt < 6000, `took ${Date.now() - changedAt} ms`)
  })

  it('ends a session cleanly when the link drops, and the agent links again', async () => {
    const session = spawnCli(['ssh', uuid, '--identity', identity, '--', 'echo started; sleep 60'])
    await eventually(async () => session.output.stdout.includes('started'), `the session to start\nstderr: ${session.output.stderr}`)
    const cutAt = Date.now()
    linkProxy.cut()
    const code = await session.exited
    assert.ok(Date.now() - cutAt < 10_000)
    assert.notEqual(code, 0)
    assert.match(session.output.stderr, /connection to the device was lost/)
    await eventually(async () => (await ssh(['--', 'echo', 'back'])).stdout.trim() === 'back', `the agent to link again${agentLog()}`, 30_000)
  })
})
