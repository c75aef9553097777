import {strict as assert} from 'node:assert'
import {type ChildProcess, execFile, spawn} from 'node:child_process'
import {randomBytes} from 'node:crypto'
import {mkdtempSync, readFileSync, rmSync} from 'node:fs'
import {createServer as createHttpServer, get as httpGet, request as httpRequest, type Server} from 'node:http'
import type {AddressInfo} from 'node:net'
import {tmpdir} from 'node:os'
import path from 'node:path'
import {promisify} from 'node:util'

import pg from 'pg'
import {WebSocket} from 'ws'

import {channelRequestHeaders, INTERNAL_CHANNEL_PATH, internalChannelKey} from '../../src/server/gateway/internal-channel.js'
import {type TerminalNews, WEB_TERMINAL_PATH} from '../../src/protocol/web-terminal.js'

import {AgentProcess} from '../helpers/agent.js'
import {type Balancer, reserveBalancerPorts, startBalancer} from '../helpers/balancer.js'
import {CLI_BIN, type CliResult, makeCliHome, PROJECT_ROOT, runCli} from '../helpers/cli.js'
import {ensureDocker} from '../helpers/docker.js'
import {eventually, FleetApi} from '../helpers/fleet-api.js'
import {TEST_DATABASE} from '../helpers/postgres.js'
import {startServer, type TestServer} from '../helpers/server.js'

const run = promisify(execFile)
/** From a server's death to its device's next session through the balancer: the agent's first retries and haproxy's checks fit well inside. */
const RELINK_DEADLINE_MS = 30_000

function get(port: number, urlPath: string): Promise<{status: number; body: string}> {
  return new Promise((resolve, reject) => {
    httpGet({host: '127.0.0.1', port, path: urlPath, agent: false}, (response) => {
      let body = ''
      response.setEncoding('utf8').on('data', (chunk: string) => (body += chunk))
      response.on('end', () => resolve({status: response.statusCode ?? 0, body}))
      response.on('error', reject)
    }).on('error', reject)
  })
}

/**
 * Two `server start` processes on one PostgreSQL database behind haproxy (test/helpers/balancer.ts), a real agent
 * linked through the balancer, and the user's sessions reaching the device through the instance that does not hold
 * its link. Each server has a data dir of its own: the session signing secret and the SSH host key they share come
 * from the database.
 */
describe('several servers on one database behind a load balancer: a device linked to one is reachable through any', function () {
  this.timeout(240_000)
  const home = makeCliHome()
  const workDir = mkdtempSync(path.join(tmpdir(), 'flotilla-instances-'))
  const children: ChildProcess[] = []
  let servers: TestServer[] = []
  let balancer: Balancer | undefined
  let agent: AgentProcess | undefined
  let database: pg.Client | undefined
  let token: string
  let identity: string
  let uuid: string
  let deviceHttp: Server | undefined

  const cli = (args: string[], env: NodeJS.ProcessEnv = {}): Promise<CliResult> => runCli(args, {env: {HOME: home, FLOTILLA_URL: balancer!.url, FLOTILLA_TOKEN: token, ...env}})
  const agentLog = () => `\nagent: ${agent?.output.split('\n').slice(-15).join('\n')}`

  /** The server holding the device's link now, as the instance registry has it. */
  const linkOwner = async (): Promise<TestServer | undefined> => {
    const {rows} = await database!.query<{internal_url: string}>(
      'select server_instance.internal_url from device_link join server_instance on server_instance.id = device_link.instance join device on device.id = device_link.device where device.uuid = $1',
      [uuid],
    )
    return servers.find((server) => server.url === rows[0]?.internal_url)
  }

  /** How many times the agent has said its link came up. */
  const linksUp = () => agent?.output.match(/^device link up /gm)?.length ?? 0
  const notHolding = (owner: TestServer) => servers.find((server) => server !== owner)!

  before(async function () {
    // npm run test:postgres runs it; several servers need a database they can share.
    if (TEST_DATABASE !== 'postgres') this.skip()
    await ensureDocker()
    const ports = await reserveBalancerPorts()
    const announced = ['--public-url', `http://127.0.0.1:${ports.http}`, '--public-ssh-port', String(ports.ssh)]
    const first = await startServer({args: announced})
    servers.push(first)
    // A data dir of its own: the secrets both sign and verify with, and the SSH host key, come from the database.
    servers.push(await startServer({databaseUrl: first.databaseUrl, args: announced, env: {FLOTILLA_ADMIN_PASSWORD: first.admin.password}}))
    balancer = await startBalancer(servers, ports)
    database = new pg.Client({connectionString: first.databaseUrl})
    await database.connect()

    const api = new FleetApi(balancer.url)
    token = await api.login(first.admin.username, first.admin.password)
    identity = path.join(workDir, 'key')
    await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'laptop', '-f', identity])
    assert.equal((await cli(['ssh-key', 'add', 'laptop', `${identity}.pub`])).exitCode, 0)
    const fleet = await api.createFleet(token, 'balanced')
    const configPath = path.join(workDir, 'config.json')
    const generated = await cli(['config', 'generate', '--fleet', fleet.slug, '-o', configPath])
    assert.equal(generated.exitCode, 0, generated.stderr)
    assert.equal(JSON.parse(readFileSync(configPath, 'utf8')).flotillaEndpoints.ssh.port, ports.ssh, 'devices link through the balancer')

    agent = new AgentProcess(['--config', configPath, '--data-dir', path.join(workDir, 'agent'), '--host-network', '--local-api-port', '0'])
    await agent.start()
    uuid = await eventually(async () => {
      const [device] = (await api.call('GET', `/v7/device?$select=uuid,is_connected_to_vpn&$filter=belongs_to__application eq ${fleet.id}`, {token})).json().d
      return device?.is_connected_to_vpn && (device.uuid as string)
    }, `the device to link${agentLog()}`, 60_000)
    await eventually(async () => linksUp() === 1, `the agent to say its link is up${agentLog()}`, 30_000)
    await eventually(linkOwner, 'the link to be recorded as an instance\u2019s')

    // A web server on the device's loopback, for the tunnel.
    deviceHttp = createHttpServer((request, response) => response.writeHead(200, {'content-type': 'text/plain'}).end(`device side ${request.url}`))
    await new Promise<void>((resolve) => deviceHttp!.listen(0, '127.0.0.1', resolve))
  })

  after(async () => {
    for (const child of children) child.kill('SIGKILL')
    await agent?.kill()
    deviceHttp?.close()
    await database?.end()
    await balancer?.stop()
    // The first one's database is theirs: it goes with the first, stopped last.
    for (const server of servers.reverse()) await server.stop()
    servers = []
    for (const directory of [workDir, home]) rmSync(directory, {recursive: true, force: true})
  })

  it('runs "flotilla ssh" through the instance the device is not linked to', async () => {
    const owner = await linkOwner()
    assert.ok(owner, 'the link is recorded')
    const other = notHolding(owner)
    const routed = await cli(['ssh', uuid, '--identity', identity, '--port', String(other.sshPort), '--', 'echo routed-$((6 * 7)); exit 3'])
    assert.equal(routed.exitCode, 3, routed.stderr)
    assert.equal(routed.stdout, 'routed-42\n')
  })

  it('opens "flotilla tunnel" through the instance the device is not linked to', async () => {
    const owner = await linkOwner()
    assert.ok(owner, 'the link is recorded')
    const other = notHolding(owner)
    const devicePort = (deviceHttp!.address() as AddressInfo).port
    const tunnel = spawn(process.execPath, [CLI_BIN, 'tunnel', uuid, '-p', `${devicePort}:0`, '--json'], {
      cwd: PROJECT_ROOT,
      env: {PATH: process.env.PATH, NO_COLOR: '1', HOME: home, FLOTILLA_URL: balancer!.url, FLOTILLA_TOKEN: token, FLOTILLA_TUNNEL_URL: other.url},
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    children.push(tunnel)
    let output = ''
    tunnel.stdout.setEncoding('utf8').on('data', (chunk: string) => (output += chunk))
    tunnel.stderr.setEncoding('utf8').on('data', (chunk: string) => (output += chunk))
    const localPort = await eventually(async () => (/"localPort":(\d+)/.exec(output)?.[1] ? Number(/"localPort":(\d+)/.exec(output)?.[1]) : undefined), `the tunnel to listen\n${output}`)
    const answer = await get(localPort, '/through-another-instance')
    assert.deepEqual(answer, {status: 200, body: 'device side /through-another-instance'}, output)
    tunnel.kill('SIGINT')
  })

  it('opens a dashboard terminal through the instance the device is not linked to', async () => {
    const owner = await linkOwner()
    assert.ok(owner, 'the link is recorded')
    const socket = new WebSocket(`${notHolding(owner).url.replace(/^http/, 'ws')}${WEB_TERMINAL_PATH}`)
    const news: TerminalNews[] = []
    let output = ''
    socket.on('message', (data: Buffer, isBinary) => {
      if (isBinary) output += data.toString('utf8')
      else news.push(JSON.parse(data.toString('utf8')) as TerminalNews)
    })
    const closed = new Promise<number>((resolve) => socket.on('close', resolve))
    await new Promise((resolve, reject) => socket.once('open', resolve).once('error', reject))
    socket.send(JSON.stringify({type: 'open', token, device: uuid, cols: 80, rows: 24}))
    socket.send(Buffer.from('echo web-$((2 * 21)); exit 4\n'))
    assert.equal(await closed, 1000, JSON.stringify(news))
    assert.deepEqual(news, [{type: 'opened'}, {type: 'exit', code: 4}])
    assert.match(output, /web-42\r?$/m)
  })

  it('refuses internal channels not signed with the key the instances share (401), and other upgrades (404)', async () => {
    const owner = await linkOwner()
    assert.ok(owner, 'the link is recorded')
    const [device] = (await database!.query<{id: number}>('select id from device where uuid = $1', [uuid])).rows
    const target = {instance: (await database!.query<{instance: string}>('select instance from device_link where device = $1', [device.id])).rows[0].instance, deviceId: device.id, kind: 'shell' as const, port: 0}
    const upgrade = (headers: Record<string, string>, pathname = INTERNAL_CHANNEL_PATH) =>
      new Promise<number | undefined>((resolve) => {
        const request = httpRequest(`${owner.url}${pathname}`, {headers: {connection: 'Upgrade', upgrade: 'flotilla-link-channel/1', ...headers}, agent: false})
        request.on('upgrade', (_response, upgraded) => {
          upgraded.destroy()
          resolve(101)
        })
        request.on('response', (response) => resolve(response.statusCode))
        request.on('error', () => resolve(undefined))
        request.end()
      })
    assert.equal(await upgrade({}), 401)
    assert.equal(await upgrade(channelRequestHeaders(internalChannelKey(randomBytes(32)), target)), 401)
    assert.equal(await upgrade({}, '/internal/v1/other'), 404)
  })

  it('keeps the device reachable when the instance holding its link dies: the agent relinks to the other through the balancer', async () => {
    const owner = await linkOwner()
    assert.ok(owner, 'the link is recorded')
    const survivor = notHolding(owner)
    await owner.crash()
    const diedAt = Date.now()
    await eventually(async () => linksUp() === 2 && (await linkOwner()) === survivor, `the device to relink to the surviving instance${agentLog()}`, RELINK_DEADLINE_MS)
    assert.match(agent!.output, /^device link lost: .*, retrying in \d+ s$/m, 'the agent noticed the loss and backed off before relinking')
    const session = await eventually(
      async () => {
        const result = await cli(['ssh', uuid, '--identity', identity, '--', 'echo still-here'])
        return result.exitCode === 0 && result
      },
      `"flotilla ssh" through the balancer to work again${agentLog()}`,
      RELINK_DEADLINE_MS - (Date.now() - diedAt),
    )
    assert.equal(session.stdout, 'still-here\n')
  })
})
