/**
 * A fleet on one server process, with simulated agents speaking the real protocol from processes of their own
 * (bench/fleet/agents.ts), so the server's CPU is its own. Run `npm run build` first (the server is the bundle).
 *
 * `npm run bench -- fleet`: for growing fleets, each device polls its target state every 5 s with If-None-Match and
 * reports its state every 10 s (4,000 polls/s and 2,000 reports/s at 20,000 devices); at each size, p50/p99 of
 * both beside `/ping` p99 measured in the same window, the server's and the agents' CPU and the load average; then
 * the largest size whose state-poll p99 is under 100 ms. A device's report is the same each time, as a converged
 * agent's timed report is (the server takes a repeat as a heartbeat); a report that changes is written in full.
 * A latency runs from the moment a device sends its request to its answer. The generator says what of it may be its
 * own: the rate it sent beside the rate asked, the p99 of the time a request waited for one of its sockets, and of
 * its own event-loop delay (how late it sends and reads); all near zero, the latency is the server's and the wire's.
 * The share of the window the server's and the agents' event loops waited for a core says how much the machine's
 * other work (two cores, shared) took from them.
 *
 * `--database postgres` serves the fleet from PostgreSQL (a cluster the bench starts, as the tests do), and
 * `--instances N` from N servers on one PostgreSQL database behind haproxy, the devices reaching them through it;
 * the server CPU is then that of all of them, and the errors say how many were 503s (haproxy had taken every server
 * out: its checks, BENCH_HEALTH_CHECK, found none answering). `--cpu-prof DIR`: each server writes a V8 CPU profile there as it
 * stops (the sampling costs the server some CPU: compare figures from runs without it).
 *
 * `npm run bench -- fleet --links [count]`: every device opens its device link (the agent's own link client);
 * the server's memory per link, the time to accept them all, then the time until a new release has reached every
 * linked device: told over its link, and its new target fetched (goal: 20,000 within 60 s).
 */
import {type ChildProcess, fork} from 'node:child_process'
import {randomBytes} from 'node:crypto'
import {mkdtempSync, rmSync} from 'node:fs'
import {loadavg, tmpdir} from 'node:os'
import path from 'node:path'
import {fileURLToPath} from 'node:url'

import {FleetApi} from '../test/helpers/fleet-api.js'
import {type HealthCheck, reserveBalancerPorts, startBalancer} from '../test/helpers/balancer.js'
import {testPostgres} from '../test/helpers/postgres.js'
import {startServer, type TestServer} from '../test/helpers/server.js'
import {BenchHttpClient, inParallel} from './fleet/http-client.js'
import type {FromAgents, ReportedRelease, SimulatedDevice, ToAgents} from './fleet/messages.js'
import {CpuMeter, openFileLimit, residentBytesOf} from './fleet/process-stats.js'
import {median, percentile} from './measure.js'

const FLEET_SIZES = [1000, 2000, 4000, 8000, 12_000, 16_000, 20_000]
const POLL_MS = 5000
const REPORT_MS = 10_000
const WINDOW_MS = 15_000
const TARGET_P99_MS = 100
const REGISTER_CONCURRENCY = 32
const MAX_LINKS = 20_000
/** Files the server and each agent process keep for themselves besides links (database, listeners, HTTP). */
const FILES_BESIDES_LINKS = 1000
const LINKS_PER_AGENT_PROCESS = 9000
const RELEASE_DEADLINE_MS = 120_000
const LINK_DEADLINE_MS = 300_000
/**
 * haproxy's checks of the servers (`--instances`): a server the load starves may take seconds to answer /ping, so it
 * is out only after three checks 2 s apart each left unanswered for 5 s. The tests' quick failover (two checks of half
 * a second) took both servers out under load, and the devices got thousands of 503s.
 */
const BENCH_HEALTH_CHECK: HealthCheck = {intervalMs: 2000, timeoutMs: 5000, fall: 3, rise: 1}

const AGENTS_FILE = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fleet', 'agents.ts')
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
const print = (line: string) => process.stdout.write(`${line}\n`)
const ms = (value: number) => `${value.toFixed(1)} ms`
const load = () => `load ${loadavg().map((value) => value.toFixed(2)).join(' ')}`

/** One process of simulated agents: messages out, the next answer of a given type back. */
class AgentProcess {
  readonly child: ChildProcess
  private readonly waiting: Array<{type: FromAgents['type']; resolve: (message: FromAgents) => void; reject: (error: Error) => void}> = []

  constructor() {
    // execArgv is inherited: the child runs TypeScript through tsx as this process does.
    this.child = fork(AGENTS_FILE, [], {stdio: ['ignore', 'inherit', 'inherit', 'ipc']})
    this.child.on('message', (message: FromAgents) => {
      const index = this.waiting.findIndex((waiter) => waiter.type === message.type)
      if (index >= 0) this.waiting.splice(index, 1)[0].resolve(message)
    })
    this.child.once('exit', (code) => {
      for (const waiter of this.waiting.splice(0)) waiter.reject(new Error(`the simulated agents exited (${code})`))
    })
  }

  get pid(): number {
    return this.child.pid as number
  }

  tell(message: ToAgents): void {
    this.child.send(message)
  }

  ask<T extends FromAgents['type']>(message: ToAgents, answer: T): Promise<Extract<FromAgents, {type: T}>> {
    return new Promise((resolve, reject) => {
      this.waiting.push({type: answer, resolve: resolve as (message: FromAgents) => void, reject})
      this.tell(message)
    })
  }

  stop(): void {
    this.child.kill()
  }
}

/**
 * Where the fleet is served: one server on SQLite (the default), one on PostgreSQL (`--database postgres`), or
 * several on one PostgreSQL database behind haproxy (`--instances N`), the devices reaching them through it.
 */
interface BenchServers {
  url: string
  admin: TestServer['admin']
  /** The server processes, whose CPU is measured together. */
  pids: number[]
  stop(): Promise<void>
}

interface ServerSetup {
  database: 'sqlite' | 'postgres'
  instances: number
  /** `--cpu-prof DIR`: each server writes a V8 CPU profile there when it stops (open it in Chrome's DevTools). */
  cpuProfileDir?: string
}

async function startBenchServers(setup: ServerSetup): Promise<BenchServers> {
  const args = ['--device-heartbeat-timeout', '60']
  const nodeArgs = setup.cpuProfileDir ? ['--cpu-prof', `--cpu-prof-dir=${path.resolve(setup.cpuProfileDir)}`] : []
  if (setup.database === 'sqlite') {
    const server = await startServer({args, nodeArgs})
    return {url: server.url, admin: server.admin, pids: [server.pid], stop: () => server.stop()}
  }

  const postgres = await testPostgres()
  const databaseUrl = await postgres.createDatabase()
  if (setup.instances === 1) {
    const server = await startServer({args, databaseUrl, nodeArgs})
    return {url: server.url, admin: server.admin, pids: [server.pid], stop: async () => (await server.stop(), await postgres.dropDatabase(databaseUrl))}
  }

  const ports = await reserveBalancerPorts()
  const announced = [...args, '--public-url', `http://127.0.0.1:${ports.http}`, '--public-ssh-port', String(ports.ssh)]
  const servers: TestServer[] = [await startServer({args: announced, databaseUrl, nodeArgs})]
  for (let index = 1; index < setup.instances; index++) servers.push(await startServer({args: announced, databaseUrl, nodeArgs, env: {FLOTILLA_ADMIN_PASSWORD: servers[0].admin.password}}))
  const balancer = await startBalancer(servers, ports, {healthCheck: BENCH_HEALTH_CHECK})
  return {
    url: balancer.url,
    admin: servers[0].admin,
    pids: servers.map((server) => server.pid),
    async stop() {
      await balancer.stop()
      for (const server of servers.reverse()) await server.stop()
      await postgres.dropDatabase(databaseUrl)
    },
  }
}

interface BenchFleet {
  server: BenchServers
  api: FleetApi
  token: string
  fleetId: number
  release: ReportedRelease
  devices: SimulatedDevice[]
  provisioningKey: string
}

/** A server with one fleet, one release of one service and a fleet variable, so targets are as real ones are. */
async function benchFleet(setup: ServerSetup): Promise<BenchFleet> {
  const server = await startBenchServers(setup)
  const api = new FleetApi(server.url)
  const token = await api.login(server.admin.username, server.admin.password)
  const fleet = await api.createFleet(token, 'many')
  await api.created(token, 'application_environment_variable', {application: fleet.id, name: 'GREETING', value: 'hello'})
  const commit = randomBytes(16).toString('hex')
  const created = await api.createRelease(token, fleet.id, commit)
  const provisioningKey = (await api.call('POST', `/api-key/application/${fleet.id}/provisioning`, {token, json: {name: 'bench'}})).json() as string
  return {server, api, token, fleetId: fleet.id, release: {appUuid: fleet.uuid, commit, image: created.location}, devices: [], provisioningKey}
}

/** Registers devices through the real API with one provisioning key, many at a time, as a factory line would. */
async function registerDevices(fleet: BenchFleet, count: number): Promise<void> {
  const client = new BenchHttpClient(fleet.server.url, REGISTER_CONCURRENCY)
  const started = performance.now()
  try {
    const added = await inParallel(count, REGISTER_CONCURRENCY, async () => {
      const uuid = randomBytes(16).toString('hex')
      const answer = await client.request('POST', '/device/register', {token: fleet.provisioningKey, json: {application: fleet.fleetId, device_type: 'raspberrypi4-64', uuid}})
      if (answer.status !== 201) throw new Error(`registering a device answered ${answer.status}: ${answer.body}`)
      return {uuid, key: (JSON.parse(answer.body) as {api_key: string}).api_key}
    })
    fleet.devices.push(...added)
  } finally {
    client.close()
  }

  const seconds = (performance.now() - started) / 1000
  print(`  registered ${count} devices in ${seconds.toFixed(1)} s (${(count / seconds).toFixed(0)}/s, ${REGISTER_CONCURRENCY} at a time); ${load()}`)
}

/** `/ping` latencies, one every 50 ms, until the signal aborts. */
async function pingUntil(url: string, signal: AbortSignal): Promise<number[]> {
  const client = new BenchHttpClient(url, 1)
  const pings: number[] = []
  while (!signal.aborted) {
    const started = performance.now()
    await client.request('GET', '/ping')
    pings.push(performance.now() - started)
    await sleep(50)
  }

  client.close()
  return pings
}

/** One size: warm up (every device answered twice and the backlog drained, see PollingFleet.warmed in bench/fleet/agents.ts), then a measured window. */
async function measureSize(fleet: BenchFleet, agents: AgentProcess): Promise<{p99: number; errors: number}> {
  agents.tell({type: 'start', url: fleet.server.url, devices: fleet.devices, pollMs: POLL_MS, reportMs: REPORT_MS, release: fleet.release, goalMs: TARGET_P99_MS})
  const warmed = await agents.ask({type: 'warmed'}, 'warmed')
  print(
    `  ${fleet.devices.length} devices had their first poll and report answered (targets computed, reports written) within ${(warmed.firstMs / 1000).toFixed(1)} s, ` +
      `${warmed.settled ? 'the backlog of all starting at once drained' : 'the backlog of all starting at once NOT drained, measured anyway'} within ${(warmed.settledMs / 1000).toFixed(1)} s; ${load()}`,
  )
  agents.tell({type: 'measure'})
  const serverCpu = new CpuMeter(fleet.server.pids)
  const agentsCpu = new CpuMeter([agents.pid])
  const window = new AbortController()
  const pinging = pingUntil(fleet.server.url, window.signal)
  await sleep(WINDOW_MS)
  const [server, serverSeconds, serverWaiting, agentsPercent, agentsWaiting, loadNow] = [
    serverCpu.percent(),
    serverCpu.used(),
    serverCpu.waitingPercent(),
    agentsCpu.percent(),
    agentsCpu.waitingPercent(),
    load(),
  ]
  window.abort()
  const [result, pings] = await Promise.all([agents.ask({type: 'stop'}, 'polled'), pinging])
  // What a request costs the server whatever the machine's load: the figure to scale from when other work starves it.
  const perRequest = (serverSeconds * 1e6) / (result.polls.length + result.reports.length + pings.length)
  const p99 = percentile(result.polls, 0.99)
  const {generator} = result
  const perSecond = (count: number) => (count / (WINDOW_MS / 1000)).toFixed(0)
  const asked = (periodMs: number) => ((fleet.devices.length * 1000) / periodMs).toFixed(0)
  print(
    `  ${String(fleet.devices.length).padStart(5)} devices: state poll ${perSecond(generator.sentPolls)}/s sent (${asked(POLL_MS)}/s asked) p50 ${ms(median(result.polls))} p99 ${ms(p99)}; ` +
      `report ${perSecond(generator.sentReports)}/s (${asked(REPORT_MS)}/s) p50 ${ms(median(result.reports))} p99 ${ms(percentile(result.reports, 0.99))}; /ping p99 ${ms(percentile(pings, 0.99))}; ` +
      `errors ${result.errors}, of them 503s ${result.unavailable}${result.firstError ? ` (first: ${result.firstError})` : ''}; CPU server ${server.toFixed(0)}% (${perRequest.toFixed(0)} µs a request; waited for a core ${serverWaiting.toFixed(0)}% of the time) ` +
      `agents ${agentsPercent.toFixed(0)}% (waited ${agentsWaiting.toFixed(0)}%); ` +
      `generator: socket wait p99 ${ms(generator.socketWaitP99)}, event-loop delay p99 ${ms(generator.loopDelayP99)}, ${generator.sockets} sockets; ${loadNow}`,
  )
  return {p99, errors: result.errors}
}

async function pollsAndReports(sizes: number[], setup: ServerSetup): Promise<void> {
  const where = setup.instances > 1 ? `${setup.instances} servers on one PostgreSQL database behind haproxy` : `one server on ${setup.database === 'sqlite' ? 'SQLite' : 'PostgreSQL'}`
  print(`fleet (${where}): each device polls every ${POLL_MS / 1000} s (If-None-Match) and reports every ${REPORT_MS / 1000} s; ${WINDOW_MS / 1000} s measured per size; ${load()}`)
  const fleet = await benchFleet(setup)
  const agents = new AgentProcess()
  try {
    let largestUnderTarget = 0
    for (const size of sizes) {
      await registerDevices(fleet, size - fleet.devices.length)
      const {p99, errors} = await measureSize(fleet, agents)
      if (p99 < TARGET_P99_MS && errors === 0) largestUnderTarget = size
      if (p99 > TARGET_P99_MS * 3) break
    }

    print(`  largest fleet with state-poll p99 under ${TARGET_P99_MS} ms: ${largestUnderTarget || `none of ${sizes.join(', ')}`}`)
  } finally {
    agents.stop()
    await fleet.server.stop()
  }
}

/** Each agent process's notices and changed fetches, until every device has fetched the new target or the deadline. */
async function awaitRelease(agents: AgentProcess[], devices: number, deadlineMs: number) {
  const deadline = Date.now() + deadlineMs
  for (;;) {
    const progress = await Promise.all(agents.map((agent) => agent.ask({type: 'progress'}, 'progress')))
    const fetches = progress.flatMap((each) => each.changedFetches)
    if (fetches.length >= devices || Date.now() > deadline) {
      return {notices: progress.flatMap((each) => each.notices), fetches, errors: progress.reduce((sum, each) => sum + each.errors, 0), firstError: progress.find((each) => each.firstError)?.firstError}
    }

    await sleep(500)
  }
}

async function links(count: number, setup: ServerSetup): Promise<void> {
  print(`fleet links: ${count} devices each hold a device link (SSH); ${load()}`)
  const fleet = await benchFleet(setup)
  const dataDir = mkdtempSync(path.join(tmpdir(), 'flotilla-bench-links-'))
  const agents = Array.from({length: Math.ceil(count / LINKS_PER_AGENT_PROCESS)}, () => new AgentProcess())
  try {
    await registerDevices(fleet, count)
    const {ssh} = (await fleet.api.call('GET', '/.well-known/flotilla.json')).json() as {ssh: {host: string; port: number; hostKey?: string}}
    const before = residentBytesOf(fleet.server.pids[0])
    const serverCpu = new CpuMeter(fleet.server.pids)
    const started = performance.now()
    const slice = Math.ceil(count / agents.length)
    const linking = agents.map((agent, index) => agent.ask({type: 'link', url: fleet.server.url, ssh, devices: fleet.devices.slice(index * slice, (index + 1) * slice), dataDir}, 'linked'))
    const linked = await Promise.race([Promise.all(linking), sleep(LINK_DEADLINE_MS).then(() => undefined)])
    if (!linked) throw new Error(`the links were not all up within ${LINK_DEADLINE_MS / 1000} s`)
    const seconds = (performance.now() - started) / 1000
    const perLink = (residentBytesOf(fleet.server.pids[0]) - before) / count
    const sum = (pick: (each: Extract<FromAgents, {type: 'linked'}>) => number) => linked.reduce((total, each) => total + pick(each), 0)
    print(
      `  ${sum((each) => each.linked)} links up and targets fetched in ${seconds.toFixed(1)} s; server memory ${(perLink / 1024).toFixed(1)} KiB a link (RSS delta / links), ` +
        `server CPU ${serverCpu.percent().toFixed(0)}% (${((serverCpu.used() * 1000) / count).toFixed(1)} ms a link); failed attempts ${sum((each) => each.linkFailures)}${linked.find((each) => each.firstError)?.firstError ? ` (${linked.find((each) => each.firstError)?.firstError})` : ''}; ${load()}`,
    )
    const releasedAt = Date.now()
    await fleet.api.createRelease(fleet.token, fleet.fleetId, randomBytes(16).toString('hex'))
    const reached = await awaitRelease(agents, count, RELEASE_DEADLINE_MS)
    const after = (times: number[]) => times.map((time) => (time - releasedAt) / 1000).sort((a, b) => a - b)
    const [notices, fetches] = [after(reached.notices), after(reached.fetches)]
    const seconds50 = (times: number[]) => (times.length > 0 ? `p50 ${median(times).toFixed(1)} s, last ${times.at(-1)?.toFixed(1)} s` : 'none')
    print(
      `  new release: ${notices.length}/${count} devices told over their link (${seconds50(notices)}), ${fetches.length}/${count} fetched the new target (${seconds50(fetches)}); ` +
        `errors ${reached.errors}${reached.firstError ? ` (${reached.firstError})` : ''}; ${load()}`,
    )
    await Promise.all(agents.map((agent) => agent.ask({type: 'unlink'}, 'unlinked')))
  } finally {
    for (const agent of agents) agent.stop()
    await fleet.server.stop()
    rmSync(dataDir, {recursive: true, force: true})
  }
}

/** `--database postgres` and `--instances N` (N > 1 implies PostgreSQL). */
function serverSetupOf(args: string[]): ServerSetup {
  const databaseAt = args.indexOf('--database')
  const instancesAt = args.indexOf('--instances')
  const instances = instancesAt >= 0 ? Number(args[instancesAt + 1]) : 1
  if (!Number.isInteger(instances) || instances < 1) throw new Error('--instances takes a whole number of servers, 1 or more')
  const database = databaseAt >= 0 ? args[databaseAt + 1] : instances > 1 ? 'postgres' : 'sqlite'
  if (database !== 'sqlite' && database !== 'postgres') throw new Error('--database takes sqlite or postgres (a PostgreSQL cluster the bench starts, as the tests do)')
  if (instances > 1 && database !== 'postgres') throw new Error('several servers share a PostgreSQL database: --instances needs --database postgres')
  const profileAt = args.indexOf('--cpu-prof')
  return {database, instances, cpuProfileDir: profileAt >= 0 ? args[profileAt + 1] : undefined}
}

/** `--links [count]`, `--sizes 1000,2000`, `--database postgres`, `--instances 2`, `--cpu-prof DIR`. */
export async function run(): Promise<void> {
  const args = process.argv.slice(3)
  const setup = serverSetupOf(args)
  const linksAt = args.indexOf('--links')
  if (linksAt >= 0) {
    const possible = Math.min(MAX_LINKS, openFileLimit() - FILES_BESIDES_LINKS)
    const asked = Number(args[linksAt + 1]) || MAX_LINKS
    if (asked > possible) print(`fleet links: ${asked} links need as many open files in the server; this machine allows ${openFileLimit()} a process, so ${possible}`)
    await links(Math.min(asked, possible), setup)
    return
  }

  const sizesAt = args.indexOf('--sizes')
  await pollsAndReports(sizesAt >= 0 ? args[sizesAt + 1].split(',').map(Number) : FLEET_SIZES, setup)
}
