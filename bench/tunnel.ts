/**
 * Tunnel: throughput, each way, and round-trip latency of a connection through `flotilla tunnel` (CLI → server's
 * CONNECT proxy → device link → agent → a port of the device) beside a direct loopback connection to the same port
 * in the same run; then how many tunnel connections are held open at once, each proven alive by an echo. The CLI,
 * the server and the agent each run as their own process, as they would on three machines.
 *
 * Two more references run in the same rounds: three bare Node relays (what any three-process path costs here) and
 * OpenSSH's own port forward (`ssh -L` through a loopback sshd, the same AES-GCM cipher as the device link), the
 * reference implementation of an encrypted tunnel, with one process fewer than ours.
 */
import {type ChildProcess, execFileSync, spawn} from 'node:child_process'
import {existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import net from 'node:net'
import {tmpdir, userInfo} from 'node:os'
import path from 'node:path'

import {CLI_BIN, makeCliHome, runCli} from '../test/helpers/cli.js'
import {ensureDocker} from '../test/helpers/docker.js'
import {eventually, FleetApi} from '../test/helpers/fleet-api.js'
import {freeLoopbackPort} from '../test/helpers/net.js'
import {startServer} from '../test/helpers/server.js'
import {median, percentile} from './measure.js'

const THROUGHPUT_BYTES = 256 * 1024 * 1024
const THROUGHPUT_ROUNDS = 5
const LATENCY_SAMPLES = 2000
const CONCURRENT_CONNECTIONS = [100, 500, 1000]

/**
 * A port on the device side: `echo` mode answers every byte, `sink` mode counts and answers once at the end,
 * `source` mode sends as many bytes as asked for, then ends.
 */
async function startDeviceService(): Promise<{port: number; close: () => void}> {
  const server = net.createServer((socket) => {
    socket.once('data', (first) => {
      if (first[0] === 0x73) {
        // "s<bytes>\n": swallow that many bytes, then say how many arrived.
        const expected = Number(first.subarray(1, first.indexOf(0x0a)).toString())
        let received = first.length - first.indexOf(0x0a) - 1
        const done = () => socket.end(`${received}\n`)
        if (received >= expected) return done()
        socket.on('data', (chunk) => {
          received += chunk.length
          if (received >= expected) done()
        })
        return
      }

      if (first[0] === 0x72) {
        // "r<bytes>\n": send that many bytes, then end.
        let left = Number(first.subarray(1, first.indexOf(0x0a)).toString())
        const chunk = Buffer.alloc(1024 * 1024, 9)
        const send = () => {
          while (left > 0) {
            const piece = chunk.subarray(0, Math.min(left, chunk.length))
            left -= piece.length
            if (!socket.write(piece)) return void socket.once('drain', () => send())
          }

          socket.end()
        }

        return send()
      }

      socket.write(first)
      socket.pipe(socket)
    })
    socket.on('error', () => {})
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {port: (server.address() as net.AddressInfo).port, close: () => server.close()}
}

function connect(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1', () => resolve(socket))
    socket.once('error', reject)
  })
}

/** MB/s of sending `bytes` through `port` until the far side says it has them all. */
async function upload(port: number, bytes: number): Promise<number> {
  const socket = await connect(port)
  const chunk = Buffer.alloc(1024 * 1024, 7)
  const started = performance.now()
  const answered = new Promise<void>((resolve, reject) => {
    socket.once('data', () => resolve())
    socket.once('error', reject)
  })
  socket.write(`s${bytes}\n`)
  for (let sent = 0; sent < bytes; sent += chunk.length) {
    if (!socket.write(chunk)) await new Promise((resolve) => socket.once('drain', resolve))
  }

  await answered
  const seconds = (performance.now() - started) / 1000
  socket.destroy()
  return bytes / 1e6 / seconds
}

/** MB/s of receiving `bytes` through `port` from the far side until it ends. */
async function download(port: number, bytes: number): Promise<number> {
  const socket = await connect(port)
  const started = performance.now()
  let received = 0
  await new Promise<void>((resolve, reject) => {
    socket.on('data', (chunk: Buffer) => (received += chunk.length))
    socket.once('end', resolve)
    socket.once('error', reject)
    socket.write(`r${bytes}\n`)
  })
  const seconds = (performance.now() - started) / 1000
  socket.destroy()
  if (received !== bytes) throw new Error(`${received} of ${bytes} bytes arrived`)
  return bytes / 1e6 / seconds
}

/** Round-trip times in ms of one byte echoed, over one connection. */
async function roundTrips(port: number, samples: number): Promise<number[]> {
  const socket = await connect(port)
  socket.setNoDelay(true)
  const times: number[] = []
  for (let index = 0; index < samples + 50; index++) {
    const started = performance.now()
    await new Promise<void>((resolve) => {
      socket.once('data', () => resolve())
      socket.write('x')
    })
    if (index >= 50) times.push(performance.now() - started)
  }

  socket.destroy()
  return times
}

/** How many of `count` connections opened at once each echo a byte back while all are open. */
async function concurrent(port: number, count: number): Promise<number> {
  const sockets = await Promise.all(Array.from({length: count}, () => connect(port).catch(() => undefined)))
  const alive = await Promise.all(
    sockets.map(
      (socket) =>
        new Promise<boolean>((resolve) => {
          if (!socket) return resolve(false)
          const timer = setTimeout(() => resolve(false), 30_000)
          socket.once('data', () => {
            clearTimeout(timer)
            resolve(true)
          })
          socket.once('close', () => resolve(false))
          socket.write('y')
        }),
    ),
  )
  for (const socket of sockets) socket?.destroy()
  return alive.filter(Boolean).length
}

/**
 * The machine's ceiling for a path of three processes: `hops` bare Node relays (socket.pipe both ways, no SSH, no
 * proxy, no framing), each its own process like the CLI, the server and the agent, chained in front of `targetPort`.
 */
async function startPlainRelays(targetPort: number, hops: number): Promise<{port: number; children: ChildProcess[]}> {
  const relay = `const net = require('node:net'); const next = Number(process.argv[1]);
    net.createServer((a) => { const b = net.connect(next, '127.0.0.1'); a.pipe(b); b.pipe(a); a.on('error', () => b.destroy()); b.on('error', () => a.destroy()) })
      .listen(0, '127.0.0.1', function () { process.stdout.write(this.address().port + '\\n') })`
  const children: ChildProcess[] = []
  let port = targetPort
  for (let hop = 0; hop < hops; hop++) {
    const child = spawn(process.execPath, ['-e', relay, String(port)], {stdio: ['ignore', 'pipe', 'inherit']})
    children.push(child)
    port = await new Promise<number>((resolve, reject) => {
      child.stdout?.setEncoding('utf8').once('data', (line: string) => resolve(Number(line.trim())))
      child.once('exit', (code) => reject(new Error(`a plain relay exited with ${code}`)))
    })
  }

  return {port, children}
}

const SSHD = '/usr/sbin/sshd'

/** Resolves once something accepts connections on `port`. */
async function waitForPort(port: number, what: string): Promise<void> {
  const accepted = async () => {
    const socket = await connect(port).catch(() => undefined)
    socket?.destroy()
    return socket !== undefined
  }

  await eventually(accepted, `${what} to listen on ${port}`, 10_000)
}

/**
 * `ssh -N -L` to `targetPort` through an sshd of its own on loopback, with the cipher the device link negotiates
 * (aes128-gcm). Undefined when Debian's openssh-server is not installed.
 */
async function startOpenSshForward(targetPort: number, workDir: string): Promise<{port: number; children: ChildProcess[]} | undefined> {
  if (!existsSync(SSHD)) return undefined
  const dir = path.join(workDir, 'openssh')
  mkdirSync(dir)
  for (const key of ['host', 'user']) execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', path.join(dir, key)])
  const [sshdPort, localPort] = [await freeLoopbackPort(), await freeLoopbackPort()]
  writeFileSync(path.join(dir, 'sshd_config'), [`ListenAddress 127.0.0.1:${sshdPort}`, `HostKey ${dir}/host`, `AuthorizedKeysFile ${dir}/user.pub`, 'StrictModes no', 'PasswordAuthentication no', `PidFile ${dir}/sshd.pid`, ''].join('\n'))
  // sshd insists on its privilege-separation directory even when it will not use it.
  mkdirSync('/run/sshd', {recursive: true})
  const children = [spawn(SSHD, ['-D', '-E', path.join(dir, 'sshd.log'), '-f', path.join(dir, 'sshd_config')], {stdio: 'ignore'})]
  try {
    await waitForPort(sshdPort, 'sshd')
    const options = ['-o', 'StrictHostKeyChecking=no', '-o', `UserKnownHostsFile=${dir}/known_hosts`, '-o', 'LogLevel=ERROR', '-o', 'ExitOnForwardFailure=yes']
    const forward = ['-L', `${localPort}:127.0.0.1:${targetPort}`, '-p', String(sshdPort), `${userInfo().username}@127.0.0.1`]
    children.push(spawn('ssh', ['-N', ...options, '-c', 'aes128-gcm@openssh.com', '-i', path.join(dir, 'user'), ...forward], {stdio: ['ignore', 'ignore', 'inherit']}))
    await waitForPort(localPort, 'ssh -L')
  } catch (error) {
    for (const child of children) child.kill()
    throw error
  }

  return {port: localPort, children}
}

function startTunnel(uuid: string, remotePort: number, env: NodeJS.ProcessEnv): Promise<{child: ChildProcess; localPort: number}> {
  const child = spawn(process.execPath, [CLI_BIN, 'tunnel', uuid, '-p', `${remotePort}:0`, '--json'], {env: {PATH: process.env.PATH, ...env}, stdio: ['ignore', 'pipe', 'inherit']})
  return new Promise((resolve, reject) => {
    let stdout = ''
    child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk
      const line = stdout.split('\n').find((candidate) => candidate.startsWith('{'))
      if (line) resolve({child, localPort: (JSON.parse(line) as {localPort: number}).localPort})
    })
    child.once('exit', (code) => reject(new Error(`flotilla tunnel exited with ${code}`)))
  })
}

/** The agent's uuid once it has registered (config.json says so) and its link carries a tunnel connection. */
async function waitForLinkedDevice(configPath: string, port: number, env: NodeJS.ProcessEnv): Promise<string> {
  const linkedUuid = async () => {
    const uuid = (JSON.parse(readFileSync(configPath, 'utf8')) as {uuid?: string}).uuid
    if (!uuid) return undefined
    const probe = await startTunnel(uuid, port, env).catch(() => undefined)
    const alive = probe && (await concurrent(probe.localPort, 1)) === 1
    probe?.child.kill('SIGTERM')
    return alive ? uuid : undefined
  }

  return eventually(linkedUuid, 'the agent to link', 60_000)
}

export async function run(): Promise<void> {
  await ensureDocker()
  const workDir = mkdtempSync(path.join(tmpdir(), 'flotilla-bench-tunnel-'))
  const server = await startServer()
  const service = await startDeviceService()
  let tunnel: ChildProcess | undefined
  let agent: ChildProcess | undefined
  const relays = await startPlainRelays(service.port, 3)
  const openSsh = await startOpenSshForward(service.port, workDir)
  try {
    const api = new FleetApi(server.url)
    const token = await api.login(server.admin.username, server.admin.password)
    const fleet = await api.createFleet(token, 'bench')
    const env = {HOME: makeCliHome(), FLOTILLA_URL: server.url, FLOTILLA_TOKEN: token}
    const configPath = path.join(workDir, 'config.json')
    const generated = await runCli(['config', 'generate', '--fleet', fleet.slug, '-o', configPath], {env})
    if (generated.exitCode !== 0) throw new Error(generated.stderr)
    agent = spawn(process.execPath, [CLI_BIN, 'agent', 'start', '--config', configPath, '--data-dir', path.join(workDir, 'agent'), '--host-network', '--local-api-port', '0'], {
      env: {PATH: process.env.PATH},
      stdio: 'ignore',
    })
    const uuid = await waitForLinkedDevice(configPath, service.port, env)
    const opened = await startTunnel(uuid, service.port, env)
    tunnel = opened.child

    // Interleaved rounds, medians: this machine's loopback throughput wanders by half from one run to the next.
    const paths = [
      {name: 'direct', port: service.port},
      {name: 'tunnel', port: opened.localPort},
      {name: 'three plain Node relays (no SSH, no proxy: what any three processes reach here)', port: relays.port},
      ...(openSsh ? [{name: "OpenSSH's ssh -L (through sshd, aes128-gcm, two processes)", port: openSsh.port}] : []),
    ].map((path) => ({...path, upload: [] as number[], download: [] as number[]}))
    for (let round = 0; round < THROUGHPUT_ROUNDS; round++) {
      for (const path of paths) path.upload.push(await upload(path.port, THROUGHPUT_BYTES))
      for (const path of paths) path.download.push(await download(path.port, THROUGHPUT_BYTES))
    }

    console.log(`throughput (median of ${THROUGHPUT_ROUNDS} × ${THROUGHPUT_BYTES / 1024 / 1024} MiB each way; target: tunnel ≥ 0.5× direct)`)
    for (const direction of ['upload', 'download'] as const) {
      const directMBps = median(paths[0][direction])
      for (const path of paths) {
        const mbps = median(path[direction])
        console.log(`  ${direction.padEnd(8)} ${path.name}: ${mbps.toFixed(0)} MB/s${path === paths[0] ? '' : ` — ${(mbps / directMBps).toFixed(2)}× direct`}`)
      }
    }

    if (!openSsh) console.log(`  OpenSSH's ssh -L: skipped, ${SSHD} is not installed (apt-get install openssh-server)`)

    const direct = await roundTrips(service.port, LATENCY_SAMPLES)
    const tunnelled = await roundTrips(opened.localPort, LATENCY_SAMPLES)
    const added = median(tunnelled) - median(direct)
    console.log(
      `round trip (${LATENCY_SAMPLES} samples): direct p50 ${median(direct).toFixed(3)} ms p99 ${percentile(direct, 0.99).toFixed(3)} ms; tunnel p50 ${median(tunnelled).toFixed(3)} ms p99 ${percentile(tunnelled, 0.99).toFixed(3)} ms — added p50 ${added.toFixed(3)} ms (target < 2 ms)`,
    )
    for (const count of CONCURRENT_CONNECTIONS) {
      const started = performance.now()
      const alive = await concurrent(opened.localPort, count)
      console.log(`concurrent tunnel connections: ${alive}/${count} held open and echoing (${((performance.now() - started) / 1000).toFixed(1)} s)`)
    }
  } finally {
    for (const relay of [...relays.children, ...(openSsh?.children ?? [])]) relay.kill()
    tunnel?.kill('SIGINT')
    agent?.kill('SIGTERM')
    service.close()
    await server.stop()
    rmSync(workDir, {recursive: true, force: true})
  }
}
