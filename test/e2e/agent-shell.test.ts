import assert from 'node:assert/strict'
import {execFile, spawn} from 'node:child_process'
import {randomBytes} from 'node:crypto'
import {mkdtemp, readFile, rm, stat, writeFile} from 'node:fs/promises'
import {type AddressInfo, createServer, type Server, type Socket} from 'node:net'
import {tmpdir} from 'node:os'
import path from 'node:path'
import {promisify} from 'node:util'

import Docker from 'dockerode'

import {type RunningAgent, startAgent} from '../../src/agent/agent.js'
import {LABELS} from '../../src/agent/reconciler.js'
import {type DirectAccess, importHostPty, type ShellService, startShellService} from '../../src/agent/shell-service.js'
import {SERVICE_ENV} from '../../src/protocol/device-link.js'
import {BASE_IMAGE, ensureBaseImage} from '../helpers/docker.js'

const run = promisify(execFile)

interface SshResult {
  code: number | null
  stdout: string
  stderr: string
}

/** The real OpenSSH client against 127.0.0.1:<port>, with nothing from the user's own ssh config or agent. */
function ssh(port: number, identity: string, args: string[], input = ''): Promise<SshResult> {
  const child = spawn('/usr/bin/ssh', [
    '-F', '/dev/null',
    '-o', 'StrictHostKeyChecking=no',
    '-o', 'UserKnownHostsFile=/dev/null',
    '-o', 'BatchMode=yes',
    '-o', 'IdentitiesOnly=yes',
    '-o', 'LogLevel=ERROR',
    '-i', identity,
    '-p', String(port),
    ...args,
  ], {stdio: 'pipe'})
  let stdout = ''
  let stderr = ''
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk))
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk))
  child.stdin.end(input)
  return new Promise((resolve, reject) => {
    child.once('error', reject)
    child.once('close', (code) => resolve({code, stdout, stderr}))
  })
}

async function makeKey(folder: string, name: string): Promise<{identity: string; publicKey: string}> {
  const identity = path.join(folder, name)
  await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', name, '-f', identity])
  return {identity, publicKey: (await readFile(`${identity}.pub`, 'utf8')).trim()}
}

/** A loopback port whose connections go to the shell service the way the device link hands them over. */
async function injectingListener(inject: (socket: Socket) => void): Promise<{port: number; server: Server}> {
  const server = createServer(inject)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {port: (server.address() as AddressInfo).port, server}
}

describe('agent shell service, reached with the OpenSSH client', function () {
  this.timeout(60_000)
  const docker = new Docker()
  const deviceUuid = randomBytes(16).toString('hex')
  let folder: string
  let allowed: {identity: string; publicKey: string}
  let stranger: {identity: string; publicKey: string}
  let access: DirectAccess
  let shell: ShellService
  let port: number
  let container: Docker.Container | undefined
  const listeners: Server[] = []

  const inService = (service: string) => ['-o', `SetEnv=${SERVICE_ENV}=${service}`]

  before(async () => {
    await ensureBaseImage()
    folder = await mkdtemp(path.join(tmpdir(), 'flotilla-shell-'))
    allowed = await makeKey(folder, 'allowed')
    stranger = await makeKey(folder, 'stranger')
    access = {authorizedKeys: ['# a comment', allowed.publicKey], open: false}
    shell = await startShellService({dataDir: folder, docker, deviceUuid: () => deviceUuid, directAccess: async () => access})
    port = await shell.listen(0, '127.0.0.1')
  })

  after(async () => {
    await container?.remove({force: true})
    for (const server of listeners) server.close()
    await shell?.close()
    await rm(folder, {recursive: true, force: true})
  })

  it('keeps its host key in the data dir, readable by the agent only', async () => {
    const key = await stat(path.join(folder, 'shell_host_ed25519_key'))
    assert.equal(key.mode & 0o777, 0o600)
  })

  it('runs a command on the host and passes its output and exit status through', async () => {
    assert.deepEqual(await ssh(port, allowed.identity, ['root@127.0.0.1', 'uname -s']), {code: 0, stdout: 'Linux\n', stderr: ''})
    assert.equal((await ssh(port, allowed.identity, ['root@127.0.0.1', 'exit 7'])).code, 7)
    assert.deepEqual(await ssh(port, allowed.identity, ['root@127.0.0.1', 'echo oops >&2; exit 1']), {code: 1, stdout: '', stderr: 'oops\n'})
  })

  it('runs a shell reading commands from the piped input', async () => {
    const result = await ssh(port, allowed.identity, ['root@127.0.0.1'], 'echo from-stdin\nuname -s\nexit 3\n')
    assert.deepEqual(result, {code: 3, stdout: 'from-stdin\nLinux\n', stderr: ''})
  })

  it('refuses a key that config.json does not list, and takes anyone on an open development device', async () => {
    const refused = await ssh(port, stranger.identity, ['root@127.0.0.1', 'uname -s'])
    assert.equal(refused.code, 255)
    assert.equal(refused.stdout, '')
    assert.match(refused.stderr, /Permission denied/)
    access = {authorizedKeys: [], open: true}
    try {
      assert.equal((await ssh(port, stranger.identity, ['root@127.0.0.1', 'echo in'])).stdout, 'in\n')
    } finally {
      access = {authorizedKeys: [allowed.publicKey], open: false}
    }
  })

  it('gives a pty session the client terminal size', async () => {
    const sshCommand = ['/usr/bin/ssh', '-F', '/dev/null', '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'BatchMode=yes', '-o', 'IdentitiesOnly=yes', '-o', 'LogLevel=ERROR']
    const inner = `stty cols 91 rows 17; ${sshCommand.join(' ')} -tt -i ${allowed.identity} -p ${port} root@127.0.0.1 'stty size; tty; exit 5'`
    // script gives ssh a real terminal, as a person's would be; its own exit status is the session's.
    const result = await run('script', ['-qec', inner, '/dev/null']).then(
      ({stdout}) => ({code: 0, stdout}),
      (error: {code: number; stdout: string}) => ({code: error.code, stdout: error.stdout}),
    )
    assert.equal(result.code, 5, result.stdout)
    assert.match(result.stdout, /^17 91\r\n\/dev\/pts\/\d+\r\n/)
  })

  it('on a platform without a prebuilt pty, refuses a terminal on the host in one line and still runs commands without one', async () => {
    // What @lydell/node-pty throws on 32-bit ARM, for which it ships no binary.
    const noBinary = () => Promise.reject(new Error('The @lydell/node-pty package currently does not support your platform: linux-arm\n\nmore lines'))
    const ptyless = await startShellService({dataDir: folder, docker, deviceUuid: () => deviceUuid, directAccess: async () => access, loadPty: () => importHostPty(noBinary)})
    try {
      const ptylessPort = await ptyless.listen(0, '127.0.0.1')
      const refused = await ssh(ptylessPort, allowed.identity, ['-tt', 'root@127.0.0.1', 'tty'])
      assert.equal(refused.code, 1)
      assert.equal(refused.stdout, '')
      assert.equal(refused.stderr, `error: this device's agent cannot open a terminal on its host (${process.platform}-${process.arch}: The @lydell/node-pty package currently does not support your platform: linux-arm); run the command without one (its input not a terminal), or enter a service\r\n`)
      assert.deepEqual(await ssh(ptylessPort, allowed.identity, ['root@127.0.0.1', 'uname -s']), {code: 0, stdout: 'Linux\n', stderr: ''})
    } finally {
      await ptyless.close()
    }
  })

  describe('inside a service container', () => {
    before(async () => {
      container = await docker.createContainer({
        Image: BASE_IMAGE,
        name: `main_7_3_${deviceUuid}`,
        Cmd: ['sh', '-c', 'echo inside-main > /marker; exec sleep 3600'],
        Labels: {[LABELS.supervised]: 'true', [LABELS.serviceName]: 'main', [LABELS.deviceUuid]: deviceUuid},
        HostConfig: {NetworkMode: 'host'},
      })
      await container.start()
      for (let attempt = 0; attempt < 50; attempt++) {
        const result = await ssh(port, allowed.identity, [...inService('main'), 'root@127.0.0.1', 'cat /marker'])
        if (result.code === 0) return
        await new Promise((resolve) => setTimeout(resolve, 100))
      }
    })

    it('runs a command in the service, its output and status passed through', async () => {
      assert.deepEqual(await ssh(port, allowed.identity, [...inService('main'), 'root@127.0.0.1', 'cat /marker; echo err >&2; exit 6']), {code: 6, stdout: 'inside-main\n', stderr: 'err\n'})
    })

    it('runs a shell in the service reading commands from the piped input', async () => {
      const result = await ssh(port, allowed.identity, [...inService('main'), 'root@127.0.0.1'], 'cat /marker\nexit 4\n')
      assert.deepEqual(result, {code: 4, stdout: 'inside-main\n', stderr: ''})
    })

    it('finds the service by container id prefix too, as balena enter gives it', async () => {
      const id = (await container?.inspect())?.Id ?? ''
      assert.equal((await ssh(port, allowed.identity, [...inService(id.slice(0, 12)), 'root@127.0.0.1', 'cat /marker'])).stdout, 'inside-main\n')
    })

    it('runs a pty session in the service', async () => {
      const result = await ssh(port, allowed.identity, ['-tt', ...inService('main'), 'root@127.0.0.1', 'tty; cat /marker'])
      assert.equal(result.code, 0)
      assert.match(result.stdout, /^\/dev\/pts\/\d+\r\ninside-main\r\n/)
    })

    it("answers balena-cli's container listing with this device's containers, so balena ssh <uuid> <service> finds the one to enter", async () => {
      // Another device's container of the same service on the same engine, which a host's own `docker ps` lists too.
      const stranger = await docker.createContainer({
        Image: BASE_IMAGE,
        name: `main_1_1_${randomBytes(16).toString('hex')}`,
        Cmd: ['sleep', '3600'],
        Labels: {[LABELS.supervised]: 'true', [LABELS.serviceName]: 'main', [LABELS.deviceUuid]: randomBytes(16).toString('hex')},
      })
      try {
        await stranger.start()
        const listing = `"$(if [ -f /usr/bin/balena ]; then echo "balena"; else echo "docker"; fi)" ps --format "{{.ID}} {{.Names}}"`
        const info = await container?.inspect()
        const result = await ssh(port, allowed.identity, ['root@127.0.0.1', listing])
        assert.deepEqual(result, {code: 0, stdout: `${info?.Id.slice(0, 12)} ${info?.Name.slice(1)}\n`, stderr: ''})
      } finally {
        await stranger.remove({force: true})
      }
    })

    it('says in one line which services run when the one asked for does not', async () => {
      const result = await ssh(port, allowed.identity, [...inService('nope'), 'root@127.0.0.1', 'true'])
      assert.deepEqual(result, {code: 1, stdout: '', stderr: 'error: no running service "nope" on this device (running: main)\n'})
    })
  })

  it('takes link connections without a key and direct ones only with one', async () => {
    const link = await injectingListener((socket) => shell.injectLinkConnection(socket))
    const tunnel = await injectingListener((socket) => shell.injectDirectConnection(socket))
    listeners.push(link.server, tunnel.server)
    assert.deepEqual(await ssh(link.port, stranger.identity, ['root@127.0.0.1', 'echo linked']), {code: 0, stdout: 'linked\n', stderr: ''})
    assert.equal((await ssh(tunnel.port, stranger.identity, ['root@127.0.0.1', 'echo tunnel'])).code, 255)
    assert.equal((await ssh(tunnel.port, allowed.identity, ['root@127.0.0.1', 'echo tunnel'])).stdout, 'tunnel\n')
  })

  it('kills a session when the client goes away', async () => {
    const pidFile = path.join(folder, 'sleeper.pid')
    const child = spawn('/usr/bin/ssh', ['-F', '/dev/null', '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'BatchMode=yes', '-o', 'IdentitiesOnly=yes', '-i', allowed.identity, '-p', String(port), 'root@127.0.0.1', `echo $$ > ${pidFile}; exec sleep 300`], {stdio: 'ignore'})
    let pid = 0
    for (let attempt = 0; attempt < 100 && !pid; attempt++) {
      pid = Number(await readFile(pidFile, 'utf8').catch(() => '0'))
      await new Promise((resolve) => setTimeout(resolve, 50))
    }

    assert.ok(pid > 0, 'the remote command started')
    child.kill('SIGKILL')
    const alive = () => {
      try {
        process.kill(pid, 0)
        return true
      } catch {
        return false
      }
    }

    for (let attempt = 0; attempt < 100 && alive(); attempt++) await new Promise((resolve) => setTimeout(resolve, 50))
    assert.equal(alive(), false, 'the remote command was killed')
  })
})

describe('agent start with a direct SSH port', function () {
  this.timeout(60_000)
  let folder: string
  let agent: RunningAgent | undefined

  before(async () => {
    folder = await mkdtemp(path.join(tmpdir(), 'flotilla-agent-ssh-'))
  })

  after(async () => {
    await agent?.stop()
    await rm(folder, {recursive: true, force: true})
  })

  it('serves the keys of config.json on the port asked for, until stopped', async () => {
    const key = await makeKey(folder, 'device-owner')
    const configPath = path.join(folder, 'config.json')
    const uuid = randomBytes(16).toString('hex')
    // A registered device whose server is not there: the shell needs no server.
    await writeFile(configPath, JSON.stringify({apiEndpoint: 'http://127.0.0.1:9', uuid, deviceId: 1, deviceApiKey: 'k'.repeat(32), registered_at: 1, os: {sshKeys: [key.publicKey]}}))
    agent = await startAgent({configPath, dataDir: path.join(folder, 'data'), localApiPort: 0, sshListen: {host: '127.0.0.1', port: 0}})
    const sshPort = agent.sshPort
    assert.ok(sshPort)
    assert.deepEqual(await ssh(sshPort, key.identity, ['root@127.0.0.1', 'echo device']), {code: 0, stdout: 'device\n', stderr: ''})
    assert.equal(agent.link.isLinked, false)
    await agent.stop()
    agent = undefined
    assert.equal((await ssh(sshPort, key.identity, ['root@127.0.0.1', 'true'])).code, 255)
  })
})
