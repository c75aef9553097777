import assert from 'node:assert/strict'
import {mkdtempSync, rmSync} from 'node:fs'
import {readFile, writeFile} from 'node:fs/promises'
import {createServer as createHttpServer, request as httpRequest} from 'node:http'
import type {AddressInfo} from 'node:net'
import {tmpdir} from 'node:os'
import path from 'node:path'

import Docker from 'dockerode'

import {LABELS} from '../../src/agent/reconciler.js'
import type {StoredLogLine} from '../../src/protocol/log-line.js'
import {AgentProcess, generateDeviceConfig, releaseOfBaseImage} from '../helpers/agent.js'
import {makeCliHome} from '../helpers/cli.js'
import {ensureBaseImage, ensureDocker} from '../helpers/docker.js'
import {eventually, FleetApi} from '../helpers/fleet-api.js'
import {startServer, type TestServer} from '../helpers/server.js'

/** Lines the service writes on each stream: with the agent's own lines, fewer than the 1000 the server keeps. */
const COUNT = 300

/** `out <n>` on stdout and `err <n>` on stderr, n = 1..COUNT, 20 pairs a second; then it sleeps (SIGTERM ends it). */
const WRITER = `trap "exit 0" TERM; i=1; while [ $i -le ${COUNT} ]; do echo "out $i"; echo "err $i" >&2; i=$((i+1)); usleep 50000; done; sleep 3600 & wait`

describe('no device log line lost or repeated (real engine, agent and server)', function () {
  this.timeout(90_000)
  const docker = new Docker()
  const home = makeCliHome()
  const workDir = mkdtempSync(path.join(tmpdir(), 'flotilla-agent-logs-'))
  let server: TestServer
  let token: string
  let api: FleetApi
  const agents: AgentProcess[] = []
  const devices: string[] = []
  const images: string[] = []

  before(async () => {
    await ensureDocker()
    await ensureBaseImage()
    server = await startServer()
    api = new FleetApi(server.url)
    token = await api.login(server.admin.username, server.admin.password)
  })

  after(async () => {
    for (const agent of agents) await agent.kill()
    for (const uuid of devices) {
      for (const container of await docker.listContainers({all: true, filters: {label: [`${LABELS.deviceUuid}=${uuid}`]}})) await docker.getContainer(container.Id).remove({force: true})
    }

    for (const image of images) await docker.getImage(image).remove().catch(() => undefined)
    await server?.stop()
    rmSync(workDir, {recursive: true, force: true})
    rmSync(home, {recursive: true, force: true})
  })

  /** A fleet whose release runs WRITER, and a device of it registered by a running agent (talking to `apiEndpoint`, default the server). */
  async function deviceWritingLines(name: string, apiEndpoint?: string) {
    const fleet = await api.createFleet(token, name)
    const release = await releaseOfBaseImage(api, token, fleet.id, {image: 'main', command: ['sh', '-c', WRITER]})
    images.push(release.imageTag)
    const configPath = path.join(workDir, `${name}.json`)
    await generateDeviceConfig({serverUrl: server.url, token, home, fleetSlug: fleet.slug, file: configPath})
    if (apiEndpoint) await writeFile(configPath, JSON.stringify({...JSON.parse(await readFile(configPath, 'utf8')), apiEndpoint}))
    const args = ['--config', configPath, '--data-dir', path.join(workDir, name), '--host-network', '--local-api-port', '0', '--poll-interval', '1']
    const startAgent = async () => {
      const agent = new AgentProcess(args)
      agents.push(agent)
      await agent.start()
      return agent
    }

    const agent = await startAgent()
    const uuid = await eventually(async () => (JSON.parse(await readFile(configPath, 'utf8')) as {uuid?: string}).uuid, 'the device registered')
    devices.push(uuid)
    /** How many lines the service wrote on stdout so far, as the engine keeps them. */
    const written = async () => {
      const [container] = await docker.listContainers({filters: {label: [`${LABELS.deviceUuid}=${uuid}`]}})
      if (!container) return 0
      return (await docker.getContainer(container.Id).logs({stdout: true})).toString('utf8').split('\n').filter((line) => /out \d+/.test(line)).length
    }

    return {uuid, agent, startAgent, written}
  }

  /**
   * Forwards the agent's requests to the server, but cuts the connection instead of passing on the server's 201 to
   * the first `lose` log batches holding the service's lines: the server stored them, and the agent never hears it.
   */
  async function answerLosingProxy(lose: number) {
    const upstream = new URL(server.url)
    let lost = 0
    const proxy = createHttpServer((request, response) => {
      let body = ''
      request.on('data', (chunk: Buffer) => {
        body += chunk.toString('utf8')
      })
      const forwarded = httpRequest({host: upstream.hostname, port: upstream.port, method: request.method, path: request.url, headers: request.headers}, (answer) => {
        if (request.method === 'POST' && request.url?.endsWith('/log-stream') && answer.statusCode === 201 && lost < lose && /"message":"(out|err) \d+"/.test(body)) {
          lost++
          answer.resume()
          request.socket.destroy()
          return
        }

        response.writeHead(answer.statusCode ?? 502, answer.headers)
        answer.pipe(response)
      })
      forwarded.on('error', () => response.destroy())
      request.pipe(forwarded)
    })
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve))
    return {
      url: `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`,
      lost: () => lost,
      close: () => {
        proxy.closeAllConnections()
        proxy.close()
      },
    }
  }

  /** The numbers of the service's lines the server stored, by stream, in the order stored. */
  async function storedNumbers(uuid: string): Promise<{stdout: number[]; stderr: number[]}> {
    const answer = await api.call('GET', `/device/v2/${uuid}/logs?count=all`, {token})
    assert.equal(answer.status, 200, answer.body)
    const numbers = {stdout: [] as number[], stderr: [] as number[]}
    for (const line of answer.json() as StoredLogLine[]) {
      const match = /^(out|err) (\d+)$/.exec(line.message)
      if (!match || line.isSystem) continue
      assert.equal(match[1], line.isStdErr ? 'err' : 'out', `"${line.message}" stored as ${line.isStdErr ? 'stderr' : 'stdout'}`)
      numbers[line.isStdErr ? 'stderr' : 'stdout'].push(Number(match[2]))
    }

    return numbers
  }

  async function assertEveryLineOnce(uuid: string, agent: AgentProcess): Promise<void> {
    const numbers = await eventually(async () => {
      const stored = await storedNumbers(uuid)
      return stored.stdout.includes(COUNT) && stored.stderr.includes(COUNT) ? stored : undefined
    }, `the service's last lines stored\n${agent.output}`, 30_000)
    for (const stream of ['stdout', 'stderr'] as const) {
      const seen = new Set(numbers[stream])
      const missing = Array.from({length: COUNT}, (_, index) => index + 1).filter((number) => !seen.has(number))
      const repeated = numbers[stream].filter((number, index) => numbers[stream].indexOf(number) !== index)
      assert.deepEqual({missing, repeated}, {missing: [], repeated: []}, `${stream} lines lost or repeated\n${agent.output}`)
    }
  }

  it('keeps every line across a kill -9 of the agent: it resumes from its cursors on disk', async () => {
    const device = await deviceWritingLines('killed')
    await eventually(async () => (await storedNumbers(device.uuid)).stdout.length >= 20, `lines stored\n${device.agent.output}`, 30_000)
    await device.agent.kill()
    const atKill = await device.written()
    await eventually(async () => (await device.written()) >= Math.min(COUNT, atKill + 40), 'the service writing on while the agent is dead')
    const restarted = await device.startAgent()
    await assertEveryLineOnce(device.uuid, restarted)
  })

  it('keeps every line across a server outage during which the agent is killed: its offline buffer is on disk', async () => {
    const device = await deviceWritingLines('outage')
    await eventually(async () => (await storedNumbers(device.uuid)).stdout.length >= 20, `lines stored\n${device.agent.output}`, 30_000)
    const ports = {http: server.port, ssh: server.sshPort}
    await server.stop({keepDataDir: true})
    // The agent reads lines it cannot send, and is killed holding them.
    const atStop = await device.written()
    await eventually(async () => (await device.written()) >= Math.min(COUNT, atStop + 40), 'the service writing on while the server is down')
    await device.agent.kill()
    const restarted = await device.startAgent()
    const atRestart = await device.written()
    await eventually(async () => (await device.written()) >= Math.min(COUNT, atRestart + 20), 'the service writing on while the restarted agent is offline')
    server = await startServer({dataDir: server.dataDir, ports})
    await assertEveryLineOnce(device.uuid, restarted)
  })

  it('stores each line once when the agent misses the answers to batches the server stored, and sends them again', async () => {
    const proxy = await answerLosingProxy(3)
    try {
      const device = await deviceWritingLines('lost-answers', proxy.url)
      await eventually(async () => proxy.lost() === 3, `three answers lost\n${device.agent.output}`, 30_000)
      await assertEveryLineOnce(device.uuid, device.agent)
    } finally {
      proxy.close()
    }
  })
})
