import {spawn} from 'node:child_process'
import {mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import net from 'node:net'
import {tmpdir} from 'node:os'
import path from 'node:path'

import {eventually} from './fleet-api.js'
import {freeLoopbackPort} from './net.js'
import {waitForExit} from './server.js'

/** Debian's haproxy (apt-get install haproxy): the load balancer several servers run behind in the tests. */
export const HAPROXY = '/usr/sbin/haproxy'

/** The balancer's two loopback ports, known before it starts so the servers can announce them. */
export interface BalancerPorts {
  http: number
  ssh: number
}

/** What the balancer spreads connections over: a server's HTTP and SSH ports (a TestServer is one). */
export interface BalancedServer {
  port: number
  sshPort: number
}

export interface Balancer {
  /** `http://127.0.0.1:<port>`: the URL the servers announce (--public-url), and clients use. */
  url: string
  ports: BalancerPorts
  /** Stops haproxy (SIGTERM: every connection through it ends) and removes its folder. */
  stop(): Promise<void>
}

/**
 * How haproxy checks each server: every `intervalMs`; a check not answered within `timeoutMs` (after connecting;
 * without it, connecting and answering within `intervalMs`) fails; `fall` failed checks in a row take the server
 * out, `rise` good ones put it back.
 */
export interface HealthCheck {
  intervalMs: number
  timeoutMs?: number
  fall: number
  rise: number
}

/** The tests': a server that fails two checks half a second apart is out, so failovers are quick; one good check puts it back. */
export const QUICK_FAILOVER: HealthCheck = {intervalMs: 500, fall: 2, rise: 1}

const START_DEADLINE_MS = 15_000
const STOP_DEADLINE_MS = 10_000

/** Free loopback ports for a balancer, to give the servers (--public-url, --public-ssh-port) before it starts. */
export async function reserveBalancerPorts(): Promise<BalancerPorts> {
  return {http: await freeLoopbackPort(), ssh: await freeLoopbackPort()}
}

/**
 * HTTP (upgrades and CONNECT tunnels included) and TCP for SSH, each round-robin over every server, health
 * checked (GET /ping; a TCP connect for SSH). A connection a dead server refuses is tried on another one. Long
 * timeouts: log streams, tunnels, terminals and device links stay open for as long as a test runs.
 */
export function haproxyConfig(ports: BalancerPorts, servers: readonly BalancedServer[], check: HealthCheck = QUICK_FAILOVER): string {
  const checked = `check inter ${check.intervalMs} fall ${check.fall} rise ${check.rise}`
  const backend = (port: (server: BalancedServer) => number) => [
    ...(check.timeoutMs === undefined ? [] : [`  timeout check ${check.timeoutMs}`]),
    ...servers.map((server, index) => `  server s${index} 127.0.0.1:${port(server)} ${checked}`),
  ]
  return [
    'global',
    '  maxconn 4096',
    'defaults',
    '  timeout connect 2s',
    '  timeout client 1h',
    '  timeout server 1h',
    '  timeout tunnel 1h',
    '  timeout client-fin 5s',
    '  timeout server-fin 5s',
    '  retries 3',
    '  option redispatch',
    'frontend http',
    '  mode http',
    `  bind 127.0.0.1:${ports.http}`,
    '  default_backend http_servers',
    'backend http_servers',
    '  mode http',
    '  balance roundrobin',
    '  option httpchk GET /ping',
    '  http-check expect status 200',
    ...backend((server) => server.port),
    'frontend ssh',
    '  mode tcp',
    `  bind 127.0.0.1:${ports.ssh}`,
    '  default_backend ssh_servers',
    'backend ssh_servers',
    '  mode tcp',
    '  balance roundrobin',
    ...backend((server) => server.sshPort),
    '',
  ].join('\n')
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1')
    socket.once('connect', () => {
      socket.destroy()
      resolve(true)
    })
    socket.once('error', () => resolve(false))
  })
}

/**
 * Starts haproxy in front of `servers` on `ports` (fresh ones unless given), checking them as `healthCheck` says
 * (QUICK_FAILOVER unless given), and resolves once both frontends accept connections; rejects with its output when
 * it exits first or takes too long.
 */
export async function startBalancer(servers: readonly BalancedServer[], ports?: BalancerPorts, options: {healthCheck?: HealthCheck} = {}): Promise<Balancer> {
  const bound = ports ?? (await reserveBalancerPorts())
  const folder = mkdtempSync(path.join(tmpdir(), 'flotilla-haproxy-'))
  const configFile = path.join(folder, 'haproxy.cfg')
  writeFileSync(configFile, haproxyConfig(bound, servers, options.healthCheck))
  // -db: in the foreground, so the test owns the process.
  const child = spawn(HAPROXY, ['-db', '-f', configFile], {stdio: ['ignore', 'pipe', 'pipe']})
  let output = ''
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (output = (output + chunk).slice(-8192)))
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (output = (output + chunk).slice(-8192)))
  const spawned = new Promise<void>((resolve, reject) => {
    child.once('spawn', resolve)
    child.once('error', (error) => reject(new Error(`haproxy could not be started (${error.message}): install Debian's haproxy package`)))
  })
  const stop = async () => {
    child.kill('SIGTERM')
    if (!(await waitForExit(child, STOP_DEADLINE_MS))) {
      child.kill('SIGKILL')
      await waitForExit(child, STOP_DEADLINE_MS)
    }

    rmSync(folder, {recursive: true, force: true})
  }

  try {
    await spawned
    await eventually(
      async () => {
        if (child.exitCode !== null) throw new Error(`haproxy exited (${child.exitCode}): ${output}`)
        return (await accepts(bound.http)) && (await accepts(bound.ssh))
      },
      `haproxy to listen on ${bound.http} and ${bound.ssh}\n${output}`,
      START_DEADLINE_MS,
    )
  } catch (error) {
    await stop()
    throw error
  }

  return {url: `http://127.0.0.1:${bound.http}`, ports: bound, stop}
}
