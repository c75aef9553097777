import {strict as assert} from 'node:assert'
import {type ChildProcess, execFile, spawn} from 'node:child_process'
import {mkdtempSync, rmSync} from 'node:fs'
import {createServer as createHttpServer, get as httpGet, type Server} from 'node:http'
import type {AddressInfo} from 'node:net'
import {tmpdir} from 'node:os'
import path from 'node:path'
import {promisify} from 'node:util'

import {CLI_BIN, makeCliHome, PROJECT_ROOT, runCli} from '../helpers/cli.js'
import {ensureDocker} from '../helpers/docker.js'
import {eventually} from '../helpers/fleet-api.js'
import {startServer, type TestServer} from '../helpers/server.js'

const run = promisify(execFile)

/** A self-signed certificate for 127.0.0.1, as a user would bring their own. */
async function makeCertificate(directory: string): Promise<{cert: string; key: string}> {
  const cert = path.join(directory, 'server.pem')
  const key = path.join(directory, 'server.key')
  await run('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', key, '-out', cert])
  return {cert, key}
}

function getText(port: number, urlPath: string): Promise<string> {
  return new Promise((resolve, reject) => {
    httpGet({host: '127.0.0.1', port, path: urlPath, agent: false}, (response) => {
      let text = ''
      response.setEncoding('utf8').on('data', (chunk: string) => (text += chunk))
      response.on('end', () => resolve(text))
    }).on('error', reject)
  })
}

describe('a server with a certificate: HTTPS API and a TLS tunnel proxy', function () {
  this.timeout(120_000)
  const workDir = mkdtempSync(path.join(tmpdir(), 'flotilla-tls-'))
  const home = makeCliHome()
  const children: ChildProcess[] = []
  let server: TestServer
  let certificate: {cert: string; key: string}
  let deviceSide: Server
  let token: string

  const cli = (args: string[], env: NodeJS.ProcessEnv = {}) => runCli(args, {env: {HOME: home, FLOTILLA_URL: server.url, NODE_EXTRA_CA_CERTS: certificate.cert, ...env}})

  before(async () => {
    await ensureDocker()
    certificate = await makeCertificate(workDir)
    server = await startServer({args: ['--cert', certificate.cert, '--key', certificate.key]})
    deviceSide = createHttpServer((request, response) => response.end(`device side says hi to ${request.url}`))
    await new Promise<void>((resolve) => deviceSide.listen(0, '127.0.0.1', resolve))
  })

  after(async () => {
    for (const child of children) child.kill('SIGKILL')
    deviceSide?.close()
    await server?.stop()
    rmSync(workDir, {recursive: true, force: true})
    rmSync(home, {recursive: true, force: true})
  })

  it('serves the API over HTTPS to clients that trust the certificate, and names the one they do not trust', async () => {
    assert.match(server.url, /^https:\/\/127\.0\.0\.1:\d+$/)
    const loggedIn = await runCli(['login', '--url', server.url, '--credentials', '--email', server.admin.email, '--password', '-'], {input: server.admin.password, env: {HOME: home, NODE_EXTRA_CA_CERTS: certificate.cert}})
    assert.equal(loggedIn.exitCode, 0, loggedIn.stderr)
    const whoami = await cli(['whoami', '--json'])
    assert.equal(whoami.exitCode, 0, whoami.stderr)
    assert.equal(JSON.parse(whoami.stdout).username, server.admin.username)
    const apiKey = await cli(['api-key', 'generate', 'tls-test', '--json'])
    assert.equal(apiKey.exitCode, 0, apiKey.stderr)
    token = JSON.parse(apiKey.stdout).key

    const untrusted = await cli(['whoami'], {NODE_EXTRA_CA_CERTS: ''})
    assert.equal(untrusted.exitCode, 1)
    assert.equal(untrusted.stderr.trim().split('\n').length, 1, untrusted.stderr)
    assert.match(untrusted.stderr, /certificate/i)
  })

  it('carries a tunnel through CONNECT over TLS to a linked agent', async () => {
    const fleet = await cli(['fleet', 'create', 'secure', '--type', 'raspberrypi4-64', '--json'], {FLOTILLA_TOKEN: token})
    assert.equal(fleet.exitCode, 0, fleet.stderr)
    const configPath = path.join(workDir, 'config.json')
    const generated = await cli(['config', 'generate', '--fleet', 'secure', '-o', configPath], {FLOTILLA_TOKEN: token})
    assert.equal(generated.exitCode, 0, generated.stderr)
    const agent = spawn(process.execPath, [CLI_BIN, 'agent', 'start', '--config', configPath, '--data-dir', path.join(workDir, 'agent'), '--host-network', '--local-api-port', '0'], {
      cwd: PROJECT_ROOT,
      env: {PATH: process.env.PATH, NO_COLOR: '1', NODE_EXTRA_CA_CERTS: certificate.cert},
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    children.push(agent)
    let agentOutput = ''
    agent.stdout.setEncoding('utf8').on('data', (chunk: string) => (agentOutput += chunk))
    agent.stderr.setEncoding('utf8').on('data', (chunk: string) => (agentOutput += chunk))
    const uuid = await eventually(async () => {
      const devices = await cli(['device', 'list', '--fleet', 'secure', '--json'], {FLOTILLA_TOKEN: token})
      const [device] = JSON.parse(devices.stdout || '[]') as Array<{uuid: string; is_online: boolean}>
      return device?.is_online ? device.uuid : undefined
    }, `the agent to come online\nagent: ${agentOutput}`, 60_000)

    const tunnel = spawn(process.execPath, [CLI_BIN, 'tunnel', uuid, '-p', `${(deviceSide.address() as AddressInfo).port}:0`, '--json'], {
      cwd: PROJECT_ROOT,
      env: {PATH: process.env.PATH, NO_COLOR: '1', HOME: home, FLOTILLA_URL: server.url, FLOTILLA_TOKEN: token, NODE_EXTRA_CA_CERTS: certificate.cert},
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    children.push(tunnel)
    let stdout = ''
    let stderr = ''
    tunnel.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk))
    tunnel.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk))
    const {localPort} = await eventually(async () => {
      const line = stdout.split('\n').find((candidate) => candidate.startsWith('{'))
      return line ? (JSON.parse(line) as {localPort: number}) : undefined
    }, `the tunnel to listen\nstderr: ${stderr}`)
    const answer = await eventually(async () => getText(localPort, '/over-tls').catch(() => undefined), `an answer through the tunnel\nstderr: ${stderr}\nagent: ${agentOutput}`, 30_000)
    assert.equal(answer, 'device side says hi to /over-tls')
  })
})
