import {strict as assert} from 'node:assert'
import {execFile, spawn} from 'node:child_process'
import {mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'
import {promisify} from 'node:util'

import {PROJECT_ROOT, runCli} from '../helpers/cli.js'
import {eventually} from '../helpers/fleet-api.js'

const run = promisify(execFile)

/** npm fetches the dependencies from the registry (CI has it); before prebuilt binaries this took over 6 minutes. */
const INSTALL_DEADLINE_MS = 300_000

interface Npm {
  code: number
  stdout: string
  stderr: string
}

/**
 * npm as a user runs it: none of the npm_* variables an enclosing `npm test` sets, and warnings shown whatever the
 * machine's npmrc says.
 */
async function npm(args: string[], cwd: string, timeout: number): Promise<Npm> {
  const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !/^npm_/i.test(name)))
  return run('npm', [...args, '--loglevel=warn', '--no-audit', '--no-fund'], {cwd, env, timeout, maxBuffer: 16 * 1024 * 1024}).then(
    ({stdout, stderr}) => ({code: 0, stdout, stderr}),
    (error: {code?: number; stdout?: string; stderr?: string; message: string}) => ({code: typeof error.code === 'number' ? error.code : 1, stdout: error.stdout ?? '', stderr: error.stderr ?? error.message}),
  )
}

/** Runs `script` in a Node process of its own, requiring packages as the installed flotilla does; prints JSON. */
async function inInstalledCopy(installed: string, script: string): Promise<unknown> {
  const prelude = `const requireInstalled = require('node:module').createRequire(${JSON.stringify(path.join(installed, 'package.json'))});`
  const {stdout} = await run(process.execPath, ['-e', prelude + script], {timeout: 30_000})
  return JSON.parse(stdout)
}

/** An SSH server and client from the installed copy's bundled ssh2, a command run over each cipher flotilla's peers offer. */
const SSH_ROUND_TRIPS = `
const ssh2 = requireInstalled('ssh2')
const hostKey = ssh2.utils.generateKeyPairSync('ed25519').private
const server = new ssh2.Server({hostKeys: [hostKey]}, (client) => {
  client.on('authentication', (auth) => auth.accept())
  client.on('ready', () => client.on('session', (accept) => accept().once('exec', (accept, _reject, info) => {
    const channel = accept()
    channel.end(info.command.toUpperCase())
    channel.exit(0)
  })))
})
const roundTrip = (port, cipher) => new Promise((resolve, reject) => {
  const client = new ssh2.Client()
  client.on('error', reject)
  client.on('ready', () => client.exec('over ' + cipher, (error, stream) => {
    if (error) return reject(error)
    let output = ''
    stream.on('data', (data) => (output += data))
    stream.on('close', () => (client.end(), resolve(output)))
  }))
  client.connect({host: '127.0.0.1', port, username: 'user', algorithms: {cipher: [cipher]}})
})
server.listen(0, '127.0.0.1', async () => {
  const outputs = []
  for (const cipher of ['aes128-gcm@openssh.com', 'chacha20-poly1305@openssh.com', 'aes256-ctr']) outputs.push(await roundTrip(server.address().port, cipher))
  server.close()
  console.log(JSON.stringify(outputs))
})
`

/** What the agent does for a host terminal: node-pty from the installed copy, a command on a pseudo-terminal. */
const PTY_SESSION = `
const pty = requireInstalled('@lydell/node-pty')
const terminal = pty.spawn('/bin/sh', ['-c', 'tty; stty size'], {cols: 91, rows: 17})
let output = ''
terminal.onData((data) => (output += data))
terminal.onExit(({exitCode}) => console.log(JSON.stringify({output, exitCode})))
`

/** The first bytes of a 64-bit ARM shared object: what an x64 machine's loader finds in a binary built for a Pi. */
function otherMachinesBinary(): Buffer {
  const header = Buffer.alloc(64)
  header.write('\u007fELF', 0, 'latin1')
  header.set([2, 1, 1], 4)
  // A shared object (e_type 3) for AArch64 (e_machine 0xb7), ELF version 1, with a 64-byte header.
  header.writeUInt16LE(3, 16)
  header.writeUInt16LE(0xb7, 18)
  header.writeUInt32LE(1, 20)
  header.writeUInt16LE(64, 52)
  return header
}

describe('the packed package, installed as a user installs it', function () {
  this.timeout(60_000)
  let folder: string
  let tarball: string
  let installed: string
  let install: Npm

  before(async function () {
    this.timeout(INSTALL_DEADLINE_MS + 60_000)
    folder = mkdtempSync(path.join(tmpdir(), 'flotilla-install-'))
    const packed = await npm(['pack', '--pack-destination', folder], PROJECT_ROOT, 60_000)
    assert.equal(packed.code, 0, packed.stderr)
    tarball = path.join(folder, packed.stdout.trim().split('\n').at(-1) as string)
    const project = path.join(folder, 'project')
    mkdirSync(project)
    writeFileSync(path.join(project, 'package.json'), JSON.stringify({name: 'uses-flotilla', version: '1.0.0', private: true}))
    install = await npm(['install', '--omit=dev', tarball], project, INSTALL_DEADLINE_MS)
    installed = path.join(project, 'node_modules', 'flotilla')
  })

  after(() => folder && rmSync(folder, {recursive: true, force: true}))

  it('installs with no npm warning: no install script left for the user to allow, no engine or peer complaint', () => {
    assert.equal(install.code, 0, install.stderr)
    assert.deepEqual(`${install.stdout}\n${install.stderr}`.split('\n').filter((line) => /^npm warn/i.test(line)), [])
  })

  it('bundles dockerode and ssh2 (with docker-modem, cpu-features and protobufjs), which npm leaves out of the user\'s allowScripts review', async () => {
    const {stdout} = await run('tar', ['-tzf', tarball], {maxBuffer: 16 * 1024 * 1024})
    const entries = stdout.split('\n')
    for (const bundled of ['dockerode', 'docker-modem', 'ssh2', 'cpu-features', 'protobufjs']) assert.ok(entries.includes(`package/node_modules/${bundled}/package.json`), `${bundled} is bundled`)
  })

  it('runs from the installed copy: --version, and server start on SQLite answering /ping and a login', async () => {
    const bin = path.join(installed, 'bin', 'run.js')
    const version = await runCli(['--version'], {bin, cwd: folder})
    assert.equal(version.exitCode, 0, version.stderr)
    assert.match(version.stdout, new RegExp(`^flotilla/${(JSON.parse(readFileSync(path.join(installed, 'package.json'), 'utf8')) as {version: string}).version.replaceAll('.', '\\.')} `))
    const dataDir = path.join(folder, 'server')
    const server = spawn(process.execPath, [bin, 'server', 'start', '--port', '0', '--ssh-port', '0', '--data-dir', dataDir], {cwd: folder, env: {PATH: process.env.PATH, NO_COLOR: '1'}})
    let stdout = ''
    server.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk))
    server.stderr.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk))
    try {
      const url = await eventually(async () => /listening on (http:\/\/\S+?),/.exec(stdout)?.[1], `the installed server's listening line (so far: ${stdout})`, 30_000)
      const ping = await fetch(`${url}/ping`)
      assert.deepEqual([ping.status, await ping.text()], [200, 'OK'])
      const password = /with password: (\S+)/.exec(stdout)?.[1]
      const login = await fetch(`${url}/login_`, {method: 'POST', headers: {'content-type': 'application/json'}, body: JSON.stringify({username: 'admin', password})})
      assert.equal(login.status, 200, stdout)
    } finally {
      server.kill('SIGKILL')
    }
  })

  it("opens a pseudo-terminal with the installed copy's prebuilt node-pty, as the agent does for a host terminal", async () => {
    const {output, exitCode} = (await inInstalledCopy(installed, PTY_SESSION)) as {output: string; exitCode: number}
    assert.equal(exitCode, 0, output)
    assert.match(output, /^\/dev\/pts\/\d+\r\n17 91\r\n$/)
  })

  it("speaks SSH with the bundled ssh2 as installed, without its optional native crypto binding, and with one that cannot load (another machine's)", async () => {
    const expected = ['OVER AES128-GCM@OPENSSH.COM', 'OVER CHACHA20-POLY1305@OPENSSH.COM', 'OVER AES256-CTR']
    // npm still runs a bundled package's install script: with a compiler, ssh2 built its binding here; without, it did not.
    assert.deepEqual(await inInstalledCopy(installed, SSH_ROUND_TRIPS), expected)
    const build = path.join(installed, 'node_modules', 'ssh2', 'lib', 'protocol', 'crypto', 'build')
    rmSync(build, {recursive: true, force: true})
    assert.deepEqual(await inInstalledCopy(installed, SSH_ROUND_TRIPS), expected)
    mkdirSync(path.join(build, 'Release'), {recursive: true})
    writeFileSync(path.join(build, 'Release', 'sshcrypto.node'), otherMachinesBinary())
    assert.deepEqual(await inInstalledCopy(installed, SSH_ROUND_TRIPS), expected)
  })
})
